"""The Cortex-M DSP-extension kernels (CONV_2D, FULLY_CONNECTED): packing, requantization, bit-exactness.

The packing and the short requantization are checked on the host against
independent arithmetic; the kernels themselves run in QEMU on a Cortex-M4 and
a Cortex-M7 board against TFLite Micro, on zoo models chosen for awkward
shapes (channel counts not multiple of 4, 1-pixel maps, odd stride-2 sizes,
FC depths below 4) and on the benchmark networks.
"""
from __future__ import annotations

import shutil
import subprocess
from importlib.resources import files
from pathlib import Path

import numpy as np
import pytest

from tinyml import zoo
from tinyml.fixedpoint import multiply_by_quantized_multiplier
from tinyml.ops.dsp_pack import DspRequant, acc_bound, pack_row_pairs, pack_rows
from tinyml.ops.quantized import Requant


def _sxtab16_pairs(x: np.ndarray) -> np.ndarray:
    """What SXTAB16 (offset 0) then SXTAB16 ROR 8 give for each 4 int8: (x0, x2), (x1, x3)."""
    g = x.reshape(-1, 4).astype(np.int64)
    return np.stack([g[:, [0, 2]], g[:, [1, 3]]], axis=1)  # [group][word][half]


@pytest.mark.parametrize("rows,depth,block", [(5, 12, 2), (3, 8, 4), (8, 20, 4), (1, 4, 2)])
def test_packed_rows_feed_smlad_the_pairs_sxtab16_makes(rows: int, depth: int, block: int) -> None:
    rng = np.random.default_rng(rows * 100 + depth)
    w = rng.integers(-128, 128, (rows, depth), dtype=np.int8)
    x = rng.integers(-128, 128, depth, dtype=np.int8)
    words = pack_rows(w, block).view(np.uint32).astype(np.int64)
    lo = ((words & 0xFFFF) ^ 0x8000) - 0x8000
    hi = (words >> 16 ^ 0x8000) - 0x8000
    halves = np.stack([lo, hi], axis=1).reshape(-1, depth // 4, block, 2, 2)  # block, group, row, word, half
    xs = _sxtab16_pairs(x)  # group, word, half
    acc = np.einsum("bgrwh,gwh->br", halves, xs).reshape(-1)[:rows]  # SMLAD sums both halves
    np.testing.assert_array_equal(acc, w.astype(np.int64) @ x.astype(np.int64))
    assert words.size == -(-rows // block) * block * depth // 2


def _halves(words: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Signed low and high int16 halves of int32 words."""
    u = words.view(np.uint32).astype(np.int64)
    return ((u & 0xFFFF) ^ 0x8000) - 0x8000, ((u >> 16) ^ 0x8000) - 0x8000


def _sxtb16(words: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """SXTB16: bytes 0 and 2 of each word, sign-extended."""
    b = words.view(np.int8).reshape(-1, 4).astype(np.int64)
    return b[:, 0], b[:, 2]


@pytest.mark.parametrize("rows,depth,block,xmax", [(5, 12, 2, 255), (3, 8, 4, 128), (8, 20, 4, 128), (2, 4, 2, 255)])
def test_row_pairs_give_both_rows_from_raw_and_sign_extended_smlad(rows: int, depth: int, block: int, xmax: int) -> None:
    """S = SMLAD(x pairs, raw word), A = SMLAD(x pairs, SXTB16(word)): A is the even row's sum and
    (S - A) / 256, from S wrapped to 32 bits, the odd row's, with one byte of flash per weight."""
    rng = np.random.default_rng(rows * 100 + depth)
    w = rng.integers(-127, 128, (rows, depth), dtype=np.int8)
    x = rng.integers(-xmax, xmax + 1, depth).astype(np.int64)
    words = pack_row_pairs(w, block, xmax)
    assert words is not None and words.nbytes == -(-rows // block) * block * depth  # int8: 1 byte per weight
    pairs = block // 2
    lo, hi = _halves(words)
    slo, shi = _sxtb16(words)
    xs = np.stack([x.reshape(-1, 4)[:, [0, 2]], x.reshape(-1, 4)[:, [1, 3]]], axis=1)  # group, word, half
    raw = np.stack([lo, hi], axis=1).reshape(-1, depth // 4, pairs, 2, 2)  # block, group, pair, word, half
    ext = np.stack([slo, shi], axis=1).reshape(raw.shape)
    s = np.einsum("bgpwh,gwh->bp", raw, xs).reshape(-1)
    a = np.einsum("bgpwh,gwh->bp", ext, xs).reshape(-1)
    s32 = ((s + 2**31) % 2**32) - 2**31  # SMLAD wraps
    odd = (((s32 - a) % 2**32 + 2**31) % 2**32 - 2**31) >> 8
    want = w.astype(np.int64) @ x
    np.testing.assert_array_equal(a[: -(-rows // 2)][: (rows + 1) // 2], want[0::2])
    np.testing.assert_array_equal(odd[: rows // 2], want[1::2])


def test_row_pairs_refuse_what_they_cannot_recover() -> None:
    w = np.array([[-1, 0, 0, 0], [-128, 0, 0, 0]], np.int8)  # -1 + 256 * -128 leaves int16
    assert pack_row_pairs(w, 2, 128) is None
    assert pack_row_pairs(w[::-1].copy(), 2, 128) is not None  # -128 + 256 * -1 fits
    deep = np.full((2, 512), 127, np.int8)  # odd row reaches 512 * 127 * 255 >= 2^23
    assert pack_row_pairs(deep, 2, 255) is None and pack_row_pairs(deep, 2, 128) is not None


def _requant_cases() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(x, q, e): ties of both roundings, signs, extremes the generator allows."""
    rng = np.random.default_rng(5)
    xs, qs, es = [], [], []
    for e in range(0, 31):
        for q in (1 << 30, (1 << 30) + 1, 1518500250, (1 << 31) - 1, int(rng.integers(1 << 30, 1 << 31))):
            limit = (1 << 31) - (1 << max(e - 1, 0)) - 1  # |x| + 2^(e-1) < 2^31
            cand = [0, 1, -1, 2, -2, limit, -limit, (1 << 30) - 1, 1 - (1 << 30), 1 << 20, -(1 << 20)]
            # x with x*q landing on (or beside) a tie of the second rounding
            for k in (-3, -1, 1, 3):
                t = (k << max(e - 1, 0) << 31) // q
                cand += [t - 1, t, t + 1]
            cand += list(rng.integers(-limit, limit, 20))
            for x in cand:
                if abs(x) <= limit:
                    xs.append(x), qs.append(q), es.append(e)
    return np.array(xs, np.int64), np.array(qs, np.int64), np.array(es, np.int64)


@pytest.mark.skipif(shutil.which("cc") is None, reason="needs a host C compiler")
def test_short_requant_equals_tflite_double_rounding(tmp_path: Path) -> None:
    """tm_requant_dsp, tm_requant_dsp2p, tm_requant_dsp2h (host forms; SMMULR/SMMLAR on the core) == TFLite's MultiplyByQuantizedMultiplier (+ zp)."""
    x, q, e = _requant_cases()
    header = files("tinyml.firmware_templates") / "library" / "tinyml_dsp.h"
    (tmp_path / "tinyml_dsp.h").write_text(header.read_text())
    (tmp_path / "t.c").write_text(
        '#include <stdio.h>\n#include "tinyml_dsp.h"\n'
        "int main(void) { long long x, q; int e;\n"
        '  while (scanf("%lld %lld %d", &x, &q, &e) == 3)\n'
        "  { int fold = e <= 22 && x < (1 << 30) && x > -(1 << 30);\n"
        '    printf("%d %d %d %d %d\\n", (int)tm_requant_dsp((int32_t)x, (int32_t)q, e),\n'
        '           fold ? (int)tm_requant_dsp2p((int32_t)(2 * x), (int32_t)q, (1 << e) - (128 << (e + 1)), e) : 0,\n'
        '           fold ? (int)tm_requant_dsp2p((int32_t)(2 * x), (int32_t)q, (1 << e) + (127 << (e + 1)), e) : 0,\n'
        '           fold && e ? (int)tm_requant_dsp2h((int32_t)(2 * x), (int32_t)q, ((1 << e) - (128 << (e + 1))) / 2, e) : 0,\n'
        '           fold && e ? (int)tm_requant_dsp2h((int32_t)(2 * x), (int32_t)q, ((1 << e) + (5 << (e + 1))) / 2, e) : 0); }\n'
        "  return 0; }\n")
    subprocess.run(["cc", "-std=c99", "-O2", "-Wall", "-Wextra", "-Werror", "-fsanitize=undefined",
                    "-fno-sanitize-recover", "t.c", "-o", "t"], cwd=tmp_path, check=True)
    feed = "".join(f"{a} {b} {c}\n" for a, b, c in zip(x, q, e))
    out = subprocess.run([str(tmp_path / "t")], input=feed, capture_output=True, text=True, check=True).stdout
    got = np.array(out.split(), np.int64).reshape(-1, 5)
    want = multiply_by_quantized_multiplier(x.astype(np.int32), q.astype(np.int32), -e.astype(np.int32))
    # tm_requant_dsp2p takes 2x and folds the zero point: what DspRequant.fold allows is |x| < 2^30, e <= 22
    fold = (np.abs(x) < 1 << 30) & (e <= 22)
    for k, fn, rows, zp in ((0, "tm_requant_dsp", x == x, 0), (1, "tm_requant_dsp2p zp -128", fold, -128),
                            (2, "tm_requant_dsp2p zp 127", fold, 127), (3, "tm_requant_dsp2h zp -128", fold & (e > 0), -128),
                            (4, "tm_requant_dsp2h zp 5", fold & (e > 0), 5)):
        bad = np.nonzero((got[:, k] != want + zp) & rows)[0]
        assert bad.size == 0, f"{fn}: {bad.size} of {x.size} differ, e.g. x={x[bad[0]]} q={q[bad[0]]} e={e[bad[0]]}"


def test_short_requant_only_where_it_is_exact() -> None:
    rq = Requant(np.array([1 << 30] * 3, np.int32), np.array([-3, 0, -7], np.int32), 0, -128, 127)
    assert DspRequant.of(rq, 1 << 20).fast
    assert list(DspRequant.of(rq, 1 << 20).shift) == [3, 0, 7]  # right shifts when fast
    assert not DspRequant.of(rq, (1 << 31) - 100).fast  # rounding add could overflow
    left = Requant(rq.mult, np.array([1, -2, -3], np.int32), 0, -128, 127)
    assert not DspRequant.of(left, 1 << 20).fast  # a left shift takes TFLite's full sequence
    assert list(DspRequant.of(left, 1 << 20).shift) == [1, -2, -3]
    assert DspRequant.of(rq, 1 << 20).fold and DspRequant.of(rq, 1 << 20).scale == 2
    deep = Requant(rq.mult, np.array([-3, -23, -7], np.int32), 5, -128, 127)
    assert DspRequant.of(deep, 1 << 20).fast and not DspRequant.of(deep, 1 << 20).fold  # zp * 2^e could overflow
    assert list(DspRequant.of(deep, 1 << 20).pz()[[0, 2]]) == [8 + 5 * 16, 128 + 5 * 256]
    assert acc_bound(np.array([[1, -2], [3, 4]], np.int8), np.array([-5, 0], np.int32), 128) == 7 * 128


EDGE = ["edge_conv_cin1", "edge_conv_cin2_s2_odd", "edge_conv_s2_even_same", "edge_conv_kernel_gt_input",
        "edge_conv_1px_3x3", "edge_pw_5to3", "edge_pw_3to1_s2", "edge_pw_c17_to_c6", "edge_fc_3to1",
        "edge_fc_1to5", "edge_fc_rows", "edge_shrink_to_1px"]
NETWORKS = ["resnet8", "ds_cnn_kws", "fc_autoencoder_ad"]


def _run_on_board(name: str, board: str, tmp_path: Path, n: int) -> None:
    from tinyml.oracle import TflmOracle, random_inputs
    from tinyml.pipeline import compile_model
    from tinyml.sim.qemu import board_runner
    from tinyml.validation import compare

    c = compile_model(zoo.path(name))
    inputs = random_inputs(c.graph, n, seed=11)
    expected = TflmOracle(c.model_bytes).run_batch(inputs)
    runner = board_runner(board, "qemu", c, tmp_path)
    source = (runner.fw.path / "lib" / "tinyml_model.c").read_text()
    assert '#include "tinyml_dsp.h"' in source, "the DSP kernels were not selected for a DSP core"
    cmp = compare(expected, runner.run(inputs).outputs)
    assert cmp.bit_exact, f"{name} on {board}: {cmp.details}"


@pytest.mark.slow
@pytest.mark.parametrize("board", ["stm32f405", "mps2-an500"])
@pytest.mark.parametrize("name", EDGE)
def test_dsp_kernels_bit_exact_on_edge_shapes(name: str, board: str, tmp_path: Path) -> None:
    _run_on_board(name, board, tmp_path, 20)


@pytest.mark.slow
@pytest.mark.parametrize("board", ["stm32f405", "mps2-an500"])
@pytest.mark.parametrize("name", NETWORKS)
def test_dsp_kernels_bit_exact_on_networks(name: str, board: str, tmp_path: Path) -> None:
    _run_on_board(name, board, tmp_path, 4)


@pytest.mark.slow
def test_per_channel_autoencoder_keeps_its_ram_within_5_percent(tmp_path: Path) -> None:
    """TensorFlow's converter now quantizes FC weights per channel by default: the AD network
    converted so must still run bit-exact with tinyml_run's stack inside 5 % of its arena bound
    (the whole-layer asm FC with per-row constants, always inlined though layers share it)."""
    import dataclasses

    from tinyml.oracle import TflmOracle, random_inputs
    from tinyml.pipeline import compile_model
    from tinyml.sim.qemu import board_runner
    from tinyml.validation import compare
    from tinyml.zoo.cache import ensure_built

    model = dataclasses.replace(zoo.get("fc_autoencoder_ad"), name="fc_autoencoder_ad_per_channel", per_channel=True)
    c = compile_model(ensure_built(model))
    assert any(np.size(c.graph[n.inputs[1]].quant.scale) > 1 for n in c.graph.nodes), "not per channel"
    inputs = random_inputs(c.graph, 3, seed=5)
    runner = board_runner("stm32f405", "qemu", c, tmp_path)
    result = runner.run(inputs)
    assert compare(TflmOracle(c.model_bytes).run_batch(inputs), result.outputs).bit_exact
    assert result.extra["ram_bytes"] <= 1.05 * c.plan.lower_bound, (result.extra["ram_bytes"], c.plan.lower_bound)


@pytest.mark.slow
@pytest.mark.parametrize("name", EDGE)
def test_dsp_row_pairs_bit_exact_on_edge_shapes(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The edge models' layers are small enough to keep int16 weights; force the int8 row pairs."""
    from tinyml.ops import conv

    monkeypatch.setattr(conv, "WIDE_MAX_BYTES", 0)
    _run_on_board(name, "stm32f405", tmp_path, 10)


def test_host_keeps_plain_c(tmp_path: Path) -> None:
    """The host (and any core without the DSP extension) gets portable C, no ARM intrinsics."""
    from tinyml.codegen.emit import emit_model
    from tinyml.pipeline import compile_model

    c = compile_model(zoo.path("edge_shrink_to_1px"))
    text = emit_model(c.graph, c.plan).texts["tinyml_model.c"]
    assert "smlad" not in text and "tinyml_dsp.h" not in text



@pytest.mark.parametrize("name", ["resnet8", "fc_autoencoder_ad", "ds_cnn_kws"])
def test_dsp_layers_store_weights_as_int8(name: str) -> None:
    """Flash: every DSP CONV_2D / FULLY_CONNECTED of a benchmark network stores one byte per
    weight (depth padded to 4, rows to the block) plus at most 16 bytes per output channel
    (bias and requantization constants) -- never the weights widened to int16, except
    convolutions of at most conv.WIDE_MAX_BYTES weights, which may spend that much more."""
    from tinyml.ops.conv import WIDE_MAX_BYTES
    from tinyml.board import Target
    from tinyml.codegen.context import EmitContext
    from tinyml.ops.base import get_op
    from tinyml.pipeline import compile_model

    c = compile_model(zoo.path(name))
    g = c.graph
    checked = 0
    for i, n in enumerate(g.nodes):
        if n.op not in ("CONV_2D", "FULLY_CONNECTED"):
            continue
        ctx = EmitContext(g, c.plan.offsets, c.plan.scratch, Target("cortex-m4", dsp=True))
        ctx.node, ctx.layer = n, i
        get_op(n.op).emit(g, n, ctx)
        assert "smlad" in "".join(ctx.kernels), f"{n.name}: not on the DSP path"
        w = g[n.inputs[1]].data
        rows, depth = w.shape[0], int(np.prod(w.shape[1:]))
        block = 2 if n.op == "CONV_2D" else 4
        weight_bytes = -(-rows // block) * block * -(-depth // 4) * 4
        const_bytes = sum(a.values.nbytes for a in ctx.consts)
        wide = n.op == "CONV_2D" and w.size <= WIDE_MAX_BYTES
        assert weight_bytes <= const_bytes <= weight_bytes * (2 if wide else 1) + 16 * -(-rows // block) * block, n.name
        checked += not wide
    assert checked >= 3


# -- hand-built layers for the requantization and fallback paths no zoo model takes --
# Checked against the numpy reference, which tests/test_ops_conv.py pins to TFLite Micro.

CONV = dict(padding="SAME", stride_h=1, stride_w=1, dilation_h_factor=1, dilation_w_factor=1)


def _layer(op: str, x_shape: tuple[int, ...], y_shape: tuple[int, ...], w: np.ndarray, bias: np.ndarray | None,
           attrs: dict, y_scale: float, y_zp: int, per_channel: bool = True):  # noqa: ANN202
    from tinyml.ir import Graph, Node, Quant, Tensor

    g = Graph()
    g.add_tensor(Tensor("x", x_shape, "int8", Quant([0.05], [3])))
    g.add_tensor(Tensor("y", y_shape, "int8", Quant([y_scale], [y_zp])))
    scales = np.linspace(0.01, 0.02, w.shape[0]) if per_channel else np.array([0.015])
    g.add_tensor(Tensor("w", w.shape, "int8", Quant(scales.astype(np.float32), np.zeros(scales.size)), w))
    inputs: list[str | None] = ["x", "w", None]
    if bias is not None:
        g.add_tensor(Tensor("b", bias.shape, "int32", None, bias))
        inputs[2] = "b"
    g.nodes.append(Node(op, inputs, ["y"], dict(attrs, fused_activation_function=attrs.get("act", "NONE"))))
    g.inputs, g.outputs = ["x"], ["y"]
    return g


def _fc_chain(x_shape: tuple[int, int], layers: list[tuple[int, str, float, int]], seed: int,
              per_channel: bool = False):  # noqa: ANN202
    """FULLY_CONNECTED layers in a row, weights in [-3, 3], each (units, act, y_scale, y_zp):
    the whole-layer asm kernel's shapes. A chain, so a later narrow layer gets its widening
    scratch (the peak is elsewhere). Per channel, weight scales span 0.006-0.018 (3x)."""
    from tinyml.ir import Graph, Node, Quant, Tensor

    rng = np.random.default_rng(seed)
    g = Graph()
    g.add_tensor(Tensor("x", x_shape, "int8", Quant([0.05], [3])))
    prev, depth = "x", x_shape[1]
    for i, (units, act, y_scale, y_zp) in enumerate(layers):
        w = rng.integers(-3, 4, (units, depth), dtype=np.int8)
        scales = np.linspace(0.006, 0.018, units) if per_channel else np.array([0.015])
        g.add_tensor(Tensor(f"w{i}", w.shape, "int8", Quant(scales.astype(np.float32), np.zeros(scales.size)), w))
        g.add_tensor(Tensor(f"b{i}", (units,), "int32", None, rng.integers(-900, 900, units, dtype=np.int32)))
        g.add_tensor(Tensor(f"y{i}", (x_shape[0], units), "int8", Quant([y_scale], [y_zp])))
        g.nodes.append(Node("FULLY_CONNECTED", [prev, f"w{i}", f"b{i}"], [f"y{i}"],
                            dict(fused_activation_function=act)))
        prev, depth = f"y{i}", units
    g.inputs, g.outputs = ["x"], [prev]
    return g


def _layers() -> dict[str, object]:
    rng = np.random.default_rng(9)
    w3 = rng.integers(-127, 128, (6, 3, 3, 8), dtype=np.int8)  # packable in row pairs
    unpackable = w3.copy()
    unpackable[1, 0, 0, 0], unpackable[0, 0, 0, 0] = -128, -5  # -5 + 256 * -128 leaves int16
    b6 = rng.integers(-3000, 3000, 6, dtype=np.int32)
    wf = rng.integers(-127, 128, (7, 13), dtype=np.int8)
    hostile = np.full((2, 3, 3, 64), 127, np.int8)
    hostile[1] = -128
    return {
        # RELU with a positive zero point: clamp to [zp, 127], not SSAT
        "relu_zp": _layer("CONV_2D", (1, 5, 6, 8), (1, 5, 6, 6), w3, b6, dict(CONV, act="RELU"), 0.4, 5),
        # multiplier > 1 (a left shift): TFLite's full sequence
        "left_shift": _layer("CONV_2D", (1, 5, 6, 8), (1, 5, 6, 6), w3, b6, CONV, 0.0001, -3),
        # e > 22: fast requant allowed, zero point not foldable
        "deep_shift": _layer("CONV_2D", (1, 5, 6, 8), (1, 5, 6, 6), w3, b6, CONV, 9000.0, 1),
        # per-tensor filter: literal multiplier and folded p
        "per_tensor": _layer("CONV_2D", (1, 5, 6, 8), (1, 3, 3, 6), w3, None, dict(CONV, stride_h=2, stride_w=2),
                             0.3, -7, per_channel=False),
        # explicit padding past the kernel: windows entirely in the padding give requant(bias)
        "beyond_pad": _layer("CONV_2D", (1, 2, 2, 8), (1, 6, 6, 6), w3, b6,
                             dict(CONV, padding="VALID", explicit_padding=(3, 3, 3, 3)), 0.3, 0),
        # weights that cannot share int16 halves: the DSP target keeps the plain kernel
        "unpackable": _layer("CONV_2D", (1, 5, 6, 8), (1, 5, 6, 6), unpackable, b6, CONV, 0.4, 2),
        "fc_relu6": _layer("FULLY_CONNECTED", (2, 13), (2, 7), wf, b6[:1].repeat(7), dict(act="RELU6"), 0.02, -20),
        # the whole-layer asm kernel: RELU clamping at a positive zero point, 66 groups of 4
        # (8 passes of 8 and 2 more) unwidened, then 25 groups widened in scratch (3 passes + 1)
        # with RELU6's upper clamp; two batches; a multiplier in [0.5, 1) (no shift)
        "fc_stream": _fc_chain((2, 264), [(100, "RELU", 0.3, 5), (8, "RELU6", 0.03, -100), (4, "NONE", 0.0008, 2)], 3),
        # a right shift of 1 with outputs in range: half the negative ones are ties the sign term rounds
        "fc_stream_ties": _fc_chain((2, 4), [(16, "NONE", 0.0025, -3)], 7),
        # per channel: each row's (q, p) from the stream, e from p's lowest set bit; multipliers
        # from 0.3 to 0.9 mix shifts of 0 and 1 in one layer, then RELU at a positive zero point
        # and a widened RELU6
        "fc_stream_pc": _fc_chain((2, 4), [(16, "NONE", 0.001, -3)], 8, per_channel=True),
        "fc_stream_pc_act": _fc_chain((2, 136), [(24, "RELU", 0.3, 5), (8, "RELU6", 0.03, -100)], 9,
                                      per_channel=True),
        # xp walks more than 4095 bytes per block: the rewind takes a register
        "fc_stream_deep": _fc_chain((1, 4100), [(4, "NONE", 2.0, -1)], 5),
        # sums that leave int32: the DSP target keeps the plain, wrapping kernel
        "overflow": _layer("CONV_2D", (1, 4, 4, 64), (1, 4, 4, 2), hostile,
                           np.array([2**31 - 5000, -(2**31) + 5000], np.int32), CONV, 0.1, -2),
    }


@pytest.mark.slow
@pytest.mark.parametrize("wide_max", [0, None])  # int8 row pairs everywhere / small layers int16
@pytest.mark.parametrize("board", ["stm32f405", "mps2-an500"])
def test_dsp_requant_and_fallback_paths_match_reference(board: str, wide_max: int | None, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from tinyml.board import load_board
    from tinyml.codegen.firmware import build_firmware
    from tinyml.reference import reference_outputs
    from tinyml.schedule.memory import plan_memory
    from tinyml.sim.qemu import QemuRunner

    from tinyml.ops import conv

    if wide_max is not None:
        monkeypatch.setattr(conv, "WIDE_MAX_BYTES", wide_max)
    rng = np.random.default_rng(4)
    for name, g in _layers().items():
        inputs = [[rng.integers(-128, 128, g["x"].shape, dtype=np.int8)] for _ in range(6)]
        fw = build_firmware(g, plan_memory(g), load_board(board), tmp_path / name)
        if name.startswith("fc_stream"):
            assert (fw.path / "lib" / "tinyml_model.c").read_text().count("the whole layer in asm") == len(g.nodes)
        got = QemuRunner(fw).run(inputs).outputs
        for sample, out in zip(inputs, got):
            want = reference_outputs(g, sample)[0]
            np.testing.assert_array_equal(np.asarray(out[0]).reshape(want.shape), want, err_msg=name)
