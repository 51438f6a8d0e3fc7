"""In-place execution: which outputs may take over the buffer of an input.

An op declares what its kernel tolerates (`Op.inplace_inputs`: it reads
every element of that input before writing over it). Whether the graph
allows it is decided here, in execution order, on buffer groups (tensors
already sharing memory through alias ops, plus the in-place merges decided
before): the input's group must die at this node (no later reader, not a
graph output), must not hold a graph input (the caller owns those bytes
and may run the model again on them), must be exactly as large as the
output, and no other input of the node may read from it. The memory
planner (tinyml/schedule/memory.py) then gives each merged pair one buffer.
"""
from __future__ import annotations

from collections.abc import Callable

from tinyml.ir import Graph, Node
from tinyml.ops import get_op

ALIGN = 16  # arena alignment (the planner's: lifetimes.py and memory.py import this module)


class Facts:
    """What the planner asks of nodes and tensors, remembered: none of it depends on the node order,
    and the order search (tinyml/schedule/order.py) plans many orders of one graph."""

    def __init__(self, g: Graph):
        self.g = g
        self._inplace: dict[int, tuple[int, ...]] = {}
        self._scratch: dict[int, tuple[int, int]] = {}
        self._nbytes: dict[str, int] = {}
        self.const = frozenset(name for name, t in g.tensors.items() if t.is_const)
        # the callback's (streamed) or the state region's: never in the arena
        self.outside = frozenset(name for name, t in g.tensors.items() if t.streamed or t.state)
        self._readers: dict[str, list[Node]] | None = None

    def readers(self) -> dict[str, list[Node]]:
        """Per tensor, the nodes that read it (in the graph's order when first asked; the
        planner only asks whether there is exactly one)."""
        if self._readers is None:
            self._readers = {}
            for n in self.g.nodes:
                for t in n.inputs:
                    if t is not None:
                        self._readers.setdefault(t, []).append(n)
        return self._readers

    def inplace_inputs(self, n: Node) -> tuple[int, ...]:
        if id(n) not in self._inplace:
            self._inplace[id(n)] = tuple(get_op(n.op).inplace_inputs(self.g, n))
        return self._inplace[id(n)]

    def scratch_bytes(self, n: Node) -> tuple[int, int]:
        """(needed, optional) workspace of n's kernel."""
        if id(n) not in self._scratch:
            op = get_op(n.op)
            self._scratch[id(n)] = (op.scratch_bytes(self.g, n), op.optional_scratch_bytes(self.g, n))
        return self._scratch[id(n)]

    def nbytes(self, t: str) -> int:
        if t not in self._nbytes:
            self._nbytes[t] = self.g[t].nbytes
        return self._nbytes[t]


def inplace_merges(g: Graph, find: Callable[[str], str], facts: Facts | None = None,
                   expand: bool = True) -> list[tuple[str, str]]:
    """(output, input) pairs that may share a buffer, given the alias groups `find` already forms.

    `expand`: also merge outputs larger than their input (see below).

    Every legal merge is taken: a merged buffer holds the larger of the two
    at this step and only what is live before and after, so it never holds
    more bytes at any step than two separate buffers would. Each decision is local to its node, so it
    does not depend on distant layers (the patch search's lower bounds rely
    on that).
    """
    merged: dict[str, str] = {}

    def group(t: str) -> str:
        r = find(t)
        while merged.get(r, r) != r:
            r = merged[r]
        return r

    end = len(g.nodes)  # graph outputs stay live past the last node
    last: dict[str, int] = {}
    pinned = {find(t) for t in g.inputs}
    facts = facts or Facts(g)
    const = facts.const
    for step, n in enumerate(g.nodes):
        for t in (*n.inputs, *n.outputs):
            if t is not None and t not in const:
                last[find(t)] = step  # steps only grow
    for t in g.outputs:
        if t not in const:
            last[find(t)] = end
    readers = facts.readers()

    def expands(y: str) -> bool:
        """Whether y's only reader is an op that may write a larger output over it."""
        rs = readers.get(y, [])
        return expand and len(rs) == 1 and y not in g.outputs and len(rs[0].outputs) == 1 \
            and facts.nbytes(rs[0].outputs[0]) > facts.nbytes(y) \
            and any(rs[0].inputs[i] == y for i in facts.inplace_inputs(rs[0]))

    pairs: list[tuple[str, str]] = []

    def aligned(t: str) -> int:
        return -(-facts.nbytes(t) // ALIGN) * ALIGN

    height: dict[str, int] = {}  # per merged group, how far its bytes reach above the current tensor's offset
    for step, n in enumerate(g.nodes):
        if len(n.outputs) != 1:
            continue
        y = n.outputs[0]
        for idx in facts.inplace_inputs(n):
            x = n.inputs[idx]
            if x is None or g[x].is_const or g[x].state or g[x].bits != g[y].bits:
                continue  # (a packed 4-bit tensor and an int8 one do not advance alike)
            gx, gy = group(x), group(y)
            others = {group(t) for t in n.inputs if t is not None and t != x and t not in const}
            if gx == gy or gx in pinned or last[gx] != step or gx in others:
                continue
            hx = height.get(gx, aligned(x))
            gap = max(0, aligned(y) - aligned(x)) if facts.nbytes(y) > facts.nbytes(x) else 0
            # An expanding output has its input at its end, and with it all the bytes the input's
            # group ever held: where they reach above the input, each expansion would lift them
            # above the output and a chain of blocks would climb. So only an input no taller than
            # itself expands in place, and a shrinking output that an expansion reads next stays
            # apart for it (either merge saves the smaller tensor at one step).
            if (gap and (not expand or hx > aligned(x))) or (facts.nbytes(y) < facts.nbytes(x) and expands(y)):
                continue
            merged[gy] = gx
            height[gx] = max(aligned(y), gap + hx)
            last[gx] = last[gy]
            pairs.append((y, x))
            break
    return pairs
