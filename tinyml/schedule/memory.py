"""Static arena planning: offsets decided offline from tensor lifetimes.

Every activation tensor (and every op's scratch workspace) becomes a buffer
with a size and a lifetime [first step, last step]; buffers whose lifetimes
overlap must not overlap in the arena. Alias ops (RESHAPE, SQUEEZE) make their
input and output one buffer, and so do ops run in place (see inplace.py).

Placement is dynamic storage allocation (NP-hard in general). TFLite Micro's
greedy-by-size is one candidate; other orderings (by start, by size x lifetime,
by conflict pressure, by lifetime) often do better on branchy graphs; a seeded
local search over the placement order continues from the best of them, and on
small graphs a bounded branch-and-bound search looks for the optimum. Search
stops as soon as the arena reaches the lower bound (the most bytes live at one
step). The smallest arena wins; the plan reports the lower bound beside it.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field

from tinyml.ir import Graph
from tinyml.ops import get_op
from tinyml.schedule.inplace import inplace_merges

ALIGN = 16


@dataclass
class Buffer:
    """One arena allocation: a group of aliased tensors, or a layer's scratch."""

    key: str
    size: int
    first: int
    last: int
    tensors: list[str] = field(default_factory=list)
    offset: int = -1

    def overlaps_in_time(self, other: "Buffer") -> bool:
        return self.first <= other.last and other.first <= self.last


@dataclass
class MemoryPlan:
    buffers: list[Buffer]
    offsets: dict[str, int]  # tensor name -> arena offset
    scratch: dict[int, tuple[int, int]]  # layer index -> (offset, bytes)
    arena_bytes: int
    lower_bound: int  # max over steps of the bytes live at that step
    strategy: str = "greedy-by-size"  # which placement produced the offsets

    def live_bytes(self, step: int) -> int:
        return sum(b.size for b in self.buffers if b.first <= step <= b.last)


def _align(n: int, a: int = ALIGN) -> int:
    return (n + a - 1) // a * a


def build_buffers(g: Graph) -> list[Buffer]:
    """Lifetimes of every activation buffer and scratch area, in node steps."""
    root: dict[str, str] = {}

    def find(t: str) -> str:
        while root.get(t, t) != t:
            t = root[t]
        return t

    for n in g.nodes:
        op = get_op(n.op)
        if (op.alias or op.updates_input) and n.inputs and n.inputs[0] is not None:
            src = g.tensors[n.inputs[0]]
            if not src.is_const:
                root[find(n.outputs[0])] = find(n.inputs[0])
    for out, inp in inplace_merges(g, find):  # outputs written over a dying input (tinyml/schedule/inplace.py)
        root[find(out)] = find(inp)

    last_step = len(g.nodes)  # graph outputs stay live past the last node
    groups: dict[str, Buffer] = {}

    def touch(t: str, step: int) -> None:
        if g.tensors[t].streamed:  # read through the application's callback, never stored
            return
        r = find(t)
        size = _align(g.tensors[t].nbytes)
        b = groups.get(r)
        if b is None:
            groups[r] = Buffer(r, size, step, step, [t])
            return
        b.size = max(b.size, size)
        b.first, b.last = min(b.first, step), max(b.last, step)
        if t not in b.tensors:
            b.tensors.append(t)

    for t in g.inputs:
        touch(t, 0)
    for step, n in enumerate(g.nodes):
        for t in list(n.inputs) + list(n.outputs):
            if t is not None and not g.tensors[t].is_const:
                touch(t, step)
    for t in g.outputs:
        if not g.tensors[t].is_const:
            touch(t, last_step)

    buffers = list(groups.values())
    for step, n in enumerate(g.nodes):
        size = get_op(n.op).scratch_bytes(g, n)
        if size:
            buffers.append(Buffer(f"@scratch{step}", _align(size), step, step))
    return buffers


def lower_bound(buffers: list[Buffer], steps: int) -> int:
    """The most bytes live at any one step: no placement can use less."""
    live = [0] * max(steps, 1)
    for b in buffers:
        for t in range(b.first, b.last + 1):
            live[t] += b.size
    return max(live, default=0)


