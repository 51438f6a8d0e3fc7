"""The patch search: stages added greedily, each chosen with the real planner.

`choose_schedule` searches split points and grids, pruned by lower bounds, and
never returns a schedule whose arena is not strictly below layer by layer.
"""
from __future__ import annotations

from dataclasses import dataclass

from tinyml.errors import DoesNotFit
from tinyml.ir import Graph
from tinyml.schedule.effort import DEFAULT as DEFAULT_EFFORT, scaled
from tinyml.schedule.memory import MemoryPlan, plan_memory
from tinyml.schedule.patches.candidates import Candidate, Searcher
from tinyml.schedule.patches.estimate import graph_cost
from tinyml.schedule.patches.rewrite import PatchSchedule, graph_macs
from tinyml.schedule.patches.stage import NotPatchable

MAX_STAGES = 3  # patch stages one schedule may chain (each found on the previous one's graph)
# Without a budget a stage must lower the arena by at least this fraction: a sliver of SRAM is not
# worth the extra kernels in flash and the copies.
MIN_GAIN = 0.05
# Candidates come in order of lower bound, and many share one (what runs layer by layer after the
# stage bounds them all): stop after this many placements without a better arena.
PATIENCE = 16
FULL_PLAN_SLACK = 1.15  # budget mode: how far above the budget greedy may be for a full plan to be tried


class BudgetExceeded(DoesNotFit):
    """No schedule keeps the activation arena within --sram-budget."""

    def __init__(self, budget: int, reachable: int, detail: str):
        super().__init__("the activation arena", reachable, budget, detail)
        self.args = (f"does not fit the SRAM budget of {budget:,} bytes: {detail}",)


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


def search(g: Graph, max_overhead: float | None = 0.20, sram_budget: int | None = None,
           baseline: MemoryPlan | None = None, stream: bool = False, effort: float = DEFAULT_EFFORT) -> SearchResult:
    """Pick a patch schedule for `g` (see choose_schedule); also report what was searched.

    Stages are added greedily, each searched on the previous schedule's
    graph (whose stages then are plain nodes to it): a second stage helps
    when what is left layer by layer after the first one is the peak.
    `effort` scales the planners' budgets and the placements tried per round.
    """
    if g.states():  # a node that writes state must run once per inference, never once per patch
        raise NotPatchable("the model keeps state across inferences; it runs layer by layer")
    if any(t.bits < 8 for t in g.activations()):  # patch copies move whole bytes
        raise NotPatchable("4-bit activations are packed two per byte; the model runs layer by layer")
    baseline = baseline or plan_memory(g, effort=effort)
    limit = None if max_overhead is None else (graph_macs(g) * (1 + max_overhead), graph_cost(g) * (1 + max_overhead))
    result = SearchResult(g, baseline, None, 0, 0)
    current = PatchSchedule.layer_by_layer(g, baseline)
    if sram_budget is not None and baseline.arena_bytes <= sram_budget:
        return result
    for _ in range(MAX_STAGES):
        s = Searcher(current, stream and not current.stages)
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
                    ps.plan = plan_memory(ps.graph, effort=effort)
                    if ps.plan.arena_bytes <= sram_budget:
                        result.chosen = ps
                        return result
        best = _lowest(s, cands, bar, result, scaled(PATIENCE, effort))
        if best is None:
            break
        current = best
    if current.stages:
        current.plan = plan_memory(current.graph, effort=effort)  # never above greedy's arena, so still below layer by layer
    if sram_budget is not None:
        reach = current.plan.arena_bytes
        how = (f"with {current.label} patches, {100 * current.overhead:.1f}% more MACs" if current.stages
               else "layer by layer; no patch schedule lowers it")
        bound = "" if max_overhead is None else f" within the {100 * max_overhead:g}% overhead bound"
        raise BudgetExceeded(sram_budget, reach, f"the smallest peak reachable{bound} is {reach:,} bytes ({how})")
    result.chosen = current if current.stages else None
    return result


def _lowest(s: Searcher, cands: list[Candidate], base: int, result: SearchResult, patience: int) -> PatchSchedule | None:
    """The candidate with the smallest greedy-placement arena (then fewest MACs), if strictly below `base`.

    Candidates come by lower bound (then MACs); the search stops where the
    bound reaches the best arena found, or after `patience` placements that
    did not improve it.
    """
    best: PatchSchedule | None = None
    bar = base  # what a candidate must beat
    idle = 0  # candidates placed since the last improvement
    for c in sorted(cands, key=lambda c: (s.lower(c), c.macs)):
        tie_ok = best is not None and c.macs < best.macs
        if c.lower > bar or (c.lower == bar and not tie_ok) or idle >= patience:
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
    extra instructions by the estimate (estimate.py), stay within
    `max_overhead` (a fraction of the model's), fewest MACs on a tie; a
    stage must save at least MIN_GAIN of the arena. With `sram_budget`: the fewest MACs among schedules whose arena fits
    (None when layer by layer fits), else DoesNotFit naming the smallest
    arena reachable. `max_overhead=None` lifts the bound. A schedule is only
    returned when its arena is strictly below layer by layer's (input held
    in the arena). With `stream`, graph inputs only the stage reads are
    streamed (not counted in the arena; see add_stage).
    """
    return search(g, max_overhead, sram_budget, stream=stream).chosen
