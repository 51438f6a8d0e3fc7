"""TFLite's 16x8 mode (int16 activations, int8 weights, int64 bias) against TFLite Micro.

Each case is a single-op graph written as a .tflite file (no converter needed, so the
quantization can be awkward on purpose: per-channel and per-tensor weights, scales that
make the requantization shift left or right, padding, groups, broadcasting). For each:
the op's numpy reference and the generated C (host, ASan/UBSan) equal TFLite Micro on
random inputs covering the whole int16 range and a narrow one. The real 16x8 model of the
wild sample runs in tests/test_wild.py; the Keras-built ones in the zoo's int16 group.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from tinyml.codegen.emit import generate
from tinyml.frontend.tflite_writer import write_tflite
from tinyml.ir import Graph, Node, Quant, Tensor
from tinyml.ops.int16 import reduced_multiplier, requant64
from tinyml.ops.sigmoid16 import SIGMOID_TABLE
from tinyml.oracle import TflmOracle
from tinyml.pipeline import load_graph
from tinyml.reference import reference_outputs
from tinyml.schedule.memory import plan_memory
from tinyml.sim.host import HostRunner

RNG_SEED = 16


def _act(name: str, shape: tuple[int, ...], scale: float) -> Tensor:
    return Tensor(name, shape, "int16", Quant([scale], [0]))


def _weights(rng: np.random.Generator, shape: tuple[int, ...], axis: int, per_channel: bool) -> Tensor:
    data = rng.integers(-127, 128, size=shape).astype(np.int8)
    n = shape[axis] if per_channel else 1
    scales = rng.uniform(0.002, 0.02, size=n).astype(np.float32)
    return Tensor("w", shape, "int8", Quant(scales, np.zeros(n, np.int64), axis if per_channel else 0), data=data)


def _bias(rng: np.random.Generator, n: int, x_scale: float, w: Tensor) -> Tensor:
    scales = (np.float32(x_scale) * np.broadcast_to(w.quant.scale, (n,))).astype(np.float32)
    data = rng.integers(-(1 << 24), 1 << 24, size=n).astype(np.int64)
    return Tensor("b", (n,), "int64", Quant(scales, np.zeros(n, np.int64)), data=data)


def _graph(op: str, inputs: list[Tensor], out: Tensor, attrs: dict) -> Graph:
    g = Graph(name=f"int16_{op.lower()}")
    for t in [*inputs, out]:
        g.tensors[t.name] = t
    g.nodes.append(Node(op, [t.name for t in inputs], [out.name], attrs, name=op.lower()))
    g.inputs = [t.name for t in inputs if not t.is_const]
    g.outputs = [out.name]
    return g


def fully_connected(rng, per_channel: bool, bias: bool, out_scale: float) -> Graph:
    x, w = _act("x", (2, 40), 0.0005), _weights(rng, (23, 40), 0, per_channel)
    ins = [x, w] + ([_bias(rng, 23, 0.0005, w)] if bias else [])
    return _graph("FULLY_CONNECTED", ins, _act("y", (2, 23), out_scale),
                  {"fused_activation_function": "NONE", "weights_format": "DEFAULT", "keep_num_dims": False,
                   "asymmetric_quantize_inputs": False})


def conv(rng, per_channel: bool, padding: str, stride: int, groups: int, act: str, cin: int = 6) -> Graph:
    cout = 8
    x, w = _act("x", (1, 9, 7, cin), 0.0004), _weights(rng, (cout, 3, 3, cin // groups), 0, per_channel)
    y_shape = (1, -(-9 // stride), -(-7 // stride), cout) if padding == "SAME" else \
        (1, (9 - 3) // stride + 1, (7 - 3) // stride + 1, cout)
    return _graph("CONV_2D", [x, w, _bias(rng, cout, 0.0004, w)], _act("y", y_shape, 0.003),
                  {"padding": padding, "stride_w": stride, "stride_h": stride, "fused_activation_function": act,
                   "dilation_w_factor": 1, "dilation_h_factor": 1})


def depthwise(rng, per_channel: bool, mult: int) -> Graph:
    cin = 5
    x, w = _act("x", (1, 8, 6, cin), 0.0004), _weights(rng, (1, 3, 3, cin * mult), 3, per_channel)
    return _graph("DEPTHWISE_CONV_2D", [x, w, _bias(rng, cin * mult, 0.0004, w)],
                  _act("y", (1, 8, 6, cin * mult), 0.0008),
                  {"padding": "SAME", "stride_w": 1, "stride_h": 1, "depth_multiplier": mult,
                   "fused_activation_function": "RELU", "dilation_w_factor": 1, "dilation_h_factor": 1})


def binary(op: str, shape_b: tuple[int, ...], scales: tuple[float, float, float]) -> Graph:
    a, b = _act("a", (1, 4, 3, 6), scales[0]), _act("b", shape_b, scales[1])
    attrs = {"fused_activation_function": "NONE"}
    if op in ("ADD", "SUB"):
        attrs["pot_scale_int16"] = False
    return _graph(op, [a, b], _act("y", (1, 4, 3, 6), scales[2]), attrs)


def sigmoidal(op: str, in_scale: float) -> Graph:
    return _graph(op, [_act("x", (3, 77), in_scale)], _act("y", (3, 77), 2.0 ** -15), {})


def softmax(in_scale: float, beta: float) -> Graph:
    return _graph("SOFTMAX", [_act("x", (8, 33), in_scale)], _act("y", (8, 33), 2.0 ** -15), {"beta": beta})


def mean(zp: int) -> Graph:
    x = Tensor("x", (1, 5, 7, 6), "int16", Quant([0.0003], [zp]))
    axes = Tensor("axes", (2,), "int32", data=np.array([1, 2], np.int32))
    return _graph("MEAN", [x, axes], Tensor("y", (1, 1, 1, 6), "int16", Quant([0.0002], [-zp])), {"keep_dims": True})


def requantize(out_dtype: str, out_scale: float, out_zp: int) -> Graph:
    return _graph("QUANTIZE", [_act("x", (4, 31), 0.0004)], Tensor("y", (4, 31), out_dtype, Quant([out_scale], [out_zp])),
                  {})


def transpose_conv(rng, per_channel: bool, stride: int, padding: str) -> Graph:
    cin, cout = 4, 6
    x, w = _act("x", (1, 5, 4, cin), 0.0004), _weights(rng, (cout, 3, 3, cin), 0, per_channel)
    out = (1, 5 * stride, 4 * stride, cout) if padding == "SAME" else (1, (5 - 1) * stride + 3, (4 - 1) * stride + 3, cout)
    shape = Tensor("shape", (4,), "int32", data=np.array(out, np.int32))
    return _graph("TRANSPOSE_CONV", [shape, w, x, _bias(rng, cout, 0.0004, w)], _act("y", out, 0.002),
                  {"padding": padding, "stride_w": stride, "stride_h": stride, "fused_activation_function": "NONE"})


def int32_bias(g: Graph) -> Graph:
    """The same layer with an int32 bias (a newer converter option): TFLite Micro's int32 path."""
    b = g["b"]
    b.dtype, b.data = "int32", (b.data // 8).astype(np.int32)
    return g


def _cases() -> dict[str, Graph]:
    rng = np.random.default_rng(RNG_SEED)
    return {
        "fc_per_tensor_bias": fully_connected(rng, False, True, 0.02),
        "fc_per_channel_no_bias": fully_connected(rng, True, False, 0.05),
        "fc_small_output_scale": fully_connected(rng, True, True, 0.0008),
        "conv_same_s1": conv(rng, True, "SAME", 1, 1, "NONE"),
        "conv_valid_s2_relu6": conv(rng, False, "VALID", 2, 1, "RELU6"),
        "conv_grouped": conv(rng, True, "SAME", 2, 2, "RELU"),
        "conv_8ch_same": conv(rng, True, "SAME", 1, 1, "NONE", cin=8),
        "depthwise_m1": depthwise(rng, True, 1),
        "depthwise_m2": depthwise(rng, False, 2),
        "add": binary("ADD", (1, 4, 3, 6), (0.0003, 0.0007, 0.001)),
        "add_broadcast": binary("ADD", (6,), (0.002, 0.0002, 0.0015)),
        "sub": binary("SUB", (1, 1, 3, 6), (0.0005, 0.0004, 0.0006)),
        "mul": binary("MUL", (1, 4, 3, 6), (0.001, 0.0003, 0.00002)),
        "mul_broadcast": binary("MUL", (1, 4, 1, 1), (2.0 ** -15, 0.0004, 0.0001)),
        "logistic_pot": sigmoidal("LOGISTIC", 2.0 ** -12),
        "logistic": sigmoidal("LOGISTIC", 0.00037),
        "logistic_big_scale": sigmoidal("LOGISTIC", 16.93),  # multiplier above 32767 (real LSTM models)
        "tanh_pot": sigmoidal("TANH", 2.0 ** -11),
        "tanh": sigmoidal("TANH", 0.00021),
        "transpose_conv_s2_same": transpose_conv(rng, True, 2, "SAME"),
        "transpose_conv_s1_valid": transpose_conv(rng, False, 1, "VALID"),
        "fc_int32_bias": int32_bias(fully_connected(rng, True, True, 0.02)),
        "conv_int32_bias": int32_bias(conv(rng, True, "SAME", 1, 1, "RELU", cin=8)),
        "softmax": softmax(0.0002, 1.0),
        "softmax_beta": softmax(0.00004, 2.5),
        "softmax_wide": softmax(0.003, 1.0),
        "mean_zero_points": mean(37),
        "quantize_to_int8": requantize("int8", 0.05, 3),
        "quantize_to_int16": requantize("int16", 0.0007, 0),
    }


CASES = _cases()
SATURATING = {"logistic_big_scale"}  # its point is the wrapped int32 rescaling; nearly every output saturates


def _inputs(g: Graph, count: int) -> list[list[np.ndarray]]:
    """Half over the whole int16 range, half within +-2000 (where the functions are not saturated)."""
    rng = np.random.default_rng(RNG_SEED)
    shapes = [g[i].shape for i in g.inputs]
    return [[rng.integers(-32768 if k % 2 else -2000, 32768 if k % 2 else 2001, size=s).astype(np.int16)
             for s in shapes] for k in range(count)]


@pytest.mark.parametrize("name", sorted(CASES))
def test_16x8_op_bit_exact_with_tflite_micro(name: str, tmp_path: Path) -> None:
    data = write_tflite(CASES[name])
    oracle = TflmOracle(data)
    g = load_graph(data)
    inputs = _inputs(g, 10)
    want = [oracle.run(x)[0] for x in inputs]
    ref = [reference_outputs(g, x)[0] for x in inputs]
    bad = [i for i, (r, w) in enumerate(zip(ref, want)) if not np.array_equal(r, w)]
    assert not bad, f"numpy reference differs from TFLite Micro on inputs {bad}"
    lib = generate(g, plan_memory(g), tmp_path / "lib")
    got = [o[0] for o in HostRunner(lib, sanitize=True).run(inputs).outputs]
    bad = [i for i, (c, w) in enumerate(zip(got, want)) if not np.array_equal(c, w)]
    assert not bad, f"generated C differs from TFLite Micro on inputs {bad}"
    if name not in SATURATING:
        assert np.unique(np.concatenate([w.ravel() for w in want])).size > 8, "the case saturates: it tests nothing"


def whole_input_conv(rng) -> Graph:
    """A convolution whose one window is its whole input (as in real 16x8 LSTM front ends)."""
    x, w = _act("x", (1, 3, 7, 2), 0.0004), _weights(rng, (9, 3, 7, 2), 0, True)
    return _graph("CONV_2D", [x, w, _bias(rng, 9, 0.0004, w)], _act("y", (1, 1, 1, 9), 0.004),
                  {"padding": "VALID", "stride_w": 1, "stride_h": 1, "fused_activation_function": "NONE",
                   "dilation_w_factor": 1, "dilation_h_factor": 1})


@pytest.mark.slow
@pytest.mark.parametrize("name", ["fc_per_channel_no_bias", "fc_per_tensor_bias", "whole_input_conv",
                                  "conv_8ch_same", "conv_valid_s2_relu6", "fc_int32_bias", "conv_int32_bias"])
def test_16x8_dsp_kernels_bit_exact_in_qemu(name: str, tmp_path: Path, capsys) -> None:
    """The DSP kernels (SMLAD on int16 input pairs, weights widened by SXTB16): dot products (odd rows,
    depth % 4 tails) and convolution window rows (padding with 8 channels, a row % 4 tail without)."""
    from tinyml.cli import main

    g = whole_input_conv(np.random.default_rng(3)) if name == "whole_input_conv" else CASES[name]
    path = tmp_path / f"{name}.tflite"
    path.write_bytes(write_tflite(g))
    assert main(["validate", str(path), "--board", "stm32f405", "--inputs", "4"]) == 0
    assert "bit-exact" in capsys.readouterr().out


def test_requant64_is_tflites_single_rounding() -> None:
    """((x * round(q / 2^16)) + half) >> (15 - shift), computed here with Python integers."""
    rng = np.random.default_rng(1)
    for _ in range(200):
        q = int(rng.integers(1 << 30, (1 << 31) - 1))
        shift = int(rng.integers(-31, 8))
        x = int(rng.integers(-(1 << 40), 1 << 40))
        rm = min((q + (1 << 15)) >> 16, 0x7FFF) if q < 0x7FFF0000 else 0x7FFF
        total = 15 - shift
        want = (x * rm + (1 << (total - 1))) >> total
        want = (want + (1 << 31)) % (1 << 32) - (1 << 31)
        assert int(requant64(np.int64(x), q, shift)) == want
    assert int(reduced_multiplier(0x7FFFFFFF)) == 0x7FFF


def test_sigmoid_table_is_sigmoid_of_i_over_24() -> None:
    exact = np.array([65536.0 / (1.0 + math.exp(-i / 24.0)) for i in range(256)])
    assert np.all(np.abs(SIGMOID_TABLE - exact) < 1.5) and SIGMOID_TABLE[0] == 32768
    assert np.all(np.diff(SIGMOID_TABLE) >= 0)  # the kernels' unsigned interpolation relies on it


@pytest.mark.parametrize("edit, words", [
    (lambda g: setattr(g["y"].quant, "zero_point", np.array([3])), "zero point 3"),
    (lambda g: setattr(g["b"], "dtype", "int16") or setattr(g["b"], "data", g["b"].data.astype(np.int16)),
     "int64 or int32"),
])
def test_16x8_refusals_name_the_reason(edit, words: str) -> None:
    from tinyml.ops import get_op

    g = fully_connected(np.random.default_rng(0), False, True, 0.02)
    edit(g)
    why = get_op("FULLY_CONNECTED").check(g, g.nodes[0])
    assert why is not None and words in why, why


def test_16x8_depthwise_with_int32_bias_is_refused_as_tflite_micro_misreads_it() -> None:
    """TFLite Micro's outputs for it match neither the int32 nor the int64 arithmetic: refused."""
    from tinyml.ops import get_op

    g = int32_bias(depthwise(np.random.default_rng(0), True, 1))
    assert "misreads" in get_op("DEPTHWISE_CONV_2D").check(g, g.nodes[0])


def test_sigmoid_output_scale_must_be_2_to_minus_15() -> None:
    from tinyml.ops import get_op

    g = sigmoidal("TANH", 0.001)
    g["y"].quant.scale[0] = 2.0 ** -14
    assert "2^-15" in get_op("TANH").check(g, g.nodes[0])
