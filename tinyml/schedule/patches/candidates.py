"""One round of the patch search: every (split, grid) with its exact MACs, estimated
instructions and a cheap lower bound on its arena, and a quick greedy placement."""
from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from tinyml.ops import get_op
from tinyml.ops.strided_copy import COPY_COST
from tinyml.schedule.inplace import ALIGN
from tinyml.schedule.lifetimes import build_buffers, live_profile, lower_bound
from tinyml.schedule.memory import place_greedy_by_size
from tinyml.schedule.patches.estimate import CALL_COST, graph_cost
from tinyml.schedule.patches.grid import AxisPlan, axis_plan, axis_plans, bands, reuse_axis
from tinyml.schedule.patches.regions import Span
from tinyml.schedule.patches.rewrite import PatchSchedule, PatchSpec, add_stage, stage_spans, unroll
from tinyml.schedule.patches.stage import NotPatchable, Stage, find_stage, patchable

MAX_GRID = 8  # rows and columns searched: 1..8 each (1x1 excluded)
MAX_BANDS = 16  # bands of patches reusing rows (no recomputation down the image): up to this many
MAX_COLUMNS_DOWN = 4  # columns of patches, each run top to bottom reusing rows


def _aligned(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN


@dataclass
class Candidate:
    """A (split, grid) pair with its exact MACs and (lazily) a cheap lower bound on its arena."""

    stage: Stage
    split_layer: int  # in the searched graph
    rows: int
    cols: int
    reuse: bool
    vertical: bool
    macs: int
    cost: float  # estimated instructions (graph_cost of the rewrite, computed from the bands)
    lower: int = -1  # set by Searcher.lower

    @property
    def spec(self) -> PatchSpec:
        return PatchSpec(self.stage.split, self.rows, self.cols, self.reuse, self.vertical)


@dataclass
class _StageInfo:
    """Per-stage constants of the lower bound."""

    rest: int  # most bytes live at a step outside the stage (what any grid leaves there)
    split_bytes: int
    source_bytes: int
    per_px: dict[str, int]  # bytes per pixel of each stage node's output
    # (index, [(input key, bytes/px, input tensor unless a source)], output, input positions it may overwrite)
    nodes: list[tuple[int, list[tuple[tuple[int, int], int, str | None]], str, set[int]]]


class Searcher:
    """One round: exact MACs and lower bounds for every (split, grid) on `prior`'s graph."""

    def __init__(self, prior: PatchSchedule, stream: bool = False):
        self.prior, self.g, self.stream = prior, prior.graph, stream
        self.base_macs = prior.macs
        self.base_cost = graph_cost(self.g)
        self.layer_macs = [get_op(n.op).macs(self.g, n) for n in self.g.nodes]
        self.layer_cost = [get_op(n.op).pixel_cost(self.g, n) for n in self.g.nodes]
        self._axis: dict[tuple[str, int, Span], AxisPlan] = {}
        self._info: dict[str, _StageInfo] = {}
        self._extents: dict[tuple[str, int, int], dict] = {}
        self._sums: dict[tuple[str, int, int], dict] = {}

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

    def candidate(self, k: int, stage: Stage, rows: int, cols: int, reuse: bool, vertical: bool = False) -> Candidate:
        g = self.g
        ax = reuse_axis(cols, vertical) if reuse else None
        hs, ws = self.sums(stage, 0, rows, ax == 0), self.sums(stage, 1, cols, ax == 1)
        macs, cost = self.base_macs, self.base_cost
        for i in stage.nodes:
            n = g.nodes[i]
            o, x = n.outputs[0], n.inputs[0]
            plane = g[o].shape[1] * g[o].shape[2]
            area = hs[o] * ws[o]
            if self.layer_macs[i]:
                macs += self.layer_macs[i] * (area - plane) // plane
            a_in, a_out = self.layer_cost[i]
            read = hs[(i, 0)] * ws[(i, 0)] if (i, 0) in hs else 0
            cost += a_out * (area - plane) + a_in * (read - g[x].shape[1] * g[x].shape[2])
            # every patch copies what it reads and calls each kernel; roughly two copies per node with reuse
            cost += rows * cols * CALL_COST * (3 if reuse else 2) + COPY_COST * read * g[x].nbytes // g[x].size
        return Candidate(stage, k, rows, cols, reuse, vertical, macs, cost)

    def sums(self, stage: Stage, axis: int, parts: int, reuse: bool) -> dict:
        """extents() summed over the bands (what the MACs and the cost estimate need)."""
        key = (stage.split, axis, parts, reuse)
        if key not in self._sums:
            self._sums[key] = {k: int(v.sum()) for k, v in self.extents(stage, axis, parts, reuse).items()}
        return self._sums[key]

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

    def lower(self, c: Candidate) -> int:
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
            whole, streamed = unroll(g, PatchSpec(stage.split, 1, 1), stage, self.stream, k, self.prior.origin)
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

    def enumerate(self, bound: tuple[float, float] | None, target: int | None = None) -> list[Candidate]:
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

    def quick(self, c: Candidate, beat: int | None) -> PatchSchedule | None:
        """The rewrite with its arena under greedy-by-size placement (`greedy_arena`).

        Fast, and never below what the full planner reaches, which tries it
        first. None when the planner's own lower bound shows it cannot beat `beat`,
        or when the rewrite cannot build this grid (the search moves on).
        """
        try:
            ps = add_stage(self.prior, c.spec, c.stage, self.stream)
        except NotPatchable:  # a grid the rewrite cannot build (e.g. reuse without the halo): skip it
            return None
        buffers = build_buffers(ps.graph)
        if beat is not None and lower_bound(buffers, len(ps.graph.nodes) + 1) >= beat:
            return None
        ps.greedy_arena = place_greedy_by_size(buffers)
        return ps
