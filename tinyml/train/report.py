"""The mixed-precision report: per-layer choices, and uniform vs ILP configurations side by side.

Every configuration is an integer graph from the PTQ pass; its weight bytes
are the packed constants, its arena the memory planner's (layer by layer),
its instructions tinyml.cost's estimate scaled per weight width (labelled),
and its accuracy the numpy integer reference's on the --eval data.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np

from tinyml.ir import Graph
from tinyml.quantize.allocate import Allocation, Budgets
from tinyml.quantize.evaluate import accuracy, run_int8
from tinyml.train.mixed import Sensitivity

FLASH_STEPS = (0.15, 0.3, 0.45, 0.6, 0.8)  # ILP budgets between the smallest weight flash and int8's


def sweep(s: Sensitivity) -> list[tuple[str, Allocation]]:
    """Uniform baselines (8, 4, 2-bit weights; 4-bit activations when allowed) and the ILP at several budgets."""
    out = [(f"uniform W{w}A{a}", s.uniform(w, a)) for w in (8, 4, 2) if w in s.w_bits or w == 8
           for a in (8, 4) if a in s.a_bits or a == 8]
    low, high = s.limits()["flash"], s.uniform(8, 8).weight_bytes
    for f in FLASH_STEPS:
        budget = int(low + f * (high - low))
        out.append((f"ILP flash <= {budget:,} B", s.solve(Budgets(flash=budget))[0]))
    return out


def configuration(s: Sensitivity, label: str, alloc: Allocation, q: Graph | None = None,
                  eval_data: tuple[np.ndarray, np.ndarray] | None = None,
                  progress: Callable[[int, int], None] | None = None) -> dict:
    """The figures of one allocation (its integer graph built when not given)."""
    q = q if q is not None else s.quantize(alloc)
    weights = sum(t.nbytes for t in q.tensors.values() if t.is_const)
    row = {"label": label, "weight_bits": _histogram(alloc.weights), "activation_bits": _histogram(alloc.activations),
           "weight_bytes": weights, "arena_bytes": s.arena(q), "instructions_estimate": alloc.instructions,
           "objective": _objective(s, alloc), "accuracy": None}
    if eval_data is not None:
        row["accuracy"] = accuracy(run_int8(q, eval_data[0], progress), eval_data[1])
    return row


def layer_rows(s: Sensitivity, alloc: Allocation) -> list[dict]:
    """Per weighted layer: widths, Hessian traces, bytes and instructions at the chosen widths."""
    act_of = {n: k for k, ns in alloc.owners.items() for n in ns}
    rows = []
    for c in s.weights:
        w, a = alloc.weights[c.node], alloc.activations.get(act_of.get(c.node, ""), 8)
        rows.append({"node": c.node, "op": c.op, "weight_bits": w, "activation_bits": a,
                     "weight_trace": s.traces.weights[c.node],
                     "activation_trace": s.traces.activations.get(act_of.get(c.node, "")),
                     "perturbation": s.traces.weights[c.node] * c.error[w],
                     "loss_increase": s.w_cost[c.node][w] if s.method == "measured" else None,
                     "weight_bytes": c.bytes(w),
                     "instructions_estimate": c.instructions(w)})
    return rows


def _objective(s: Sensitivity, alloc: Allocation) -> float:
    """The ILP's objective for the allocation (its costs: measured or trace x perturbation)."""
    w = sum(s.w_cost[c.node][alloc.weights[c.node]] for c in s.weights)
    a = sum(s.a_cost.get(x.key, {}).get(alloc.activations[x.key], 0.0) for x in s.acts)
    return w + a


def _histogram(bits: dict[str, int]) -> dict[str, int]:
    out: dict[str, int] = {}
    for b in bits.values():
        out[str(b)] = out.get(str(b), 0) + 1
    return out
