"""Read resource variables in place: consumers of a READ_VARIABLE read the state tensor itself.

READ_VARIABLE copies a variable into an activation (TFLite Micro's kernel
does), which costs the copy and the activation's arena bytes. When every
reader of that copy runs before the next write of the variable, reading the
state directly gives the same bytes: the pass rewires the readers and drops
the copy. The order search keeps every node that touches a state tensor in
its relative order (schedule/order.py), so the rewired readers stay before
the assignment. Bit-exact by construction: same bytes, and only when shape,
type and quantization are identical.
"""
from __future__ import annotations

from tinyml.ir import Graph
from tinyml.ops import traits
from tinyml.passes.rewrite import drop_nodes, replace_uses, same_quant


def read_variables_in_place(g: Graph) -> None:
    """Drop READ_VARIABLE nodes whose readers can read the state tensor directly."""
    dead = []
    for k, n in enumerate(g.nodes):
        if n.op != "READ_VARIABLE" or len(n.inputs) != 1 or len(n.outputs) != 1:
            continue
        s, y = g[n.inputs[0]], g[n.outputs[0]]
        if (y.name in g.outputs or y.shape != s.shape or y.dtype != s.dtype or y.bits != s.bits
                or not same_quant(y.quant, s.quant)):
            continue
        later = g.nodes[k + 1:]
        next_write = next((i for i, m in enumerate(later) if s.name in m.inputs and traits(m.op).writes_state),
                          len(later))
        readers = [(i, m) for i, m in enumerate(later) if y.name in m.inputs]
        if all(i < next_write and _plain_reader(m) for i, m in readers):
            replace_uses(g, y.name, s.name)
            dead.append(n)
    drop_nodes(g, dead)
    g.remove_unused_tensors()


def _plain_reader(m) -> bool:
    """A reader whose input may live outside the arena: no alias or in-place update of it."""
    op = traits(m.op)
    return not (op.alias or op.updates_input)
