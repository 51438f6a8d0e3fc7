"""`estimate(graph, board)`: SRAM, flash and instructions of a model without emitting any C."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from functools import lru_cache

from tinyml.board import Board, load_board
from tinyml.codegen.firmware import STACK_GUARD_BYTES
from tinyml.cost import fast_patches
from tinyml.cost.model import code_bytes, flash_features, layer_instructions, layer_terms, load_coefficients
from tinyml.ir import Graph
from tinyml.ops import get_op
from tinyml.ops.strided_copy import COPY_CLASS
from tinyml.schedule.lifetimes import build_buffers
from tinyml.schedule.memory import place_greedy_by_size, state_layout
from tinyml.schedule.patches import PatchOptions, SearchResult, schedule_patches

MODES = ("fast", "exact")


@dataclass
class LayerCost:
    index: int
    op: str
    name: str
    shape_class: str
    instructions: int  # estimate (fitted model)
    macs: int
    weight_bytes: int
    live_bytes: int  # activation bytes live while it runs (planned, or layer by layer in fast mode)


@dataclass
class Cost:
    """What a model needs on a board. Arena and weights are computed; the rest are labelled estimates."""

    mode: str
    board: str
    core: str  # the core the instruction model was fitted on
    patches: str | None  # the patch schedule assumed (label), None: layer by layer
    arena_bytes: int  # exact: the planner's; fast: greedy placement, or the patch rule's estimate
    arena_lower_bound: int  # most bytes live at one step of the schedule assumed (fast + patches: the rule's)
    stack_estimate_bytes: int  # tinyml_run's stack, the most measured on the zoo (estimate)
    weights_bytes: int
    code_estimate_bytes: int  # model library flash beyond the weights (estimate)
    instructions_estimate: int  # per inference, fitted to QEMU counts (estimate)
    macs: int
    sram_available_bytes: int  # the board's RAM less its minimum stack and the stack guard (for the arena)
    flash_available_bytes: int  # the board's flash less the firmware harness around the model
    state_bytes: int = 0  # exact: state kept across inferences, in its own region beside the arena
    layers: list[LayerCost] = field(default_factory=list)
    # exact mode: what the patch scheduler decided (its graph and memory plan), for callers that go on
    schedule: SearchResult | None = field(default=None, repr=False, compare=False)

    @property
    def peak_sram_bytes(self) -> int:
        """Arena + state + stack estimate: the SRAM one inference touches."""
        return self.arena_bytes + self.state_bytes + self.stack_estimate_bytes

    @property
    def flash_bytes(self) -> int:
        """Weights + code estimate: the model library's flash."""
        return self.weights_bytes + self.code_estimate_bytes

    @property
    def fits_sram(self) -> bool:
        return self.arena_bytes + self.state_bytes <= self.sram_available_bytes

    @property
    def fits_flash(self) -> bool:
        return self.flash_bytes <= self.flash_available_bytes

    def describe(self) -> dict:
        """The figures as JSON-ready data (without the schedule object)."""
        d = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("layers", "schedule")}
        d["layers"] = [asdict(x) for x in self.layers]
        d.update(peak_sram_bytes=self.peak_sram_bytes, flash_bytes=self.flash_bytes,
                 fits_sram=self.fits_sram, fits_flash=self.fits_flash)
        return d


