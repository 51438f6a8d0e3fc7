"""Per-patch regions of a grid: what each patch provides, computes and reads of every stage tensor."""
from __future__ import annotations

import itertools
from dataclasses import dataclass

from tinyml.ir import Graph
from tinyml.schedule.patches.regions import Region, Span, input_span
from tinyml.schedule.patches.stage import NotPatchable, Stage


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
            computed[n.outputs[0]] = (end, end)  # nothing of it is needed here (see rewrite._Builder.patch)
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
