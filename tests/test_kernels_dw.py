"""The depthwise fast path: the generation-time pair schedule, and the kernels bit-exact on host and in QEMU.

The schedule is checked against the definition of a convolution (every
kernel tap of both pixels of a pair multiplied exactly once with the right
input byte), independently of the C. The kernels are checked against TFLite
Micro on the 'edge' zoo models (channel counts that are not multiples of 4,
1-pixel maps, stride 2 on odd and even sizes, 5x5 VALID) and on a small
model whose depthwise runs in place, in plain C on the host and with the
DSP extension on Cortex-M4 and M7 in QEMU.
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from tinyml import zoo
from tinyml.codegen.emit import generate
from tinyml.oracle import TflmOracle, random_inputs
from tinyml.ops import get_op
from tinyml.ops.depthwise import channel_plane, pack_pairs, pair_schedule
from tinyml.pipeline import compile_model
from tinyml.sim.host import HostRunner
from tinyml.validation import compare

DW_MODELS = ["edge_dw3x3_c7_s2_odd", "edge_dw3x3_c6_s1", "edge_dw3x3_c3_s2_even", "edge_dw5x5_c13_s1",
             "edge_dw5x5_c10_s2_valid", "edge_dw3x3_c5_1px", "op_dw_5x5_s2", "op_dw_dm2", "op_dw_dm3_s2"]
IN_PLACE_MODEL = "io_per_tensor"  # CONV_2D -> DEPTHWISE_CONV_2D: the depthwise input dies there


def products(k_h: int, k_w: int, stride: int) -> Counter:
    """(pixel, input row, input column in the pair's span, kernel tap) of every multiply the schedule does."""
    s = pair_schedule(k_h, k_w, stride)
    seen: Counter = Counter()
    for ky, row in enumerate(s.steps):
        for j, ops in enumerate(row):
            for pixel, half, op, word in ops:
                o = s.loads[j]
                cols = (o, o + 2) if half == "lo" else (o + 1, o + 3)
                taps = s.words[word]
                if op == "smlad":  # bottom with bottom, top with top
                    pairs = [(cols[0], taps[0]), (cols[1], taps[1])]
                else:  # smla<data half><weight half>
                    data, weight = op[-2], op[-1]
                    pairs = [(cols[data == "t"], taps[weight == "t"])]
                for col, tap in pairs:
                    seen[(pixel, ky, col, tap)] += 1
    return seen


@pytest.mark.parametrize("k_h,k_w,stride", [(3, 3, 1), (3, 3, 2), (5, 5, 1), (5, 5, 2), (1, 1, 1), (2, 4, 3),
                                            (7, 7, 1), (3, 1, 2)])
def test_schedule_multiplies_each_tap_once_with_its_input(k_h: int, k_w: int, stride: int) -> None:
    pixels = pair_schedule(k_h, k_w, stride).pixels
    assert pixels == (2 if stride == 1 or k_w >= 5 or (stride, k_w) == (2, 3) else 1)
    expected = Counter({(p, ky, p * stride + kx, ky * k_w + kx): 1
                        for p in range(pixels) for ky in range(k_h) for kx in range(k_w)})
    assert products(k_h, k_w, stride) == expected


def test_packed_words_hold_the_scheduled_taps() -> None:
    rng = np.random.default_rng(0)
    w = rng.integers(-128, 128, (7, 5, 5)).astype(np.int8)  # includes -128 (sign of the int16 halves)
    s = pair_schedule(5, 5, 2)
    words = pack_pairs(w, s).reshape(7, -1).view(np.int16).reshape(7, -1, 2)  # little-endian: low half first
    flat = np.concatenate([w.reshape(7, -1), np.zeros((7, 1), np.int8)], axis=1)
    for k, (lo, hi) in enumerate(s.words):
        np.testing.assert_array_equal(words[:, k, 0], flat[:, lo])
        np.testing.assert_array_equal(words[:, k, 1], flat[:, hi])


def _fast_path_layers(name: str) -> int:
    c = compile_model(zoo.path(name))
    return sum(channel_plane(c.graph, n) is not None for n in c.graph.nodes if n.op == "DEPTHWISE_CONV_2D")


def test_edge_models_take_the_fast_path_and_one_runs_in_place() -> None:
    """Every depthwise layer takes the plane kernel; with multiplier 1 it may run in place, never with more."""
    assert all(_fast_path_layers(m) == 1 for m in DW_MODELS)  # depth multipliers > 1 included
    c = compile_model(zoo.path(IN_PLACE_MODEL))
    dw = next(n for n in c.graph.nodes if n.op == "DEPTHWISE_CONV_2D")
    assert c.plan.offsets[dw.inputs[0]] == c.plan.offsets[dw.outputs[0]]


def _check(name: str, runner_for, n: int) -> None:  # noqa: ANN001
    c = compile_model(zoo.path(name))
    inputs = random_inputs(c.graph, n, seed=11)
    expected = TflmOracle(c.model_bytes).run_batch(inputs)
    cmp = compare(expected, runner_for(c).run(inputs).outputs)
    assert cmp.bit_exact, f"{name}: {cmp.details}"


@pytest.mark.parametrize("name", DW_MODELS + [IN_PLACE_MODEL])
def test_plain_c_kernels_match_tflite_micro_under_sanitizers(name: str, tmp_path: Path) -> None:
    _check(name, lambda c: HostRunner(generate(c.graph, c.plan, tmp_path / "lib"), sanitize=True), 10)


@pytest.mark.slow
@pytest.mark.parametrize("board", ["stm32f405", "mps2-an500"])
@pytest.mark.parametrize("name", DW_MODELS + [IN_PLACE_MODEL])
def test_dsp_kernels_match_tflite_micro_in_qemu(name: str, board: str, tmp_path: Path) -> None:
    from tinyml.sim.qemu import board_runner

    _check(name, lambda c: board_runner(board, "qemu", c, tmp_path), 5)


def test_depth_multiplier_layers_never_run_in_place() -> None:
    """Their output has more channels than the input: writing over it would clobber unread channels."""
    for name in ("op_dw_dm2", "op_dw_dm3_s2"):
        c = compile_model(zoo.path(name))
        dw = next(n for n in c.graph.nodes if n.op == "DEPTHWISE_CONV_2D")
        assert get_op(dw.op).inplace_inputs(c.graph, dw) == ()
