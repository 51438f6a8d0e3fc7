"""Patch-based inference as a graph transform (MCUNetV2's idea, our own search).

CNNs peak in SRAM early, where feature maps are large. Running the first
stage patch by patch keeps only one patch's feature maps alive; the stage's
output (the *split* tensor) is filled window by window and the rest of the
network runs layer by layer.

Here a patch schedule is an ordinary graph: for each cell of a rows x cols
grid over the split tensor, the region every stage tensor must provide is
computed backwards (receptive fields through conv, depthwise and pooling
with their stride, dilation and padding; element-wise ops pass regions
through; a tensor read by several stage nodes provides the union and a
consumer that needs less reads a crop). The stage's nodes are then cloned
per patch onto tensors shaped like those regions, each window op carrying
`explicit_padding` only where its region touches the image border, plus
READ_WINDOW / WRITE_WINDOW copies (tinyml/ops/window.py). The memory planner,
emitter, reference interpreter and runners need no special case, and the
reference interpreter on the rewritten graph is the patch oracle.

With `reuse`, what a patch shares with the previous one is kept rather
than recomputed: columns within a row of patches, or rows from one
full-width band to the next (then no MAC is repeated at all).

`choose_schedule` searches split points and grids with the real planner,
pruned by lower bounds, and never returns a schedule whose arena is not
strictly below layer by layer.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, replace

import numpy as np

from tinyml.errors import BadModel, DoesNotFit, TinymlError
from tinyml.ir import Graph, Node, Tensor
from tinyml.ops import get_op
from tinyml.ops.quantized import Window, effective_size, window
from tinyml.schedule.memory import (
    ALIGN, MemoryPlan, build_buffers, live_profile, lower_bound, place_greedy_by_size, plan_memory,
)

WINDOW_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "AVERAGE_POOL_2D", "MAX_POOL_2D")
# Ops whose output element (b, y, x, c) depends only on input elements at (b, y, x, .).
POINTWISE_OPS = (
    "ADD", "SUB", "MUL", "MAXIMUM", "MINIMUM", "SQUARED_DIFFERENCE", "PRELU",
    "RELU", "RELU6", "RELU_N1_TO_1", "LEAKY_RELU", "LOGISTIC", "TANH", "HARD_SWISH",
    "QUANTIZE", "DEQUANTIZE",
)
MAX_GRID = 8  # rows and columns searched: 1..8 each (1x1 excluded)
MAX_BANDS = 16  # bands of patches reusing rows (no recomputation down the image): up to this many
MAX_COLUMNS_DOWN = 4  # columns of patches, each run top to bottom reusing rows


class NotPatchable(BadModel):
    """The requested split or grid cannot be run patch by patch."""


class BudgetExceeded(DoesNotFit):
    """No schedule keeps the activation arena within --sram-budget."""

    def __init__(self, budget: int, reachable: int, detail: str):
        super().__init__("the activation arena", reachable, budget, detail)
        self.args = (f"does not fit the SRAM budget of {budget:,} bytes: {detail}",)


# -- regions --------------------------------------------------------------------
@dataclass(frozen=True)
class Region:
    """Half-open row and column ranges of an NHWC tensor's spatial plane."""

    r0: int
    r1: int
    c0: int
    c1: int

    @property
    def h(self) -> int:
        return self.r1 - self.r0

    @property
    def w(self) -> int:
        return self.c1 - self.c0

    @staticmethod
    def full(shape: tuple[int, ...]) -> "Region":
        return Region(0, shape[1], 0, shape[2])


def input_span(o0: int, o1: int, stride: int, pad_before: int, k: int, dilation: int) -> tuple[int, int]:
    """Input rows [start, end) that outputs [o0, o1) of a window op read, before clipping.

    Negative `start` or `end` past the input size are the padded rows.
    """
    start = o0 * stride - pad_before
    return start, (o1 - 1) * stride - pad_before + effective_size(k, dilation)


def node_window(g: Graph, n: Node) -> Window:
    """The sliding window of a conv, depthwise or pooling node."""
    if n.op in ("CONV_2D", "DEPTHWISE_CONV_2D"):
        wt = g[n.inputs[1]]
        return window(g, n, wt.shape[1], wt.shape[2])
    return window(g, n, int(n.attrs.get("filter_height", 0)), int(n.attrs.get("filter_width", 0)), dilated=False)


def window_need(w: Window, out: Region, clip: tuple[int, int]) -> tuple[Region, tuple[int, int, int, int]]:
    """The input region (clipped to the `clip` = (h, w) plane) output region `out` reads, and its padding.

    The padding (top, bottom, left, right) is the part of the receptive
    field outside the image, so a patch node with that `explicit_padding`
    computes exactly the full node's values on `out`.
    """
    rs, re = input_span(out.r0, out.r1, w.stride_h, w.pad_top, w.k_h, w.dil_h)
    cs, ce = input_span(out.c0, out.c1, w.stride_w, w.pad_left, w.k_w, w.dil_w)
    need = Region(max(rs, 0), min(re, clip[0]), max(cs, 0), min(ce, clip[1]))
    return need, (max(-rs, 0), max(re - clip[0], 0), max(-cs, 0), max(ce - clip[1], 0))


# -- the stage ------------------------------------------------------------------
def _spatial(t: Tensor) -> bool:
    return len(t.shape) == 4 and min(t.shape) >= 1


def _broadcast_const(t: Tensor, out: Tensor) -> bool:
    """A constant operand that is the same for every pixel (per channel at most)."""
    shape = (1,) * (4 - len(t.shape)) + tuple(t.shape) if len(t.shape) <= 4 else None
    return shape is not None and shape[1] == shape[2] == 1 and shape[3] in (1, out.shape[3])


def patchable(g: Graph, n: Node) -> bool:
    """Whether `n` can be cloned onto patch tensors with the same arithmetic."""
    if len(n.outputs) != 1 or not _spatial(g[n.outputs[0]]) or "patch" in n.attrs:
        return False  # nodes of an earlier patch stage are never cut again
    out = g[n.outputs[0]]
    if n.op in WINDOW_OPS:
        x = g[n.inputs[0]] if n.inputs and n.inputs[0] is not None else None
        if x is None or x.is_const or not _spatial(x):
            return False
        if any(t is not None and not g[t].is_const for t in n.inputs[1:]):
            return False
        try:
            node_window(g, n)
        except ValueError:
            return False
        return True
    if n.op in POINTWISE_OPS:
        data = [g[t] for t in n.inputs if t is not None]
        if not any(not t.is_const for t in data):
            return False
        return all(t.shape == out.shape if not t.is_const else _broadcast_const(t, out) for t in data)
    return False


@dataclass
class Stage:
    """The nodes run per patch: everything the split tensor needs, back to full-size sources."""

    split: str
    nodes: list[int]  # indices into g.nodes, in execution order
    sources: list[str]  # full-size tensors the stage reads windows of
    windows: dict[int, Window]  # the window of every conv/depthwise/pooling node in it


