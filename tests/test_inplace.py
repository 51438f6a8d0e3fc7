"""In-place execution: outputs written over dying inputs, never over live data.

Random graphs of depthwise convolutions, activations, additions and
reshapes are planned; then the plan is *executed* on a byte arena, each node
reading its inputs from their planned offsets and writing its output to its
own, with the numpy reference as the kernel. If any tensor were overwritten
while still needed, the arena run would differ from the plain reference run.
The in-place C kernels themselves (output == input) are checked bit-exact by
tests/test_kernels_dw.py and the whole-zoo tests.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tinyml.ir import Graph, Node, Quant, Tensor
from tinyml.ops import get_op
from tinyml.reference import run_reference
from tinyml.schedule.memory import plan_memory


class _Builder:
    """Small valid int8 graphs, built op by op."""

    def __init__(self, rng: np.random.Generator):
        self.g = Graph()
        self.rng = rng

    def act(self, shape: tuple[int, ...], name: str) -> str:
        q = Quant(np.array([self.rng.uniform(0.02, 0.1)], np.float32), np.array([int(self.rng.integers(-20, 20))]))
        return self.g.add_tensor(Tensor(name, shape, "int8", q)).name

    def const(self, data: np.ndarray, name: str, quant: Quant | None = None) -> str:
        return self.g.add_tensor(Tensor(name, data.shape, str(data.dtype), quant, data)).name

    def node(self, op: str, inputs: list[str | None], shape: tuple[int, ...], attrs: dict) -> str:
        y = self.act(shape, f"{op.lower()}{len(self.g.nodes)}")
        n = Node(op, inputs, [y], attrs, f"n{len(self.g.nodes)}")
        self.g.nodes.append(n)
        assert get_op(op).check(self.g, n) is None, get_op(op).check(self.g, n)
        assert tuple(get_op(op).infer_shapes(self.g, n)[0]) == shape
        return y

    def depthwise(self, x: str, k: int, stride: int, padding: str) -> str:
        _, h, w, c = self.g[x].shape
        wt = self.rng.integers(-127, 128, (1, k, k, c)).astype(np.int8)
        wq = Quant(np.full(c, 0.01, np.float32), np.zeros(c, np.int64), 3)
        bias = self.rng.integers(-500, 500, c).astype(np.int32)
        out = (lambda n: (n + stride - 1) // stride) if padding == "SAME" else (lambda n: (n - k + stride) // stride)
        attrs = dict(padding=padding, stride_w=stride, stride_h=stride, depth_multiplier=1,
                     dilation_w_factor=1, dilation_h_factor=1, fused_activation_function="NONE")
        return self.node("DEPTHWISE_CONV_2D", [x, self.const(wt, "w", wq), self.const(bias, "b")],
                         (1, out(h), out(w), c), attrs)


@st.composite
def graphs(draw: Any) -> tuple[Graph, list[np.ndarray]]:
    """A chain with optional residual ADDs, so some inputs die at their consumer and some stay live."""
    b = _Builder(np.random.default_rng(draw(st.integers(0, 2**31))))
    c = draw(st.integers(1, 5))
    size = draw(st.integers(3, 9))
    x = b.act((1, size, size, c), "input")
    b.g.inputs = [x]
    live = [x]  # candidates for later residual additions
    cur = x
    for _ in range(draw(st.integers(1, 7))):
        kind = draw(st.sampled_from(["dw", "dw", "relu", "add", "reshape"]))
        shape = b.g[cur].shape
        if kind == "dw":
            k, stride = draw(st.sampled_from([3, 5])), draw(st.sampled_from([1, 2]))
            padding = draw(st.sampled_from(["SAME", "VALID"]))
            if padding == "VALID" and min(shape[1:3]) < k:
                padding = "SAME"
            cur = b.depthwise(cur, k, stride, padding)
        elif kind == "relu":
            cur = b.node("RELU", [cur], shape, {})
        elif kind == "add":
            same = [t for t in live if b.g[t].shape == shape and t != cur]
            other = draw(st.sampled_from(same)) if same else cur
            first = draw(st.booleans())
            cur = b.node("ADD", [cur, other] if first else [other, cur], shape, {"fused_activation_function": "NONE"})
        else:
            flat = b.node("RESHAPE", [cur, None], (1, int(np.prod(shape))), {"new_shape": [1, int(np.prod(shape))]})
            cur = b.node("RESHAPE", [flat, None], shape, {"new_shape": list(shape)})
        live.append(cur)
    extra = [t for t in live[1:-1] if draw(st.integers(0, 4)) == 0]  # intermediate graph outputs stay live
    b.g.outputs = [cur] + extra
    xs = [np.random.default_rng(1).integers(-128, 128, b.g[x].shape).astype(np.int8)]
    return b.g, xs


def run_on_arena(g: Graph, inputs: list[np.ndarray]) -> dict[str, np.ndarray]:
    """Execute the plan: every tensor lives only at its planned offset of one shared byte arena."""
    plan = plan_memory(g)
    arena = np.zeros(plan.arena_bytes, np.uint8)

    def store(t: str, v: np.ndarray) -> None:
        raw = np.ascontiguousarray(v.astype(g[t].np_dtype)).view(np.uint8).reshape(-1)
        arena[plan.offsets[t]:plan.offsets[t] + raw.size] = raw

    def load(t: str) -> np.ndarray:
        tt = g[t]
        if tt.is_const:
            return tt.data
        raw = arena[plan.offsets[t]:plan.offsets[t] + tt.nbytes].copy()
        return raw.view(tt.np_dtype).reshape(tt.shape)

    for t, v in zip(g.inputs, inputs):
        store(t, v)
    for n in g.nodes:
        op = get_op(n.op)
        outs = op.reference(g, n, [None if t is None else load(t) for t in n.inputs])
        for t, v in zip(n.outputs, outs):
            store(t, v)
    return {t: load(t) for t in g.outputs}


@settings(max_examples=120, deadline=None)
@given(graphs())
def test_arena_execution_equals_reference(case: tuple[Graph, list[np.ndarray]]) -> None:
    g, xs = case
    expected = run_reference(g, xs)
    got = run_on_arena(g, xs)
    for t in g.outputs:
        np.testing.assert_array_equal(got[t], expected[t].reshape(g[t].shape), err_msg=t)


@settings(max_examples=120, deadline=None)
@given(graphs())
def test_shared_bytes_only_between_a_dying_input_and_its_consumer(case: tuple[Graph, list[np.ndarray]]) -> None:
    """A tensor whose bytes are reused has no reader later; no node writes over a graph input it reads."""
    g, _ = case
    plan = plan_memory(g)
    readers: dict[str, list[int]] = {}
    for step, n in enumerate(g.nodes):
        for t in n.inputs:
            if t is not None:
                readers.setdefault(t, []).append(step)
    for step, n in enumerate(g.nodes):
        if get_op(n.op).alias:
            continue
        y = n.outputs[0]
        lo, hi = plan.offsets[y], plan.offsets[y] + g[y].nbytes
        for t in g.tensors:
            if g[t].is_const or t == y or t not in plan.offsets:
                continue
            if plan.offsets[t] < hi and lo < plan.offsets[t] + g[t].nbytes:
                needed_later = any(s > step for s in readers.get(t, [])) or t in g.outputs
                produced_earlier = t in g.inputs or any(t in m.outputs for m in g.nodes[:step])
                assert not (produced_earlier and needed_later), (n.op, y, t)
                if step in readers.get(t, []):  # written over an input of this very node
                    assert t not in g.inputs, (n.op, y, t)


def _chain() -> Graph:
    b = _Builder(np.random.default_rng(3))
    x = b.act((1, 8, 8, 6), "input")
    b.g.inputs = [x]
    r = b.node("RELU", [x], (1, 8, 8, 6), {})  # reads a graph input: must not run in place
    d1 = b.depthwise(r, 3, 1, "SAME")  # in place over r
    d2 = b.depthwise(d1, 3, 1, "VALID")  # smaller output: in the head of r's bytes, which then shrink
    y = b.node("RELU", [d2], (1, 6, 6, 6), {})  # in place over d2
    b.g.outputs = [y]
    return b.g


def test_chain_runs_in_one_buffer_but_spares_the_graph_input() -> None:
    g = _chain()
    plan = plan_memory(g)
    r, d1, d2, y = (n.outputs[0] for n in g.nodes)
    assert plan.offsets["input"] != plan.offsets[r]
    assert plan.offsets[r] == plan.offsets[d1] == plan.offsets[d2] == plan.offsets[y]
    # 384 bytes until the VALID depthwise (step 2), then its 6x6x6 = 216 (224 aligned): a 160-byte tail
    (tail,) = (b for b in plan.buffers if b.base is not None)
    assert (tail.size, tail.first, tail.last, tail.offset) == (384 - 224, 0, 2, plan.offsets[r] + 224)
    # the RELU step holds the input and its output; afterwards the 384-byte buffer and a channel
    # plane fit in the same two 384-byte slots
    assert plan.arena_bytes == plan.lower_bound == 384 + 384
    assert all(size < 384 for _, size in plan.scratch.values())


def test_no_in_place_while_the_input_is_still_read() -> None:
    b = _Builder(np.random.default_rng(4))
    x = b.act((1, 6, 6, 4), "input")
    b.g.inputs = [x]
    a = b.node("RELU", [x], (1, 6, 6, 4), {})
    d = b.depthwise(a, 3, 1, "SAME")
    s = b.node("ADD", [d, a], (1, 6, 6, 4), {"fused_activation_function": "NONE"})  # a read again here
    b.g.outputs = [s]
    plan = plan_memory(b.g)
    assert plan.offsets[d] != plan.offsets[a]
    assert plan.offsets[s] in (plan.offsets[d], plan.offsets[a])  # the ADD runs over one of its dying inputs


@pytest.mark.parametrize("multiplier_two", [False, True])
def test_generic_depthwise_is_not_in_place(multiplier_two: bool) -> None:
    """Depth multiplier 2 uses the per-pixel kernel, which reads neighbours after writing."""
    b = _Builder(np.random.default_rng(5))
    x = b.act((1, 5, 5, 3), "input")
    b.g.inputs = [x]
    a = b.node("RELU", [x], (1, 5, 5, 3), {})
    if multiplier_two:
        wt = b.rng.integers(-127, 128, (1, 3, 3, 6)).astype(np.int8)
        wq = Quant(np.full(6, 0.01, np.float32), np.zeros(6, np.int64), 3)
        attrs = dict(padding="SAME", stride_w=1, stride_h=1, depth_multiplier=2, dilation_w_factor=1,
                     dilation_h_factor=1, fused_activation_function="NONE")
        d = b.node("DEPTHWISE_CONV_2D", [a, b.const(wt, "w", wq), None], (1, 5, 5, 6), attrs)
    else:
        d = b.depthwise(a, 3, 1, "SAME")
    b.g.outputs = [d]
    plan = plan_memory(b.g)
    assert (plan.offsets[d] == plan.offsets[a]) is not multiplier_two


def test_stride_two_output_shrinks_its_input_buffer() -> None:
    """The 128-byte output takes the head of r's 512 bytes; the other 384 are free after the depthwise."""
    b = _Builder(np.random.default_rng(6))
    x = b.act((1, 8, 8, 8), "input")
    b.g.inputs = [x]
    r = b.node("RELU", [x], (1, 8, 8, 8), {})
    d = b.depthwise(r, 3, 2, "SAME")  # 512 -> 128 bytes
    late = b.node("RELU", [x], (1, 8, 8, 8), {})  # the graph input is read again
    b.g.outputs = [d, late]
    plan = plan_memory(b.g)
    assert plan.offsets[d] == plan.offsets[r]
    (plane,) = (size for _, size in plan.scratch.values())
    assert plane <= 128
    # by hand: RELU 512 + 512; depthwise 512 + 512 + plane; late RELU: input 512 + late 512 + d 128.
    # Separate buffers would hold 512 + 512 + 128 + plane at the depthwise; merged for good, 3 * 512.
    assert plan.lower_bound == plan.arena_bytes == 512 + 512 + 128
    # late is written over r's freed tail
    lo, hi = plan.offsets[r] + 128, plan.offsets[r] + 512
    assert plan.offsets[late] < hi and lo < plan.offsets[late] + 512


