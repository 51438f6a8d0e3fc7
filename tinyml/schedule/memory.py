"""Static arena planning: offsets decided offline from tensor lifetimes.

Every activation tensor (and every op's scratch workspace) becomes a buffer
with a size and a lifetime [first step, last step] (lifetimes.py); buffers whose
lifetimes overlap must not overlap in the arena. Alias ops (RESHAPE, SQUEEZE) make their
input and output one buffer, and so do ops run in place (see inplace.py).

An in-place output smaller than its input (a stride-2 depthwise, a projecting
1x1 convolution) is written into the head of the dying input's bytes, and the
tail is free from the next step; a larger one (an expanding 1x1 convolution)
is written over an input that lies at the end of the output's bytes, so the
output's head is only taken at that step. Such a group's bytes change over
its life: it becomes rectangles (bytes x steps), a head and segments tied to
the head's offset (`base`, `delta`), so every Buffer still has one size and
one lifetime and the most bytes live at a step (the lower bound) is a plain
sum. Placement moves a head and its segments as one unit.

Placement is dynamic storage allocation (NP-hard in general). TFLite Micro's
greedy-by-size is one candidate; other orderings (by start, by size x lifetime,
by conflict pressure, by lifetime) often do better on branchy graphs; a seeded
local search over the placement order continues from the best of them, then
(well above the bound) a repack that re-orders only the units around the
arena's top and holds the rest in place (patch stages), and on
small graphs a bounded branch-and-bound search looks for the optimum. Search
stops as soon as the arena reaches the lower bound (the most bytes live at one
step). The smallest arena wins; the plan reports the lower bound beside it.
"""
from __future__ import annotations

import random
from bisect import bisect_right
from collections.abc import Callable
from itertools import accumulate
from dataclasses import dataclass, field

from tinyml.ir import Graph
from tinyml.schedule.effort import DEFAULT as DEFAULT_EFFORT, scaled
from tinyml.schedule.inplace import ALIGN
from tinyml.schedule.lifetimes import Buffer, build_buffers, live_profile, lower_bound
from tinyml.schedule.order import ORDER_EVALS, reordered, search_order


@dataclass
class MemoryPlan:
    buffers: list[Buffer]
    offsets: dict[str, int]  # tensor name -> arena offset
    scratch: dict[int, tuple[int, int]]  # layer index -> (offset, bytes)
    arena_bytes: int
    lower_bound: int  # max over steps of the bytes live at that step
    strategy: str = "greedy-by-size"  # which placement produced the offsets
    # the execution order planned, as indices into the node list plan_memory was given;
    # None when that order was kept
    order: list[int] | None = None
    # state tensors (Tensor.state): offsets in their own region outside the arena, kept
    # across inferences and restored by tinyml_reset(); counted in the RAM figures
    state: dict[str, int] = field(default_factory=dict)
    state_bytes: int = 0
    _live: list[int] | None = field(default=None, repr=False, compare=False)

    @property
    def moved(self) -> int:
        """How many nodes run at another step than in the order given."""
        return 0 if self.order is None else sum(i != k for k, i in enumerate(self.order))

    def live_bytes(self, step: int) -> int:
        if self._live is None:  # reports ask once per layer: one pass over the buffers
            self._live = live_profile(self.buffers, max((b.last + 1 for b in self.buffers), default=1))
        return self._live[step] if 0 <= step < len(self._live) else 0


def _units(buffers: list[Buffer]) -> list[list[Buffer]]:
    """Buffers placed together: each head with its tail segments (head first); empty units left out."""
    units: dict[str, list[Buffer]] = {b.key: [b] for b in buffers if b.base is None}
    for b in buffers:
        if b.base is not None:
            units[b.base].append(b)
    return [u for u in units.values() if any(b.size for b in u)]


