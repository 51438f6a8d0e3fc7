"""Execution order: run independent branches in the order that needs the least memory.

The importer's node order is one topological order; a residual block's
shortcut can run before its main branch, after it, or between its layers,
and which one holds the fewest bytes at the peak depends on their sizes.
A node may sit anywhere after its inputs' producers and before its outputs'
readers; moving one node there keeps every other node's relative order, so
the result is again a valid order. A local search moves one node at a time
to the earliest or latest place it may take, across a step where the most
bytes are live, and keeps moves that lower (most bytes live at one step,
live bytes summed over steps): the planner's lower bound, then how much
there is to pack.

What else the order must keep:
- Patch stages (tinyml/schedule/patches/) are spans of the node list that
  reports and the analyze plot name by index: nodes move only inside their
  own stage's span, or inside the run of layers between two spans, never
  across a span's border, so every span keeps its nodes and indices.
- A node that updates its input in place (WRITE_WINDOW) runs after every
  other reader of that input.
- Reads of a streamed input keep their order (the application's callback
  may deliver the input as a stream), and so do the nodes that read or
  write one state tensor (a resource variable's reads and assignments).
Everything keyed by step (scratch areas, per-layer reports, emitted code) is
derived from the final node list, so it follows the order chosen.
"""
from __future__ import annotations

from dataclasses import replace

from tinyml.ir import Graph
from tinyml.ops import get_op
from tinyml.schedule.inplace import Facts
from tinyml.schedule.lifetimes import build_buffers, live_profile

# At most this many candidate orders are scored per graph.
ORDER_EVALS = 400


def reordered(g: Graph, order: list[int]) -> Graph:
    """`g` with its nodes in `order` (indices into g.nodes); tensors shared, not copied."""
    return replace(g, nodes=[g.nodes[i] for i in order])


def _regions(g: Graph) -> list[tuple[str, int]]:
    """Per node, the region it may move in: a patch stage's span, or the run of layers between spans."""
    found: dict[object, list[int]] = {}
    for i, n in enumerate(g.nodes):
        k = n.attrs.get("stage")
        if "patch" in n.attrs and k is not None:
            found.setdefault(k, [i, i])[1] = i
    spans: list[list[int]] = []
    for lo, hi in sorted(found.values()):
        if spans and lo <= spans[-1][1]:
            spans[-1][1] = max(spans[-1][1], hi)
        else:
            spans.append([lo, hi])
    region = []
    for i in range(len(g.nodes)):
        inside = [k for k, (lo, hi) in enumerate(spans) if lo <= i <= hi]
        region.append(("stage", inside[0]) if inside else ("between", sum(lo < i for lo, _ in spans)))
    return region


def dependencies(g: Graph) -> list[set[int]]:
    """Per node, the nodes that must run before it (data, in-place updates, streamed reads)."""
    producer = {t: i for i, n in enumerate(g.nodes) for t in n.outputs}
    readers: dict[str, list[int]] = {}
    for i, n in enumerate(g.nodes):
        for t in n.inputs:
            if t is not None:
                readers.setdefault(t, []).append(i)
    preds: list[set[int]] = [set() for _ in g.nodes]
    for i, n in enumerate(g.nodes):
        preds[i] |= {producer[t] for t in n.inputs if t is not None and t in producer}
        op = get_op(n.op)
        if op.updates_input and n.inputs and n.inputs[0] is not None:
            # readers of the input, or of an alias of it, before it is written over
            shared = {n.inputs[0]}
            for m in g.nodes:
                if get_op(m.op).alias and m.inputs and m.inputs[0] in shared:
                    shared.update(m.outputs)
            preds[i] |= {r for t in shared for r in readers.get(t, []) if r != i}
    for t, rs in readers.items():
        if g[t].streamed or g[t].state:  # a read of state before its update must stay before it
            for a, b in zip(rs, rs[1:]):
                preds[b].add(a)
    return preds


def live_bytes(g: Graph, facts: Facts | None = None) -> list[int]:
    """Bytes of g's plan buffers live at each step."""
    return live_profile(build_buffers(g, facts), len(g.nodes) + 1)


def search_order(g: Graph, evals: int = ORDER_EVALS) -> list[int]:
    """The order (indices into g.nodes) with the lowest `score` found; the identity when none is lower."""
    n = len(g.nodes)
    region = _regions(g)
    preds = dependencies(g)
    succs: list[set[int]] = [set() for _ in range(n)]
    for i, ps in enumerate(preds):
        for p in ps:
            succs[p].add(i)
    bounds: dict[tuple[str, int], tuple[int, int]] = {}
    for i, r in enumerate(region):
        lo, hi = bounds.get(r, (i, i))
        bounds[r] = (min(lo, i), max(hi, i))
    order = list(range(n))
    facts = Facts(g)
    live = live_bytes(g, facts)
    best = (max(live), sum(live))
    used, improved = 1, True
    while improved and used < evals:
        improved = False
        for node in range(n):
            pos = {m: k for k, m in enumerate(order)}
            lo, hi = bounds[region[node]]
            early = max([lo] + [pos[p] + 1 for p in preds[node]])
            late = min([hi] + [pos[s] - 1 for s in succs[node]])
            for target in (early, late):
                a, b = sorted((pos[node], target))
                # a move changes the live bytes only at the steps it passes; it must pass a peak
                if a == b or used >= evals or max(live[a:b + 1]) < best[0]:
                    continue
                trial = order[:]
                trial.insert(target, trial.pop(pos[node]))
                trial_live = live_bytes(reordered(g, trial), facts)
                used += 1
                if (max(trial_live), sum(trial_live)) < best:
                    order, live, best, improved = trial, trial_live, (max(trial_live), sum(trial_live)), True
                    break
    return order
