"""Static arena planning: offsets decided offline from tensor lifetimes.

Every activation tensor (and every op's scratch workspace) becomes a buffer
with a size and a lifetime [first step, last step]; buffers whose lifetimes
overlap must not overlap in the arena. Alias ops (RESHAPE, SQUEEZE) make their
input and output one buffer.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from tinyml.ir import Graph
from tinyml.ops import get_op

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
        if get_op(n.op).alias and n.inputs and n.inputs[0] is not None:
            src = g.tensors[n.inputs[0]]
            if not src.is_const:
                root[find(n.outputs[0])] = find(n.inputs[0])

    last_step = len(g.nodes)  # graph outputs stay live past the last node
    groups: dict[str, Buffer] = {}

    def touch(t: str, step: int) -> None:
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


def place_greedy_by_size(buffers: list[Buffer]) -> int:
    """TFLite Micro's strategy: biggest first, each at the lowest free gap."""
    placed: list[Buffer] = []
    for b in sorted(buffers, key=lambda b: (-b.size, b.first, b.key)):
        busy = sorted((p.offset, p.offset + p.size) for p in placed if p.overlaps_in_time(b))
        off = 0
        for lo, hi in busy:
            if off + b.size <= lo:
                break
            off = max(off, hi)
        b.offset = off
        placed.append(b)
    return max((b.offset + b.size for b in buffers), default=0)


def plan_memory(g: Graph) -> MemoryPlan:
    buffers = build_buffers(g)
    arena = place_greedy_by_size(buffers)
    steps = range(len(g.nodes) + 1)
    lower = max((sum(b.size for b in buffers if b.first <= s <= b.last) for s in steps), default=0)
    offsets = {t: b.offset for b in buffers for t in b.tensors}
    scratch = {
        int(b.key[len("@scratch"):]): (b.offset, b.size) for b in buffers if b.key.startswith("@scratch")
    }
    return MemoryPlan(buffers, offsets, scratch, arena, lower)
