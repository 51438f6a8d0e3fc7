"""Small graph-editing helpers shared by the legalization passes."""
from __future__ import annotations

import numpy as np

from tinyml.ir import Graph, Node, Quant


def same_quant(a: Quant | None, b: Quant | None) -> bool:
    """True when both tensors map integers to the same reals (bitwise-equal parameters)."""
    if a is None or b is None:
        return a is None and b is None
    if a.per_channel != b.per_channel or (a.per_channel and a.axis != b.axis):
        return False
    return np.array_equal(a.scale, b.scale) and np.array_equal(a.zero_point, b.zero_point)


def replace_uses(g: Graph, old: str, new: str) -> None:
    """Make every node that reads `old` read `new` instead (graph outputs untouched)."""
    for n in g.nodes:
        n.inputs = [new if i == old else i for i in n.inputs]


def drop_nodes(g: Graph, dead: list[Node]) -> None:
    ids = {id(n) for n in dead}
    g.nodes = [n for n in g.nodes if id(n) not in ids]
