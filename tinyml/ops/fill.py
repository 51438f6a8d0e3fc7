"""FILL and ZEROS_LIKE: tensors of one repeated value.

FILL's dims must be known when the model is compiled: converters compute them
with SHAPE -> STRIDED_SLICE -> PACK, which passes/fold.py folds (IR shapes are
static), after which a FILL of a constant value folds too (its output becomes a
constant when small, see fold.MAX_FOLD_GROWTH_BYTES). What is left runs as a
fill loop: a value computed at run time, a graph output or a large output.
Values are copied as raw codes (TFLite's FILL never requantizes); ZEROS_LIKE
writes raw zeros, whatever the zero point, as TFLite does.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from tinyml.codegen.cnames import ctype
from tinyml.ir import Graph, Node
from tinyml.ops.base import Op, register
from tinyml.ops.strided_copy import plain_dtype_problem

if TYPE_CHECKING:
    from tinyml.codegen.context import EmitContext


def _dims(g: Graph, n: Node) -> tuple[int, ...] | str:
    """FILL's output shape, or why it is not known at compile time."""
    t = g[n.inputs[0]]
    if not t.is_const:
        return "FILL with a shape computed at run time (not foldable here)"
    if t.data.dtype.kind not in "iu" or t.data.ndim != 1:
        return "FILL dims must be a 1-D integer tensor"
    dims = tuple(int(d) for d in t.data)
    if any(d < 0 for d in dims):
        return f"FILL dims {list(dims)} are negative"
    return dims


def _emit_fill(ctx: "EmitContext", out: str, value: str, dtype: str, count: int) -> None:
    fn = ctx.kernel("fill.c.j2", t=ctype(dtype), n=count)
    ctx.call(fn, ctx.tensor(out), value)


@register
class Fill(Op):
    name = "FILL"

    def check(self, g: Graph, n: Node) -> str | None:
        if len(n.inputs) != 2 or None in n.inputs or len(n.outputs) != 1:
            return "expects dims and value, and one output"
        dims = _dims(g, n)
        if isinstance(dims, str):
            return dims
        value, y = g[n.inputs[1]], g[n.outputs[0]]
        if value.size != 1:
            return f"FILL value has {value.size} elements, not one"
        if value.dtype != y.dtype:
            return f"FILL value is {value.dtype}, output {y.dtype}"
        return plain_dtype_problem(y)

    def infer_shapes(self, g: Graph, n: Node) -> list[tuple[int, ...]]:
        dims = _dims(g, n)
        return [dims] if not isinstance(dims, str) else [g[n.outputs[0]].shape]

    def reference(self, g: Graph, n: Node, inputs: list[np.ndarray | None]) -> list[np.ndarray]:
        y = g[n.outputs[0]]
        return [np.full(y.shape, np.asarray(inputs[1]).reshape(-1)[0], dtype=y.np_dtype)]

    def emit(self, g: Graph, n: Node, ctx: "EmitContext") -> None:
        y = g[n.outputs[0]]
        _emit_fill(ctx, y.name, f"{ctx.tensor(n.inputs[1])}[0]", y.dtype, y.size)


@register
class ZerosLike(Op):
    name = "ZEROS_LIKE"

    def check(self, g: Graph, n: Node) -> str | None:
        if len(n.inputs) != 1 or n.inputs[0] is None or len(n.outputs) != 1:
            return "expects one input and one output"
        x, y = g[n.inputs[0]], g[n.outputs[0]]
        if x.dtype != y.dtype or x.shape != y.shape:
            return "output must have the input's type and shape"
        return plain_dtype_problem(y)

    def infer_shapes(self, g: Graph, n: Node) -> list[tuple[int, ...]]:
        return [g[n.inputs[0]].shape]

    def reference(self, g: Graph, n: Node, inputs: list[np.ndarray | None]) -> list[np.ndarray]:
        y = g[n.outputs[0]]
        return [np.zeros(y.shape, y.np_dtype)]

    def emit(self, g: Graph, n: Node, ctx: "EmitContext") -> None:
        y = g[n.outputs[0]]
        _emit_fill(ctx, y.name, "0", y.dtype, y.size)