def find_stage(g: Graph, split: str) -> Stage:
    """The patch stage that ends at tensor `split`.

    Walks back through patchable producers. A stage tensor that something
    outside the stage also reads (or a graph output) must exist whole, so it
    becomes a source instead and the walk stops there.
    """
    index = {id(n): i for i, n in enumerate(g.nodes)}
    producers = g.producers()
    consumers = g.consumers()
    if split not in producers or split in g.inputs:
        raise NotPatchable(f"tensor {split!r} is not computed by a node")
    if not patchable(g, producers[split]):
        raise NotPatchable(f"{producers[split].op} producing the split tensor cannot run per patch")
    cuts: set[str] = set()
    while True:
        members: set[int] = set()
        sources: list[str] = []
        stack = [producers[split]]
        while stack:
            n = stack.pop()
            if index[id(n)] in members:
                continue
            members.add(index[id(n)])
            for t in n.inputs:
                if t is None or g[t].is_const:
                    continue
                p = producers.get(t)
                if t in cuts or p is None or t in g.inputs or not patchable(g, p):
                    if t not in sources:
                        sources.append(t)
                else:
                    stack.append(p)
        escaping = {
            o for i in members for o in g.nodes[i].outputs
            if o != split and (o in g.outputs or any(index[id(c)] not in members for c in consumers.get(o, [])))
        }
        if not escaping:
            nodes = sorted(members)
            return Stage(split, nodes, sources, {i: node_window(g, g.nodes[i]) for i in nodes
                                                 if g.nodes[i].op in WINDOW_OPS})
        cuts |= escaping


# -- per-patch regions ------------------------------------------------------------
Span = tuple[int, int]  # half-open [start, end) along one spatial axis


@dataclass
class AxisPlan:
    """One axis of one grid band: spans provided per tensor, read per node input, padding per node.

    Window ops are separable (rows and columns do not interact) and a union
    of regions is their bounding box, so a patch's regions are the product
    of its row band's plan and its column band's plan.
    """

    provide: dict[str, Span]  # what the patch's readers need of each stage tensor
    computed: dict[str, Span]  # what the patch computes of it (less when the previous patch left a halo)
    need: dict[tuple[int, int], Span]  # (node index, input position) -> span read
    pads: dict[int, tuple[int, int]]  # window node index -> (before, after)


def axis_plan(g: Graph, stage: Stage, axis: int, out: Span, done: dict[str, int] | None = None) -> AxisPlan:
    """Backwards from the split tensor's span `out` on `axis` (0 rows, 1 columns).

    `done` (reuse): per stage tensor, the end of what the previous patch
    along this axis computed; only the part after it is computed here, so
    only that part's receptive field is read.
    """
    provide: dict[str, Span] = {stage.split: out}
    computed: dict[str, Span] = {}
    need: dict[tuple[int, int], Span] = {}
    pads: dict[int, tuple[int, int]] = {}
    for i in reversed(stage.nodes):
        n = g.nodes[i]
        if n.outputs[0] not in provide:  # only with reuse: its readers take everything from the halo
            end = done.get(n.outputs[0], 0) if done is not None else 0
            computed[n.outputs[0]] = (end, end)  # nothing of it is needed here (see _Builder.patch)
            continue
        o0, o1 = provide[n.outputs[0]]
        if done is not None:
            o0 = max(o0, min(done.get(n.outputs[0], o0), o1))
        computed[n.outputs[0]] = (o0, o1)
        if o0 >= o1:
            continue  # all of it was computed by the previous patch
        w = stage.windows.get(i)
        if w is not None:
            if axis == 0:
                start, end = input_span(o0, o1, w.stride_h, w.pad_top, w.k_h, w.dil_h)
                size = w.in_h
            else:
                start, end = input_span(o0, o1, w.stride_w, w.pad_left, w.k_w, w.dil_w)
                size = w.in_w
            span = (max(start, 0), min(end, size))
            if span[0] >= span[1]:
                raise NotPatchable(f"a patch of {n.op} would read only padding")
            pads[i] = (max(-start, 0), max(end - size, 0))
            reads = [(0, span)]
        else:
            reads = [(k, (o0, o1)) for k, t in enumerate(n.inputs) if t is not None and not g[t].is_const]
        for k, span in reads:
            need[(i, k)] = span
            old = provide.get(n.inputs[k])
            provide[n.inputs[k]] = span if old is None else (min(old[0], span[0]), max(old[1], span[1]))
    return AxisPlan(provide, computed, need, pads)


@dataclass
class PatchRegions:
    """What one patch computes: regions provided per tensor, read per node input, padding per node."""

    cell: tuple[int, int]
    provide: dict[str, Region]
    computed: dict[str, Region]
    need: dict[tuple[int, int], Region]
    pads: dict[int, tuple[int, int, int, int]]  # window node index -> explicit padding (t, b, l, r)

    @staticmethod
    def combine(cell: tuple[int, int], rows: AxisPlan, cols: AxisPlan) -> "PatchRegions":
        def region(a: Span, b: Span) -> Region:
            return Region(a[0], a[1], b[0], b[1])

        return PatchRegions(
            cell,
            {t: region(r, cols.provide[t]) for t, r in rows.provide.items() if t in cols.provide},
            {t: region(rows.computed[t], c) for t, c in cols.computed.items()},
            {k: region(r, cols.need[k]) for k, r in rows.need.items() if k in cols.need},
            {i: rows.pads[i] + cols.pads[i] for i in rows.pads if i in cols.pads},
        )


def bands(size: int, parts: int) -> list[Span]:
    """`parts` consecutive spans covering [0, size), all inner ones of one length.

    The remainder goes to the first and last band: their receptive fields
    stop at the image border, so they can be larger at the same cost, and
    equal inner bands give patch layers of one shape, which share kernels.
    """
    q, extra = divmod(size, parts)
    lengths = [q] * parts
    lengths[0] += (extra + 1) // 2
    lengths[-1] += extra // 2
    cuts = list(itertools.accumulate([0] + lengths))
    return list(zip(cuts[:-1], cuts[1:]))


def axis_plans(g: Graph, stage: Stage, axis: int, parts: int, reuse: bool) -> list[AxisPlan]:
    """The plan of each band along `axis`, in order; with `reuse` each starts where the previous one ended."""
    plans: list[AxisPlan] = []
    for b in bands(g[stage.split].shape[1 + axis], parts):
        done = {t: span[1] for t, span in plans[-1].computed.items()} if reuse and plans else None
        plans.append(axis_plan(g, stage, axis, b, done))
    return plans


def reuse_axis(cols: int, vertical: bool = False) -> int:
    """The axis a reusing grid carries overlaps along: columns within a row of patches, or rows
    from one patch to the one below (`vertical`, or a grid of full-width bands: a line buffer)."""
    return 0 if vertical or cols == 1 else 1