def test_expanding_pointwise_conv_writes_over_an_input_at_its_end() -> None:
    """By hand: x 64 B (graph input), r = RELU(x) 64 B, y = 1x1 conv 4 -> 8 channels 128 B, RELU in place.

    Merged, the conv step holds y's 128 B (r in its last 64) and the conv's scratch;
    apart, r + y + scratch. The RELU step holds x and r: 128 B.
    """
    b = _Builder(np.random.default_rng(9))
    x = b.act((1, 4, 4, 4), "input")
    b.g.inputs = [x]
    r = b.node("RELU", [x], (1, 4, 4, 4), {})
    wt = b.rng.integers(-127, 128, (8, 1, 1, 4)).astype(np.int8)
    wq = Quant(np.full(8, 0.01, np.float32), np.zeros(8, np.int64), 0)
    attrs = dict(padding="VALID", stride_w=1, stride_h=1, dilation_w_factor=1, dilation_h_factor=1,
                 fused_activation_function="NONE")
    y = b.node("CONV_2D", [r, b.const(wt, "pw", wq), None], (1, 4, 4, 8), attrs)
    out = b.node("RELU", [y], (1, 4, 4, 8), {})
    b.g.outputs = [out]
    plan = plan_memory(b.g)
    ((_, (_, scratch)),) = plan.scratch.items()
    assert plan.offsets[r] == plan.offsets[y] + 64 and plan.offsets[out] == plan.offsets[y]
    assert plan.lower_bound == plan.arena_bytes == max(128, 128 + scratch) < 64 + 128 + scratch


