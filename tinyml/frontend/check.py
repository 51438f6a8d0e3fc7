"""Can tinyml handle this graph, and is it consistent with itself?

`check_supported` names every op we cannot compile at once, so a user sees
the whole list instead of fixing one op per run. `verify_shapes` recomputes
each node's output shapes from its inputs and compares them with what the
file declares: a model whose stored shapes disagree with its ops would make
the memory plan and the kernels disagree, so it is rejected up front.

Op code runs under `op_guard` (tinyml/errors.py): an exception escaping it
becomes a one-line BadModel naming the node.
"""
from __future__ import annotations

from tinyml.errors import BadModel, UnsupportedOps, op_guard, show
from tinyml.ir import Graph, Node
from tinyml.ops import OPS


def unsupported_reason(g: Graph, n: Node) -> str | None:
    """Why node `n` cannot be compiled (None if it can)."""
    op = OPS.get(n.op)
    if op is None:
        return "no implementation"
    with op_guard(n, "support check"):
        return op.check(g, n) or subbyte_reason(g, n)


def subbyte_reason(g: Graph, n: Node) -> str | None:
    """Why `n`'s 4-bit activations cannot be compiled: only ops whose kernels read and write them
    packed (Op.subbyte_io) take them, alias ops with equal widths, and graph inputs and outputs
    stay 8-bit (the runners and applications exchange int8 arrays)."""
    acts = [g[t] for t in [*n.inputs, *n.outputs] if t is not None and not g[t].is_const]
    narrow = [t for t in acts if t.bits < 8]
    if not narrow:
        return None
    if any(t.bits != 4 for t in narrow):
        return f"{narrow[0].bits}-bit activations are not supported (8 or 4)"
    if not OPS[n.op].subbyte_io or (OPS[n.op].alias and len({t.bits for t in acts}) > 1):
        return "4-bit activations are not supported by this op's kernel"
    if any(t.name in g.inputs or t.name in g.outputs for t in narrow):
        return "graph inputs and outputs must be 8-bit"
    return None


FLOAT_HINT = "float32 compute ops do not run (only at a model's float edges): make it int8 with `tinyml quantize`"


def check_supported(g: Graph) -> None:
    """Raise UnsupportedOps listing every (op, node) tinyml cannot compile; when a refused node
    computes on float32, the one line also points at `tinyml quantize` (issue 19 group 6)."""
    items = []
    floats = False
    for n in g.nodes:
        why = unsupported_reason(g, n)
        if why is not None:
            label = n.op if why == "no implementation" else f"{n.op} ({show(why)})"
            items.append((label, show(n.name)))
            floats |= any(t is not None and t in g.tensors and g[t].dtype == "float32" for t in n.inputs)
    if items:
        raise UnsupportedOps(items, FLOAT_HINT if floats else "")


def inferred_shapes(g: Graph, n: Node) -> list[tuple[int, ...]]:
    """Output shapes of `n` computed by its op from the inputs."""
    with op_guard(n, "shape inference"):
        return [tuple(int(d) for d in s) for s in OPS[n.op].infer_shapes(g, n)]


def verify_node(g: Graph, n: Node) -> None:
    """Raise BadModel unless the op's shape rule reproduces the declared output shapes."""
    got = inferred_shapes(g, n)
    declared = [g[o].shape for o in n.outputs]
    if got != declared:
        raise BadModel(f"node {show(n.name)} ({n.op}): the model declares output shapes "
                       f"{[list(s) for s in declared]}, the inputs give {[list(s) for s in got]}")


def verify_shapes(g: Graph) -> None:
    """verify_node for every node (run after check_supported: every op exists)."""
    for n in g.nodes:
        verify_node(g, n)