def grid_regions(g: Graph, stage: Stage, rows: int, cols: int, reuse: bool = False,
                 vertical: bool = False) -> list[PatchRegions]:
    """Every patch of a rows x cols grid over the split tensor, in run order: row-major, or
    column-major when rows are reused (each patch follows the one above it)."""
    ax = reuse_axis(cols, vertical) if reuse else None
    row_plans = axis_plans(g, stage, 0, rows, ax == 0)
    col_plans = axis_plans(g, stage, 1, cols, ax == 1)
    cells = [(i, j) for i in range(rows) for j in range(cols)]
    if ax == 0:
        cells.sort(key=lambda c: (c[1], c[0]))
    return [PatchRegions.combine((i, j), row_plans[i], col_plans[j]) for i, j in cells]


# -- the rewrite ----------------------------------------------------------------
@dataclass(frozen=True)
class PatchSpec:
    """Where to split and how to cut: the split tensor's name and the grid."""

    split: str
    rows: int
    cols: int
    # keep what a patch shares with the previous one instead of recomputing it: the overlapping columns
    # of the previous patch in the row, or (one column, or `vertical`) the overlapping rows of the one above
    reuse: bool = False
    vertical: bool = False  # with reuse: carry rows down each column of patches (run column by column)

    @property
    def reuse_axis(self) -> int | None:
        return reuse_axis(self.cols, self.vertical) if self.reuse else None

    @property
    def suffix(self) -> str:
        """The --patch grid suffix: `r` reuse (columns, or rows on one column), `v` reuse rows."""
        return ("v" if self.vertical and self.cols > 1 else "r") if self.reuse else ""


@dataclass
class StageReport:
    """One patch stage of a schedule, in the original graph's layer numbers."""

    spec: PatchSpec
    split_layer: int  # the layer producing the split tensor
    stage_layers: list[int]  # the layers run per patch
    span: tuple[int, int]  # first and last node of the stage in the schedule's graph
    streamed: list[str]  # graph inputs this stage reads through tinyml_read_input

    @property
    def label(self) -> str:
        return f"{self.split_layer}:{self.spec.rows}x{self.spec.cols}{self.spec.suffix}"

    def describe(self, g: Graph) -> dict:
        return {
            "split_layer": self.split_layer,
            "split_tensor": self.spec.split,
            "split_shape": list(g[self.spec.split].shape),
            "grid": [self.spec.rows, self.spec.cols],
            "patches": self.spec.rows * self.spec.cols,
            "reuse_columns": self.spec.reuse_axis == 1,
            "reuse_rows": self.spec.reuse_axis == 0,
            "stage_layers": self.stage_layers,
            "stage_span": list(self.span),
        }


@dataclass
class PatchSchedule:
    """A rewritten graph: one or more patch stages, everything else layer by layer."""

    graph: Graph
    stages: list[StageReport]
    base_macs: int  # the original graph's
    macs: int
    origin: dict[int, int]  # id(node) -> original layer index, for the nodes not run per patch
    plan: MemoryPlan | None = None
    arena_with_input: int | None = None  # with a streamed input: the same schedule's arena holding it
    greedy_arena: int | None = None  # during the search: the arena of greedy-by-size placement

    @staticmethod
    def layer_by_layer(g: Graph, plan: MemoryPlan | None = None) -> "PatchSchedule":
        macs = graph_macs(g)
        return PatchSchedule(g, [], macs, macs, {id(n): i for i, n in enumerate(g.nodes)}, plan,
                             greedy_arena=plan.arena_bytes if plan else None)

    @property
    def label(self) -> str:
        """`SPLIT:ROWSxCOLS` per stage, joined by `+` (the --patch syntax for one stage)."""
        return "+".join(st.label for st in self.stages)

    @property
    def streamed(self) -> list[str]:
        return sorted({t for st in self.stages for t in st.streamed})

    @property
    def extra_macs(self) -> int:
        return self.macs - self.base_macs

    @property
    def overhead(self) -> float:
        return self.extra_macs / self.base_macs if self.base_macs else 0.0

    def describe(self) -> dict:
        arena = self.plan.arena_bytes if self.plan else None
        return {
            "schedule": self.label,
            "stages": [st.describe(self.graph) for st in self.stages],
            "macs": self.macs,
            "base_macs": self.base_macs,
            "extra_macs": self.extra_macs,
            "mac_overhead": self.overhead,
            "arena_bytes": arena,
            "input": "streamed" if self.streamed else "arena",
            "streamed_input_bytes": sum(self.graph[t].nbytes for t in self.streamed),
            "arena_bytes_input_in_arena": self.arena_with_input if self.streamed else arena,
        }


def graph_macs(g: Graph) -> int:
    return sum(get_op(n.op).macs(g, n) for n in g.nodes)


