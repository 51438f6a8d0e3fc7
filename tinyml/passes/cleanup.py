"""Remove what computes nothing: identity reshapes and dead nodes."""
from __future__ import annotations

from tinyml.ir import Graph
from tinyml.ops import traits
from tinyml.passes.rewrite import drop_nodes, replace_uses, same_quant


def drop_identities(g: Graph) -> None:
    """Remove alias ops (RESHAPE, SQUEEZE...: they only relabel the shape of their first input's
    bytes) whose output equals their input in shape, dtype and quantization.

    Such an op copies bytes unchanged and its consumers read the same
    quantization, so reading the input directly is bit-identical.
    """
    dead = []
    for n in g.nodes:
        if not traits(n.op).alias or not n.inputs or n.inputs[0] is None or len(n.outputs) != 1:
            continue
        x, y = g[n.inputs[0]], g[n.outputs[0]]
        if (y.name in g.outputs or x.shape != y.shape or x.dtype != y.dtype
                or not same_quant(x.quant, y.quant)):
            continue
        replace_uses(g, y.name, x.name)
        dead.append(n)
    drop_nodes(g, dead)


def remove_dead(g: Graph) -> None:
    """Drop nodes none of whose outputs reach a graph output and that write no state, then unused tensors."""
    live = set(g.outputs)
    keep = []
    for n in reversed(g.nodes):
        if any(o in live for o in n.outputs) or traits(n.op).writes_state:
            keep.append(n)
            live.update(i for i in n.inputs if i is not None)
    g.nodes = keep[::-1]
    g.remove_unused_tensors()
