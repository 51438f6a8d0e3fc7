"""Sub-byte inference (issue 12, parts 4-5): int4/int2 weights packed in flash, their file format, oracles.

Native INT4 filters (CONV_2D, per-tensor FULLY_CONNECTED) are checked against
TFLite Micro, which runs them; everything else TFLite cannot express (int2,
int4 depthwise, per-channel int4 FC) carries the `tinyml_bits` metadata entry
and is checked against the numpy reference, itself checked against TFLite
Micro on the native files.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from tinyml.cli import main
from tinyml.errors import BadModel, TinymlError
from tinyml.frontend import bits_meta
from tinyml.frontend.tflite import load_tflite
from tinyml.frontend.tflite_writer import write_tflite
from tinyml.ir import Graph, Quant
from tinyml.oracle import TflmOracle, model_oracle, random_inputs
from tinyml.ops.subbyte import pack_bits, unpack_bits
from tinyml.pipeline import load_graph
from tinyml.quantize.policy import LayerBits, QuantPolicy
from tinyml.reference import ReferenceOracle, reference_outputs

sys.path.insert(0, str(Path(__file__).parent))
from test_quantize import small_cnn_onnx  # noqa: E402

WEIGHTED = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")


def chain_cnn_onnx(pool: int = 8) -> bytes:
    """NCHW 1x3x16x16 -> Conv3x3+Relu -> Conv1x1+Relu -> depthwise -> Add (residual) -> MaxPool -> Conv3x3
    -> MaxPool `pool` -> Flatten -> Gemm: every tensor between the input and the logits can be 4-bit
    (pool < 8 leaves a 2-D map, which ONNX flattens through a TRANSPOSE back to NCHW)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    r = np.random.default_rng(5)

    def init(name: str, shape: tuple[int, ...], sd: float) -> onnx.TensorProto:
        return numpy_helper.from_array(r.normal(0, sd, shape).astype(np.float32), name)

    inits = [init("w1", (16, 3, 3, 3), 0.4), init("b1", (16,), 0.1), init("w2", (16, 16, 1, 1), 0.3),
             init("b2", (16,), 0.1), init("wd", (16, 1, 3, 3), 0.4), init("bd", (16,), 0.1),
             init("w3", (24, 16, 3, 3), 0.15), init("b3", (24,), 0.1), init("wf", (10, 24 * (8 // pool) ** 2), 0.3), init("bf", (10,), 0.1)]
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"]),
        helper.make_node("Relu", ["c2"], ["r2"]),
        helper.make_node("Conv", ["r2", "wd", "bd"], ["dw"], pads=[1, 1, 1, 1], group=16),
        helper.make_node("Add", ["dw", "r1"], ["res"]),
        helper.make_node("MaxPool", ["res"], ["mp"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Conv", ["mp", "w3", "b3"], ["c3"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c3"], ["r3"]),
        helper.make_node("MaxPool", ["r3"], ["gp"], kernel_shape=[pool, pool], strides=[pool, pool]),
        helper.make_node("Flatten", ["gp"], ["flat"], axis=1),
        helper.make_node("Gemm", ["flat", "wf", "bf"], ["y"], transB=1),
    ]
    graph = helper.make_graph(nodes, "chain", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 16, 16])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 10])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 15)]).SerializeToString()


def narrowed(g: Graph, bits: int, per_tensor_fc: bool = False) -> Graph:
    """Every filter of an int8 model re-quantized to `bits` (scales widened by 127 / qmax, codes
    rounded and clipped); FC filters per tensor when asked (TFLite Micro's INT4 FC takes only those)."""
    qmax = (1 << (bits - 1)) - 1
    for n in (n for n in g.nodes if n.op in WEIGHTED):
        w = g[n.inputs[1]]
        shape = [1] * w.data.ndim
        if w.quant.per_channel:
            shape[w.quant.axis] = -1
        real = w.data.astype(np.float64) * w.quant.scale.astype(np.float64).reshape(shape)
        s = (w.quant.scale.astype(np.float64) * 127 / qmax).astype(np.float32)
        axis = w.quant.axis
        if n.op == "FULLY_CONNECTED" and per_tensor_fc:
            s, axis, shape = s.max(keepdims=True), 0, [1] * w.data.ndim
            if len(n.inputs) > 2 and n.inputs[2] is not None:
                g[n.inputs[2]].quant = Quant(s * g[n.inputs[0]].quant.s, [0])
        w.data = np.clip(np.round(real / s.astype(np.float64).reshape(shape)), -qmax, qmax).astype(np.int8)
        w.quant, w.bits = Quant(s, np.zeros(s.size), axis), bits
    return g