class _Problem:
    """Units (a buffer and its segments) as index arrays, with each one's time-overlapping neighbours.

    A unit's extent at a step is how far above its offset its live bytes
    reach. Where a unit's live bytes run from its offset up to its extent at
    every step, two units live at common steps must keep those ranges apart;
    every forbidden offset range contains the other's offset, so this is one
    range: unit i must lie `need` bytes below j or `their` bytes above it (the
    largest extents over their common steps). A unit with a hole (bytes not
    yet taken below live ones: an input at the end of an expanding output)
    forbids one range per pair of segments live together instead (`holes`).
    """

    def __init__(self, units: list[list[Buffer]], steps: int):
        self.pieces = [[(b.first, b.last, b.delta, b.size) for b in u if b.size] for u in units]
        self.sizes = [max(d + s for _, _, d, s in p) for p in self.pieces]
        self.firsts = [min(f for f, _, _, _ in p) for p in self.pieces]
        self.lasts = [max(la for _, la, _, _ in p) for p in self.pieces]
        self.steps = max(steps, max((la + 1 for la in self.lasts), default=1))
        n = len(units)
        holed = [p[0][2] > 0 if len(p) == 1 else  # one rectangle: a hole iff it sits above its offset
                 any(self.held(i, t) < self.extent(i, t, t) for t in range(self.firsts[i], self.lasts[i] + 1))
                 for i, p in enumerate(self.pieces)]
        self.conflicts: list[list[tuple[int, int, int]]] = [[] for _ in range(n)]  # (j, need, their)
        self.holes: list[dict[int, list[tuple[int, int]]]] = [{} for _ in range(n)]  # j -> forbidden (lo, hi) - o_j
        by_first = sorted(range(n), key=lambda k: self.firsts[k])
        for pos, u in enumerate(by_first):  # a sweep over start steps: only units live together are paired
            for v in by_first[pos + 1:]:
                if self.firsts[v] > self.lasts[u]:
                    break
                i, j = min(u, v), max(u, v)
                a, b = max(self.firsts[i], self.firsts[j]), min(self.lasts[i], self.lasts[j])
                if a <= b:
                    ei, ej = self.extent(i, a, b), self.extent(j, a, b)
                    self.conflicts[i].append((j, ei, ej))
                    self.conflicts[j].append((i, ej, ei))
                    if holed[i] or holed[j]:
                        rel = [(dq - dp - sp, dq + sq - dp) for fp, lp, dp, sp in self.pieces[i]
                               for fq, lq, dq, sq in self.pieces[j] if fp <= lq and fq <= lp]
                        self.holes[i][j] = rel
                        self.holes[j][i] = [(-hi, -lo) for lo, hi in rel]
        for c in self.conflicts:  # by neighbour index, as the pair order used to give them
            c.sort()
        self.holed = any(holed)
        self.neighbours = [{j for j, _, _ in c} for c in self.conflicts]
        # units that need their full size against every neighbour take the one-pass scan
        self.uniform = [not self.holes[i] and all(need == self.sizes[i] for _, need, _ in self.conflicts[i])
                        for i in range(n)]

    def extent(self, i: int, a: int, b: int) -> int:
        """How far above its offset unit i reaches at some step in [a, b]."""
        pieces = self.pieces[i]
        if len(pieces) == 1:  # most units: one rectangle
            f, la, d, s = pieces[0]
            return d + s if f <= b and a <= la else 0
        return max((d + s for f, la, d, s in pieces if f <= b and a <= la), default=0)

    def held(self, i: int, t: int) -> int:
        """Bytes unit i holds at step t."""
        return sum(s for f, la, _, s in self.pieces[i] if f <= t <= la)

    def fit(self, i: int, offsets: list[int]) -> int:
        """Lowest offset where unit i clears every placed unit live at the same time."""
        if self.uniform[i]:
            size = self.sizes[i]
            off = 0
            busy = [(offsets[j], offsets[j] + their) for j, _, their in self.conflicts[i] if offsets[j] >= 0]
            busy.sort()
            for lo, hi in busy:
                if off + size <= lo:
                    break
                if hi > off:
                    off = hi
            return off
        busy = []  # offsets strictly between lo and hi clash
        for j, need, their in self.conflicts[i]:
            o = offsets[j]
            if o >= 0:
                busy += [(o + lo, o + hi) for lo, hi in self.holes[i].get(j, [(-need, their)])]
        busy.sort()
        off = 0
        for lo, hi in busy:  # by start: once one starts at or above `off`, no later one clashes either
            if lo >= off:
                break
            if hi > off:  # every offset up to its top clashes with it
                off = hi
        return off

    def first_fit(self, order: list[int]) -> tuple[int, list[int]]:
        """Place in `order`, each at its lowest fitting offset; (arena, offsets)."""
        offsets = [-1] * len(self.sizes)
        for i in order:
            offsets[i] = self.fit(i, offsets)
        return max((o + s for o, s in zip(offsets, self.sizes)), default=0), offsets


def _greedy_key(p: _Problem):
    """TFLite Micro's order: biggest first, then earliest."""
    return lambda i: (-p.sizes[i], p.firsts[i], i)