class _Problem:
    """Buffers as index arrays, with each one's time-overlapping neighbours."""

    def __init__(self, buffers: list[Buffer], steps: int):
        self.sizes = [b.size for b in buffers]
        self.firsts = [b.first for b in buffers]
        self.lasts = [b.last for b in buffers]
        self.steps = max(steps, max((b.last + 1 for b in buffers), default=1))
        n = len(buffers)
        self.conflicts: list[list[int]] = [[] for _ in range(n)]
        for i in range(n):
            for j in range(i + 1, n):
                if buffers[i].overlaps_in_time(buffers[j]):
                    self.conflicts[i].append(j)
                    self.conflicts[j].append(i)

    def fit(self, i: int, offsets: list[int]) -> int:
        """Lowest offset where buffer i clears every placed buffer live at the same time."""
        size, sizes = self.sizes[i], self.sizes
        busy = sorted((offsets[j], offsets[j] + sizes[j]) for j in self.conflicts[i] if offsets[j] >= 0)
        off = 0
        for lo, hi in busy:
            if off + size <= lo:
                break
            off = max(off, hi)
        return off

    def first_fit(self, order: list[int]) -> tuple[int, list[int]]:
        """Place in `order`, each at its lowest fitting offset; (arena, offsets)."""
        offsets = [-1] * len(self.sizes)
        for i in order:
            offsets[i] = self.fit(i, offsets)
        return max((o + s for o, s in zip(offsets, self.sizes)), default=0), offsets


def _orderings(p: _Problem) -> dict[str, list[int]]:
    """Placement orders worth trying; greedy-by-size (TFLite Micro's) comes first."""
    n = len(p.sizes)
    span = [p.lasts[i] - p.firsts[i] + 1 for i in range(n)]
    pressure = [p.sizes[i] + sum(p.sizes[j] for j in p.conflicts[i]) for i in range(n)]
    keys = {
        "greedy-by-size": lambda i: (-p.sizes[i], p.firsts[i], i),
        "by-start": lambda i: (p.firsts[i], -p.sizes[i], i),
        "by-size-x-lifetime": lambda i: (-p.sizes[i] * span[i], -p.sizes[i], i),
        "by-conflict": lambda i: (-pressure[i], -p.sizes[i], i),
        "by-lifetime": lambda i: (-span[i], -p.sizes[i], i),
    }
    return {name: sorted(range(n), key=key) for name, key in keys.items()}


def _search(p: _Problem, upper: int, lower: int, budget: int) -> tuple[int, list[int]] | None:
    """Branch and bound for a placement below `upper`; None if none found within `budget` nodes.

    Any placement can be lowered until every buffer sits at its lowest
    fitting offset given the others; placing such a packing's buffers by
    increasing offset with first-fit rebuilds it exactly. So searching orders
    whose first-fit offsets never decrease (ties by index) covers an optimal
    packing, each once. Bound: buffers still to place lie above the last
    offset and do not overlap each other, so the last offset plus the most
    unplaced bytes live at one step cannot exceed the arena.
    """
    n = len(p.sizes)
    offsets = [-1] * n
    unplaced = [0] * p.steps
    for i in range(n):
        for t in range(p.firsts[i], p.lasts[i] + 1):
            unplaced[t] += p.sizes[i]
    best: list = [upper, None]
    nodes = [0]

    def take(i: int, sign: int) -> None:
        for t in range(p.firsts[i], p.lasts[i] + 1):
            unplaced[t] -= sign * p.sizes[i]

    def dfs(placed: int, last_off: int, last_i: int, peak: int) -> None:
        if placed == n:
            best[0], best[1] = peak, offsets.copy()
            return
        nodes[0] += 1
        if nodes[0] > budget or max(peak, last_off + max(unplaced)) >= best[0]:
            return
        cands = []
        for i in range(n):
            if offsets[i] >= 0:
                continue
            f = p.fit(i, offsets)
            if f + p.sizes[i] >= best[0]:
                return  # fits only rise as buffers are added: this branch cannot improve
            if f < last_off or (f == last_off and i < last_i):
                continue
            cands.append((f, -p.sizes[i], i))
        for f, _, i in sorted(cands):
            offsets[i] = f
            take(i, 1)
            dfs(placed + 1, f, i, max(peak, f + p.sizes[i]))
            take(i, -1)
            offsets[i] = -1
            if best[0] <= lower or nodes[0] > budget:
                return

    dfs(0, 0, -1, 0)
    return None if best[1] is None else (best[0], best[1])


