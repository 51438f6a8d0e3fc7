"""Mixed precision end to end: sensitivities once, then one ILP and one integer graph per budget.

`Sensitivity.measure` calibrates at int8, lowers the float graph to PyTorch,
estimates Hessian traces (labels: the calibration file's `y` when it has one,
else the float model's own top-1, so no labelled data is needed), the
perturbation of every width and the ILP's costs: by default each candidate's
loss increase measured on the calibration data (train/measured.py: HAWQ's
second-order term underrates 2-bit damage), or trace x perturbation. `Sensitivity.solve` runs the ILP for budgets,
checks the arena the memory planner gives for the result and tightens the
SRAM row until the planned arena fits, and `Sensitivity.quantize` builds the
integer graph for an allocation (calibrated again: bias correction depends on
the widths). Accuracy is always measured on that integer graph with the
numpy integer reference, never on fake quantization.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field, replace

import numpy as np

from tinyml.errors import TinymlError
from tinyml.ir import Graph
from tinyml.quantize.allocate import Allocation, Budgets, Costs, SramModel, allocate, hawq_costs, residual_ties, sram_model
from tinyml.quantize.bitcost import ActChoice, WeightChoice, activation_choices, weight_choices
from tinyml.quantize.calibrate import Calibration, Progress, calibrate
from tinyml.quantize.policy import LayerBits, QuantPolicy
from tinyml.quantize.ptq import narrow_widths, quantize_graph, weight_errors
from tinyml.train.hessian import Traces, hutchinson_traces
from tinyml.train.lowering import Lowered

HESSIAN_SAMPLES = 256
SRAM_RETRIES = 6


@dataclass
class Sensitivity:
    g: Graph  # prepared float graph
    calib: np.ndarray
    labels: np.ndarray
    base: QuantPolicy  # calibration settings; widths come from allocations
    int8: Graph
    traces: Traces
    weights: list[WeightChoice]
    acts: list[ActChoice]
    sram: SramModel
    ties: list[tuple[str, str]]
    fixed_bytes: int
    fixed_instructions: int
    w_bits: tuple[int, ...]
    a_bits: tuple[int, ...]
    board: str | None = None
    method: str = "measured"  # the ILP's costs: "measured" loss increases or "hessian" (HAWQ-V3)
    w_cost: Costs = field(default_factory=dict)
    a_cost: Costs = field(default_factory=dict)
    _cal: dict = field(default_factory=dict, repr=False)

    @classmethod
    def measure(cls, g: Graph, calib: np.ndarray, base: QuantPolicy, w_bits: tuple[int, ...],
                a_bits: tuple[int, ...], labels: np.ndarray | None = None, probes: int = 32,
                board: str | None = None, progress: Progress | None = None,
                method: str = "measured") -> "Sensitivity":
        from tinyml.cost import estimate

        int8_policy = replace(base, default=LayerBits(), layers={})
        cal = calibrate(g, calib, int8_policy, weight_errors(g, int8_policy) if base.bias_correction else None,
                        progress)
        int8 = quantize_graph(g, cal, int8_policy)
        m = Lowered(g)
        x = calib[:HESSIAN_SAMPLES].astype(np.float64)
        if labels is None:
            import torch

            with torch.no_grad():
                labels = m(torch.tensor(calib.astype(np.float64))).argmax(-1).numpy()
        cost = estimate(int8, board, mode="fast", patches="off")
        weights = weight_choices(g, int8, tuple(sorted(set(w_bits) | {8})))
        acts = activation_choices(g, cal, calib, tuple(sorted(set(a_bits) | {8})),
                                  {layer.name: layer.instructions for layer in cost.layers})
        out = {n.name: n.outputs[0] for n in g.nodes}
        probe = {a.key: out[a.owners[0]] for a in acts} if len(a_bits) > 1 else {}
        traces = hutchinson_traces(m, x, labels[:len(x)], probes, activations=list(probe.values()), progress=progress)
        traces.activations = {k: traces.activations[t] for k, t in probe.items()}
        fixed_bytes = cost.weights_bytes - sum(c.bytes(8) for c in weights)
        fixed_instr = cost.instructions_estimate - sum(c.instructions_int8 for c in weights)
        s = cls(g, calib, labels, base, int8, traces, weights, acts, sram_model(int8, acts), residual_ties(g, acts),
                fixed_bytes, fixed_instr, tuple(w_bits), tuple(a_bits), board, method)
        if method == "hessian":
            s.w_cost, s.a_cost = hawq_costs(weights, acts, traces.weights, traces.activations)
        else:
            from tinyml.train.measured import loss_deltas

            s.w_cost, s.a_cost = loss_deltas(g, calib, labels, weights, acts if len(a_bits) > 1 else [],
                                             s.w_bits, s.a_bits, progress)
        s._cal[_key(int8_policy)] = cal
        return s

    def limits(self) -> dict[str, int]:
        """The smallest weight bytes and live arena bytes any allocation reaches (for error messages)."""
        return {"flash": self.fixed_bytes + sum(c.bytes(min(self.w_bits)) for c in self.weights),
                "sram": self.sram.live({a.key: min(self.a_bits) for a in self.acts})}

    def solve(self, budgets: Budgets) -> tuple[Allocation, Graph]:
        """The ILP's allocation for `budgets` and its integer graph (planned arena within budgets.sram)."""
        low = self.limits()
        if budgets.flash is not None and budgets.flash < low["flash"]:
            raise TinymlError(f"--flash-budget {budgets.flash}: the smallest weight flash reachable is "
                              f"{low['flash']} bytes (every layer at {min(self.w_bits)} bits)")
        if budgets.sram is not None and budgets.sram < low["sram"]:
            raise TinymlError(f"--sram-budget {budgets.sram}: the smallest arena reachable is at least "
                              f"{low['sram']} bytes")
        rows = budgets
        for _ in range(SRAM_RETRIES):
            try:
                alloc = allocate(self.weights, self.acts, self.w_cost, self.a_cost, self.w_bits,
                                 self.a_bits, rows, self.fixed_bytes, self.fixed_instructions, self.sram, self.ties)
            except TinymlError:
                raise TinymlError(_infeasible(budgets, low)) from None
            q = self.quantize(alloc)
            arena = self.arena(q)
            if budgets.sram is None or arena <= budgets.sram:
                return alloc, q
            rows = replace(rows, sram=(rows.sram or arena) - (arena - budgets.sram))
        raise TinymlError(f"--sram-budget {budgets.sram}: the planned arena stays above it "
                          f"(smallest live bytes {low['sram']})")

    def policy(self, alloc: Allocation) -> QuantPolicy:
        return replace(self.base, default=LayerBits(),
                       layers={n: LayerBits(w, a) for n, (w, a) in alloc.layer_bits().items()})

    def calibration(self, alloc: Allocation) -> Calibration:
        """Ranges and bias shifts for the allocation's widths (cached by widths)."""
        policy = self.policy(alloc)
        key = _key(policy)
        if key not in self._cal:
            errors = weight_errors(self.g, policy) if policy.bias_correction else None
            self._cal[key] = calibrate(self.g, self.calib, policy, errors, narrow=narrow_widths(self.g, policy))
        return self._cal[key]

    def quantize(self, alloc: Allocation) -> Graph:
        return quantize_graph(self.g, self.calibration(alloc), self.policy(alloc))

    def uniform(self, w: int, a: int) -> Allocation:
        """The allocation with every layer at (w, a): the uniform baselines."""
        ab = {x.key: a for x in self.acts}
        wb = {c.node: w for c in self.weights}
        return Allocation(wb, ab, 0.0, self.fixed_bytes + sum(c.bytes(w) for c in self.weights), self.sram.live(ab),
                          self.fixed_instructions + sum(c.instructions(w) for c in self.weights)
                          + sum(x.instructions(a) for x in self.acts),
                          {x.key: x.owners for x in self.acts})

    def arena(self, q: Graph) -> int:
        from tinyml.cost import estimate

        return estimate(q, self.board, mode="exact", patches="off").arena_bytes