def _same(a: list[list[np.ndarray]], b: list[list[np.ndarray]]) -> bool:
    return all(np.array_equal(x, y) for xs, ys in zip(a, b) for x, y in zip(xs, ys))


# ---- packing -------------------------------------------------------------------
@pytest.mark.parametrize("bits", [4, 2])
def test_pack_bits_round_trips_and_puts_the_first_value_lowest(bits: int) -> None:
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    v = np.random.default_rng(bits).integers(lo, hi + 1, 37)
    packed = pack_bits(v, bits)
    assert packed.size == -(-37 * bits // 8)
    np.testing.assert_array_equal(unpack_bits(packed, bits, 37), v)
    # first element in the lowest bits, as TFLite's INT4 (and the kernels' shift arithmetic) expect
    assert pack_bits(np.array([1, -1] + [0] * (8 // bits - 2)), bits)[0] == 1 | (((1 << bits) - 1) << bits)
    with pytest.raises(ValueError):
        pack_bits(np.array([hi + 1]), bits)


# ---- DSP layouts: the kernels' arithmetic, replayed in numpy ---------------------------
def _halves(words: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    u = words.astype(np.uint32).astype(np.int64)
    return ((u & 0xFFFF) ^ 0x8000) - 0x8000, (((u >> 16) & 0xFFFF) ^ 0x8000) - 0x8000


def _wrap(v: np.ndarray) -> np.ndarray:
    return ((v + 2**31) % 2**32) - 2**31


def test_conv_nibble_words_give_each_rows_tap_pairs_times_4096() -> None:
    """AND 0xF000F000 after shifting left by 0, 4, 8, 12: rows e, o of taps (0, 2), then e, o of (1, 3)."""
    from tinyml.ops.dsp_pack import pack_nibble_pairs

    rng = np.random.default_rng(4)
    w = rng.integers(-8, 8, (5, 10))
    words = pack_nibble_pairs(w).reshape(3, 3).view(np.uint32).astype(np.int64)  # 3 pairs, 3 groups of 4 taps
    full = np.zeros((6, 12), np.int64)
    full[:5, :10] = w
    for shift, row, taps in ((0, 0, (0, 2)), (4, 1, (0, 2)), (8, 0, (1, 3)), (12, 1, (1, 3))):
        lo, hi = _halves((words << shift) & 0xF000F000)
        for pair in range(3):
            want = full[2 * pair + row].reshape(3, 4)[:, list(taps)] * 4096
            np.testing.assert_array_equal(np.stack([lo[pair], hi[pair]], axis=1), want)


def test_conv_crumb_words_give_each_rows_tap_pairs_times_16384() -> None:
    """int2: shifts 0, 2, 4, 6 then 8, 10, 12, 14 with AND 0xC000C000 walk two groups of 4 taps."""
    from tinyml.ops.dsp_pack import pack_crumb_pairs

    rng = np.random.default_rng(2)
    w = rng.integers(-2, 2, (3, 20))  # 5 groups: the last word holds one
    words = pack_crumb_pairs(w).reshape(2, 3).view(np.uint32).astype(np.int64)
    full = np.zeros((4, 24), np.int64)
    full[:3, :20] = w
    order = ((0, (0, 2)), (1, (0, 2)), (0, (1, 3)), (1, (1, 3)))
    for step in range(2):
        for j, (row, taps) in enumerate(order):
            lo, hi = _halves((words << (8 * step + 2 * j)) & 0xC000C000)
            for pair in range(2):
                want = full[2 * pair + row].reshape(3, 2, 4)[:, step][:, list(taps)] * 16384
                np.testing.assert_array_equal(np.stack([lo[pair], hi[pair]], axis=1), want)


@pytest.mark.parametrize("rows,depth", [(4, 8), (6, 20), (1, 4)])
def test_fc_nibble_quads_give_every_rows_dot_product(rows: int, depth: int) -> None:
    """p, q, h, r as the kernel accumulates them (wrapping SMLAD), then its per-row formulas."""
    from tinyml.ops.dsp_pack import pack_nibble_quads

    rng = np.random.default_rng(rows * depth)
    w = rng.integers(-8, 8, (rows, depth))
    x = rng.integers(-128, 128, depth).astype(np.int64)
    words = pack_nibble_quads(w).reshape(-1, depth // 4, 2).view(np.uint32).astype(np.int64)
    xs = [x.reshape(-1, 4)[:, [0, 2]], x.reshape(-1, 4)[:, [1, 3]]]  # group, half

    def smlad(mask: int) -> np.ndarray:
        total = 0
        for k in range(2):
            lo, hi = _halves(words[..., k] & mask)
            total = total + lo * xs[k][:, 0] + hi * xs[k][:, 1]
        return _wrap(total.sum(axis=1))

    p, q, h, r = smlad(0x000F000F), smlad(0x00FF00FF), smlad(0xF000F000), smlad(0xFFFFFFFF)
    sx = 8 * x.sum()
    got = np.stack([p - sx, (_wrap(q - p) >> 4) - sx, (_wrap(r - h - q) >> 8) - sx, h >> 12], axis=1).reshape(-1)
    np.testing.assert_array_equal(got[:rows], w @ x)


# ---- file format and oracles -------------------------------------------------------
@pytest.mark.parametrize("name", ["op_conv_7to13_relu6", "op_conv_3to5_s2_same", "op_fc", "edge_fc_rows"])
def test_native_int4_filters_match_tflite_micro(name: str, zoo_path) -> None:
    """Conv (per channel) and FC (per tensor) int4 filters are written as TFLite INT4, which TFLite Micro
    runs: its outputs equal the numpy reference's, and the oracle chosen for the file is TFLite Micro."""
    g = narrowed(load_tflite(zoo_path(name)), 4, per_tensor_fc=True)
    data = write_tflite(g)
    back = load_graph(data)
    narrow = [t for t in back.tensors.values() if t.bits == 4]
    assert narrow and all(bits_meta.native_int4(back, t.name) for t in narrow)
    assert not bits_meta.has_entry(back)
    assert isinstance(model_oracle(data), TflmOracle)
    xs = random_inputs(back, 4, seed=3)
    assert _same(TflmOracle(data).run_batch(xs), [reference_outputs(back, x) for x in xs])


@pytest.mark.parametrize("name,bits", [("op_dw_dm2", 4), ("op_conv_7to13_relu6", 2), ("op_fc", 4)])
def test_widths_tflite_cannot_express_go_in_metadata_and_the_reference_is_their_oracle(name: str, bits: int,
                                                                                      zoo_path) -> None:
    g = narrowed(load_tflite(zoo_path(name)), bits)  # per-channel FC at 4 bits: not TFLite Micro's
    data = write_tflite(g)
    back = load_graph(data)
    widths = sorted(t.bits for t in back.tensors.values() if t.bits < 8)
    assert widths == [bits] and bits_meta.has_entry(back)
    assert isinstance(model_oracle(data), ReferenceOracle)


@pytest.mark.parametrize("payload,why", [
    (b"not json at all", "not JSON"),
    (b'{"version": 2, "tensors": {}}', "version 1"),
    (b'{"version": 1, "tensors": {"99999": 4}}', "does not exist"),
    (b'{"version": 1, "tensors": {"0": 3}}', "bits"),
    (b'{"version": 1, "tensors": {"0": true}}', "bits"),
])
def test_malformed_bits_metadata_is_a_bad_model(payload: bytes, why: str) -> None:
    with pytest.raises(BadModel, match=why):
        bits_meta.decode(payload, 10)


def test_metadata_narrowing_a_constant_whose_values_do_not_fit_is_refused(zoo_path) -> None:
    g = load_tflite(zoo_path("op_conv_7to13_relu6"))
    conv = next(n for n in g.nodes if n.op == "CONV_2D")
    g[conv.inputs[1]].bits = 2  # int8 codes far outside [-2, 1]
    with pytest.raises(BadModel, match="outside"):
        load_graph(write_tflite(g))


# ---- the quantizer's policy -------------------------------------------------------
def test_policy_lets_sub_byte_widths_in_and_refuses_what_has_no_kernel() -> None:
    QuantPolicy(default=LayerBits(4, 4), layers={"x": LayerBits(2, 8)}).check()
    with pytest.raises(TinymlError, match="weight bits 3"):
        QuantPolicy(default=LayerBits(3, 8)).check()
    with pytest.raises(TinymlError, match="activation bits 2"):
        QuantPolicy(default=LayerBits(8, 2)).check()


# ---- 4-bit activations packed in the arena ------------------------------------------------
@pytest.fixture(scope="module")
def chain_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from tinyml.frontend.onnx_reader import load_onnx
    from tinyml.quantize import quantize_float_graph

    cal = np.random.default_rng(0).uniform(0, 1, (32, 3, 16, 16)).astype(np.float32)
    out = {}
    for label, bits, pool in (("a8", LayerBits(8, 8), 8), ("a4", LayerBits(8, 4), 8), ("w4a4", LayerBits(4, 4), 8),
                              ("a4_transpose", LayerBits(8, 4), 4)):
        q = quantize_float_graph(load_onnx(chain_cnn_onnx(pool)), cal, QuantPolicy(default=bits))
        out[label] = tmp_path_factory.mktemp("chain") / f"{label}.tflite"
        out[label].write_bytes(q.tflite)
    return out


def test_4_bit_activations_are_packed_and_only_where_kernels_take_them(chain_models: dict[str, Path]) -> None:
    g = load_graph(chain_models["a4"].read_bytes())
    narrow = {t.name for t in g.activations() if t.bits == 4}
    ops = {n.op for n in g.nodes if any(o in narrow for o in n.outputs)}
    assert ops == {"CONV_2D", "DEPTHWISE_CONV_2D", "ADD", "MAX_POOL_2D", "RESHAPE"}
    assert not narrow & (set(g.inputs) | set(g.outputs))
    assert all(g[t].nbytes == (g[t].size + 1) // 2 for t in narrow)
    assert isinstance(model_oracle(chain_models["a4"].read_bytes()), ReferenceOracle)


@pytest.mark.parametrize("label", ["a4", "w4a4", "a4_transpose"])
def test_4_bit_activation_chain_is_bit_exact_on_the_host_in_less_sram(label: str, chain_models: dict[str, Path],
                                                                      tmp_path: Path) -> None:
    import json

    arena = {}
    for name in ("a8", label):
        rep = tmp_path / f"{name}.json"
        assert main(["validate", str(chain_models[name]), "--target", "host", "--patch", "off", "--inputs", "6",
                     "--json", str(rep)]) == 0
        arena[name] = json.loads(rep.read_text())["arena_bytes"]
    assert arena[label] < 0.8 * arena["a8"]  # measured 8,528 -> 6,144 B


def test_4_bit_activations_on_an_op_without_packed_kernels_are_refused(zoo_path, tmp_path: Path) -> None:
    g = load_tflite(zoo_path("op_softmax"))
    g[g.nodes[0].inputs[0]].bits = 4  # SOFTMAX's (graph) input
    p = tmp_path / "m.tflite"
    p.write_bytes(write_tflite(g))
    assert main(["analyze", str(p)]) == 2


# ---- generated C, host ----------------------------------------------------------------
@pytest.fixture(scope="module")
def quantized_sub_byte(tmp_path_factory: pytest.TempPathFactory) -> dict[int, Path]:
    """The ONNX small CNN (conv, depthwise, pointwise, FC) quantized with 4- and 2-bit weights."""
    from tinyml.frontend.onnx_reader import load_onnx
    from tinyml.quantize import quantize_float_graph

    cal = np.random.default_rng(0).uniform(0, 1, (32, 2, 8, 8)).astype(np.float32)
    out = {}
    for bits in (4, 2):
        q = quantize_float_graph(load_onnx(small_cnn_onnx()), cal, QuantPolicy(default=LayerBits(bits, 8)))
        p = tmp_path_factory.mktemp("sub") / f"w{bits}.tflite"
        p.write_bytes(q.tflite)
        out[bits] = p
    return out


@pytest.mark.parametrize("bits", [4, 2])
def test_quantized_sub_byte_model_is_bit_exact_on_the_host(bits: int, quantized_sub_byte: dict[int, Path],
                                                          tmp_path: Path) -> None:
    import json

    rep = tmp_path / "r.json"
    assert main(["validate", str(quantized_sub_byte[bits]), "--target", "host", "--inputs", "8",
                 "--json", str(rep)]) == 0
    r = json.loads(rep.read_text())
    assert r["bit_exact"]
    g = load_graph(quantized_sub_byte[bits].read_bytes())
    weights = [g[n.inputs[1]] for n in g.nodes if n.op in WEIGHTED]
    assert weights and all(t.bits == bits for t in weights)


@pytest.mark.parametrize("name", ["op_conv_7to13_relu6", "op_fc", "op_dw_dm2", "edge_dw3x3_c7_s2_odd",
                                  "op_conv_dilation2", "edge_fc_1to5"])
@pytest.mark.parametrize("bits", [4, 2])
def test_zoo_layers_with_sub_byte_weights_are_bit_exact_on_the_host(name: str, bits: int, zoo_path,
                                                                   tmp_path: Path) -> None:
    p = tmp_path / "m.tflite"
    p.write_bytes(write_tflite(narrowed(load_tflite(zoo_path(name)), bits, per_tensor_fc=bits == 4)))
    assert main(["validate", str(p), "--target", "host", "--inputs", "4", "--json", str(tmp_path / "r.json")]) == 0



# ---- QEMU (Cortex-M4 with the DSP extension, Cortex-M7) ------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("name,bits", [("op_conv_7to13_relu6", 4), ("edge_pw_c17_to_c6", 4), ("op_fc", 4),
                                       ("edge_fc_rows", 4), ("edge_dw3x3_c7_s2_odd", 4), ("op_conv_3to5_s2_same", 2),
                                       ("edge_pw_c17_to_c6", 2)])
def test_sub_byte_kernels_are_bit_exact_in_qemu(name: str, bits: int, zoo_path, tmp_path: Path) -> None:
    p = tmp_path / "m.tflite"
    p.write_bytes(write_tflite(narrowed(load_tflite(zoo_path(name)), bits, per_tensor_fc=True)))
    for board in ("stm32f405", "mps2-an500"):
        assert main(["validate", str(p), "--board", board, "--inputs", "3", "--json", str(tmp_path / "r.json")]) == 0


def test_4_bit_activations_take_the_dsp_kernels_on_a_dsp_core(chain_models: dict[str, Path]) -> None:
    """conv (3x3 and pointwise), depthwise and FC of the w4a4 chain (4-bit activations between
    them) all run their DSP kernels: nibbles widened by tm_nib_spread, outputs packed by tm_pack4."""
    from tinyml.board import Target
    from tinyml.codegen.emit import emit_model
    from tinyml.pipeline import compile_model

    m = compile_model(chain_models["w4a4"])
    c = emit_model(m.graph, m.plan, Target("cortex-m4", dsp=True)).texts["tinyml_model.c"]
    heads = [line for line in c.splitlines() if line.startswith(("/* CONV_2D", "/* DEPTHWISE", "/* FULLY"))]
    assert len(heads) == 5 and all("DSP" in h or "SMLAD pairs" in h for h in heads), heads
    assert c.count("tm_nib_spread(") >= 2 and "tm_pack4(" in c


@pytest.mark.slow
@pytest.mark.parametrize("label", ["a4", "w4a4", "a4_transpose"])
def test_4_bit_activation_chain_is_bit_exact_in_qemu(label: str, chain_models: dict[str, Path], tmp_path: Path) -> None:
    assert main(["validate", str(chain_models[label]), "--board", "stm32f405", "--patch", "off", "--inputs", "2",
                 "--json", str(tmp_path / "r.json")]) == 0


@pytest.mark.slow
@pytest.mark.parametrize("layer", [("FULLY_CONNECTED", (1, 1, 24), 1, 1, 6), ("CONV_2D", (5, 7, 6), 1, 1, 6),
                                   ("CONV_2D", (6, 6, 8), 3, 2, 10), ("DEPTHWISE_CONV_2D", (5, 7, 6), 3, 2, 6)])
def test_4_bit_activation_dsp_edges_are_bit_exact_in_qemu(layer: tuple, tmp_path: Path) -> None:
    """The DSP paths' edges at 4 bits in and out: FC units % 4 == 2 (a half last block of packed
    rows), conv depth % 4 != 0 (the tap-by-tap widening of nibbles), a strided padded 3x3 (the
    border function), depthwise on an odd width; the layer sits between ADDs that convert 8 <-> 4."""
    sys.path.insert(0, str(Path(__file__).parent.parent / "benchmarks"))
    import subbyte_kernels

    subbyte_kernels.LAYERS["edge"] = layer
    try:
        g = subbyte_kernels.layer_graph("edge", 4, act_bits=4)
    finally:
        del subbyte_kernels.LAYERS["edge"]
    p = tmp_path / "m.tflite"
    p.write_bytes(write_tflite(g))
    assert main(["validate", str(p), "--board", "stm32f405", "--inputs", "3", "--json", str(tmp_path / "r.json")]) == 0
