"""Can tinyml handle this graph, and is it consistent with itself?

`check_supported` names every op we cannot compile at once, so a user sees
the whole list instead of fixing one op per run. `verify_shapes` recomputes
each node's output shapes from its inputs and compares them with what the
file declares: a model whose stored shapes disagree with its ops would make
the memory plan and the kernels disagree, so it is rejected up front.

Op modules are written by several people and see untrusted attrs and
shapes; `op_guard` turns any exception escaping them into a one-line
BadModel naming the node, so a hostile file never produces a traceback.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

from tinyml.errors import BadModel, TinymlError, UnsupportedOps
from tinyml.frontend.tflite import show
from tinyml.ir import Graph, Node
from tinyml.ops import OPS


class OpCrashed(BadModel):
    """An op module raised on this model instead of rejecting it.

    That is a bug in tinyml (the op's check() should have named the problem),
    but the user still gets one line and exit 2; tests look for this class.
    """


@contextmanager
def op_guard(n: Node, what: str) -> Iterator[None]:
    """Re-raise anything but a TinymlError from op code as OpCrashed for node `n`."""
    try:
        yield
    except TinymlError:
        raise
    except Exception as e:  # noqa: BLE001 - the boundary between untrusted models and op code
        raise OpCrashed(f"node {show(n.name)} ({n.op}): {what} failed: {type(e).__name__}: {show(str(e))}") from None


def unsupported_reason(g: Graph, n: Node) -> str | None:
    """Why node `n` cannot be compiled (None if it can)."""
    op = OPS.get(n.op)
    if op is None:
        return "no implementation"
    with op_guard(n, "support check"):
        return op.check(g, n)


def check_supported(g: Graph) -> None:
    """Raise UnsupportedOps listing every (op, node) tinyml cannot compile."""
    items = []
    for n in g.nodes:
        why = unsupported_reason(g, n)
        if why is not None:
            label = n.op if why == "no implementation" else f"{n.op} ({show(why)})"
            items.append((label, show(n.name)))
    if items:
        raise UnsupportedOps(items)


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