def estimate(graph: Graph, board: Board | str | None = None, mode: str = "fast",
             patches: str | PatchOptions = "auto", sram_budget: int | None = None,
             effort: float | None = None) -> Cost:
    """The cost of `graph` (as tinyml.pipeline.load_graph returns it; left unchanged) on `board`.

    mode "exact": the memory planner and the patch search `tinyml generate` runs (seconds on a
    MobileNet); "fast": greedy placement, no repack, and a cheap patch rule (cost/fast_patches.py;
    milliseconds). `patches`: "auto", "off", or PatchOptions (exact mode only for fixed
    schedules). `sram_budget`: the arena must fit these bytes (auto looks for a patch schedule
    that does; exact mode raises DoesNotFit when none does). `effort`: exact mode's search budgets
    (tinyml/schedule/effort.py; None: the PatchOptions' own, else the default). Instructions come from
    coefficients.json, fitted on one core (the Cortex-M7 measures within 1 % of the M4 on the
    MLPerf Tiny models, docs/cost_model.md).
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    coef = load_coefficients()
    b = board if isinstance(board, Board) else _board(board or coef["board"])
    if mode == "exact":
        schedule = _exact(graph, patches, sram_budget, effort)
        g, plan = schedule.graph, schedule.plan
        label = schedule.chosen.label if schedule.chosen is not None else None
        terms, macs = _terms_and_macs(g)
        live = [plan.live_bytes(i) for i in range(len(g.nodes))]
        arena, bound, recompute, copy_bytes = plan.arena_bytes, plan.lower_bound, {}, 0
    else:
        g, schedule = graph, None
        terms, macs = _terms_and_macs(g)
        arena, bound, live, label, recompute, copy_bytes = _fast(g, [c for c, _ in terms], macs, patches, sram_budget)
    layers = []
    consts: set[str] = set()
    for i, (n, (cls, t), m) in enumerate(zip(g.nodes, terms, macs)):
        instr = layer_instructions(cls, t, coef) * recompute.get(i, 1.0)
        weights = [x for x in n.inputs if x is not None and g[x].is_const]
        consts.update(weights)
        layers.append(LayerCost(i, n.op, n.name, cls, round(instr), m, sum(g[x].nbytes for x in weights),
                                live[i] if i < len(live) else 0))
    copy = coef["classes"].get(COPY_CLASS, {}).get("bytes", 0.0) * copy_bytes
    total = coef["network_overhead"] + sum(x.instructions for x in layers) + copy
    return Cost(
        mode=mode, board=b.name, core=coef["core"], patches=label, arena_bytes=arena, arena_lower_bound=bound,
        stack_estimate_bytes=coef["stack_bytes"], weights_bytes=sum(g[x].nbytes for x in consts),
        code_estimate_bytes=round(code_bytes(flash_features(g, terms), coef)),
        instructions_estimate=round(total), macs=round(sum(x.macs * recompute.get(x.index, 1.0) for x in layers)),
        sram_available_bytes=b.ram.size - b.min_stack_bytes - STACK_GUARD_BYTES,
        flash_available_bytes=b.flash.size - coef["firmware_flash_bytes"], state_bytes=state_layout(g)[1],
        layers=layers, schedule=schedule)


@lru_cache(maxsize=16)
def _board(name: str) -> Board:
    return load_board(name)  # parsed once: a search asks for the same board thousands of times


def _terms_and_macs(g: Graph) -> tuple[list, list[int]]:
    """Op.cost_terms of every layer, and its MACs (from the terms when they count them)."""
    terms = layer_terms(g)
    return terms, [t["macs"] if "macs" in t else get_op(n.op).macs(g, n) for n, (_, t) in zip(g.nodes, terms)]


def _exact(graph: Graph, patches: str | PatchOptions, sram_budget: int | None, effort: float | None) -> SearchResult:
    """schedule_patches on a copy (the planner reorders nodes in place)."""
    if isinstance(patches, str):
        options = PatchOptions.parse(patches, sram_budget=sram_budget)
    else:
        options = patches if sram_budget is None else replace(patches, sram_budget=sram_budget)
    if effort is not None:
        options = replace(options, effort=effort)
    g = Graph(dict(graph.tensors), list(graph.nodes), list(graph.inputs), list(graph.outputs), graph.name)
    return schedule_patches(g, options)


def _fast(g: Graph, classes: list[str], macs: list[int], patches: str | PatchOptions, sram_budget: int | None):
    """Greedy-by-size arena layer by layer, and the patch rule's guess when it lowers it."""
    if not isinstance(patches, str) or patches not in ("auto", "off"):
        raise ValueError("fast mode takes patches='auto' or 'off' (fixed schedules: mode='exact')")
    steps = len(g.nodes) + 1
    buffers = build_buffers(g)
    live = [0] * steps
    for buf in buffers:
        for t in range(buf.first, buf.last + 1):
            live[t] += buf.size
    arena = place_greedy_by_size(buffers)
    bound = max(live, default=0)
    if patches == "off" or (sram_budget is not None and arena <= sram_budget):
        return arena, bound, live, None, {}, 0
    pick = fast_patches.guess(g, classes, live, macs, arena, sram_budget,
                              None if sram_budget is not None else fast_patches.MAX_OVERHEAD)
    if pick is None:
        return arena, bound, live, None, {}, 0
    return pick.arena_bytes, min(pick.arena_bytes, bound), live, f"~{pick.label}", pick.recompute, pick.copy_bytes