def _orderings(p: _Problem) -> dict[str, list[int]]:
    """Placement orders worth trying; greedy-by-size (TFLite Micro's) comes first."""
    n = len(p.sizes)
    span = [p.lasts[i] - p.firsts[i] + 1 for i in range(n)]
    pressure = [p.sizes[i] + sum(their for _, _, their in p.conflicts[i]) for i in range(n)]
    keys = {
        "greedy-by-size": _greedy_key(p),
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
            unplaced[t] += p.held(i, t)
    best: list = [upper, None]
    nodes = [0]

    def take(i: int, sign: int) -> None:
        for t in range(p.firsts[i], p.lasts[i] + 1):
            unplaced[t] -= sign * p.held(i, t)

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


def _crowding(p: _Problem, offsets: list[int]) -> tuple[int, int]:
    """(arena, bytes of units reaching into the top sixteenth): what local search lowers."""
    tops = [o + s for o, s in zip(offsets, p.sizes)]
    arena = max(tops, default=0)
    near = arena - arena // 16
    return arena, sum(t - near for t in tops if t > near)


def _local_search(p: _Problem, order: list[int], lower: int, moves: int, patience: int) -> tuple[int, list[int]]:
    """Move one unit elsewhere in the placement order; keep moves that do not crowd the top more.

    Most moves are aimed: a unit reaching the arena's top goes to a random
    earlier place in the order, where first-fit tends to put it lower; the
    rest move any unit anywhere. Sideways moves are accepted so the order
    drifts across plateaus, which is what first-fit arenas mostly are; the
    second key (how far units reach into the top sixteenth) rewards moves
    that thin the top out before the arena itself can drop. Seeded, so plans
    are reproducible.
    """
    rng = random.Random(0)
    current = order[:]
    arena, offsets = p.first_fit(current)
    score = _crowding(p, offsets)
    best = (arena, offsets)
    since = 0  # moves since the best arena last dropped
    for _ in range(moves):
        if best[0] <= lower or len(current) < 2 or since >= patience:
            break
        since += 1
        trial = current[:]
        if rng.random() < AIMED:
            i = rng.choice([i for i, o in enumerate(offsets) if o + p.sizes[i] == arena])
            k = trial.index(i)
            b = rng.randrange(k + 1)
        else:
            b = rng.randrange(len(trial))
            k = rng.randrange(len(trial))
        trial.insert(b, trial.pop(k))
        # first-fit of the whole trial order, re-placing only the units the move can reach
        offs = _refit_moved(p, trial, offsets, trial[b], min(k, b), max(k, b))
        s = _crowding(p, offs)
        a = s[0]
        if s <= score:
            current, score, arena, offsets = trial, s, a, offs
            if a < best[0]:
                best, since = (a, offs), 0
    return best


def _refit(p: _Problem, order: list[int], offsets: list[int], start: int) -> list[int]:
    """`offsets` with order[start:] lifted out and placed again by first-fit in that order."""
    out = offsets[:]
    for i in order[start:]:
        out[i] = -1
    for i in order[start:]:
        out[i] = p.fit(i, out)
    return out


def _refit_moved(p: _Problem, order: list[int], offsets: list[int], moved: int, start: int, end: int) -> list[int]:
    """_refit(p, order, offsets, start) where `offsets` is first-fit in `order` but for `moved`,
    which was taken from one end of order[start:end + 1] to the other.

    A unit sees the same neighbours as before, so lands where it was, unless
    one of them moved, or `moved` is one and changed sides with it: only
    those units are placed again.
    """
    out = offsets[:]
    for i in order[start:]:
        out[i] = -1
    changed: set[int] = set()
    crossed = p.neighbours[moved]
    for k in range(start, len(order)):
        i = order[k]
        if i == moved or (k <= end and i in crossed) or not changed.isdisjoint(p.neighbours[i]):
            out[i] = p.fit(i, out)
            if out[i] != offsets[i]:
                changed.add(i)
        else:
            out[i] = offsets[i]
    return out


def _crowding_beside(p: _Problem, offsets: list[int], moving: list[int]) -> Callable[[list[int]], tuple[int, int]]:
    """_crowding for plans that differ from `offsets` only in the units `moving`: the rest is summed once."""
    inside = set(moving)
    fixed = sorted(o + s for i, (o, s) in enumerate(zip(offsets, p.sizes)) if i not in inside)
    tail = list(accumulate(reversed(fixed), initial=0))[::-1]  # tail[k] = sum(fixed[k:])

    def crowding(offs: list[int]) -> tuple[int, int]:
        tops = [offs[i] + p.sizes[i] for i in moving]
        arena = max(fixed[-1] if fixed else 0, max(tops, default=0))
        near = arena - arena // 16
        k = bisect_right(fixed, near)
        return arena, tail[k] - near * (len(fixed) - k) + sum(t - near for t in tops if t > near)
    return crowding


def _repack(p: _Problem, offsets: list[int], lower: int, rounds: int,
            placements: int | None = None) -> tuple[int, list[int]]:
    """Lift the units around the arena's top out and place them again; everything else stays put.

    Local search over the whole placement order stalls on patch stages:
    moving one unit early in the order re-places every unit after it, so a
    move that would help at the top mostly wrecks some other step and is
    refused. Here a round takes a unit at the top, the steps around it
    (a random window), and the units live there, and searches their order
    (first-fit against the units held fixed, same moves and acceptance as
    _local_search) before comparing with the whole plan. Re-placing from the
    moved position only is exact: units placed before it see the same
    neighbours. Seeded, so plans are reproducible. Stops after `placements` units placed
    (default REPACK_PLACEMENTS_PER_UNIT per unit).
    """
    rng = random.Random(0)
    n = len(offsets)
    if placements is None:
        placements = REPACK_PLACEMENTS_PER_UNIT * n
    current, score = offsets, _crowding(p, offsets)
    best = (score[0], offsets)
    placed = 0  # units placed so far: what the time goes into
    for _ in range(rounds):
        if best[0] <= lower or placed >= placements:
            break
        c = rng.choice([i for i in range(n) if current[i] + p.sizes[i] == score[0]])
        w = rng.randint(0, REPACK_WINDOW)
        lo, hi = p.firsts[c] - w, p.lasts[c] + w
        order = sorted((i for i in range(n) if p.firsts[i] <= hi and lo <= p.lasts[i]), key=lambda i: (current[i], i))
        crowding = _crowding_beside(p, current, order)
        offs = _refit(p, order, current, 0)
        s = crowding(offs)
        placed += len(order)
        for _ in range(REPACK_MOVES):
            trial = order[:]
            if rng.random() < AIMED:
                top = max(offs[i] + p.sizes[i] for i in order)
                a = trial.index(rng.choice([i for i in order if offs[i] + p.sizes[i] == top]))
                b = rng.randrange(a + 1)
            else:
                a, b = rng.randrange(len(trial)), rng.randrange(len(trial))
            trial.insert(b, trial.pop(a))
            t_offs = _refit_moved(p, trial, offs, trial[b], min(a, b), max(a, b))
            placed += len(trial) - min(a, b)
            t_s = crowding(t_offs)
            if t_s <= s:
                order, offs, s = trial, t_offs, t_s
                if s < score:  # already better than the whole plan: take it and start another round
                    break
        if s <= score:
            current, score = offs, s
            if s[0] < best[0]:
                best = (s[0], offs)
    return best


# Local search tries this many order changes, and stops after LOCAL_PATIENCE
# without a smaller arena; the exact search runs on graphs up to this many
# buffers, for at most this many search nodes.
LOCAL_MOVES = 1000
LOCAL_PATIENCE = 400
AIMED = 0.7  # share of local-search moves that lift a unit at the arena's top
# Repacking runs where the arena is at least REPACK_MIN_EXCESS above the lower
# bound, for this many rounds (REPACK_MOVES order changes each, on the units live
# within REPACK_WINDOW steps of a unit at the top) or until it has placed
# REPACK_PLACEMENTS_PER_UNIT units per unit of the problem (small graphs, whose
# windows span them whole, stop early); no patience: its arena often drops only
# after hundreds of sideways rounds.
REPACK_MIN_EXCESS = 0.005
REPACK_ROUNDS = 600
REPACK_MOVES = 40
REPACK_WINDOW = 40
REPACK_PLACEMENTS_PER_UNIT = 1500
SEARCH_MAX_BUFFERS = 16
SEARCH_BUDGET = 20000


def _set_offsets(units: list[list[Buffer]], offsets: list[int]) -> None:
    for u, o in zip(units, offsets):
        for b in u:
            b.offset = o + b.delta


def place(buffers: list[Buffer], steps: int, effort: float = DEFAULT_EFFORT) -> str:
    """Set every buffer's offset: several orderings, then local search, repacking, an exact search.

    Returns the name of the strategy that won. Greedy-by-size is the first
    candidate and only a strictly smaller arena replaces it, so the result is
    never worse than TFLite Micro's own strategy. `effort` scales every search's budget
    (tinyml/schedule/effort.py).
    """
    for b in buffers:
        b.offset = b.delta
    units = _units(buffers)
    if not units:
        return "empty"
    p = _Problem(units, steps)
    lower = lower_bound(buffers, p.steps)
    best_name, best, offsets, best_order = "", None, None, None
    for name, order in _orderings(p).items():
        arena, offs = p.first_fit(order)
        if best is None or arena < best:
            best_name, best, offsets, best_order = name, arena, offs, order
        if best <= lower:
            break
    if best > lower:
        arena, offs = _local_search(p, best_order, lower, scaled(LOCAL_MOVES, effort), scaled(LOCAL_PATIENCE, effort))
        if arena < best:
            best_name, best, offsets = "local-search", arena, offs
    if best > lower * (1 + REPACK_MIN_EXCESS):
        arena, offs = _repack(p, offsets, lower, scaled(REPACK_ROUNDS, effort),
                              scaled(REPACK_PLACEMENTS_PER_UNIT * len(units), effort))
        if arena < best:
            best_name, best, offsets = "repack", arena, offs
    if best > lower and len(units) <= SEARCH_MAX_BUFFERS and not p.holed:  # its proof assumes no holes
        found = _search(p, best, lower, scaled(SEARCH_BUDGET, effort))
        if found is not None and found[0] < best:
            best_name, (best, offsets) = "exact-search", found
    _set_offsets(units, offsets)
    return best_name


def place_greedy_by_size(buffers: list[Buffer]) -> int:
    """TFLite Micro's strategy: biggest first, each at the lowest free gap."""
    for b in buffers:
        b.offset = b.delta
    units = _units(buffers)
    p = _Problem(units, 0)
    arena, offsets = p.first_fit(sorted(range(len(p.sizes)), key=_greedy_key(p)))
    _set_offsets(units, offsets)
    return arena


def _plan(g: Graph, buffers: list[Buffer], effort: float) -> MemoryPlan:
    steps = len(g.nodes) + 1
    strategy = place(buffers, steps, effort)
    arena = max((b.offset + b.size for b in buffers), default=0)
    offsets = {t: b.offset + b.at.get(t, 0) for b in buffers for t in b.tensors}
    scratch = {
        int(b.key[len("@scratch"):]): (b.offset, b.size)
        for b in buffers if b.base is None and b.key.startswith("@scratch")
    }
    state, state_bytes = state_layout(g)
    return MemoryPlan(buffers, offsets, scratch, arena, lower_bound(buffers, steps), strategy,
                      state=state, state_bytes=state_bytes)


def state_layout(g: Graph) -> tuple[dict[str, int], int]:
    """Offsets of the state tensors in their own region (kept across inferences), and its size."""
    offsets, end = {}, 0
    for t in g.states():
        offsets[t.name] = end
        end += -(-t.nbytes // ALIGN) * ALIGN
    return offsets, end


# An expanding in-place merge puts a hole below its input (the output's head,
# not yet written), which placement may fail to fill: a plan with them that
# does not reach its lower bound is kept only when it beats the plan without
# them by this fraction of the arena.
EXPAND_MIN_GAIN = 0.01


def _shape(buffers: list[Buffer]) -> list[tuple]:
    return sorted((b.key, b.size, b.first, b.last, b.delta) for b in buffers)


def _best_plan(g: Graph, effort: float) -> MemoryPlan:
    """The plan with expanding in-place merges, unless the plan without them is as good (see EXPAND_MIN_GAIN)."""
    full = _plan(g, build_buffers(g), effort)
    if full.arena_bytes <= full.lower_bound:
        return full
    plain = build_buffers(g, expand=False)
    if _shape(plain) == _shape(full.buffers):
        return full
    other = _plan(g, plain, effort)
    return full if full.arena_bytes < other.arena_bytes * (1 - EXPAND_MIN_GAIN) else other


def plan_memory(g: Graph, reorder: bool = True, effort: float = DEFAULT_EFFORT) -> MemoryPlan:
    """Offsets for every activation and scratch area of `g`.

    With `reorder`, other valid node orders are searched (tinyml/schedule/order.py);
    when one gives a strictly smaller arena, g.nodes is put in that order
    (in place, so the caller emits what was planned) and plan.order says
    where each node came from. `effort` scales the searches' budgets (tinyml/schedule/effort.py).
    """
    plan = _best_plan(g, effort)
    if not reorder:
        return plan
    order = search_order(g, scaled(ORDER_EVALS, effort))
    if order != sorted(order):
        trial = _best_plan(reordered(g, order), effort)
        if trial.arena_bytes < plan.arena_bytes:
            g.nodes[:] = [g.nodes[i] for i in order]
            trial.order = order
            return trial
    return plan
