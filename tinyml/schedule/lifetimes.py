"""Activation buffers and their lifetimes: what the planner places and the order search scores.

Every activation tensor (and every op's scratch workspace) becomes a buffer
with a size and a lifetime [first step, last step]. Alias ops (RESHAPE,
SQUEEZE) make their input and output one buffer, and so do ops run in place
(see inplace.py). An in-place group whose bytes change over its life becomes
a head and segments tied to the head's offset (see memory.py), so every
Buffer has one size and one lifetime and the most bytes live at a step (the
lower bound) is a plain sum.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from tinyml.ir import Graph
from tinyml.ops import get_op
from tinyml.schedule.inplace import ALIGN, Facts, inplace_merges


@dataclass
class Buffer:
    """One arena allocation: a group of aliased tensors, or a layer's scratch.

    A segment of a group whose bytes change over its life has `base` = its
    head's key and lies `delta` bytes above the head's offset.
    """

    key: str
    size: int
    first: int
    last: int
    tensors: list[str] = field(default_factory=list)
    offset: int = -1
    base: str | None = None
    delta: int = 0
    at: dict[str, int] = field(default_factory=dict)  # a tensor's offset above the head's, when not 0


def _align(n: int, a: int = ALIGN) -> int:
    return (n + a - 1) // a * a


def build_buffers(g: Graph, facts: Facts | None = None, expand: bool = True) -> list[Buffer]:
    """Lifetimes of every activation buffer (and its segments) and scratch area, in node steps.

    `facts`: figures of g's nodes and tensors already asked (for another order of the same nodes);
    `expand`: whether outputs larger than their input may be written over it (inplace.py).
    """
    facts = facts or Facts(g)
    up: dict[str, tuple[str, int]] = {}  # tensor -> (tensor it shares bytes with, its offset above that one)

    def locate(t: str) -> tuple[str, int]:
        """The group's root tensor and t's offset above it."""
        off = 0
        while t in up:
            t, d = up[t]
            off += d
        return t, off

    def join(y: str, x: str, gap: int) -> None:
        """One group of y's and x's, with x lying `gap` bytes above y (offsets stay >= 0)."""
        (ry, oy), (rx, ox) = locate(y), locate(x)
        if ry == rx:
            return
        d = gap + oy - ox  # rx's offset above ry
        if d >= 0:
            up[rx] = (ry, d)
        else:
            up[ry] = (rx, -d)

    for n in g.nodes:
        op = get_op(n.op)
        if (op.alias or op.updates_input) and n.inputs and n.inputs[0] is not None:
            if n.inputs[0] not in facts.const:
                join(n.outputs[0], n.inputs[0], 0)
    # outputs written over a dying input (tinyml/schedule/inplace.py): in its head when no
    # larger, else the input lies at the end of the output
    for out, inp in inplace_merges(g, lambda t: locate(t)[0], facts, expand):
        join(out, inp, _align(max(0, facts.nbytes(out) - facts.nbytes(inp))))

    last_step = len(g.nodes)  # graph outputs stay live past the last node
    life: dict[str, list[int]] = {}  # tensor -> [first, last] step

    outside, const = facts.outside, facts.const  # the callback's or the state region's; weights

    def touch(t: str, step: int) -> None:
        if t in outside:
            return
        span = life.setdefault(t, [step, step])
        span[0], span[1] = min(span[0], step), max(span[1], step)

    for t in g.inputs:
        touch(t, 0)
    for step, n in enumerate(g.nodes):
        for t in (*n.inputs, *n.outputs):
            if t is not None and t not in const:
                touch(t, step)
    for t in g.outputs:
        if t not in const:
            touch(t, last_step)

    groups: dict[str, dict[str, int]] = {}  # root -> {tensor: offset above the root}
    for t in life:
        r, off = locate(t)
        groups.setdefault(r, {})[t] = off
    buffers = []
    for r, at in groups.items():
        low = min(at.values())
        buffers += _segments(r, {t: o - low for t, o in at.items()}, life, facts)
    sizes = [tuple(_align(b) for b in facts.scratch_bytes(n)) for n in g.nodes]
    live = [held + need for held, need in zip(live_profile(buffers, last_step + 1), [n for n, _ in sizes] + [0])]
    peak = max(live)
    for step, (need, optional) in enumerate(sizes):
        # optional workspace only where it fits under the peak the model needs anyway
        size = need + optional if live[step] + optional <= peak else need
        if size:
            buffers.append(Buffer(f"@scratch{step}", size, step, step))
    return buffers


def _segments(key: str, at: dict[str, int], life: dict[str, list[int]], facts: Facts) -> list[Buffer]:
    """A group's bytes over its life as rectangles: the head (at offset 0), then segments above it.

    The group's tensors cut its bytes into bands; each band is held over the
    steps where a tensor covering it is live, and runs of steps that
    neighbouring bands share become one rectangle. A group that only
    shrinks gets a head of the size it ends with, for its whole life, and a
    tail per drop.
    """
    if len(at) == 1:  # most groups: one tensor, one rectangle
        (t, _), = at.items()
        return [Buffer(key, _align(facts.nbytes(t)), life[t][0], life[t][1], [t])]
    first = min(life[t][0] for t in at)
    steps = max(life[t][1] for t in at) - first + 1
    spans = {t: (o, o + _align(facts.nbytes(t))) for t, o in at.items()}
    cuts = sorted({v for span in spans.values() for v in span})
    rects: list[list[int]] = []  # [lo, hi, first, last]
    open_runs: dict[tuple[int, int], list[int]] = {}  # (first, last) -> the rectangle ending at the band below
    for lo, hi in zip(cuts, cuts[1:]):
        held = [False] * steps
        for t, (a, b) in spans.items():
            if a <= lo and hi <= b:
                for k in range(life[t][0] - first, life[t][1] - first + 1):
                    held[k] = True
        runs, k = [], 0
        while k < steps:
            if held[k]:
                j = k
                while j + 1 < steps and held[j + 1]:
                    j += 1
                runs.append((k + first, j + first))
                k = j + 1
            else:
                k += 1
        below, open_runs = open_runs, {}
        for run in runs:
            rect = below.get(run)
            if rect is not None and rect[1] == lo:
                rect[1] = hi
            else:
                rect = [lo, hi, run[0], run[1]]
                rects.append(rect)
            open_runs[run] = rect
    at_base = [rc for rc in rects if rc[0] == 0]  # none when the group's tensors hold no bytes
    head = max(at_base, key=lambda rc: (rc[3] - rc[2], rc[1])) if at_base else [0, 0, first, first + steps - 1]
    out = [Buffer(key, head[1], head[2], head[3], list(at), at={t: o for t, o in at.items() if o})]
    for rc in rects:
        if rc is not head:
            out.append(Buffer(f"{key}#{len(out)}", rc[1] - rc[0], rc[2], rc[3], base=key, delta=rc[0]))
    return out


def live_profile(buffers: list[Buffer], steps: int) -> list[int]:
    """Bytes of `buffers` live at each of `steps` steps."""
    live = [0] * max(steps, 1)
    for b in buffers:
        for t in range(b.first, b.last + 1):
            live[t] += b.size
    return live


def lower_bound(buffers: list[Buffer], steps: int) -> int:
    """The most bytes live at any one step: no placement can use less."""
    return max(live_profile(buffers, steps), default=0)
