"""Patch-based inference (tinyml/schedule/patches/): region math, the rewrite, the search, the CLI.

The rewritten graph is checked three ways: its numpy reference equals the
original graph's (and TFLite Micro's on zoo models), its generated C equals
TFLite Micro on the host, and the search never returns a schedule whose
arena is not below layer by layer's.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import assume, event, given, settings
from hypothesis import strategies as st

from tinyml import zoo
from tinyml.cli import main
from tinyml.codegen.emit import generate
from tinyml.errors import DoesNotFit
from tinyml.frontend.check import check_supported, verify_shapes
from tinyml.ir import Graph, Node, Quant, Tensor
from tinyml.ops import get_op
from tinyml.ops.quantized import Window, window
from tinyml.oracle import TflmOracle, random_inputs
from tinyml.pipeline import compile_model
from tinyml.reference import reference_outputs
from tinyml.schedule.lifetimes import build_buffers, lower_bound
from tinyml.schedule.memory import plan_memory
from tinyml.schedule.patches import (
    NotPatchable,
    PatchOptions,
    PatchSchedule,
    PatchSpec,
    apply_patches,
    axis_plan,
    choose_schedule,
    find_stage,
    graph_macs,
    input_span,
    schedule_patches,
)
from tinyml.schedule.patches.candidates import Searcher as _Searcher
from tinyml.sim.host import HostRunner


# -- receptive fields -----------------------------------------------------------
def brute_force_span(o0: int, o1: int, stride: int, pad: int, k: int, dil: int) -> tuple[int, int]:
    """Lowest and highest+1 input index any tap of outputs [o0, o1) touches (padding included)."""
    touched = [o * stride - pad + t * dil for o in range(o0, o1) for t in range(k)]
    return min(touched), max(touched) + 1


def _window(in_size: int, k: int, stride: int, dil: int, padding: str) -> Window:
    g = Graph()
    g.add_tensor(Tensor("x", (1, in_size, in_size, 1), "int8"))
    n = Node("CONV_2D", ["x"], ["y"], dict(padding=padding, stride_h=stride, stride_w=stride,
                                           dilation_h_factor=dil, dilation_w_factor=dil))
    return window(g, n, k, k)


@settings(max_examples=300, deadline=None)
@given(in_size=st.integers(1, 40), k=st.integers(1, 7), stride=st.integers(1, 3), dil=st.integers(1, 3),
       padding=st.sampled_from(["SAME", "VALID"]), data=st.data())
def test_input_span_matches_every_tap(in_size: int, k: int, stride: int, dil: int, padding: str, data) -> None:
    try:
        w = _window(in_size, k, stride, dil, padding)
    except ValueError:
        return  # VALID window larger than the input: no such layer
    o0 = data.draw(st.integers(0, w.out_h - 1))
    o1 = data.draw(st.integers(o0 + 1, w.out_h))
    assert input_span(o0, o1, stride, w.pad_top, k, dil) == brute_force_span(o0, o1, stride, w.pad_top, k, dil)


@pytest.mark.parametrize("in_size, k, stride, dil, out, expect_span, expect_pads", [
    # stride 2 SAME on an odd size: 9 -> 5, one padded row on each side
    (9, 3, 2, 1, (0, 2), (0, 4), (1, 0)),
    (9, 3, 2, 1, (2, 5), (3, 9), (0, 1)),
    # stride 2 SAME on an even size: 8 -> 4, TFLite puts the single padded row at the bottom
    (8, 3, 2, 1, (0, 2), (0, 5), (0, 0)),
    (8, 3, 2, 1, (2, 4), (4, 8), (0, 1)),
    # dilation 2, 3x3 (effective 5), SAME: 2 padded rows per side
    (11, 3, 1, 2, (0, 3), (0, 5), (2, 0)),
    (11, 3, 1, 2, (4, 7), (2, 9), (0, 0)),
    # 5x5 SAME stride 1
    (13, 5, 1, 1, (4, 7), (2, 9), (0, 0)),
    (13, 5, 1, 1, (11, 13), (9, 13), (0, 2)),
    # 5x5 stride 2 SAME on 13 -> 7: total padding 4, 2 before and 2 after
    (13, 5, 2, 1, (6, 7), (10, 13), (0, 2)),
])
def test_hand_computed_regions(in_size, k, stride, dil, out, expect_span, expect_pads) -> None:
    g = _synthetic(in_size, in_size, 2, [("conv", dict(k=k, s=stride, d=dil, padding="SAME", cout=3))])
    stage = find_stage(g, g.outputs[0])
    plan = axis_plan(g, stage, 0, out)
    assert plan.need[(0, 0)] == expect_span
    assert plan.pads[0] == expect_pads


# -- synthetic graphs -------------------------------------------------------------
def _synthetic(h: int, w: int, cin: int, layers: list[tuple[str, dict]], seed: int = 0) -> Graph:
    """An int8 NHWC chain of conv/dw/pool/relu/add-skip layers with random weights.

    ("skip", {}) adds the tensor before the previous layer to the current one,
    as a residual block does (the ADD reads a crop of a wider patch tensor);
    a conv with src=-k reads the k-th last tensor instead (a shortcut branch).
    """
    rng = np.random.default_rng(seed)
    g = Graph(name="synthetic")

    def act(name: str, shape: tuple[int, ...]) -> str:
        zp = int(rng.integers(-20, 20))
        return g.add_tensor(Tensor(name, shape, "int8", Quant([0.02 + 0.01 * rng.random()], [zp]))).name

    def const(name: str, data: np.ndarray, scale: np.ndarray, axis: int) -> str:
        q = Quant(scale, np.zeros(scale.size, np.int64), axis)
        return g.add_tensor(Tensor(name, data.shape, str(data.dtype), q, data)).name

    x = act("input", (1, h, w, cin))
    g.inputs = [x]
    history = [x]
    for i, (kind, p) in enumerate(layers):
        x = history[p["src"]] if "src" in p else x
        c = g[x].shape[3]
        win = dict(padding=p.get("padding", "SAME"), stride_h=p.get("s", 1), stride_w=p.get("s", 1))
        if kind == "conv":
            k, cout = p["k"], p["cout"]
            wt = const(f"w{i}", rng.integers(-127, 128, (cout, k, k, c)).astype(np.int8),
                       (0.001 + 0.01 * rng.random(cout)).astype(np.float32), 0)
            b = const(f"b{i}", rng.integers(-500, 500, cout).astype(np.int32), np.ones(1, np.float32), 0)
            node = Node("CONV_2D", [x, wt, b], [], dict(win, dilation_h_factor=p.get("d", 1),
                                                       dilation_w_factor=p.get("d", 1),
                                                       fused_activation_function=p.get("act", "RELU6")))
        elif kind == "dw":
            k, m = p["k"], p.get("mult", 1)
            wt = const(f"w{i}", rng.integers(-127, 128, (1, k, k, c * m)).astype(np.int8),
                       (0.01 + 0.05 * rng.random(c * m)).astype(np.float32), 3)
            b = const(f"b{i}", rng.integers(-500, 500, c * m).astype(np.int32), np.ones(1, np.float32), 0)
            node = Node("DEPTHWISE_CONV_2D", [x, wt, b], [], dict(win, depth_multiplier=m,
                                                                 dilation_h_factor=p.get("d", 1),
                                                                 dilation_w_factor=p.get("d", 1),
                                                                 fused_activation_function="NONE"))
        elif kind in ("avg", "max"):
            node = Node("AVERAGE_POOL_2D" if kind == "avg" else "MAX_POOL_2D", [x], [],
                        dict(win, filter_height=p["k"], filter_width=p["k"], fused_activation_function="NONE"))
        elif kind == "relu":
            node = Node("RELU", [x], [], {})
        elif kind == "skip":
            node = Node("ADD", [history[-2], x], [], dict(fused_activation_function="NONE"))
        else:
            raise AssertionError(kind)
        g.nodes.append(node)
        shape = get_op(node.op).infer_shapes(g, node)[0] if kind not in ("relu", "skip") else g[x].shape
        if kind == "relu":  # RELU keeps the input's quantization range semantics with its own output quant
            pass
        x = act(f"t{i}", shape)
        node.outputs = [x]
        history.append(x)
    g.outputs = [x]
    check_supported(g)
    verify_shapes(g)
    return g


STAGES = {
    "s2_same_odd": (13, 11, 3, [("conv", dict(k=3, s=2, cout=8)), ("dw", dict(k=3)), ("conv", dict(k=1, cout=6))]),
    "dilation": (15, 12, 4, [("conv", dict(k=3, d=2, cout=5)), ("dw", dict(k=3, d=3)), ("relu", {})]),
    "5x5_s2": (17, 19, 2, [("dw", dict(k=5, s=2, mult=2)), ("conv", dict(k=5, cout=4)), ("max", dict(k=3, s=2))]),
    "valid_and_pool": (16, 14, 3, [("conv", dict(k=3, padding="VALID", cout=4)), ("avg", dict(k=2, s=2)),
                                   ("conv", dict(k=3, s=2, padding="VALID", cout=5))]),
    "residual": (12, 10, 4, [("conv", dict(k=1, cout=4)), ("dw", dict(k=3)), ("skip", {}),
                             ("conv", dict(k=3, s=2, cout=6))]),
    "even_s2": (16, 16, 3, [("conv", dict(k=3, s=2, cout=8)), ("dw", dict(k=3, s=2)), ("avg", dict(k=3, s=1))]),
}


@pytest.mark.parametrize("grid", [(1, 2), (2, 1), (2, 2), (3, 2), (2, 3), (4, 4), (1, 3, True), (2, 4, True),
                                  (3, 3, True), (2, 1, True), (4, 1, True), (7, 1, True), (3, 2, True, True),
                                  (5, 3, True, True)])
@pytest.mark.parametrize("case", sorted(STAGES))
def test_patched_graph_equals_layer_by_layer(case: str, grid: tuple) -> None:
    h, w, c, layers = STAGES[case]
    g = _synthetic(h, w, c, layers)
    split = g.outputs[0]
    rows, cols = min(grid[0], g[split].shape[1]), min(grid[1], g[split].shape[2])
    try:
        ps = apply_patches(g, PatchSpec(split, rows, cols, *grid[2:]))
    except NotPatchable:
        assert len(grid) > 2  # reuse may find a band with nothing new to compute
        return
    check_supported(ps.graph)
    verify_shapes(ps.graph)
    assert sum(1 for n in ps.graph.nodes if n.op == "WRITE_WINDOW") == rows * cols
    rng = np.random.default_rng(1)
    for _ in range(3):
        x = rng.integers(-128, 128, g[g.inputs[0]].shape).astype(np.int8)
        np.testing.assert_array_equal(reference_outputs(ps.graph, [x])[0], reference_outputs(g, [x])[0])


def test_every_patch_window_op_pads_only_at_the_image_border() -> None:
    g = _synthetic(13, 11, 3, STAGES["s2_same_odd"][3])
    ps = apply_patches(g, PatchSpec(g.outputs[0], 3, 3))
    for n in ps.graph.nodes:
        if n.op == "CONV_2D" and n.attrs["stride_h"] == 2:
            top, bottom, left, right = n.attrs["explicit_padding"]
            i, j = n.attrs["patch"]
            assert (top > 0) == (i == 0) and (left > 0) == (j == 0)
            assert bottom in (0, 1) and right in (0, 1)
            assert (bottom > 0) <= (i == 2) and (right > 0) <= (j == 2)


def test_residual_add_reads_a_crop() -> None:
    g = _synthetic(12, 10, 4, STAGES["residual"][3])
    ps = apply_patches(g, PatchSpec(g.outputs[0], 2, 2))
    crops = [n for n in ps.graph.nodes if n.op == "READ_WINDOW" and n.inputs[0] not in g.inputs]
    assert crops, "the skip connection needs less than the block's conv input provides"


def test_extra_macs_hand_case() -> None:
    """Two 3x3 SAME convs on 8x8, split into 2 row bands: the first conv computes 2 extra rows."""
    g = _synthetic(8, 8, 2, [("conv", dict(k=3, cout=3)), ("conv", dict(k=3, cout=4))])
    ps = apply_patches(g, PatchSpec(g.outputs[0], 2, 1))
    per_pixel = 3 * 3 * 3 * 2  # first conv: cout * k * k * cin
    assert ps.extra_macs == 2 * 8 * per_pixel
    assert ps.macs == graph_macs(ps.graph)


def test_row_reuse_recomputes_nothing_and_joins_rows() -> None:
    """Full-width bands that keep the rows the band above computed: no extra MACs at all."""
    c = compile_model(zoo.path("mobilenet_v1_025_vww"))
    ps = apply_patches(c.graph, PatchSpec(c.graph.nodes[7].outputs[0], 12, 1, True))
    assert ps.extra_macs == 0 and ps.macs == graph_macs(ps.graph)
    joins = [n for n in ps.graph.nodes if n.op == "CONCATENATION"]
    assert joins and all(n.attrs["axis"] == 1 for n in joins)
    assert ps.stages[0].describe(ps.graph)["reuse_rows"]


def test_vertical_reuse_runs_column_by_column_and_recomputes_only_the_column_overlap() -> None:
    c = compile_model(zoo.path("mobilenet_v1_025_vww"))
    split = c.graph.nodes[7].outputs[0]
    down = apply_patches(c.graph, PatchSpec(split, 12, 2, True, True))
    across = apply_patches(c.graph, PatchSpec(split, 1, 2))  # the same two columns, no row split
    assert down.extra_macs == across.extra_macs > 0
    cells = [n.attrs["patch"] for n in down.graph.nodes if n.op == "WRITE_WINDOW"]
    assert cells == [(i, j) for j in range(2) for i in range(12)]
    assert down.label == "7:12x2v" and PatchOptions.parse("7:12x2v").stages[0].vertical


def test_streamed_budget_is_met_by_full_width_bands_without_recomputation() -> None:
    """A third of VWW's layer-by-layer arena, input streamed: bands reusing rows fit with no extra MAC."""
    c = compile_model(zoo.path("mobilenet_v1_025_vww"))
    budget = c.plan.arena_bytes // 3
    r = schedule_patches(c.graph, PatchOptions("auto", sram_budget=budget, stream=True))
    ps = r.chosen
    assert ps is not None and ps.plan.arena_bytes <= budget and ps.streamed
    assert ps.extra_macs == 0 and ps.stages[0].spec.cols == 1 and ps.stages[0].spec.reuse