class _Builder:
    """Appends one patch's nodes and tensors to a new graph."""

    def __init__(self, g: Graph, out: Graph, stage: Stage, streamed: set[str], stage_id: int,
                 origin: dict[int, int], axis: int = 1):
        self.g, self.out, self.stage, self.streamed, self.stage_id = g, out, stage, streamed, stage_id
        self.origin = origin
        self.axis = axis  # along which halos are carried over (1 columns, 0 rows)

    def tensor(self, like: str, r: Region, tag: str) -> str:
        t = self.g[like]
        shape = (t.shape[0], r.h, r.w, t.shape[3])
        return self.out.add_tensor(Tensor(f"{like}@{tag}", shape, t.dtype, t.quant, None, t.bits)).name

    def node(self, op: str, inputs: list[str | None], output: str, attrs: dict, name: str) -> None:
        self.out.nodes.append(Node(op, inputs, [output], attrs, name))

    def patch(self, pr: PatchRegions, acc: str | None, acc_name: str, halos: dict[str, str],
              nxt: PatchRegions | None) -> tuple[str, dict[str, str]]:
        """Emit the nodes of one patch; returns the updated split accumulator and the next patch's halos.

        `halos` holds, per stage tensor, the columns this patch shares with
        the previous one in its row (rows, with the band above, when
        self.axis is 0), cropped there: only the part after them is
        computed, and a reader gets its window cut (and, if it straddles,
        joined) from those pieces, so no tensor is assembled whole. When
        `nxt` is given, its halos are cut here.
        """
        along = self.axis

        def extent(r: Region) -> tuple[int, int]:
            return (r.c0, r.c1) if along == 1 else (r.r0, r.r1)

        def with_extent(r: Region, lo: int, hi: int) -> Region:
            return Region(r.r0, r.r1, lo, hi) if along == 1 else Region(lo, hi, r.c0, r.c1)

        g, (pi, pj) = self.g, pr.cell
        tag = f"s{self.stage_id}p{pi}.{pj}"
        mark = {"patch": (pi, pj), "stage": self.stage_id}
        pieces: dict[str, list[tuple[Region, str]]] = {t: [(Region.full(g[t].shape), t)] for t in self.stage.sources}
        cut: dict[tuple[str, Region], str] = {}

        def window_of(t: str, r: Region) -> str:
            """A patch tensor holding exactly region r of t, from the pieces of t this patch has."""
            if (t, r) in cut:
                return cut[(t, r)]
            parts = []
            for have, name in pieces[t]:
                both = Region(max(r.r0, have.r0), min(r.r1, have.r1), max(r.c0, have.c0), min(r.c1, have.c1))
                if both.h > 0 and both.w > 0:
                    if both == have and name not in self.streamed:
                        parts.append(name)
                    else:
                        part = self.tensor(t, both, f"{tag}:{both.r0},{both.c0}+{both.h}x{both.w}")
                        self.node("READ_WINDOW", [name], part,
                                  {"begin": (0, both.r0 - have.r0, both.c0 - have.c0, 0), **mark}, f"{t}@{tag}:read")
                        parts.append(part)
            if len(parts) == 1:
                name = parts[0]
            else:
                name = self.tensor(t, r, f"{tag}:{r.r0},{r.c0}+{r.h}x{r.w}")
                self.node("CONCATENATION", parts, name,
                          {"axis": 1 + along, "fused_activation_function": "NONE", **mark}, f"{t}@{tag}:join")
            cut[(t, r)] = name
            return name

        def compute(i: int, r: Region) -> str:
            """Node i on output region r, reading exactly what r needs."""
            n = g.nodes[i]
            attrs = dict(n.attrs, **mark, layer=self.origin.get(id(n), i))  # `layer`: the original layer
            if i in self.stage.windows:
                x = g[n.inputs[0]]
                need, attrs["explicit_padding"] = window_need(self.stage.windows[i], r, (x.shape[1], x.shape[2]))
                reads = {0: need}
            else:
                reads = {k: r for k, t in enumerate(n.inputs) if t is not None and not g[t].is_const}
            inputs = [window_of(t, reads[k]) if k in reads else t for k, t in enumerate(n.inputs)]
            name = self.tensor(n.outputs[0], r, tag)
            self.node(n.op, inputs, name, attrs, f"{n.name}@{tag}")
            return name

        handed: dict[str, str] = {}
        for i in self.stage.nodes:
            o = g.nodes[i].outputs[0]
            if o not in pr.provide:  # with reuse, near the far border: every reader took its halo
                if nxt is not None and o in nxt.provide:
                    raise NotPatchable("reuse: a patch needs a halo the previous one did not compute")
                continue
            full, fresh = pr.provide[o], pr.computed[o]
            have = []
            lo, hi = extent(full)
            if o in halos:
                have.append((with_extent(full, lo, lo + self.out[halos[o]].shape[1 + along]), halos[o]))
            if fresh.w > 0 and fresh.h > 0:
                have.append((fresh, compute(i, fresh)))
            assert sum(extent(r)[1] - extent(r)[0] for r, _ in have) >= hi - lo, \
                "a halo and the fresh part must cover the patch"
            pieces[o] = have
            ahead = nxt.provide.get(o) if nxt is not None and o != self.stage.split else None
            if ahead is not None and lo <= extent(ahead)[0] < hi:
                handed[o] = window_of(o, with_extent(full, extent(ahead)[0], min(hi, extent(ahead)[1])))
        r = pr.provide[self.stage.split]
        s = self.g[self.stage.split]
        self.out.tensors.setdefault(acc_name, Tensor(acc_name, s.shape, s.dtype, s.quant, None, s.bits))
        self.node("WRITE_WINDOW", [acc, window_of(self.stage.split, r)], acc_name,
                  {"begin": (0, r.r0, r.c0, 0), **mark}, f"{self.stage.split}@{tag}:write")
        return acc_name, handed


def streamable(g: Graph, stage: Stage) -> list[str]:
    """The stage's sources that can be streamed: batch-1 graph inputs nothing else reads."""
    consumers = g.consumers()
    members = {id(g.nodes[i]) for i in stage.nodes}
    return [t for t in stage.sources
            if t in g.inputs and t not in g.outputs and g[t].shape[0] == 1
            and all(id(c) in members for c in consumers.get(t, []))]


def _rewrite(g: Graph, spec: PatchSpec, stage: Stage, stream: bool, stage_id: int,
             origin: dict[int, int]) -> tuple[Graph, set[str]]:
    """`g` with `stage` unrolled per cell of the grid (nodes marked `stage`: stage_id); the streamed inputs."""
    s = g[spec.split]
    if not (1 <= spec.rows <= s.shape[1] and 1 <= spec.cols <= s.shape[2]):
        raise NotPatchable(f"a {spec.rows}x{spec.cols} grid does not fit the split tensor's "
                           f"{s.shape[1]}x{s.shape[2]} plane")
    regions = grid_regions(g, stage, spec.rows, spec.cols, spec.reuse, spec.vertical)
    members = set(stage.nodes)
    last = stage.nodes[-1]
    out = Graph(dict(g.tensors), [], list(g.inputs), list(g.outputs), g.name)
    out.nodes = [n for i, n in enumerate(g.nodes[:last]) if i not in members]
    # Stage intermediates are replaced by patch tensors; the split keeps its name.
    for i in stage.nodes:
        for o in g.nodes[i].outputs:
            del out.tensors[o]
    streamed = set(streamable(g, stage)) if stream else set()
    for t in streamed:
        out.tensors[t] = replace(g[t], streamed=True)
    along = reuse_axis(spec.cols, spec.vertical)
    builder = _Builder(g, out, stage, streamed, stage_id, origin, along)
    acc, halos = None, {}
    for k, pr in enumerate(regions):
        # the next patch takes this one's halos when it follows along the reuse axis
        chained = k + 1 < len(regions) and regions[k + 1].cell[1 - along] == pr.cell[1 - along]
        nxt = regions[k + 1] if spec.reuse and chained else None
        name = spec.split if k == len(regions) - 1 else f"{spec.split}@s{stage_id}acc{k}"
        acc, halos = builder.patch(pr, acc, name, halos, nxt)
    out.nodes.extend(g.nodes[last + 1:])
    out.remove_unused_tensors()
    return out, streamed


def stage_spans(g: Graph, count: int) -> list[tuple[int, int]]:
    """First and last node index of each patch stage (node attr `stage`) in `g`."""
    spans = [(len(g.nodes), -1)] * count
    for i, n in enumerate(g.nodes):
        k = n.attrs.get("stage")
        if "patch" in n.attrs and k is not None and k < count:
            spans[k] = (min(spans[k][0], i), max(spans[k][1], i))
    return spans


def add_stage(ps: PatchSchedule, spec: PatchSpec, stage: Stage | None = None, stream: bool = False) -> PatchSchedule:
    """`ps` with one more patch stage: the one ending at `spec.split` in ps.graph, cut by spec's grid.

    With `stream`, graph inputs only that stage reads are marked streamed:
    they get no arena buffer and every patch reads its window through the
    application's callback.
    """
    g = ps.graph
    stage = stage or find_stage(g, spec.split)
    out, streamed = _rewrite(g, spec, stage, stream, len(ps.stages), ps.origin)
    report = StageReport(spec, ps.origin[id(g.nodes[stage.nodes[-1]])],
                         [ps.origin[id(g.nodes[i])] for i in stage.nodes], (0, 0), sorted(streamed))
    stages = [replace(st) for st in ps.stages] + [report]
    for st, span in zip(stages, stage_spans(out, len(stages))):
        st.span = span
    return PatchSchedule(out, stages, ps.base_macs, graph_macs(out), ps.origin)