def _key(policy: QuantPolicy) -> tuple:
    # calibration depends on the widths: bias correction on the weights', sub-byte ranges on the activations'
    return tuple(sorted((n, b.weights, b.activations) for n, b in policy.layers.items() if b != LayerBits()))


def _infeasible(b: Budgets, low: dict[str, int]) -> str:
    asked = ", ".join(f"{k} {v}" for k, v in (("flash", b.flash), ("SRAM", b.sram), ("instructions", b.instructions))
                      if v is not None)
    return (f"no bit allocation meets {asked}; the smallest reachable are {low['flash']} bytes of weight flash "
            f"and {low['sram']} bytes of arena")


def finetuned(s: Sensitivity, alloc: Allocation, epochs: int, progress: Progress | None = None) -> Sensitivity:
    """QAT for the allocation (straight-through rounding), as a Sensitivity over the tuned float graph.

    The result quantizes with the activation ranges the training saw (the fake quantization used
    them, so what is deployed is what was trained) and without bias correction (the tuned biases
    start from the corrected ones and keep training).
    """
    from tinyml.train.finetune import finetune

    g = copy.deepcopy(s.g)
    cal = s.calibration(alloc)
    finetune(g, quantize_graph(s.g, cal, s.policy(alloc)), s.calib, s.labels, epochs, progress)
    tuned = replace(s, g=g, base=replace(s.base, bias_correction=False), _cal={})
    tuned._cal[_key(tuned.policy(alloc))] = replace(cal, bias_shift={})
    return tuned