def test_search_macs_equal_the_rewritten_graphs() -> None:
    c = compile_model(zoo.path("mobilenet_v2_035_96"))
    s = _Searcher(PatchSchedule.layer_by_layer(c.graph, c.plan))
    cands = s.enumerate(None)
    assert any(cand.reuse for cand in cands) and not all(cand.reuse for cand in cands)
    for cand in cands[:: max(1, len(cands) // 60)]:
        ps = apply_patches(c.graph, cand.spec, cand.stage)
        assert cand.macs == graph_macs(ps.graph), cand.spec
        assert s.lower(cand) <= lower_bound(build_buffers(ps.graph), len(ps.graph.nodes) + 1), cand.spec


def test_a_stage_tensor_read_outside_the_stage_becomes_a_source() -> None:
    g = _synthetic(12, 10, 4, STAGES["residual"][3])
    # split before the ADD: the block input is also read by the ADD, outside the stage
    stage = find_stage(g, g.nodes[1].outputs[0])
    assert stage.sources == [g.nodes[0].outputs[0]] and stage.nodes == [1]


def test_unpatchable_split_is_a_clean_error() -> None:
    c = compile_model(zoo.path("fc_autoencoder_ad"))
    with pytest.raises(NotPatchable):
        apply_patches(c.graph, PatchSpec(c.graph.nodes[0].outputs[0], 2, 2))


# -- zoo models against TFLite Micro ------------------------------------------------
MOBILENETS = ["mobilenet_v2_035_96", "mobilenet_v2_035_144", "mobilenet_v1_025_vww", "mobilenet_v1_025_person"]
# (model, layer of the split, grid): stride-2 SAME borders, odd sizes, dilation, 5x5, pooling, float and NCHW I/O
FIXED = [
    ("op_conv_3to5_s2_same", 0, (2, 3)), ("op_conv_dilation2", 0, (3, 3)), ("op_dw_5x5_s2", 0, (3, 2)),
    ("op_conv_5x1_s2", 0, (2, 3)), ("op_conv_2x2_s2_same", 0, (2, 2)), ("op_dw_dm3_s2", 0, (2, 2)),
    ("op_avgpool_3x3_s2_same", 0, (3, 3)), ("op_maxpool_3x3_s2_same", 0, (2, 3)),
    ("edge_dw3x3_c7_s2_odd", 0, (3, 3)), ("edge_conv_cin2_s2_odd", 0, (2, 2)),
    ("edge_dw5x5_c10_s2_valid", 0, (2, 2)), ("edge_conv_kernel_gt_input", 0, (2, 2)),
    ("io_float32", 2, (2, 2)), ("io_pytorch_nchw", 3, (2, 2)), ("resnet8", 3, (3, 2)),
    ("mobilenet_v2_035_96", 12, (3, 3)), ("mobilenet_v1_025_vww", 5, (4, 3)),
    # column reuse
    ("op_conv_dilation2", 0, (2, 3, True)), ("edge_dw5x5_c10_s2_valid", 0, (1, 2, True)),
    ("op_maxpool_3x3_s2_same", 0, (2, 3, True)), ("resnet8", 7, (2, 4, True)),
    ("mobilenet_v1_025_vww", 7, (3, 6, True)), ("io_pytorch_nchw", 3, (2, 2, True)),
    # row reuse: full-width bands
    ("op_conv_dilation2", 0, (3, 1, True)), ("edge_dw5x5_c10_s2_valid", 0, (2, 1, True)),
    ("op_maxpool_3x3_s2_same", 0, (4, 1, True)), ("io_pytorch_nchw", 3, (3, 1, True)),
    ("resnet8", 7, (4, 1, True)), ("mobilenet_v1_025_vww", 7, (12, 1, True)),
    # rows reused down each column of patches
    ("op_conv_dilation2", 0, (3, 2, True, True)), ("edge_dw5x5_c10_s2_valid", 0, (2, 2, True, True)),
    ("io_pytorch_nchw", 3, (3, 2, True, True)), ("resnet8", 7, (4, 2, True, True)),
    ("mobilenet_v1_025_vww", 7, (12, 3, True, True)),
]


def _assert_reference_matches_tflm(c, graph: Graph, n: int = 3) -> None:
    inputs = random_inputs(c.graph, n, seed=11)
    expected = TflmOracle(c.model_bytes).run_batch(inputs)
    for sample, exp in zip(inputs, expected):
        for e, o in zip(exp, reference_outputs(graph, sample)):
            np.testing.assert_array_equal(np.asarray(o).reshape(-1), np.asarray(e).reshape(-1))


@pytest.mark.parametrize("name", MOBILENETS)
def test_auto_schedule_on_mobilenets_is_bit_exact(name: str) -> None:
    c = compile_model(zoo.path(name))
    ps = choose_schedule(c.graph)
    assert ps is not None and ps.plan.arena_bytes < c.plan.arena_bytes
    assert ps.overhead <= 0.20
    _assert_reference_matches_tflm(c, ps.graph)


@pytest.mark.parametrize("name, layer, grid", FIXED)
def test_fixed_schedule_reference_matches_tflite_micro(name: str, layer: int, grid: tuple[int, int]) -> None:
    c = compile_model(zoo.path(name))
    ps = apply_patches(c.graph, PatchSpec(c.graph.nodes[layer].outputs[0], *grid))
    check_supported(ps.graph)
    verify_shapes(ps.graph)
    _assert_reference_matches_tflm(c, ps.graph)


def _host_check(c, graph: Graph, tmp_path: Path, n: int, sanitize: bool) -> None:
    inputs = random_inputs(c.graph, n, seed=5)
    expected = TflmOracle(c.model_bytes).run_batch(inputs)
    lib = generate(graph, plan_memory(graph), tmp_path / "lib")
    got = HostRunner(lib, sanitize=sanitize).run(inputs).outputs
    for e_row, g_row in zip(expected, got):
        for e, o in zip(e_row, g_row):
            np.testing.assert_array_equal(np.asarray(o).reshape(-1), np.asarray(e).reshape(-1))


@pytest.mark.parametrize("name, layer, grid", [f for f in FIXED if f[0].startswith(("op_", "edge_", "io_"))])
def test_fixed_schedule_host_c_matches_tflite_micro(name: str, layer: int, grid, tmp_path: Path) -> None:
    c = compile_model(zoo.path(name))
    ps = apply_patches(c.graph, PatchSpec(c.graph.nodes[layer].outputs[0], *grid))
    _host_check(c, ps.graph, tmp_path, n=4, sanitize=True)


@pytest.mark.parametrize("name", ["mobilenet_v2_035_96", "mobilenet_v1_025_person", "resnet8"])
def test_auto_schedule_host_c_matches_tflite_micro(name: str, tmp_path: Path) -> None:
    c = compile_model(zoo.path(name), PatchOptions("auto"))
    assert c.patches is not None and c.patches.chosen is not None
    _host_check(c, c.graph, tmp_path, n=5, sanitize=False)


def test_write_window_chain_shares_one_buffer() -> None:
    c = compile_model(zoo.path("mobilenet_v1_025_person"), PatchOptions.parse("7:3x3"))
    plan = c.plan
    writes = [n for n in c.graph.nodes if n.op == "WRITE_WINDOW"]
    offsets = {plan.offsets[n.outputs[0]] for n in writes}
    assert len(writes) == 9 and len(offsets) == 1


# -- the search -------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("name", zoo.names())
def test_never_worse_than_layer_by_layer(name: str) -> None:
    c = compile_model(zoo.path(name))
    if c.graph.states():  # state is written once per inference, never per patch: the search says so
        with pytest.raises(NotPatchable, match="keeps state"):
            choose_schedule(c.graph)
        return
    for bound in (0.0, 0.2, None):
        ps = choose_schedule(c.graph, bound)
        assert ps is None or ps.plan.arena_bytes < c.plan.arena_bytes
        assert ps is None or bound is None or ps.overhead <= bound


@pytest.mark.parametrize("name", ["fc_autoencoder_ad", "op_fc", "op_softmax", "ds_cnn_kws"])
def test_models_patches_cannot_help_stay_layer_by_layer(name: str) -> None:
    c = compile_model(zoo.path(name), PatchOptions("auto"))
    assert c.patches.chosen is None
    assert c.plan.arena_bytes == c.patches.baseline.arena_bytes


def test_auto_is_at_least_as_low_as_every_single_stage_within_the_bound() -> None:
    """Brute force over every one-stage schedule (greedy placement): none within the bound is lower."""
    c = compile_model(zoo.path("mobilenet_v1_025_person"))
    chosen = choose_schedule(c.graph, 0.10)
    assert chosen is not None and chosen.overhead <= 0.10
    s = _Searcher(PatchSchedule.layer_by_layer(c.graph, c.plan))
    # a candidate whose lower bound reaches the chosen arena cannot be lower (the bound is tested above)
    rivals = [cand for cand in s.enumerate((s.base_macs * 1.10, s.base_cost * 1.10)) if s.lower(cand) < chosen.plan.arena_bytes]
    assert all(s.quick(cand, None).greedy_arena >= chosen.plan.arena_bytes for cand in rivals)


def test_budget_picks_the_cheapest_schedule_that_fits() -> None:
    c = compile_model(zoo.path("mobilenet_v2_035_96"))
    loose = choose_schedule(c.graph, None, sram_budget=c.plan.arena_bytes)
    assert loose is None  # layer by layer fits: nothing to pay
    budget = c.plan.arena_bytes // 2
    ps = choose_schedule(c.graph, None, sram_budget=budget)
    assert ps is not None and ps.plan.arena_bytes <= budget
    s = _Searcher(PatchSchedule.layer_by_layer(c.graph, c.plan))
    # cheaper one-stage schedules that might fit (by their lower bound) do not, even by greedy placement
    cheaper = [cand for cand in s.enumerate(None) if cand.macs < ps.macs and s.lower(cand) <= budget]
    assert all(s.quick(cand, None).greedy_arena > budget for cand in cheaper)


def test_budget_error_names_the_smallest_reachable_peak() -> None:
    c = compile_model(zoo.path("mobilenet_v1_025_person"))
    with pytest.raises(DoesNotFit) as e:
        choose_schedule(c.graph, None, sram_budget=4000)
    reach = e.value.needed
    assert e.value.available == 4000 and reach < c.plan.arena_bytes
    assert str(e.value).startswith(f"does not fit the SRAM budget of 4,000 bytes: the smallest peak reachable is "
                                   f"{reach:,} bytes (with ")
    ps = choose_schedule(c.graph, None, sram_budget=reach)  # and that peak is indeed reachable
    assert ps is not None and ps.plan.arena_bytes <= reach


def test_fixed_mode_applies_the_requested_grid() -> None:
    c = compile_model(zoo.path("mobilenet_v1_025_vww"))
    r = schedule_patches(c.graph, PatchOptions.parse("5:4x3"), c.plan)
    (st,) = r.chosen.stages
    assert (st.spec.rows, st.spec.cols, st.split_layer, st.stage_layers) == (4, 3, 5, list(range(6)))


def test_two_fixed_stages_chain_and_stay_bit_exact() -> None:
    c = compile_model(zoo.path("mobilenet_v1_025_person"))
    r = schedule_patches(c.graph, PatchOptions.parse("7:2x2+10:3x2"), c.plan)
    first, second = r.chosen.stages
    assert first.stage_layers == list(range(8)) and second.stage_layers == [8, 9, 10]
    assert first.span[1] < second.span[0]
    assert r.chosen.label == "7:2x2+10:3x2"
    check_supported(r.graph)
    verify_shapes(r.graph)
    _assert_reference_matches_tflm(c, r.graph)


# -- CLI ------------------------------------------------------------------------------
def test_analyze_json_reports_both_peaks_and_the_overhead(capsys) -> None:
    assert main(["analyze", str(zoo.path("mobilenet_v1_025_person")), "--no-tflm", "--json", "-"]) == 0
    data = json.loads(capsys.readouterr().out)
    p = data["patches"]
    assert p["chosen"] and p["arena_bytes"] == data["arena_bytes"] < p["arena_bytes_layer_by_layer"]
    assert 0 < p["mac_overhead"] <= 0.20 and p["extra_macs"] == data["macs"] - p["base_macs"]
    assert any(r["patch"] == {"stage": 0, "row": 0, "col": 0} for r in data["layers"])


def test_analyze_patch_off_is_layer_by_layer(capsys) -> None:
    assert main(["analyze", str(zoo.path("mobilenet_v1_025_person")), "--no-tflm", "--patch", "off",
                 "--json", "-"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["patches"]["chosen"] is False
    assert data["arena_bytes"] == data["patches"]["arena_bytes_layer_by_layer"]


@pytest.mark.parametrize("args, words", [
    (["--patch", "4x4"], "SPLIT:ROWSxCOLS"),
    (["--patch", "999:2x2"], "layer 999"),
    (["--patch", "0:100x2"], "grid"),
    (["--sram-budget", "1000"], "smallest peak reachable"),
])
def test_cli_errors_are_one_line_exit_2(args: list[str], words: str, capsys) -> None:
    assert main(["analyze", str(zoo.path("mobilenet_v1_025_person")), "--no-tflm", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and words in err


@pytest.mark.slow
@pytest.mark.parametrize("name, extra", [("mobilenet_v1_025_person", []), ("mobilenet_v2_035_96", []),
                                         ("mobilenet_v1_025_vww", ["--input", "streamed"])])
def test_patch_schedule_is_bit_exact_in_qemu(name: str, extra: list[str], tmp_path: Path) -> None:
    out = tmp_path / "report.json"
    assert main(["validate", str(zoo.path(name)), "--board", "mps2-an386", "--inputs", "2",
                 "--json", str(out), *extra]) == 0
    report = json.loads(out.read_text())
    assert report["bit_exact"] and report["patches"]["chosen"]
    assert report["arena_bytes"] == report["patches"]["arena_bytes"] < report["patches"]["arena_bytes_layer_by_layer"]


# -- streamed input ---------------------------------------------------------------------
def test_streamed_input_leaves_the_arena_and_stays_bit_exact(tmp_path: Path) -> None:
    c = compile_model(zoo.path("mobilenet_v1_025_vww"), PatchOptions("auto", stream=True))
    ps = c.patches.chosen
    x = c.graph.inputs[0]
    assert ps is not None and ps.streamed == [x] and c.graph[x].streamed
    assert x not in c.plan.offsets
    d = c.patches.describe()
    assert d["input"] == "streamed" and d["streamed_input_bytes"] == 96 * 96 * 3
    assert d["arena_bytes"] < d["arena_bytes_input_in_arena"]
    assert d["arena_bytes"] * 3 <= d["arena_bytes_layer_by_layer"]
    _host_check(c, c.graph, tmp_path, n=3, sanitize=True)


def test_user_supplied_input_callback(tmp_path: Path) -> None:
    """With TINYML_USER_READ_INPUT the application's reader is the only source of the input."""
    import subprocess

    from tinyml.sim.host import compiler

    c = compile_model(zoo.path("mobilenet_v1_025_person"), PatchOptions.parse("7:3x3", stream=True))
    lib = generate(c.graph, c.plan, tmp_path / "lib")
    (x,) = random_inputs(c.graph, 1, seed=9)[0]
    _, h, w, ch = c.graph[c.graph.inputs[0]].shape
    pixels = ", ".join(str(int(v)) for v in x.astype(np.int8).reshape(-1))
    main_c = tmp_path / "main.c"
    main_c.write_text(f"""
#include <stdio.h>
#include <string.h>
#include "tinyml_model.h"
static const int8_t image[{h * w * ch}] = {{ {pixels} }};
static unsigned calls, most;
void tinyml_read_input(unsigned index, uint32_t row, uint32_t col, uint32_t rows, uint32_t cols, void *dst)
{{
    uint32_t r;
    calls++;
    if (index != 0 || row + rows > {h} || col + cols > {w}) {{ fprintf(stderr, "bad window\\n"); return; }}
    if (rows * cols > most) most = rows * cols;
    for (r = 0; r < rows; r++)
        memcpy((int8_t *)dst + r * cols * {ch}, image + ((row + r) * {w} + col) * {ch}, cols * {ch});
}}
int main(void)
{{
    if (tinyml_input(0) != 0 || tinyml_init() != 0 || tinyml_run() != 0) return 3;
    fwrite(tinyml_output(0), 1, TINYML_OUTPUT0_BYTES, stdout);
    fprintf(stderr, "%u %u", calls, most);
    return 0;
}}
""")
    exe = tmp_path / "model"
    subprocess.run([compiler(), "-std=c99", "-O1", "-Wall", "-Wextra", "-Werror", "-DTINYML_USER_READ_INPUT",
                    f"-I{lib.path}", str(main_c), *map(str, sorted(lib.path.glob("*.c"))), "-o", str(exe)],
                   check=True, capture_output=True)
    run = subprocess.run([str(exe)], capture_output=True, check=True)
    calls, most = map(int, run.stderr.split())
    assert calls == 9 and most < h * w  # one window per patch, each smaller than the image
    expected = TflmOracle(c.model_bytes).run([x])[0]
    np.testing.assert_array_equal(np.frombuffer(run.stdout, np.int8), np.asarray(expected).reshape(-1))


def test_search_on_mutated_models_never_crashes() -> None:
    """Byte-mutated models that still load: auto search either schedules or gives a one-line error."""
    import random

    from tinyml.errors import TinymlError
    from tinyml.pipeline import load_graph

    data = zoo.path("io_per_tensor").read_bytes()
    rng = random.Random(5)
    loaded = 0
    for _ in range(400):
        buf = bytearray(data)
        for _ in range(rng.randint(1, 4)):
            buf[rng.randrange(len(buf))] = rng.randrange(256)
        try:
            g = load_graph(bytes(buf))
        except TinymlError:
            continue
        loaded += 1
        try:
            r = schedule_patches(g, PatchOptions("auto", stream=bool(loaded % 2)))
        except TinymlError as e:
            assert "\n" not in str(e)
            continue
        assert r.error is None, r.error
        assert r.plan.arena_bytes <= r.baseline.arena_bytes
    assert loaded > 50


# -- the search on random graphs: a schedule that is bit-exact, or layer by layer ------------------
@st.composite
def _random_graph(draw) -> Graph:
    """A chain of conv/dw/pool/relu layers, with residual ADDs where a layer keeps its input's shape."""
    h, w, c = draw(st.integers(4, 20)), draw(st.integers(1, 20)), draw(st.integers(1, 4))
    layers = []
    keeps_shape = False  # did the last layer keep its input's shape (so a skip ADD fits)?
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(["conv", "dw", "avg", "max", "relu", "skip"] if keeps_shape else
                                    ["conv", "dw", "avg", "max", "relu"]))
        s = draw(st.sampled_from([1, 1, 2]))
        p = {"conv": dict(k=draw(st.sampled_from([1, 3, 5])), s=s, cout=c, d=draw(st.sampled_from([1, 1, 2]))),
             "dw": dict(k=draw(st.sampled_from([3, 5])), s=s, d=draw(st.sampled_from([1, 1, 2]))),
             "avg": dict(k=draw(st.sampled_from([2, 3])), s=s),
             "max": dict(k=draw(st.sampled_from([2, 3])), s=s),
             "relu": {}, "skip": {}}[kind]
        if kind in ("conv", "dw", "avg", "max"):
            p["padding"] = draw(st.sampled_from(["SAME", "VALID"]))
        layers.append((kind, p))
        keeps_shape = kind in ("relu", "skip") or (s == 1 and p.get("padding") == "SAME" and kind != "skip")
        if draw(st.integers(0, 3)) == 0:  # a strided residual block with a projection shortcut (KWS, ResNet)
            layers += [("conv", dict(k=1, cout=2 * c)), ("dw", dict(k=3, s=s)), ("conv", dict(k=1, cout=c)),
                       ("conv", dict(k=1, s=s, cout=c, src=-4)), ("skip", {})]
            keeps_shape = True
    try:
        return _synthetic(h, w, c, layers, seed=draw(st.integers(0, 3)))
    except Exception:  # a window larger than its input, or a layer our ops refuse: not a graph to search
        assume(False)


@settings(max_examples=40, deadline=None)
@given(g=_random_graph(), stream=st.booleans(), overhead=st.sampled_from([0.0, 0.2, 1.0]))
def test_auto_search_schedules_bit_exactly_or_falls_back(g: Graph, stream: bool, overhead: float) -> None:
    r = schedule_patches(g, PatchOptions("auto", max_overhead=overhead, stream=stream))
    assert r.error is None, r.error
    event("layer by layer" if r.chosen is None else f"patched, {len(r.chosen.stages)} stage(s)")
    if r.chosen is None:
        assert r.graph is g and r.plan is r.baseline
        return
    assert r.plan.arena_bytes < r.baseline.arena_bytes
    check_supported(r.graph)
    verify_shapes(r.graph)
    rng = np.random.default_rng(3)
    for _ in range(2):
        x = rng.integers(-128, 128, g[g.inputs[0]].shape).astype(np.int8)
        np.testing.assert_array_equal(reference_outputs(r.graph, [x])[0], reference_outputs(g, [x])[0])
