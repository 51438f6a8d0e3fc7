"""The graph rewrite: a stage cloned per patch onto patch-sized tensors, with window copies.

Each window op carries `explicit_padding` only where its region touches the
image border; READ_WINDOW / WRITE_WINDOW / CONCATENATION nodes cut, place and
join windows (tinyml/ops/window.py). The result is an ordinary graph.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from tinyml.ir import Graph, Node, Tensor
from tinyml.ops import get_op
from tinyml.schedule.memory import MemoryPlan
from tinyml.schedule.patches.grid import PatchRegions, grid_regions, reuse_axis
from tinyml.schedule.patches.regions import Region, window_need
from tinyml.schedule.patches.stage import NotPatchable, Stage, find_stage, streamable


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


def unroll(g: Graph, spec: PatchSpec, stage: Stage, stream: bool, stage_id: int,
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
    out, streamed = unroll(g, spec, stage, stream, len(ps.stages), ps.origin)
    report = StageReport(spec, ps.origin[id(g.nodes[stage.nodes[-1]])],
                         [ps.origin[id(g.nodes[i])] for i in stage.nodes], (0, 0), sorted(streamed))
    stages = [replace(st) for st in ps.stages] + [report]
    for st, span in zip(stages, stage_spans(out, len(stages))):
        st.span = span
    return PatchSchedule(out, stages, ps.base_macs, graph_macs(out), ps.origin)


def apply_patches(g: Graph, spec: PatchSpec, stage: Stage | None = None, stream: bool = False) -> PatchSchedule:
    """Rewrite `g` so the stage ending at `spec.split` runs per cell of the grid (see add_stage)."""
    return add_stage(PatchSchedule.layer_by_layer(g), spec, stage, stream)
