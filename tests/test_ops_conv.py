"""The int8 compute ops (conv, depthwise, fully connected, pooling, mean/sum) against TFLite Micro.

Each case is a tiny single-op Keras model in an awkward configuration,
converted to full int8 with a fixed seed (cached by tinyml.zoo between runs).
For each one: (a) the op's numpy reference equals TFLite Micro exactly on
20 random inputs, and (b) the generated C, compiled on the host under
ASan/UBSan with -Wall -Wextra -Werror, equals TFLite Micro exactly.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tinyml.codegen.emit import generate
from tinyml.fixedpoint import multiply_by_quantized_multiplier, quantize_multiplier
from tinyml.ir import Graph, Node, Quant, Tensor
from tinyml.ops import get_op
from tinyml.oracle import TflmOracle, random_inputs
from tinyml.pipeline import load_graph
from tinyml.reference import reference_outputs
from tinyml.schedule.memory import plan_memory
from tinyml.sim.host import HostRunner
from tinyml.zoo.cache import ensure_built
from tinyml.zoo.registry import ZooModel

INPUTS = 20


# -- model builders (their source is part of the zoo cache key) ---------------

def layers(tf: Any, input_shape: tuple[int, ...], stack: tuple[tuple[str, dict], ...]) -> Any:
    """A Keras model applying the named keras.layers classes in order."""
    x = inp = tf.keras.Input(input_shape, batch_size=1)
    for cls, kwargs in stack:
        x = getattr(tf.keras.layers, cls)(**kwargs)(x)
    return tf.keras.Model(inp, x)


def reduction(tf: Any, input_shape: tuple[int, ...], op: str, axis: tuple[int, ...], keepdims: bool) -> Any:
    """tf.reduce_mean / tf.reduce_sum over `axis` (MEAN / SUM ops)."""
    inp = tf.keras.Input(input_shape, batch_size=1)
    fn = getattr(tf, op)
    out = tf.keras.layers.Lambda(lambda t: fn(t, axis=list(axis), keepdims=keepdims))(inp)
    return tf.keras.Model(inp, out)


# -- flatbuffer edits for configurations the converter does not emit ---------

def output_quant_as_input(data: bytes) -> bytes:
    """Give the single op's output the input's quantization (TFLite Micro's plain MEAN path)."""
    from tinyml.zoo.convert import read_model, write_model

    m = read_model(data)
    sg = m.subgraphs[0]
    src, dst = sg.tensors[sg.operators[0].inputs[0]], sg.tensors[sg.operators[0].outputs[0]]
    dst.quantization.scale = list(src.quantization.scale)
    dst.quantization.zeroPoint = list(src.quantization.zeroPoint)
    return write_model(m)


def drop_bias(data: bytes) -> bytes:
    """Remove the single op's bias input (the converter stores zeros for use_bias=False)."""
    from tinyml.zoo.convert import read_model, write_model

    m = read_model(data)
    op = m.subgraphs[0].operators[0]
    op.inputs = list(op.inputs[:2]) + [-1]
    return write_model(m)


def flatten_fc_output(data: bytes) -> bytes:
    """keep_num_dims=False on a rank-3 FULLY_CONNECTED: the output becomes [batches, units]."""
    from tinyml.zoo.convert import read_model, write_model

    m = read_model(data)
    sg = m.subgraphs[0]
    op = sg.operators[0]
    op.builtinOptions.keepNumDims = False
    x, y = sg.tensors[op.inputs[0]], sg.tensors[op.outputs[0]]
    y.shape = [int(np.prod(x.shape[:-1])), int(y.shape[-1])]
    y.shapeSignature = None
    sg.outputs = [op.outputs[0]]
    return write_model(m)


def case(name: str, op: str, input_shape: tuple[int, ...], *stack: tuple[str, dict], **options: Any) -> ZooModel:
    return ZooModel(f"opsconv_{name}", "ops", layers, frozenset({op}),
                    dict(input_shape=input_shape, stack=stack), **options)


def reduce_case(name: str, op: str, input_shape: tuple[int, ...], fn: str, axis: tuple[int, ...],
                keepdims: bool, **options: Any) -> ZooModel:
    return ZooModel(f"opsconv_{name}", "ops", reduction, frozenset({op}),
                    dict(input_shape=input_shape, op=fn, axis=axis, keepdims=keepdims), **options)


def conv(filters: int, kernel: Any, **kw: Any) -> tuple[str, dict]:
    return ("Conv2D", dict(filters=filters, kernel_size=kernel, **kw))


def dwconv(kernel: Any, **kw: Any) -> tuple[str, dict]:
    return ("DepthwiseConv2D", dict(kernel_size=kernel, **kw))


SAME = dict(padding="same")
CASES = [
    case("conv_3to5_s2_same_odd", "CONV_2D", (9, 7, 3), conv(5, 3, strides=2, activation="relu", **SAME)),
    case("conv_7to13_relu6", "CONV_2D", (8, 8, 7), conv(13, 3, activation="relu6", **SAME)),
    case("conv_s2_same_even_k3", "CONV_2D", (8, 10, 3), conv(4, 3, strides=2, **SAME)),
    case("conv_1x5_valid", "CONV_2D", (6, 10, 4), conv(6, (1, 5))),
    case("conv_5x1_s2_same", "CONV_2D", (11, 9, 3), conv(4, (5, 1), strides=2, **SAME)),
    case("conv_dilation2", "CONV_2D", (10, 9, 3), conv(4, 3, dilation_rate=2, **SAME)),
    case("conv_per_tensor", "CONV_2D", (7, 7, 4), conv(6, 3, **SAME), per_channel=False),
    case("conv_no_bias", "CONV_2D", (8, 8, 3), conv(5, 3, strides=2, use_bias=False, **SAME), postprocess=drop_bias),
    case("conv_grouped", "CONV_2D", (6, 5, 6), conv(9, 3, groups=3, **SAME)),
    case("conv_pointwise", "CONV_2D", (6, 6, 8), conv(16, 1)),
    case("conv_1x1_map", "CONV_2D", (1, 1, 12), conv(8, 3, **SAME)),
    case("conv_to_1x1", "CONV_2D", (3, 3, 6), conv(5, 3)),
    case("conv_explicit_pad", "CONV_2D", (7, 6, 3), ("ZeroPadding2D", dict(padding=((1, 2), (0, 3)))),
         conv(4, 3, strides=2)),
    case("conv_pad_beyond_kernel", "CONV_2D", (5, 5, 2), ("ZeroPadding2D", dict(padding=((4, 0), (0, 5)))),
         conv(3, 3, strides=2)),
    case("dw_3x3_same_relu", "DEPTHWISE_CONV_2D", (7, 7, 5), dwconv(3, activation="relu", **SAME)),
    case("dw_dm2_s2_same", "DEPTHWISE_CONV_2D", (9, 9, 3), dwconv(3, strides=2, depth_multiplier=2, **SAME)),
    case("dw_dm3_valid", "DEPTHWISE_CONV_2D", (6, 5, 4), dwconv((2, 3), depth_multiplier=3)),
    case("dw_5x5_s2_relu6", "DEPTHWISE_CONV_2D", (11, 11, 6), dwconv(5, strides=2, activation="relu6", **SAME)),
    case("dw_dilation2", "DEPTHWISE_CONV_2D", (9, 8, 4), dwconv(3, dilation_rate=2, **SAME)),
    case("dw_per_tensor_zero_bias", "DEPTHWISE_CONV_2D", (6, 6, 3), dwconv(3, use_bias=False, **SAME),
         per_channel=False),
    case("dw_1x1_map", "DEPTHWISE_CONV_2D", (1, 1, 8), dwconv(3, **SAME)),
    case("dw_1x5_same", "DEPTHWISE_CONV_2D", (4, 9, 3), dwconv((1, 5), **SAME)),
    case("dw_explicit_pad", "DEPTHWISE_CONV_2D", (6, 6, 4), ("ZeroPadding2D", dict(padding=((2, 0), (1, 1)))),
         dwconv(3, strides=2)),
    case("fc_per_channel_relu", "FULLY_CONNECTED", (20,), ("Dense", dict(units=7, activation="relu"))),
    case("fc_per_tensor", "FULLY_CONNECTED", (13,), ("Dense", dict(units=9)), per_channel=False),
    case("fc_no_bias", "FULLY_CONNECTED", (16,), ("Dense", dict(units=5, use_bias=False)), postprocess=drop_bias),
    case("fc_rank3_keep_dims", "FULLY_CONNECTED", (4, 10), ("Dense", dict(units=6))),
    case("fc_rank3_flat", "FULLY_CONNECTED", (3, 11), ("Dense", dict(units=5)), postprocess=flatten_fc_output),
    case("avgpool_2x2_valid", "AVERAGE_POOL_2D", (8, 8, 3), ("AveragePooling2D", dict(pool_size=2))),
    case("avgpool_3x3_s2_same_odd", "AVERAGE_POOL_2D", (9, 7, 5),
         ("AveragePooling2D", dict(pool_size=3, strides=2, **SAME))),
    case("avgpool_relu", "AVERAGE_POOL_2D", (6, 6, 4), ("AveragePooling2D", dict(pool_size=2)), ("ReLU", {})),
    case("avgpool_1x3_same", "AVERAGE_POOL_2D", (5, 9, 2),
         ("AveragePooling2D", dict(pool_size=(1, 3), strides=(1, 2), **SAME))),
    case("maxpool_3x3_s2_same_odd", "MAX_POOL_2D", (9, 7, 5),
         ("MaxPooling2D", dict(pool_size=3, strides=2, **SAME))),
    case("maxpool_2x2", "MAX_POOL_2D", (6, 6, 4), ("MaxPooling2D", dict(pool_size=2))),
    case("maxpool_relu6", "MAX_POOL_2D", (7, 5, 3), ("MaxPooling2D", dict(pool_size=2, **SAME)), ("ReLU", dict(max_value=6.0))),
    case("mean_gap", "MEAN", (5, 7, 6), ("GlobalAveragePooling2D", {})),
    case("mean_gap_keepdims", "MEAN", (4, 4, 10), ("GlobalAveragePooling2D", dict(keepdims=True))),
    case("mean_gap_same_quant", "MEAN", (3, 5, 9), ("GlobalAveragePooling2D", {}),
         postprocess=output_quant_as_input),
    reduce_case("mean_axis1", "MEAN", (6, 5), "reduce_mean", (1,), False),
    reduce_case("sum_hw_keepdims", "SUM", (4, 3, 5), "reduce_sum", (1, 2), True),
    case("tconv_3x3_s2_same", "TRANSPOSE_CONV", (5, 4, 6), ("Conv2DTranspose", dict(filters=5, kernel_size=3,
                                                                                    strides=2, **SAME))),
    case("tconv_4x4_s2_same_relu", "TRANSPOSE_CONV", (4, 5, 3),
         ("Conv2DTranspose", dict(filters=4, kernel_size=4, strides=2, activation="relu", **SAME))),
    case("tconv_3x2_valid", "TRANSPOSE_CONV", (5, 5, 4), ("Conv2DTranspose", dict(filters=3, kernel_size=(3, 2)))),
    case("tconv_2x2_s2_per_tensor", "TRANSPOSE_CONV", (3, 4, 8),
         ("Conv2DTranspose", dict(filters=6, kernel_size=2, strides=2)), per_channel=False),
    case("tconv_5x5_s3_same", "TRANSPOSE_CONV", (3, 3, 2),
         ("Conv2DTranspose", dict(filters=4, kernel_size=5, strides=3, **SAME))),
]


@pytest.fixture(scope="module")
def built() -> dict[str, bytes]:
    """Model bytes by case name, read once per module run."""
    return {}


def model_bytes(spec: ZooModel, built: dict[str, bytes]) -> bytes:
    if spec.name not in built:
        built[spec.name] = ensure_built(spec).read_bytes()
    return built[spec.name]


def run_generated(g: Graph, inputs: list[list[np.ndarray]], out: Path) -> list[np.ndarray]:
    """First output of the generated library, built with ASan/UBSan, per input set."""
    lib = generate(g, plan_memory(g), out)
    return [o[0] for o in HostRunner(lib, sanitize=True).run(inputs).outputs]


def assert_bit_exact(g: Graph, data: bytes, out: Path) -> None:
    """Reference and generated C both equal TFLite Micro running `data`, on every input."""
    oracle = TflmOracle(data)
    inputs = random_inputs(oracle, INPUTS, seed=7)
    want = [oracle.run(x)[0] for x in inputs]
    ref = [reference_outputs(g, x)[0] for x in inputs]
    bad = [i for i, (r, w) in enumerate(zip(ref, want)) if not np.array_equal(r, w)]
    assert not bad, f"numpy reference differs from TFLite Micro on inputs {bad}"
    got = run_generated(g, inputs, out)
    bad = [i for i, (c, w) in enumerate(zip(got, want)) if not np.array_equal(c, w)]
    assert not bad, f"generated C differs from TFLite Micro on inputs {bad}"


@pytest.mark.parametrize("spec", CASES, ids=lambda s: s.name.removeprefix("opsconv_"))
def test_op_bit_exact_with_tflite_micro(spec: ZooModel, built: dict[str, bytes], tmp_path: Path) -> None:
    data = model_bytes(spec, built)
    g = load_graph(data)
    (op,) = spec.exercises
    assert [n.op for n in g.nodes] == [op], "the case must be the op alone"
    assert_bit_exact(g, data, tmp_path / "lib")


def test_depthwise_without_bias(built: dict[str, bytes], tmp_path: Path) -> None:
    """An absent depthwise bias computes what a zero bias computes.

    TFLite Micro itself crashes on a DEPTHWISE_CONV_2D whose bias input is
    absent, so the oracle runs the zero-bias model and our graph drops it.
    """
    spec = next(s for s in CASES if s.name == "opsconv_dw_per_tensor_zero_bias")
    data = model_bytes(spec, built)
    g = load_graph(data)
    (node,) = g.nodes
    assert not np.any(g[node.inputs[2]].data)
    node.inputs[2] = None
    g.remove_unused_tensors()
    assert_bit_exact(g, data, tmp_path / "lib")


# -- hand-built graphs: what no converter emits --------------------------------

def single_node(op: str, x_shape: tuple[int, ...], y_shape: tuple[int, ...], weights: np.ndarray | None,
                bias: np.ndarray | None, attrs: dict[str, Any], dtype: str = "int8") -> Graph:
    g = Graph()
    g.add_tensor(Tensor("x", x_shape, dtype, Quant([0.05], [3])))
    g.add_tensor(Tensor("y", y_shape, dtype, Quant([0.1], [-2])))
    inputs: list[str | None] = ["x"]
    if weights is not None:
        scales = np.linspace(0.01, 0.02, weights.shape[0]).astype(np.float32)
        g.add_tensor(Tensor("w", weights.shape, "int8", Quant(scales, np.zeros(scales.size)), weights))
        inputs.append("w")
        inputs.append(None if bias is None else "b")
        if bias is not None:
            g.add_tensor(Tensor("b", bias.shape, "int32", None, bias))
    g.nodes.append(Node(op, inputs, ["y"], attrs))
    g.inputs, g.outputs = ["x"], ["y"]
    return g


CONV_ATTRS = dict(padding="SAME", stride_h=1, stride_w=1, dilation_h_factor=1, dilation_w_factor=1,
                  fused_activation_function="NONE")


def test_accumulator_overflow_wraps_like_int32(tmp_path: Path) -> None:
    """A hostile model whose sums leave int32 still gives defined, reference-equal C (no UB under UBSan)."""
    w = np.full((2, 3, 3, 64), 127, np.int8)
    w[1] = -128
    bias = np.array([2**31 - 5000, -(2**31) + 5000], np.int32)
    g = single_node("CONV_2D", (1, 4, 4, 64), (1, 4, 4, 2), w, bias, CONV_ATTRS)
    rng = np.random.default_rng(3)
    inputs = [[rng.integers(-128, 128, (1, 4, 4, 64), dtype=np.int8)] for _ in range(4)]
    want = [reference_outputs(g, x)[0] for x in inputs]
    got = run_generated(g, inputs, tmp_path / "lib")
    assert all(np.array_equal(c, r) for c, r in zip(got, want))
    # The sums really wrapped: without wrapping, channel 0 would saturate at 127 everywhere.
    assert any(np.any(r[..., 0] < 127) for r in want)


@pytest.mark.parametrize("op, attrs, x_shape, w_shape, why", [
    ("CONV_2D", dict(CONV_ATTRS, fused_activation_function="TANH"), (1, 4, 4, 2), (3, 3, 3, 2), "TANH"),
    ("CONV_2D", CONV_ATTRS, (1, 4, 4, 6), (3, 3, 3, 4), "groups"),
    ("DEPTHWISE_CONV_2D", dict(CONV_ATTRS, depth_multiplier=3), (1, 4, 4, 2), (1, 3, 3, 4), "depth_multiplier"),
    ("FULLY_CONNECTED", dict(fused_activation_function="NONE", keep_num_dims=False), (1, 10), (4, 3), "rows"),
    ("AVERAGE_POOL_2D", dict(padding="VALID", stride_h=1, stride_w=1, filter_height=2, filter_width=2,
                             fused_activation_function="NONE", explicit_padding=(3, 0, 0, 0)),
     (1, 3, 3, 2), None, "padding"),
])
def test_unsupported_configurations_say_why(op: str, attrs: dict, x_shape: tuple, w_shape: tuple | None,
                                            why: str) -> None:
    w = None if w_shape is None else np.ones(w_shape, np.int8)
    g = single_node(op, x_shape, (1, 1), w, None, attrs)
    reason = get_op(op).check(g, g.nodes[0])
    assert reason is not None and why in reason


def test_int16_activations_are_refused() -> None:
    g = single_node("CONV_2D", (1, 4, 4, 2), (1, 4, 4, 3), np.ones((3, 3, 3, 2), np.int8), None, CONV_ATTRS,
                    dtype="int16")
    assert "int16" in get_op("CONV_2D").check(g, g.nodes[0])


def test_mean_of_non_adjacent_axes_is_refused() -> None:
    g = single_node("MEAN", (1, 4, 4, 2), (1, 4), None, None, dict(keep_dims=False))
    g.add_tensor(Tensor("axes", (2,), "int32", None, np.array([1, 3], np.int32)))
    g.nodes[0].inputs.append("axes")
    assert "non-adjacent" in get_op("MEAN").check(g, g.nodes[0])


def test_macs_count_every_multiply(built: dict[str, bytes]) -> None:
    """Multiply-accumulates from the layer shapes, counted by hand."""
    expected = {
        "opsconv_conv_3to5_s2_same_odd": (5 * 4 * 5) * (3 * 3 * 3),
        "opsconv_conv_grouped": (6 * 5 * 9) * (3 * 3 * 2),
        "opsconv_dw_dm2_s2_same": (5 * 5 * 6) * (3 * 3),
        "opsconv_fc_rank3_keep_dims": 4 * 10 * 6,
        "opsconv_maxpool_2x2": 0,
    }
    for spec in CASES:
        if spec.name in expected:
            g = load_graph(model_bytes(spec, built))
            n = g.nodes[0]
            assert get_op(n.op).macs(g, n) == expected[spec.name], spec.name


# -- the multiplier derivation, pinned against TFLite Micro ----------------------

def requantized(acc: np.ndarray, mult: int, shift: int, out_zp: int) -> np.ndarray:
    return np.clip(multiply_by_quantized_multiplier(acc, mult, shift) + out_zp, -128, 127)


def decisive_accumulators(ours: tuple[int, int], other: tuple[int, int], out_zp: int) -> np.ndarray:
    """Accumulator values the two (multiplier, shift) pairs requantize differently.

    They sit next to the rounding boundaries of the output staircase, so only
    a window around each boundary is searched.
    """
    real = ours[0] * 2.0 ** (ours[1] - 31)
    levels = np.arange(-300, 300) + 0.5
    acc = (np.round(levels / real)[:, None] + np.arange(-16, 17)[None, :]).astype(np.int64).ravel()
    acc = acc[np.abs(acc) < 2**31 - 1]
    differ = requantized(acc, *ours, out_zp) != requantized(acc, *other, out_zp)
    return np.unique(acc[differ])


@pytest.mark.parametrize("name", ["fc_per_tensor", "fc_per_channel_relu", "conv_3to5_s2_same_odd", "conv_pointwise",
                                  "dw_per_tensor_zero_bias"])
def test_multiplier_derivation_matches_tflite_micro(name: str, built: dict[str, bytes]) -> None:
    """Multipliers are input*filter/output scale in double, per-tensor FULLY_CONNECTED included.

    Older TFLite sources multiply input*filter in float32 first for a
    per-tensor FC. The two rules differ by a few units of the 31-bit
    multiplier, which flips an output only for rare accumulators, so random
    inputs cannot tell them apart. This test makes such accumulators certain:
    a coarser output scale (more accumulators per output step), and biases set
    to accumulators the rules disagree on, reached by an input equal to the
    zero point (every tap then adds 0, so each accumulator is the bias).
    """
    from tinyml.zoo.convert import read_model, write_model

    spec = next(s for s in CASES if s.name == f"opsconv_{name}")
    m = read_model(model_bytes(spec, built))
    sg = m.subgraphs[0]
    op = sg.operators[0]
    x, w, b, y = (sg.tensors[i] for i in (*op.inputs, op.outputs[0]))
    y.quantization.scale = [float(np.float32(y.quantization.scale[0] * 256))]
    sx, sy, out_zp = np.float32(x.quantization.scale[0]), np.float32(y.quantization.scale[0]), y.quantization.zeroPoint[0]
    bias = np.frombuffer(bytes(m.buffers[b.buffer].data), np.int32).copy()
    wrong: dict[int, tuple[int, int]] = {}
    for c in range(bias.size):
        sw = np.float32(w.quantization.scale[c if len(w.quantization.scale) > 1 else 0])
        as_double = quantize_multiplier(float(sx) * float(sw) / float(sy))
        as_float = quantize_multiplier(float(sx * sw) / float(sy))
        found = decisive_accumulators(as_double, as_float, out_zp)
        if found.size:
            bias[c], wrong[c] = found[(7 * c) % found.size], as_float
    assert wrong, "no accumulator separates the rules: the test would prove nothing"
    m.buffers[b.buffer].data = np.frombuffer(bias.tobytes(), np.uint8)
    data = write_model(m)

    g = load_graph(data)
    inputs = [np.full(g[g.inputs[0]].shape, x.quantization.zeroPoint[0], np.int8)]
    want = TflmOracle(data).run(inputs)[0]
    assert np.array_equal(reference_outputs(g, inputs)[0], want)
    for c, rule in wrong.items():
        assert np.all(want[..., c] != requantized(np.int64(bias[c]), *rule, out_zp)), f"channel {c}"
