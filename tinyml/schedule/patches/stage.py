"""The patch stage: the nodes that run per patch, found backwards from the split tensor.

A node may run per patch when its op is pointwise or slides a window over
input 0 (the op traits `pointwise` and `sliding_window`, tinyml/ops/base.py).
"""
from __future__ import annotations

from dataclasses import dataclass

from tinyml.errors import BadModel
from tinyml.ir import Graph, Node, Tensor
from tinyml.ops import traits
from tinyml.ops.quantized import Window


class NotPatchable(BadModel):
    """The requested split or grid cannot be run patch by patch."""


def _spatial(t: Tensor) -> bool:
    return len(t.shape) == 4 and min(t.shape) >= 1


def _broadcast_const(t: Tensor, out: Tensor) -> bool:
    """A constant operand that is the same for every pixel (per channel at most)."""
    shape = (1,) * (4 - len(t.shape)) + tuple(t.shape) if len(t.shape) <= 4 else None
    return shape is not None and shape[1] == shape[2] == 1 and shape[3] in (1, out.shape[3])


def patchable(g: Graph, n: Node) -> bool:
    """Whether `n` can be cloned onto patch tensors with the same arithmetic."""
    if len(n.outputs) != 1 or not _spatial(g[n.outputs[0]]) or "patch" in n.attrs:
        return False  # nodes of an earlier patch stage are never cut again
    out = g[n.outputs[0]]
    op = traits(n.op)
    if op.pointwise:
        data = [g[t] for t in n.inputs if t is not None]
        if not any(not t.is_const for t in data):
            return False
        return all(t.shape == out.shape if not t.is_const else _broadcast_const(t, out) for t in data)
    # a window op: input 0 sliced per patch, every other input constant
    x = g[n.inputs[0]] if n.inputs and n.inputs[0] is not None else None
    if x is None or x.is_const or not _spatial(x):
        return False
    if any(t is not None and not g[t].is_const for t in n.inputs[1:]):
        return False
    try:
        return op.sliding_window(g, n) is not None
    except ValueError:
        return False


@dataclass
class Stage:
    """The nodes run per patch: everything the split tensor needs, back to full-size sources."""

    split: str
    nodes: list[int]  # indices into g.nodes, in execution order
    sources: list[str]  # full-size tensors the stage reads windows of
    windows: dict[int, Window]  # the window of every conv/depthwise/pooling node in it


def find_stage(g: Graph, split: str) -> Stage:
    """The patch stage that ends at tensor `split`.

    Walks back through patchable producers. A stage tensor that something
    outside the stage also reads (or a graph output) must exist whole, so it
    becomes a source instead and the walk stops there.
    """
    index = {id(n): i for i, n in enumerate(g.nodes)}
    producers = g.producers()
    consumers = g.consumers()
    if split not in producers or split in g.inputs:
        raise NotPatchable(f"tensor {split!r} is not computed by a node")
    if not patchable(g, producers[split]):
        raise NotPatchable(f"{producers[split].op} producing the split tensor cannot run per patch")
    cuts: set[str] = set()
    while True:
        members: set[int] = set()
        sources: list[str] = []
        stack = [producers[split]]
        while stack:
            n = stack.pop()
            if index[id(n)] in members:
                continue
            members.add(index[id(n)])
            for t in n.inputs:
                if t is None or g[t].is_const:
                    continue
                p = producers.get(t)
                if t in cuts or p is None or t in g.inputs or not patchable(g, p):
                    if t not in sources:
                        sources.append(t)
                else:
                    stack.append(p)
        escaping = {
            o for i in members for o in g.nodes[i].outputs
            if o != split and (o in g.outputs or any(index[id(c)] not in members for c in consumers.get(o, [])))
        }
        if not escaping:
            nodes = sorted(members)
            windows = {i: traits(g.nodes[i].op).sliding_window(g, g.nodes[i]) for i in nodes}
            return Stage(split, nodes, sources, {i: w for i, w in windows.items() if w is not None})
        cuts |= escaping


def streamable(g: Graph, stage: Stage) -> list[str]:
    """The stage's sources that can be streamed: batch-1 graph inputs nothing else reads."""
    consumers = g.consumers()
    members = {id(g.nodes[i]) for i in stage.nodes}
    return [t for t in stage.sources
            if t in g.inputs and t not in g.outputs and g[t].shape[0] == 1
            and all(id(c) in members for c in consumers.get(t, []))]
