"""In-place execution: which outputs may take over the buffer of an input.

An op declares what its kernel tolerates (`Op.inplace_inputs`: it reads
every element of that input before writing over it). Whether the graph
allows it is decided here, in execution order, on buffer groups (tensors
already sharing memory through alias ops, plus the in-place merges decided
before): the input's group must die at this node (no later reader, not a
graph output), must not hold a graph input (the caller owns those bytes
and may run the model again on them), must be at least as large as the
output, and no other input of the node may read from it. The memory
planner (tinyml/schedule/memory.py) then gives each merged pair one buffer.
"""
from __future__ import annotations

from collections.abc import Callable

from tinyml.ir import Graph
from tinyml.ops import get_op


def inplace_merges(g: Graph, find: Callable[[str], str]) -> list[tuple[str, str]]:
    """(output, input) pairs that may share a buffer, given the alias groups `find` already forms.

    A merged buffer keeps the input's size for the output's whole life, so an
    output smaller than its input (stride 2, a projecting 1x1) can cost more
    than it saves: such merges are kept one by one, in execution order, only
    where they do not raise the peak of live bytes (the plan's lower bound).
    """
    groups = _Groups(g, find)
    shrinking = [y for y, _ in _decide(g, groups, lambda y: True) if groups.shrinks(y)]
    allowed: set[str] = set()
    best = groups.peak(_decide(g, groups, allowed.__contains__))
    for y in shrinking:  # greedily, in execution order: keep each shrinking merge that does not raise the peak
        trial = groups.peak(_decide(g, groups, (allowed | {y}).__contains__))
        if trial <= best:
            allowed.add(y)
            best = trial
    return _decide(g, groups, allowed.__contains__)


class _Groups:
    """Buffer groups under the alias union: lifetime [first, last] and bytes, plus pinned graph inputs."""

    def __init__(self, g: Graph, find: Callable[[str], str]):
        self.find = find
        self.end = len(g.nodes)  # graph outputs stay live past the last node
        self.first: dict[str, int] = {}
        self.last: dict[str, int] = {}
        self.size: dict[str, int] = {}
        self.pinned: set[str] = {find(t) for t in g.inputs}
        for t in g.inputs:
            self._touch(g, t, 0)
        for step, n in enumerate(g.nodes):
            for t in list(n.inputs) + list(n.outputs):
                if t is not None and not g[t].is_const:
                    self._touch(g, t, step)
        for t in g.outputs:
            if not g[t].is_const:
                self.last[find(t)] = self.end
        self.scratch = [get_op(n.op).scratch_bytes(g, n) for n in g.nodes]
        self.smaller: set[str] = set()  # outputs merged into a larger input by some _decide

    def _touch(self, g: Graph, t: str, step: int) -> None:
        r = self.find(t)
        self.first[r] = min(self.first.get(r, step), step)
        self.last[r] = max(self.last.get(r, step), step)
        self.size[r] = max(self.size.get(r, 0), g[t].nbytes)

    def shrinks(self, y: str) -> bool:
        """Output `y` is smaller than the input it would be written over (known after _decide)."""
        return y in self.smaller

    def peak(self, pairs: list[tuple[str, str]]) -> int:
        """Most bytes live at one step once `pairs` share buffers."""
        merged: dict[str, str] = {}
        for out, inp in pairs:
            merged[self.find(out)] = self.find(inp)

        def top(r: str) -> str:
            while merged.get(r, r) != r:
                r = merged[r]
            return r

        span: dict[str, list[int]] = {}
        for r in self.size:
            s = span.setdefault(top(r), [self.first[r], self.last[r], 0])
            s[0], s[1], s[2] = min(s[0], self.first[r]), max(s[1], self.last[r]), max(s[2], self.size[r])
        live = [0] * (self.end + 1)
        for first, last, size in span.values():
            for step in range(first, last + 1):
                live[step] += size
        for step, extra in enumerate(self.scratch):
            live[step] += extra
        return max(live, default=0)


def _decide(g: Graph, groups: _Groups, shrink: Callable[[str], bool]) -> list[tuple[str, str]]:
    """The merges legal in execution order; an output smaller than its input only where shrink(output)."""
    merged: dict[str, str] = {}

    def group(t: str) -> str:
        r = groups.find(t)
        while merged.get(r, r) != r:
            r = merged[r]
        return r

    last, size = dict(groups.last), groups.size
    pairs: list[tuple[str, str]] = []
    for step, n in enumerate(g.nodes):
        if len(n.outputs) != 1:
            continue
        y = n.outputs[0]
        for idx in get_op(n.op).inplace_inputs(g, n):
            x = n.inputs[idx]
            if x is None or g[x].is_const:
                continue
            gx, gy = group(x), group(y)
            others = {group(t) for t in n.inputs if t is not None and t != x and not g[t].is_const}
            if gx == gy or gx in groups.pinned or last[gx] != step or gx in others:
                continue
            if size[gy] > size[gx] or (size[gy] < size[gx] and not shrink(y)):
                continue
            if size[gy] < size[gx]:
                groups.smaller.add(y)
            merged[gy] = gx
            last[gx] = last[gy]
            pairs.append((y, x))
            break
    return pairs
