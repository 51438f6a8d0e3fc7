"""Bit allocation as an integer linear program (HAWQ-V3), solved by CBC through PuLP.

One binary per (layer, weight width) and per (activation group, width), one
width each. Minimise the sum of each choice's predicted loss increase: either
trace x perturbation (`hawq_costs`: the second-order term HAWQ-V3 minimises,
with HAWQ-V2's average Hessian trace per layer or per tensor) or the increase
measured on calibration data (train/measured.py). Constraints are the kit's own costs:
- flash: packed weight bytes (bitcost.WeightChoice.bytes) plus the constants
  no choice touches, at most the budget;
- SRAM: at every step of the int8 memory plan's lifetimes, the bytes live
  (a 4-bit activation tensor counts half) at most the budget. That sum is the
  planner's lower bound; the caller checks the planned arena afterwards and
  tightens the bound when fragmentation puts it over (mixed.py);
- instructions: tinyml.cost's per-layer estimates, scaled per op and width,
  plus the nibble paths of 4-bit activation groups.
Residual branches are tied as in HAWQ-V3: the activation groups an ADD joins
take one width.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import pulp

from tinyml.errors import TinymlError
from tinyml.ir import Graph
from tinyml.quantize.bitcost import ActChoice, WeightChoice
from tinyml.quantize.ptq import quant_groups
from tinyml.schedule.lifetimes import build_buffers


@dataclass
class Budgets:
    flash: int | None = None  # weight bytes (all constants, packed)
    sram: int | None = None  # arena bytes
    instructions: int | None = None


@dataclass
class SramModel:
    """Bytes live per step of the int8 plan: fixed ones, and per activation group its int8 bytes."""

    fixed: list[int]
    variable: list[dict[str, int]]

    def live(self, act_bits: dict[str, int]) -> int:
        return max(f + sum(b * act_bits.get(k, 8) // 8 for k, b in v.items())
                   for f, v in zip(self.fixed, self.variable))


def sram_model(int8: Graph, acts: list[ActChoice]) -> SramModel:
    """Each planner buffer's bytes, attributed to the activation group of its tensors."""
    owner = {t: a.key for a in acts for t in a.tensors}
    buffers = build_buffers(int8)
    steps = max((b.last for b in buffers), default=0) + 1
    fixed, variable = [0] * steps, [dict() for _ in range(steps)]
    for buf in buffers:
        key = next((owner[t] for t in buf.tensors if t in owner), None)
        for s in range(buf.first, buf.last + 1):
            if key is None:
                fixed[s] += buf.size
            else:
                variable[s][key] = variable[s].get(key, 0) + buf.size
    return SramModel(fixed, variable)


def residual_ties(g: Graph, acts: list[ActChoice]) -> list[tuple[str, str]]:
    """Pairs of activation groups that must share a width: the operands and output of ADD/SUB."""
    group = quant_groups(g)
    keys = {a.key for a in acts}
    ties = []
    for n in g.nodes:
        if n.op in ("ADD", "SUB"):
            joined = [group[t] for t in [*n.inputs, *n.outputs] if t is not None and group.get(t) in keys]
            ties += [(joined[0], k) for k in joined[1:] if k != joined[0]]
    return ties


@dataclass
class Allocation:
    weights: dict[str, int]  # node -> weight bits
    activations: dict[str, int]  # activation group key -> bits
    objective: float
    weight_bytes: int
    live_bytes: int  # the SRAM model's peak (the planner's lower bound)
    instructions: int
    owners: dict[str, list[str]] = field(default_factory=dict)  # group key -> weighted nodes writing it

    def layer_bits(self) -> dict[str, tuple[int, int]]:
        """node -> (weight bits, activation bits of what it writes)."""
        act = {n: self.activations[k] for k, ns in self.owners.items() for n in ns}
        return {n: (b, act.get(n, 8)) for n, b in self.weights.items()}


Costs = dict[str, dict[int, float]]  # layer or activation group -> bits -> predicted loss increase


def hawq_costs(weights: list[WeightChoice], acts: list[ActChoice], w_trace: dict[str, float],
               a_trace: dict[str, float]) -> tuple[Costs, Costs]:
    """HAWQ-V3's objective terms: average Hessian trace x ||Q_b - identity||^2."""
    return ({c.node: {b: w_trace[c.node] * e for b, e in c.error.items()} for c in weights},
            {a.key: {b: a_trace.get(a.key, 0.0) * e for b, e in a.error.items()} for a in acts})


def allocate(weights: list[WeightChoice], acts: list[ActChoice], w_cost: Costs, a_cost: Costs,
             w_bits: tuple[int, ...], a_bits: tuple[int, ...], budgets: Budgets,
             fixed_bytes: int, fixed_instructions: int, sram: SramModel,
             ties: list[tuple[str, str]]) -> Allocation:
    """The allocation minimising the summed costs within the budgets (TinymlError if none)."""
    prob = pulp.LpProblem("bits", pulp.LpMinimize)
    xw = {(c.node, b): pulp.LpVariable(f"w{i}_{b}", cat="Binary") for i, c in enumerate(weights) for b in w_bits}
    xa = {(a.key, b): pulp.LpVariable(f"a{i}_{b}", cat="Binary") for i, a in enumerate(acts) for b in a_bits}
    prob += (pulp.lpSum(w_cost[c.node][b] * xw[c.node, b] for c in weights for b in w_bits)
             + pulp.lpSum(a_cost.get(a.key, {}).get(b, 0.0) * xa[a.key, b] for a in acts for b in a_bits))
    for c in weights:
        prob += pulp.lpSum(xw[c.node, b] for b in w_bits) == 1
    for a in acts:
        prob += pulp.lpSum(xa[a.key, b] for b in a_bits) == 1
    for k1, k2 in ties:
        for b in a_bits:
            prob += xa[k1, b] == xa[k2, b]
    if budgets.flash is not None:
        prob += pulp.lpSum(c.bytes(b) * xw[c.node, b] for c in weights for b in w_bits) <= budgets.flash - fixed_bytes
    if budgets.instructions is not None:
        prob += pulp.lpSum(c.instructions(b) * xw[c.node, b] for c in weights for b in w_bits) \
            + pulp.lpSum(a.instructions(b) * xa[a.key, b] for a in acts for b in a_bits) \
            <= budgets.instructions - fixed_instructions
    if budgets.sram is not None:
        for f, v in zip(sram.fixed, sram.variable):
            if v:
                prob += f + pulp.lpSum(size * b / 8 * xa[k, b] for k, size in v.items() for b in a_bits) <= budgets.sram
            elif f > budgets.sram:
                raise TinymlError(f"--sram-budget {budgets.sram}: a layer alone needs {f} bytes of arena")
    status = prob.solve(pulp.PULP_CBC_CMD(msg=False))
    if pulp.LpStatus[status] != "Optimal":
        raise TinymlError("no bit allocation meets the budgets")
    wb = {c.node: next(b for b in w_bits if xw[c.node, b].value() > 0.5) for c in weights}
    ab = {a.key: next(b for b in a_bits if xa[a.key, b].value() > 0.5) for a in acts}
    return Allocation(wb, ab, float(pulp.value(prob.objective) or 0.0),
                      fixed_bytes + sum(c.bytes(wb[c.node]) for c in weights), sram.live(ab),
                      fixed_instructions + sum(c.instructions(wb[c.node]) for c in weights)
                      + sum(a.instructions(ab[a.key]) for a in acts), {a.key: a.owners for a in acts})