def _local_search(p: _Problem, order: list[int], lower: int, moves: int) -> tuple[int, list[int]]:
    """Move one buffer elsewhere in the placement order; keep moves that do not grow the arena.

    Accepting sideways moves lets the order drift across plateaus, which is
    what first-fit arenas mostly are. Seeded, so plans are reproducible.
    """
    rng = random.Random(0)
    current = order[:]
    cur_arena, cur_offsets = p.first_fit(current)
    best = (cur_arena, cur_offsets)
    for _ in range(moves):
        if best[0] <= lower or len(current) < 2:
            break
        trial = current[:]
        trial.insert(rng.randrange(len(trial)), trial.pop(rng.randrange(len(trial))))
        arena, offsets = p.first_fit(trial)
        if arena <= cur_arena:
            current, cur_arena = trial, arena
            if arena < best[0]:
                best = (arena, offsets)
    return best


# Local search tries this many order changes; the exact search runs on graphs
# up to this many buffers, for at most this many search nodes.
LOCAL_MOVES = 1000
SEARCH_MAX_BUFFERS = 16
SEARCH_BUDGET = 20000


def place(buffers: list[Buffer], steps: int) -> str:
    """Set every buffer's offset: several orderings, then local search, then an exact search.

    Returns the name of the strategy that won. Greedy-by-size is the first
    candidate and only a strictly smaller arena replaces it, so the result is
    never worse than TFLite Micro's own strategy.
    """
    for b in buffers:
        b.offset = 0
    live = [b for b in buffers if b.size > 0]
    if not live:
        return "empty"
    p = _Problem(live, steps)
    lower = lower_bound(live, p.steps)
    best_name, best, offsets, best_order = "", None, None, None
    for name, order in _orderings(p).items():
        arena, offs = p.first_fit(order)
        if best is None or arena < best:
            best_name, best, offsets, best_order = name, arena, offs, order
        if best <= lower:
            break
    if best > lower:
        arena, offs = _local_search(p, best_order, lower, LOCAL_MOVES)
        if arena < best:
            best_name, best, offsets = "local-search", arena, offs
    if best > lower and len(live) <= SEARCH_MAX_BUFFERS:
        found = _search(p, best, lower, SEARCH_BUDGET)
        if found is not None and found[0] < best:
            best_name, (best, offsets) = "exact-search", found
    for b, o in zip(live, offsets):
        b.offset = o
    return best_name


def place_greedy_by_size(buffers: list[Buffer]) -> int:
    """TFLite Micro's strategy: biggest first, each at the lowest free gap."""
    for b in buffers:
        b.offset = 0
    live = [b for b in buffers if b.size > 0]
    p = _Problem(live, 0)
    arena, offsets = p.first_fit(_orderings(p)["greedy-by-size"])
    for b, o in zip(live, offsets):
        b.offset = o
    return arena


def plan_memory(g: Graph) -> MemoryPlan:
    buffers = build_buffers(g)
    steps = len(g.nodes) + 1
    strategy = place(buffers, steps)
    arena = max((b.offset + b.size for b in buffers), default=0)
    offsets = {t: b.offset for b in buffers for t in b.tensors}
    scratch = {
        int(b.key[len("@scratch"):]): (b.offset, b.size) for b in buffers if b.key.startswith("@scratch")
    }
    return MemoryPlan(buffers, offsets, scratch, arena, lower_bound(buffers, steps), strategy)
