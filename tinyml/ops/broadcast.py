"""BROADCAST_TO and REVERSE_V2: element moves, each one strided copy (ops/strided_copy.py).

BROADCAST_TO (broadcast_to.cc, up to 5-D): the input read with stride 0 along
the dims it broadcasts into the constant target shape. REVERSE_V2 (reverse.cc):
the input read backwards (negative strides) along the one constant axis
(TFLite Micro fails on more). Codes are
copied as they are, any plain dtype; quantization is not looked at, as in
TFLite Micro.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from tinyml.errors import BadModel
from tinyml.ir import Graph, Node
from tinyml.ops.base import Op, register
from tinyml.ops.strided_copy import (
    Copy, const_ints, contiguous_strides, copy_class, copy_pixel_cost, emit_copy, node_dtype_problem,
    strided_copy_terms,
)

if TYPE_CHECKING:
    from tinyml.codegen.context import EmitContext

BROADCAST_RANK = 5


def _broadcast_copy(in_shape: tuple[int, ...], out: tuple[int, ...]) -> Copy:
    padded = (1,) * (len(out) - len(in_shape)) + tuple(in_shape)
    src = [0 if d == 1 and o != 1 else s for d, o, s in zip(padded, out, contiguous_strides(padded))]
    return Copy(tuple(out), tuple(src), contiguous_strides(out))


def _reverse_copy(shape: tuple[int, ...], axes: set[int]) -> Copy:
    strides = contiguous_strides(shape)
    offset = sum((shape[a] - 1) * strides[a] for a in axes)
    return Copy(tuple(shape), tuple(-s if k in axes else s for k, s in enumerate(strides)), strides, offset)


class _Move(Op):
    pointwise = False

    def copy(self, g: Graph, n: Node) -> Copy:
        raise NotImplementedError

    def emit(self, g: Graph, n: Node, ctx: "EmitContext") -> None:
        x = g[n.inputs[0]]
        emit_copy(ctx, self.copy(g, n), ctx.tensor(n.inputs[0]), ctx.tensor(n.outputs[0]), x.dtype)

    def cost_terms(self, g: Graph, n: Node) -> tuple[str, dict[str, float]]:
        x = g[n.inputs[0]]
        return copy_class(x), strided_copy_terms([self.copy(g, n)], x.np_dtype.itemsize)

    def pixel_cost(self, g: Graph, n: Node) -> tuple[float, float]:
        return copy_pixel_cost(g, n)


@register
class BroadcastTo(_Move):
    name = "BROADCAST_TO"

    def _shape(self, g: Graph, n: Node) -> tuple[int, ...]:
        return tuple(const_ints(g, n.inputs[1] if len(n.inputs) > 1 else None, "BROADCAST_TO shape"))

    def check(self, g: Graph, n: Node) -> str | None:
        if len(n.inputs) != 2 or len(n.outputs) != 1 or None in n.inputs:
            return "expects an input, a shape and one output"
        if why := node_dtype_problem(g, n):
            return why
        out, x = self._shape(g, n), g[n.inputs[0]].shape
        if len(out) > BROADCAST_RANK or len(x) > len(out):
            return f"shape {list(out)} from {list(x)}: up to {BROADCAST_RANK}-D, at least the input's rank"
        padded = (1,) * (len(out) - len(x)) + tuple(x)
        if any(d not in (1, o) for d, o in zip(padded, out)):
            return f"{list(x)} does not broadcast to {list(out)}"
        return None if g[n.outputs[0]].shape == out else "output shape differs from the shape input"

    def infer_shapes(self, g: Graph, n: Node) -> list[tuple[int, ...]]:
        return [self._shape(g, n)]

    def reference(self, g: Graph, n: Node, inputs: list[np.ndarray | None]) -> list[np.ndarray]:
        return [np.ascontiguousarray(np.broadcast_to(inputs[0], self._shape(g, n)))]

    def copy(self, g: Graph, n: Node) -> Copy:
        return _broadcast_copy(g[n.inputs[0]].shape, self._shape(g, n))


@register
class ReverseV2(_Move):
    name = "REVERSE_V2"

    def _axes(self, g: Graph, n: Node) -> set[int]:
        rank = len(g[n.inputs[0]].shape)
        axes = const_ints(g, n.inputs[1] if len(n.inputs) > 1 else None, "REVERSE_V2 axis")
        if any(not -rank <= a < rank for a in axes):
            raise BadModel(f"REVERSE_V2 axis {axes} outside rank {rank}")
        return {a % rank for a in axes}

    def check(self, g: Graph, n: Node) -> str | None:
        if len(n.inputs) != 2 or len(n.outputs) != 1 or None in n.inputs:
            return "expects an input, an axis tensor and one output"
        if why := node_dtype_problem(g, n):
            return why
        if g[n.inputs[1]].size != 1:  # TFLite Micro's Eval fails on more axes
            return f"{g[n.inputs[1]].size} axes; TFLite Micro reverses along one"
        self._axes(g, n)
        return None if g[n.outputs[0]].shape == g[n.inputs[0]].shape else "output shape differs from the input's"

    def infer_shapes(self, g: Graph, n: Node) -> list[tuple[int, ...]]:
        return [g[n.inputs[0]].shape]

    def reference(self, g: Graph, n: Node, inputs: list[np.ndarray | None]) -> list[np.ndarray]:
        x = np.asarray(inputs[0]).reshape(g[n.inputs[0]].shape)
        return [np.ascontiguousarray(np.flip(x, tuple(sorted(self._axes(g, n)))))]

    def copy(self, g: Graph, n: Node) -> Copy:
        return _reverse_copy(g[n.inputs[0]].shape, self._axes(g, n))
