"""Constant folding: compute at build time what does not depend on the input.

Converters leave shape arithmetic in the graph (Keras Flatten becomes
SHAPE -> STRIDED_SLICE -> PACK -> RESHAPE on int32 values). With static
shapes all of it is known offline, and a microcontroller should not spend
code or cycles on it. Folding uses each op's own numpy reference, which is
bit-exact by contract, so a folded constant equals what the device would
have computed.
"""
from __future__ import annotations

import numpy as np

from tinyml.errors import BadModel, op_guard, show
from tinyml.frontend.check import unsupported_reason, verify_node
from tinyml.ir import Graph, Node, Tensor

# Folding may grow the constants by at most this much per node: folding must
# never trade a few cycles for a large amount of flash (e.g. a TILE of weights).
MAX_FOLD_GROWTH_BYTES = 4096


def fold_static_shapes(g: Graph) -> None:
    """SHAPE of any tensor is known offline (IR shapes are static): make it a constant."""
    keep = []
    for n in g.nodes:
        if n.op == "SHAPE" and n.inputs and n.inputs[0] is not None and n.outputs[0] not in g.outputs:
            src, out = g[n.inputs[0]], g[n.outputs[0]]
            if out.dtype not in ("int32", "int64") or out.shape != (len(src.shape),):
                raise BadModel(f"node {show(n.name)} (SHAPE): output is {out.dtype} {list(out.shape)}, "
                               f"expected int32/int64 [{len(src.shape)}]")
            out.data = np.array(src.shape, dtype=out.np_dtype)
        else:
            keep.append(n)
    g.nodes = keep


def _foldable(g: Graph, n: Node) -> bool:
    ins = [g[i] for i in n.inputs if i is not None]
    if not ins or not all(t.is_const for t in ins) or any(o in g.outputs for o in n.outputs):
        return False
    grown = sum(g[o].nbytes for o in n.outputs) - sum(t.nbytes for t in ins)
    return grown <= MAX_FOLD_GROWTH_BYTES and unsupported_reason(g, n) is None


def _store(n: Node, t: Tensor, value: object) -> None:
    """Make `t` the constant `value`, which must have t's shape and fit t's dtype exactly."""
    arr = np.asarray(value)
    if arr.shape != t.shape:
        raise BadModel(f"node {show(n.name)} ({n.op}): folding gives shape {list(arr.shape)}, "
                       f"the model declares {list(t.shape)}")
    cast = arr.astype(t.np_dtype)
    if not np.array_equal(cast, arr):
        raise BadModel(f"node {show(n.name)} ({n.op}): folded values do not fit {t.dtype}")
    t.data = cast


def fold_constants(g: Graph) -> None:
    """Evaluate every node whose inputs are all constants; its outputs become constants.

    Nodes are visited in execution order, so whole constant chains fold in
    one sweep. Outputs of the graph stay computed, so the generated API still
    writes them.
    """
    from tinyml.ops import OPS

    keep = []
    for n in g.nodes:
        if not _foldable(g, n):
            keep.append(n)
            continue
        verify_node(g, n)
        with op_guard(n, "constant folding"):
            values = OPS[n.op].reference(g, n, [None if i is None else g[i].data for i in n.inputs])
        if len(values) != len(n.outputs):
            raise BadModel(f"node {show(n.name)} ({n.op}): folding gives {len(values)} outputs, "
                           f"the node has {len(n.outputs)}")
        for name, v in zip(n.outputs, values):
            _store(n, g[name], v)
    g.nodes = keep


def static_reshape_shapes(g: Graph) -> None:
    """Make every RESHAPE's target its output shape, as a constant shape input.

    TFLite Micro takes a RESHAPE's result shape from the output tensor, never
    from the shape input or the new_shape option, so this keeps its semantics
    exactly; it also leaves any shape arithmetic that fed the input dead
    (removed later). A scalar result gets no shape input (an empty constant
    has no C representation).
    """
    for n in g.nodes:
        if n.op != "RESHAPE" or not n.inputs:
            continue
        out = g[n.outputs[0]]
        if not out.shape:
            n.inputs = n.inputs[:1]
            n.attrs["new_shape"] = None
            continue
        want = np.array(out.shape, dtype=np.int32)
        if len(n.inputs) > 1 and n.inputs[1] is not None:
            given = g[n.inputs[1]]
            if given.is_const and given.dtype == "int32" and np.array_equal(given.data.reshape(-1), want):
                continue
        t = g.add_tensor(Tensor(name=f"{n.outputs[0]}/shape", shape=(len(out.shape),), dtype="int32", data=want))
        n.inputs = [n.inputs[0], t.name]
