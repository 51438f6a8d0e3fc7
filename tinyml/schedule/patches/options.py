"""What the CLI asks for: --patch auto|off|SPLIT:ROWSxCOLS, a budget, and applying them."""
from __future__ import annotations

from dataclasses import dataclass, replace

from tinyml.errors import TinymlError
from tinyml.ir import Graph
from tinyml.schedule.effort import DEFAULT as DEFAULT_EFFORT
from tinyml.schedule.memory import MemoryPlan, plan_memory
from tinyml.schedule.patches.rewrite import PatchSchedule, PatchSpec, add_stage, graph_macs
from tinyml.schedule.patches.search import BudgetExceeded, SearchResult, search
from tinyml.schedule.patches.stage import NotPatchable

DEFAULT_MAX_OVERHEAD = 0.20


@dataclass(frozen=True)
class PatchOptions:
    """`--patch auto|off|SPLIT:ROWSxCOLS[r|v][+...]`, `--max-overhead`, `--sram-budget`, `--input`, `--effort`.

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
    effort: float = DEFAULT_EFFORT  # --effort: factor on every search's evaluation budget (schedule/effort.py)

    @staticmethod
    def parse(text: str, max_overhead: float | None = None, sram_budget: int | None = None,
              stream: bool = False, effort: float = DEFAULT_EFFORT) -> "PatchOptions":
        """Read the --patch value; raises ValueError with a one-line reason."""
        t = text.strip()
        if t in ("auto", "off"):
            return PatchOptions(t, (), max_overhead, sram_budget, stream, effort)
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
        return PatchOptions("fixed", tuple(stages), max_overhead, sram_budget, stream, effort)


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


def replay(g: Graph, stages: list[PatchSpec], stream: bool, effort: float = DEFAULT_EFFORT) -> PatchSchedule:
    """Apply fixed stages in order (each split resolved on the graph the previous ones left)."""
    ps = PatchSchedule.layer_by_layer(g)
    if stages and any(t.bits < 8 for t in g.activations()):
        raise NotPatchable("4-bit activations are packed two per byte; patch copies move whole bytes")
    for k, spec in enumerate(stages):
        ps = add_stage(ps, replace(spec, split=resolve_split(ps, spec.split)), stream=stream and k == 0)
    ps.plan = plan_memory(ps.graph, effort=effort)
    return ps


def _layer_by_layer(g: Graph, baseline: MemoryPlan, e: Exception) -> SearchResult:
    """The search gave up on `e` (a bug): the model runs layer by layer, and the reports say why."""
    failed = SearchResult(g, baseline, None, 0, 0)
    failed.error = " ".join(f"{type(e).__name__}: {e}".split())[:200]
    return failed


def schedule_patches(g: Graph, options: PatchOptions, baseline: MemoryPlan | None = None) -> SearchResult:
    """Apply the options: search (auto), the given stages (fixed), or nothing (off).

    A budget is checked in every mode; only auto mode searches to meet it.
    """
    baseline = baseline or plan_memory(g, effort=options.effort)
    if options.mode == "auto":
        bound = options.max_overhead
        if bound is None and options.sram_budget is None:
            bound = DEFAULT_MAX_OVERHEAD
        # Streaming changes which stages pay off, and the rounds are greedy: holding the input
        # whole may still end lower, so a streamed search is compared with the plain one.
        results, errors = [], []
        for stream in ((True, False) if options.stream else (False,)):
            try:
                results.append(search(g, bound, options.sram_budget, baseline, stream, options.effort))
            except BudgetExceeded as e:
                errors.append(e)
            except TinymlError as e:
                if not isinstance(e, NotPatchable):  # a schedule the search cannot build is its own problem
                    raise
                results.append(_layer_by_layer(g, baseline, e))
            except Exception as e:  # noqa: BLE001 - a search bug must not cost the user the model
                results.append(_layer_by_layer(g, baseline, e))
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
        result.chosen = replay(g, list(options.stages), options.stream, options.effort)
        result.candidates = result.planned = 1
    ps = result.chosen
    if ps is not None and ps.streamed:
        held = replay(g, [st.spec for st in ps.stages], stream=False, effort=options.effort)
        ps.arena_with_input = held.plan.arena_bytes
    if options.sram_budget is not None and result.plan.arena_bytes > options.sram_budget:
        raise BudgetExceeded(options.sram_budget, result.plan.arena_bytes,
                             f"the {'patch schedule' if result.chosen else 'layer-by-layer'} arena is "
                             f"{result.plan.arena_bytes:,} bytes (--patch auto searches for a schedule that fits)")
    return result