def apply_patches(g: Graph, spec: PatchSpec, stage: Stage | None = None, stream: bool = False) -> PatchSchedule:
    """Rewrite `g` so the stage ending at `spec.split` runs per cell of the grid (see add_stage)."""
    return add_stage(PatchSchedule.layer_by_layer(g), spec, stage, stream)


# -- a cost model for the search -----------------------------------------------------
# Recomputed overlap is not spread evenly: it falls on the first layers, whose
# kernels spend the most instructions per MAC (few input channels, depthwise
# planes). Bounding MACs alone let instructions grow well past the bound, so
# the search also bounds an instruction estimate: per layer, a cost per input
# and per output element, fitted to the generated kernels' QEMU counts on the
# zoo MobileNets (Cortex-M7 with DSP; within ~25% per layer, which is enough
# to rank where the overlap lands).
CALL_COST = 60  # instructions per kernel call (arguments, loop set-up)
COPY_COST = 0.5  # per byte moved by a window read, write or join


def node_cost(g: Graph, n: Node) -> tuple[float, float]:
    """Estimated instructions per input pixel and per output pixel of node n."""
    x = g[n.inputs[0]] if n.inputs and n.inputs[0] is not None else None
    y = g[n.outputs[0]]
    c_out = y.shape[-1] if y.shape else 1
    if n.op == "CONV_2D":
        _, k_h, k_w, cin_g = g[n.inputs[1]].shape
        per_out = 12 + 0.7 * k_h * k_w * cin_g
        return 0.0, c_out * per_out * (1.6 if cin_g < 4 else 1.0)
    if n.op == "DEPTHWISE_CONV_2D":
        _, k_h, k_w, _ = g[n.inputs[1]].shape
        return 7.7 * x.shape[-1], c_out * (2 + 2.1 * k_h * k_w)  # plane copy per input, taps per output
    if n.op == "FULLY_CONNECTED":
        return 0.0, c_out * (12 + 0.7 * g[n.inputs[1]].shape[-1])
    if n.op in ("AVERAGE_POOL_2D", "MAX_POOL_2D"):
        return 0.0, c_out * (5 + 2 * int(n.attrs.get("filter_height", 1)) * int(n.attrs.get("filter_width", 1)))
    if n.op in ("READ_WINDOW", "WRITE_WINDOW", "CONCATENATION"):
        return 0.0, COPY_COST * y.nbytes / max(1, y.size // c_out)
    return 0.0, 4.0 * c_out  # element-wise and lookup-table ops


def graph_cost(g: Graph) -> float:
    """Estimated instructions of one inference (see node_cost)."""
    total = 0.0
    for n in g.nodes:
        a_in, a_out = node_cost(g, n)
        x = g[n.inputs[0]] if n.inputs and n.inputs[0] is not None else None
        y = g[n.outputs[0]]
        px_in = x.shape[1] * x.shape[2] if x is not None and len(x.shape) == 4 else 0
        px_out = y.shape[1] * y.shape[2] if len(y.shape) == 4 else max(1, y.size // (y.shape[-1] if y.shape else 1))
        total += CALL_COST + a_in * px_in + a_out * px_out
    return total


# -- the search -----------------------------------------------------------------
MAX_STAGES = 3  # patch stages one schedule may chain (each found on the previous one's graph)
# Without a budget a stage must lower the arena by at least this fraction: a sliver of SRAM is not
# worth the extra kernels in flash and the copies.
MIN_GAIN = 0.05
# Candidates come in order of lower bound, and many share one (what runs layer by layer after the
# stage bounds them all): stop after this many placements without a better arena.
PATIENCE = 16
FULL_PLAN_SLACK = 1.15  # budget mode: how far above the budget greedy may be for a full plan to be tried


def _aligned(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN


@dataclass
class _Candidate:
    """A (split, grid) pair with its exact MACs and (lazily) a cheap lower bound on its arena."""

    stage: Stage
    split_layer: int  # in the searched graph
    rows: int
    cols: int
    reuse: bool
    vertical: bool
    macs: int
    cost: float  # estimated instructions (graph_cost of the rewrite, computed from the bands)
    lower: int = -1  # set by _Searcher.lower

    @property
    def spec(self) -> PatchSpec:
        return PatchSpec(self.stage.split, self.rows, self.cols, self.reuse, self.vertical)


@dataclass
class SearchResult:
    original: Graph
    baseline: MemoryPlan  # layer by layer
    chosen: PatchSchedule | None  # None: layer by layer is best (or nothing applies)
    candidates: int  # (split, grid) pairs considered, over all rounds
    planned: int  # how many of them the real planner placed
    mode: str = "auto"
    error: str | None = None  # why the search gave up (a bug): the model then runs layer by layer

    @property
    def graph(self) -> Graph:
        """The graph to compile: the patch schedule's, or the original."""
        return self.chosen.graph if self.chosen is not None else self.original

    @property
    def plan(self) -> MemoryPlan:
        return self.chosen.plan if self.chosen is not None else self.baseline

    def describe(self) -> dict:
        """The `patches` object of the verbs' JSON."""
        base = self.baseline.arena_bytes
        d = {"mode": self.mode, "chosen": self.chosen is not None, "arena_bytes_layer_by_layer": base,
             "arena_bytes": self.plan.arena_bytes, "input": "arena", "candidates": self.candidates,
             "planned": self.planned, "error": self.error}
        if self.chosen is not None:
            d.update(self.chosen.describe())
        d["reduction"] = base / self.plan.arena_bytes if self.plan.arena_bytes else None
        return d


@dataclass
class _StageInfo:
    """Per-stage constants of the lower bound."""

    rest: int  # most bytes live at a step outside the stage (what any grid leaves there)
    split_bytes: int
    source_bytes: int
    per_px: dict[str, int]  # bytes per pixel of each stage node's output
    # (index, [(input key, bytes/px, input tensor unless a source)], output, input positions it may overwrite)
    nodes: list[tuple[int, list[tuple[tuple[int, int], int, str | None]], str, set[int]]]


class _Searcher:
    """One round: exact MACs and lower bounds for every (split, grid) on `prior`'s graph."""

    def __init__(self, prior: PatchSchedule, stream: bool = False):
        self.prior, self.g, self.stream = prior, prior.graph, stream
        self.base_macs = prior.macs
        self.base_cost = graph_cost(self.g)
        self.layer_macs = [get_op(n.op).macs(self.g, n) for n in self.g.nodes]
        self.layer_cost = [node_cost(self.g, n) for n in self.g.nodes]
        self._axis: dict[tuple[str, int, Span], AxisPlan] = {}
        self._info: dict[str, _StageInfo] = {}
        self._extents: dict[tuple[str, int, int], dict] = {}

    def stages(self, target: int | None) -> list[tuple[int, Stage]]:
        """Every split whose stage holds a window op and could bring the arena below `target`.

        Steps outside a stage keep their layer-by-layer live bytes, so a
        stage that leaves a step at `target` or above cannot help.
        """
        live = [0] * (len(self.g.nodes) + 1)
        if target is not None:
            live = live_profile(build_buffers(self.g), len(self.g.nodes) + 1)
        out = []
        for k, n in enumerate(self.g.nodes):
            if len(n.outputs) != 1 or not patchable(self.g, n):
                continue
            try:
                stage = find_stage(self.g, n.outputs[0])
            except NotPatchable:
                continue
            if stage.windows and not any(v >= target for t, v in enumerate(live)
                                         if target is not None and not stage.nodes[0] <= t <= k):
                out.append((k, stage))
        return out

    def axis(self, stage: Stage, axis: int, band: Span) -> AxisPlan:
        key = (stage.split, axis, band)
        if key not in self._axis:
            self._axis[key] = axis_plan(self.g, stage, axis, band)
        return self._axis[key]

    def grid_extents(self, stage: Stage, rows: int, cols: int, reuse: bool, vertical: bool) -> tuple[dict, dict]:
        """extents() of the row bands and of the column bands of a grid."""
        ax = reuse_axis(cols, vertical) if reuse else None
        return self.extents(stage, 0, rows, ax == 0), self.extents(stage, 1, cols, ax == 1)

    def candidate(self, k: int, stage: Stage, rows: int, cols: int, reuse: bool, vertical: bool = False) -> _Candidate:
        g = self.g
        hs, ws = self.grid_extents(stage, rows, cols, reuse, vertical)
        macs, cost = self.base_macs, self.base_cost
        for i in stage.nodes:
            n = g.nodes[i]
            o, x = n.outputs[0], n.inputs[0]
            plane = g[o].shape[1] * g[o].shape[2]
            area = int(hs[o].sum()) * int(ws[o].sum())
            if self.layer_macs[i]:
                macs += self.layer_macs[i] * (area - plane) // plane
            a_in, a_out = self.layer_cost[i]
            read = int(hs[(i, 0)].sum()) * int(ws[(i, 0)].sum()) if (i, 0) in hs else 0
            cost += a_out * (area - plane) + a_in * (read - g[x].shape[1] * g[x].shape[2])
            # every patch copies what it reads and calls each kernel; roughly two copies per node with reuse
            cost += rows * cols * CALL_COST * (3 if reuse else 2) + COPY_COST * read * g[x].nbytes // g[x].size
        return _Candidate(stage, k, rows, cols, reuse, vertical, macs, cost)

    def extents(self, stage: Stage, axis: int, parts: int, reuse: bool) -> dict:
        """Per band: each stage node's computed output extent (by tensor name) and input extent read (by key)."""
        key = (stage.split, axis, parts, reuse)
        if key not in self._extents:
            if reuse:
                plans = axis_plans(self.g, stage, axis, parts, True)
            else:
                plans = [self.axis(stage, axis, b) for b in bands(self.g[stage.split].shape[1 + axis], parts)]

            def width(spans: dict, k: object) -> int:
                return spans[k][1] - spans[k][0] if k in spans else 0

            ext: dict = {}
            for name in plans[0].computed:
                ext[name] = np.array([width(p.computed, name) for p in plans], np.int64)
                if reuse:
                    # halo taken from the previous patch, and handed to the next one
                    def span(p: AxisPlan) -> Span:  # absent: nothing of it needed in that band
                        return p.provide.get(name, p.computed[name])

                    ext[("in", name)] = np.array([p.computed[name][0] - span(p)[0] for p in plans], np.int64)
                    ext[("out", name)] = np.array(
                        [max(0, min(span(a)[1], span(b)[1]) - span(b)[0])
                         if name != stage.split else 0 for a, b in zip(plans, plans[1:])] + [0], np.int64)
            for need in plans[0].need:
                ext[need] = np.array([width(p.need, need) for p in plans], np.int64)
            self._extents[key] = ext
        return self._extents[key]

    def lower(self, c: _Candidate) -> int:
        """No placement of the rewritten graph can use fewer bytes than this.

        Outside the stage the buffers are those of any grid (the 1x1 one's).
        Inside, a node's patch inputs and output are live together (or share
        one buffer if the op may run in place), with the split accumulator
        after the first patch and the full-size sources before the last one.
        Scratch areas are left out: the bound only has to be low enough.
        """
        if c.lower >= 0:
            return c.lower
        info = self._stage_info(c.stage)
        hs, ws = self.grid_extents(c.stage, c.rows, c.cols, c.reuse, c.vertical)
        # extra[p]: bytes live during every node of patch p besides the node's own tensors
        extra = np.full((c.rows, c.cols), info.split_bytes + info.source_bytes, np.int64)
        extra[0, 0] -= info.split_bytes
        # Sources are surely live only before the last patch that reads them (with reuse, later
        # patches may take everything near them from their halos and read no source at all).
        reading = np.zeros((c.rows, c.cols), bool)
        for _, reads, _, _ in info.nodes:
            for key, _, src in reads:
                if src is None:
                    reading |= np.outer(hs[key], ws[key]) > 0
        order = [(i, j) for i in range(c.rows) for j in range(c.cols)]
        if c.reuse and reuse_axis(c.cols, c.vertical) == 0:
            order.sort(key=lambda cell: (cell[1], cell[0]))
        last = max((k for k, cell in enumerate(order) if reading[cell]), default=0)
        for cell in order[last:]:
            extra[cell] -= info.source_bytes

        def aligned(key: tuple[int, int] | str, per_px: int, base: object = None) -> np.ndarray:
            """Bytes per patch of `key`; a halo key exists along the reuse axis only: `base` gives the other."""
            h, w = hs[key] if key in hs else hs[base], ws[key] if key in ws else ws[base]
            return (np.outer(h, w) * per_px + ALIGN - 1) // ALIGN * ALIGN

        # With column reuse, halos stay live across nodes: those handed on from tensors made
        # before a node, and those received for tensors made at or after it.
        outputs = [o for _, _, o, _ in info.nodes]
        halo_after = [np.zeros((c.rows, c.cols), np.int64)]
        halo_before = [np.zeros((c.rows, c.cols), np.int64)]
        if c.reuse:
            for o in outputs:
                halo_before.append(halo_before[-1] + aligned(("out", o), info.per_px[o], o))
            for o in reversed(outputs):
                halo_after.append(halo_after[-1] + aligned(("in", o), info.per_px[o], o))
        halo_after.reverse()

        worst = 0
        for pos, (i, reads, o, inplace) in enumerate(info.nodes):
            around = extra + (halo_before[pos] + halo_after[pos] if c.reuse else 0)
            out = aligned(o, info.per_px[o])
            live = around + out
            shared = 0
            for key, per_px, src in reads:
                b = aligned(key, per_px)
                live += b
                if key[1] in inplace:
                    shared = np.maximum(shared, np.minimum(b, out))
                if src is not None:
                    # A read of another size than what was computed is a copy: all live at once, with
                    # the received halo when the read is wider than the computed part.
                    have = aligned(src, per_px)
                    halo = np.where(b > have, aligned(("in", src), per_px, src), 0) if c.reuse else 0
                    worst = max(worst, int(np.where(have != b, around + have + halo + b, 0).max()))
            worst = max(worst, int((live - shared).max()))
        c.lower = max(info.rest, worst)
        return c.lower

    def _stage_info(self, stage: Stage) -> _StageInfo:
        if stage.split not in self._info:
            g = self.g

            def per_px(t: str) -> int:
                x = g[t]
                return x.nbytes // (x.shape[1] * x.shape[2])

            nodes = []
            for i in stage.nodes:
                n = g.nodes[i]
                reads = [((i, kk), per_px(t), None if t in stage.sources else t)
                         for kk, t in enumerate(n.inputs) if t is not None and not g[t].is_const]
                nodes.append((i, reads, n.outputs[0], set(get_op(n.op).inplace_inputs(g, n))))
            k = len(self.prior.stages)
            whole, streamed = _rewrite(g, PatchSpec(stage.split, 1, 1), stage, self.stream, k, self.prior.origin)
            first, last = stage_spans(whole, k + 1)[k]
            live = live_profile(build_buffers(whole), len(whole.nodes) + 1)
            self._info[stage.split] = _StageInfo(
                rest=max((v for t, v in enumerate(live) if not first <= t <= last), default=0),
                split_bytes=_aligned(g[stage.split].nbytes),
                source_bytes=sum(_aligned(g[t].nbytes) for t in stage.sources if t not in streamed),
                per_px={o: per_px(o) for _, _, o, _ in nodes},
                nodes=nodes,
            )
        return self._info[stage.split]

    def enumerate(self, bound: tuple[float, float] | None, target: int | None = None) -> list[_Candidate]:
        """Every (split, grid) within `bound` = (most MACs, most estimated instructions; None: no limit)
        whose stage could bring the arena below `target` (None: any)."""
        out = []
        for k, stage in self.stages(target):
            s = self.g[stage.split]
            grids = [(r, c, reuse, False) for r, c, reuse in itertools.product(range(1, MAX_GRID + 1),
                                                                               range(1, MAX_GRID + 1), (False, True))]
            # rows carried down the image: full-width bands, or a few columns of patches
            grids += [(r, c, True, c > 1) for r in range(2, MAX_BANDS + 1) for c in range(1, MAX_COLUMNS_DOWN + 1)
                      if r > MAX_GRID or c > 1]
            for rows, cols, reuse, vertical in grids:
                if rows * cols < 2 or rows > s.shape[1] or cols > s.shape[2]:
                    continue
                try:
                    c = self.candidate(k, stage, rows, cols, reuse, vertical)
                except NotPatchable:
                    continue
                if bound is None or (c.macs <= bound[0] and c.cost <= bound[1]):
                    out.append(c)
        return out

    def quick(self, c: _Candidate, beat: int | None) -> PatchSchedule | None:
        """The rewrite with its arena under greedy-by-size placement (`greedy_arena`).

        Fast, and never below what the full planner reaches, which tries it
        first. None when the planner's own lower bound shows it cannot beat `beat`.
        """
        ps = add_stage(self.prior, c.spec, c.stage, self.stream)
        buffers = build_buffers(ps.graph)
        if beat is not None and lower_bound(buffers, len(ps.graph.nodes) + 1) >= beat:
            return None
        ps.greedy_arena = place_greedy_by_size(buffers)
        return ps


def search(g: Graph, max_overhead: float | None = 0.20, sram_budget: int | None = None,
           baseline: MemoryPlan | None = None, stream: bool = False) -> SearchResult:
    """Pick a patch schedule for `g` (see choose_schedule); also report what was searched.

    Stages are added greedily, each searched on the previous schedule's
    graph (whose stages then are plain nodes to it): a second stage helps
    when what is left layer by layer after the first one is the peak.
    """
    baseline = baseline or plan_memory(g)
    limit = None if max_overhead is None else (graph_macs(g) * (1 + max_overhead), graph_cost(g) * (1 + max_overhead))
    result = SearchResult(g, baseline, None, 0, 0)
    current = PatchSchedule.layer_by_layer(g, baseline)
    if sram_budget is not None and baseline.arena_bytes <= sram_budget:
        return result
    for _ in range(MAX_STAGES):
        s = _Searcher(current, stream and not current.stages)
        bar = current.greedy_arena if sram_budget is not None else int(current.greedy_arena * (1 - MIN_GAIN))
        cands = s.enumerate(limit, bar)
        result.candidates += len(cands)
        if sram_budget is not None:
            for c in sorted(cands, key=lambda c: c.macs):  # cheapest first
                if s.lower(c) > sram_budget:
                    continue
                ps = s.quick(c, sram_budget + 1)
                result.planned += 1
                # The full planner only lowers greedy's arena: plan fully when that could make it fit.
                if ps is not None and ps.greedy_arena <= sram_budget * FULL_PLAN_SLACK:
                    ps.plan = plan_memory(ps.graph)
                    if ps.plan.arena_bytes <= sram_budget:
                        result.chosen = ps
                        return result
        best = _lowest(s, cands, bar, result)
        if best is None:
            break
        current = best
    if current.stages:
        current.plan = plan_memory(current.graph)  # never above greedy's arena, so still below layer by layer
    if sram_budget is not None:
        reach = current.plan.arena_bytes
        how = (f"with {current.label} patches, {100 * current.overhead:.1f}% more MACs" if current.stages
               else "layer by layer; no patch schedule lowers it")
        bound = "" if max_overhead is None else f" within the {100 * max_overhead:g}% overhead bound"
        raise BudgetExceeded(sram_budget, reach, f"the smallest peak reachable{bound} is {reach:,} bytes ({how})")
    result.chosen = current if current.stages else None
    return result


def _lowest(s: _Searcher, cands: list[_Candidate], base: int, result: SearchResult) -> PatchSchedule | None:
    """The candidate with the smallest greedy-placement arena (then fewest MACs), if strictly below `base`.

    Candidates come by lower bound (then MACs); the search stops where the
    bound reaches the best arena found, or after PATIENCE placements that
    did not improve it.
    """
    best: PatchSchedule | None = None
    bar = base  # what a candidate must beat
    idle = 0  # candidates placed since the last improvement
    for c in sorted(cands, key=lambda c: (s.lower(c), c.macs)):
        tie_ok = best is not None and c.macs < best.macs
        if c.lower > bar or (c.lower == bar and not tie_ok) or idle >= PATIENCE:
            break
        ps = s.quick(c, bar + 1 if tie_ok else bar)
        result.planned += 1
        idle += 1
        if ps is not None and (ps.greedy_arena < bar or (ps.greedy_arena == bar and tie_ok)):
            best, bar, idle = ps, ps.greedy_arena, 0
    return best


def choose_schedule(g: Graph, max_overhead: float | None = 0.20, sram_budget: int | None = None,
                    stream: bool = False) -> PatchSchedule | None:
    """The patch schedule to use, or None for layer by layer.

    Without a budget: the lowest arena among schedules whose extra MACs, and
    extra instructions by the cost model (node_cost), stay within
    `max_overhead` (a fraction of the model's), fewest MACs on a tie; a
    stage must save at least MIN_GAIN of the arena. With `sram_budget`: the fewest MACs among schedules whose arena fits
    (None when layer by layer fits), else DoesNotFit naming the smallest
    arena reachable. `max_overhead=None` lifts the bound. A schedule is only
    returned when its arena is strictly below layer by layer's (input held
    in the arena). With `stream`, graph inputs only the stage reads are
    streamed (not counted in the arena; see add_stage).
    """
    return search(g, max_overhead, sram_budget, stream=stream).chosen


# -- what the CLI asks for ------------------------------------------------------
DEFAULT_MAX_OVERHEAD = 0.20


@dataclass(frozen=True)
class PatchOptions:
    """`--patch auto|off|SPLIT:ROWSxCOLS[r|v][+...]`, `--max-overhead`, `--sram-budget`, `--input`.

    A trailing `r` reuses the columns a patch shares with the previous one
    in its row instead of recomputing them; on a one-column grid (full-width
    bands, `7:12x1r`) it reuses the rows the band above computed, so nothing
    is recomputed and each input row is read about once (a line buffer).
    A trailing `v` runs the grid column by column, each patch reusing the
    rows of the one above (`7:12x2v`: only the columns' overlap is recomputed).

    `max_overhead` None means the default: 20% in auto mode, no bound with a
    budget (the budget is the constraint there and the cheapest fit wins).
    """

    mode: str = "auto"  # "auto", "off" or "fixed"
    stages: tuple[PatchSpec, ...] = ()  # fixed: split is a layer number or tensor name of the original graph
    max_overhead: float | None = None
    sram_budget: int | None = None
    stream: bool = False  # --input streamed

    @staticmethod
    def parse(text: str, max_overhead: float | None = None, sram_budget: int | None = None,
              stream: bool = False) -> "PatchOptions":
        """Read the --patch value; raises ValueError with a one-line reason."""
        t = text.strip()
        if t in ("auto", "off"):
            return PatchOptions(t, (), max_overhead, sram_budget, stream)
        stages = []
        for part in t.split("+"):
            split, sep, grid = part.strip().rpartition(":")
            rows, x, cols = grid.lower().partition("x")
            suffix = cols[-1:] if cols[-1:] in ("r", "v") else ""
            cols = cols[:len(cols) - len(suffix)]
            if not sep or not split or not x or not rows.isdigit() or not cols.isdigit() or min(int(rows), int(cols)) < 1:
                raise ValueError(f"expected auto, off or SPLIT:ROWSxCOLS[r|v] (e.g. 9:4x4, 7:3x8r, 7:12x2v, or "
                                 f"7:2x4+10:3x3 for two stages), got {text!r}")
            stages.append(PatchSpec(split, int(rows), int(cols), bool(suffix), suffix == "v"))
        return PatchOptions("fixed", tuple(stages), max_overhead, sram_budget, stream)


def resolve_split(ps: PatchSchedule, split: str) -> str:
    """A layer index of the original graph (the row number `analyze --patch off` prints) or a tensor name."""
    g = ps.graph
    if split.isdigit():
        k = int(split)
        for n in g.nodes:
            if ps.origin.get(id(n)) == k and "patch" not in n.attrs and len(n.outputs) == 1:
                return n.outputs[0]
        raise NotPatchable(f"--patch: layer {k} does not exist, has several outputs or is already in a patch stage")
    if split not in g.tensors:
        raise NotPatchable(f"--patch: no layer or tensor named {split!r}")
    return split


def replay(g: Graph, stages: list[PatchSpec], stream: bool) -> PatchSchedule:
    """Apply fixed stages in order (each split resolved on the graph the previous ones left)."""
    ps = PatchSchedule.layer_by_layer(g)
    for k, spec in enumerate(stages):
        ps = add_stage(ps, replace(spec, split=resolve_split(ps, spec.split)), stream=stream and k == 0)
    ps.plan = plan_memory(ps.graph)
    return ps


def schedule_patches(g: Graph, options: PatchOptions, baseline: MemoryPlan | None = None) -> SearchResult:
    """Apply the options: search (auto), the given stages (fixed), or nothing (off).

    A budget is checked in every mode; only auto mode searches to meet it.
    """
    baseline = baseline or plan_memory(g)
    if options.mode == "auto":
        bound = options.max_overhead
        if bound is None and options.sram_budget is None:
            bound = DEFAULT_MAX_OVERHEAD
        # Streaming changes which stages pay off, and the rounds are greedy: holding the input
        # whole may still end lower, so a streamed search is compared with the plain one.
        results, errors = [], []
        for stream in ((True, False) if options.stream else (False,)):
            try:
                results.append(search(g, bound, options.sram_budget, baseline, stream))
            except BudgetExceeded as e:
                errors.append(e)
            except TinymlError:
                raise
            except Exception as e:  # noqa: BLE001 - a search bug must not cost the user the model
                failed = SearchResult(g, baseline, None, 0, 0)
                failed.error = " ".join(f"{type(e).__name__}: {e}".split())[:200]
                results.append(failed)  # layer by layer, and the reports say why
        if not results:
            raise min(errors, key=lambda e: e.needed)

        def cost(r: SearchResult) -> tuple[int, int]:
            macs = r.chosen.macs if r.chosen else graph_macs(g)
            return (macs, r.plan.arena_bytes) if options.sram_budget is not None else (r.plan.arena_bytes, macs)

        result = min(results, key=cost)
        result.candidates = sum(r.candidates for r in results)
        result.planned = sum(r.planned for r in results)
        result.mode = "auto"
    else:
        result = SearchResult(g, baseline, None, 0, 0, options.mode)
    if options.mode == "fixed":
        result.chosen = replay(g, list(options.stages), options.stream)
        result.candidates = result.planned = 1
    ps = result.chosen
    if ps is not None and ps.streamed:
        held = replay(g, [st.spec for st in ps.stages], stream=False)
        ps.arena_with_input = held.plan.arena_bytes
    if options.sram_budget is not None and result.plan.arena_bytes > options.sram_budget:
        raise BudgetExceeded(options.sram_budget, result.plan.arena_bytes,
                             f"the {'patch schedule' if result.chosen else 'layer-by-layer'} arena is "
                             f"{result.plan.arena_bytes:,} bytes (--patch auto searches for a schedule that fits)")
    return result