def test_in_place_kernels_in_c_equal_the_reference(tmp_path) -> None:  # noqa: ANN001
    """Depthwise (stride 1 and 2), pointwise conv (same, fewer and more channels), ADD and LUT kernels
    writing over their input, compiled for this PC (ASan, UBSan)."""
    from tinyml.codegen.emit import generate
    from tinyml.sim.host import HostRunner

    b = _Builder(np.random.default_rng(8))
    x = b.act((1, 7, 5, 8), "input")
    b.g.inputs = [x]
    r = b.node("RELU", [x], (1, 7, 5, 8), {})
    d = b.depthwise(r, 3, 1, "SAME")
    wt = b.rng.integers(-127, 128, (8, 1, 1, 8)).astype(np.int8)
    wq = Quant(np.full(8, 0.01, np.float32), np.zeros(8, np.int64), 0)
    bias = b.const(b.rng.integers(-500, 500, 8).astype(np.int32), "pb")
    attrs = dict(padding="VALID", stride_w=1, stride_h=1, dilation_w_factor=1, dilation_h_factor=1,
                 fused_activation_function="RELU")
    p = b.node("CONV_2D", [d, b.const(wt, "pw", wq), bias], (1, 7, 5, 8), attrs)
    e = b.node("RELU", [p], (1, 7, 5, 8), {})
    s = b.node("ADD", [e, b.depthwise(e, 3, 1, "SAME")], (1, 7, 5, 8), {"fused_activation_function": "NONE"})
    s2 = b.depthwise(s, 3, 2, "SAME")  # 7x5 -> 4x3: shrinks s's buffer
    wt4 = b.rng.integers(-127, 128, (5, 1, 1, 8)).astype(np.int8)
    wq4 = Quant(np.full(5, 0.01, np.float32), np.zeros(5, np.int64), 0)
    pj = b.node("CONV_2D", [s2, b.const(wt4, "pw4", wq4), None], (1, 4, 3, 5), {**attrs, "fused_activation_function": "NONE"})
    wt10 = b.rng.integers(-127, 128, (10, 1, 1, 5)).astype(np.int8)
    wq10 = Quant(np.full(10, 0.01, np.float32), np.zeros(10, np.int64), 0)
    ex = b.node("CONV_2D", [pj, b.const(wt10, "pw10", wq10), None], (1, 4, 3, 10), attrs)  # expands 60 -> 120 B
    b.g.outputs = [ex]
    plan = plan_memory(b.g)
    assert plan.offsets[r] == plan.offsets[d] == plan.offsets[p] == plan.offsets[e]
    assert plan.offsets[s2] == plan.offsets[s]  # shrinking merges
    # s2 shrank from s: too tall a history to sit at the end of the expansion, so the projection stays
    # apart and the expansion takes pj's bytes at the end of its own (120 - 60 -> 64 bytes up)
    assert plan.offsets[pj] != plan.offsets[s2] and plan.offsets[pj] == plan.offsets[ex] + 64
    xs = [np.random.default_rng(k).integers(-128, 128, (1, 7, 5, 8)).astype(np.int8) for k in range(4)]
    got = HostRunner(generate(b.g, plan, tmp_path / "lib"), sanitize=True).run([[v] for v in xs]).outputs
    for v, out in zip(xs, got):
        np.testing.assert_array_equal(np.asarray(out[0]).reshape(-1), run_reference(b.g, [v])[ex].reshape(-1))
