"""CONCATENATION along any axis: one strided copy per input into its slab of the output.

Quantized inputs are copied as raw values, never rescaled: the converter gives
every input the output's scale and zero point, and TFLite Micro refuses an int8
CONCATENATION whose inputs differ from the output (its Prepare fails), so
check() refuses such a model too instead of inventing a rescaling.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from tinyml.errors import BadModel
from tinyml.ir import Graph, Node, Quant
from tinyml.ops.base import Op, register
from tinyml.ops.strided_copy import (
    contiguous_strides, Copy, copy_class, copy_pixel_cost, emit_copy, node_dtype_problem, strided_copy_terms,
)

if TYPE_CHECKING:
    from tinyml.codegen.context import EmitContext


QUANTIZED = ("int8", "uint8", "int16")


def _same_quant(a: Quant, b: Quant) -> bool:
    return np.array_equal(a.scale, b.scale) and np.array_equal(a.zero_point, b.zero_point)


def positive_axis(axis: int, rank: int, what: str) -> int:
    if not -rank <= axis < rank:
        raise BadModel(f"{what} axis {axis} out of range for rank {rank}")
    return axis + rank if axis < 0 else axis


def _axis(g: Graph, n: Node) -> int:
    return positive_axis(int(n.attrs.get("axis", 0)), len(g[n.inputs[0]].shape), "CONCATENATION")


def slab_copies(shapes: list[tuple[int, ...]], axis: int, out_shape: tuple[int, ...]) -> list[Copy]:
    """Copy k writes input k (dense) at its running offset along `axis` of the output."""
    out_strides = contiguous_strides(out_shape)
    copies, at = [], 0
    for shape in shapes:
        copies.append(Copy(shape, contiguous_strides(shape), out_strides, 0, at * out_strides[axis]))
        at += shape[axis]
    return copies


@register
class Concatenation(Op):
    name = "CONCATENATION"

    def pixel_cost(self, g: Graph, n: Node) -> tuple[float, float]:
        return copy_pixel_cost(g, n)

    def check(self, g: Graph, n: Node) -> str | None:
        act = n.attrs.get("fused_activation_function", "NONE")
        if act != "NONE":
            return f"fused activation {act} (TFLite Micro supports NONE only)"
        if not n.inputs or any(i is None for i in n.inputs):
            return "missing input"
        try:
            self.infer_shapes(g, n)
        except BadModel as e:
            return str(e)
        out = g[n.outputs[0]].quant
        for i in n.inputs:
            q = g[i].quant
            if out is not None and q is not None and g[i].dtype in QUANTIZED and not _same_quant(q, out):
                return "inputs quantized differently from the output (TFLite Micro rejects this too)"
        return node_dtype_problem(g, n, range(len(n.inputs)))

    def infer_shapes(self, g: Graph, n: Node) -> list[tuple[int, ...]]:
        shapes = [g[i].shape for i in n.inputs]
        rank, axis = len(shapes[0]), _axis(g, n)
        for s in shapes:
            if len(s) != rank or any(a != b for k, (a, b) in enumerate(zip(s, shapes[0])) if k != axis):
                raise BadModel(f"CONCATENATION input shapes {shapes} do not agree off axis {axis}")
        out = list(shapes[0])
        out[axis] = sum(s[axis] for s in shapes)
        return [tuple(out)]

    def reference(self, g: Graph, n: Node, inputs: list[np.ndarray | None]) -> list[np.ndarray]:
        return [np.concatenate([np.asarray(x) for x in inputs], axis=_axis(g, n))]

    def emit(self, g: Graph, n: Node, ctx: "EmitContext") -> None:
        out = g[n.outputs[0]]
        shapes = [g[i].shape for i in n.inputs]
        dst = ctx.tensor(out.name)
        for name, copy in zip(n.inputs, slab_copies(shapes, _axis(g, n), out.shape)):
            emit_copy(ctx, copy, ctx.tensor(name), dst, out.dtype)

    def cost_terms(self, g: Graph, n: Node) -> tuple[str, dict[str, float]]:
        """Strided copies of every input into the output."""
        y = g[n.outputs[0]]
        copies = slab_copies([g[i].shape for i in n.inputs], _axis(g, n), y.shape)
        return copy_class(y), strided_copy_terms(copies, y.np_dtype.itemsize)
