"""Ops that change only a tensor's shape, and the int32 shape arithmetic around them.

RESHAPE, SQUEEZE and EXPAND_DIMS are aliases: the planner gives input and
output one buffer, so they cost no time and no memory. SHAPE, PACK and UNPACK
mostly appear in the shape arithmetic converters emit (Keras Flatten is
SHAPE -> STRIDED_SLICE -> PACK -> RESHAPE), which legalization folds with these
references on int32 constants; when they survive to run time they are copies.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from tinyml.errors import BadModel
from tinyml.ir import Graph, Node
from tinyml.ops.base import Op, register
from tinyml.ops.concat import positive_axis
from tinyml.ops.strided_copy import (
    Copy,
    const_ints,
    contiguous_strides,
    emit_copy,
    node_dtype_problem,
    plain_dtype_problem,
)

if TYPE_CHECKING:
    from tinyml.codegen.context import EmitContext


def resolve_shape(spec: list[int], size: int) -> tuple[int, ...]:
    """A reshape target with at most one -1 filled in from the element count."""
    if spec.count(-1) > 1 or any(d < -1 for d in spec):
        raise BadModel(f"RESHAPE target {spec}")
    known = int(np.prod([d for d in spec if d != -1], dtype=np.int64))
    if -1 in spec:
        if known == 0 or size % known:
            raise BadModel(f"RESHAPE cannot infer -1 in {spec} for {size} elements")
        spec = [size // known if d == -1 else d for d in spec]
    if int(np.prod(spec, dtype=np.int64)) != size:
        raise BadModel(f"RESHAPE target {spec} does not hold {size} elements")
    return tuple(spec)


class _AliasOp(Op):
    """The output is the input's bytes under another shape: no kernel at all."""

    alias = True
    subbyte_io = True  # bytes under another shape: packed 4-bit data stays valid (equal widths, check.py)

    def check(self, g: Graph, n: Node) -> str | None:
        try:
            self.infer_shapes(g, n)
        except BadModel as e:
            return str(e)
        x, y = g[n.inputs[0]], g[n.outputs[0]]
        if x.dtype != y.dtype or x.bits != y.bits:
            return "input and output dtypes differ"
        return None

    def reference(self, g: Graph, n: Node, inputs: list[np.ndarray | None]) -> list[np.ndarray]:
        return [np.asarray(inputs[0]).reshape(self.infer_shapes(g, n)[0])]

    def emit(self, g: Graph, n: Node, ctx: "EmitContext") -> None:
        """Nothing when the planner made input and output one buffer; else a copy.

        The copy covers a constant input that legalization left unfolded
        (e.g. a RESHAPE of weights that is itself a graph output).
        """
        src, dst = g[n.inputs[0]], g[n.outputs[0]]
        if not src.is_const and ctx.offsets.get(src.name) == ctx.offsets.get(dst.name):
            return
        emit_copy(ctx, Copy((dst.size,), (1,), (1,)), ctx.tensor(src.name), ctx.tensor(dst.name), dst.dtype)

    def cost_terms(self, g: Graph, n: Node) -> tuple[str, dict[str, float]]:
        """Nothing runs: the planner gives input and output one buffer."""
        return "alias", {}


@register
class Reshape(_AliasOp):
    """Target shape: the shape tensor (input 1) if constant, else `new_shape`, else the output's."""

    name = "RESHAPE"

    def infer_shapes(self, g: Graph, n: Node) -> list[tuple[int, ...]]:
        x = g[n.inputs[0]]
        shape_in = g[n.inputs[1]] if len(n.inputs) > 1 and n.inputs[1] is not None else None
        if shape_in is not None and shape_in.is_const and len(shape_in.shape) == 1:
            spec = const_ints(g, shape_in.name, "RESHAPE shape")
        elif "new_shape" in n.attrs and n.attrs["new_shape"] is not None and (
                shape_in is None or len(n.attrs["new_shape"]) > 0):
            spec = [int(d) for d in n.attrs["new_shape"]]
        else:
            spec = list(g[n.outputs[0]].shape)
        return [resolve_shape(spec, x.size)]


@register
class Squeeze(_AliasOp):
    """`squeeze_dims` (may be negative; empty means every unit axis)."""

    name = "SQUEEZE"

    def infer_shapes(self, g: Graph, n: Node) -> list[tuple[int, ...]]:
        shape = g[n.inputs[0]].shape
        dims = [int(d) for d in n.attrs.get("squeeze_dims") or []]
        drop = {positive_axis(d, len(shape), "SQUEEZE") for d in dims} or {k for k, d in enumerate(shape) if d == 1}
        if any(shape[k] != 1 for k in drop):
            raise BadModel(f"SQUEEZE of non-unit axes {sorted(drop)} of {shape}")
        return [tuple(d for k, d in enumerate(shape) if k not in drop)]


@register
class ExpandDims(_AliasOp):
    """Input 1 holds the axis; -1 appends, like TF."""

    name = "EXPAND_DIMS"

    def infer_shapes(self, g: Graph, n: Node) -> list[tuple[int, ...]]:
        shape = g[n.inputs[0]].shape
        axis = const_ints(g, n.inputs[1] if len(n.inputs) > 1 else None, "EXPAND_DIMS axis")
        if len(axis) != 1:
            raise BadModel("EXPAND_DIMS axis must hold one value")
        a = positive_axis(axis[0], len(shape) + 1, "EXPAND_DIMS")
        return [shape[:a] + (1,) + shape[a:]]


def _emit_const(ctx: "EmitContext", values: np.ndarray, out: str, dtype: str) -> None:
    """Copy a generation-time constant into an activation buffer."""
    flat = values.reshape(-1)
    emit_copy(ctx, Copy((flat.size,), (1,), (1,)), ctx.const(flat, "shape"), ctx.tensor(out), dtype)


@register
class Shape(Op):
    """SHAPE of a statically shaped tensor is a constant (needs no input value)."""

    name = "SHAPE"

    def _dtype(self, n: Node) -> np.dtype:
        return np.dtype(np.int64) if str(n.attrs.get("out_type", "INT32")).upper() == "INT64" else np.dtype(np.int32)

    def check(self, g: Graph, n: Node) -> str | None:
        out = g[n.outputs[0]]
        if out.np_dtype != self._dtype(n) or out.shape != (len(g[n.inputs[0]].shape),):
            return "output must be a vector of the input's rank with the out_type dtype"
        return plain_dtype_problem(out)

    def infer_shapes(self, g: Graph, n: Node) -> list[tuple[int, ...]]:
        return [(len(g[n.inputs[0]].shape),)]

    def reference(self, g: Graph, n: Node, inputs: list[np.ndarray | None]) -> list[np.ndarray]:
        return [np.array(g[n.inputs[0]].shape, dtype=self._dtype(n))]

    def emit(self, g: Graph, n: Node, ctx: "EmitContext") -> None:
        out = g[n.outputs[0]]
        _emit_const(ctx, self.reference(g, n, [None])[0], out.name, out.dtype)


def _stack_copies(part: tuple[int, ...], axis: int, count: int) -> tuple[tuple[int, ...], list[Copy]]:
    """Copy k moves dense part k to/from index k along `axis` of the stacked tensor."""
    stacked = part[:axis] + (count,) + part[axis:]
    strides = contiguous_strides(stacked)
    other = strides[:axis] + strides[axis + 1:]
    return stacked, [Copy(part, contiguous_strides(part), other, 0, k * strides[axis]) for k in range(count)]


@register
class Pack(Op):
    """PACK (tf.stack): `values_count` equal-shape inputs along a new `axis`."""

    name = "PACK"

    def _axis(self, g: Graph, n: Node) -> int:
        return positive_axis(int(n.attrs.get("axis", 0)), len(g[n.inputs[0]].shape) + 1, "PACK")

    def check(self, g: Graph, n: Node) -> str | None:
        if not n.inputs or None in n.inputs:
            return "missing input"
        if len({g[i].shape for i in n.inputs}) != 1:
            return "inputs differ in shape"
        if int(n.attrs.get("values_count", len(n.inputs))) != len(n.inputs):
            return "values_count does not match the inputs"
        try:
            self._axis(g, n)
        except BadModel as e:
            return str(e)
        return node_dtype_problem(g, n, range(len(n.inputs)))

    def infer_shapes(self, g: Graph, n: Node) -> list[tuple[int, ...]]:
        part, axis = g[n.inputs[0]].shape, self._axis(g, n)
        return [part[:axis] + (len(n.inputs),) + part[axis:]]

    def reference(self, g: Graph, n: Node, inputs: list[np.ndarray | None]) -> list[np.ndarray]:
        return [np.stack([np.asarray(x) for x in inputs], axis=self._axis(g, n))]

    def emit(self, g: Graph, n: Node, ctx: "EmitContext") -> None:
        out = g[n.outputs[0]]
        _, copies = _stack_copies(g[n.inputs[0]].shape, self._axis(g, n), len(n.inputs))
        dst = ctx.tensor(out.name)
        for name, c in zip(n.inputs, copies):
            emit_copy(ctx, c, ctx.tensor(name), dst, out.dtype)


@register
class Unpack(Op):
    """UNPACK (tf.unstack): `num` outputs, one per index along `axis`."""

    name = "UNPACK"

    def _axis(self, g: Graph, n: Node) -> int:
        return positive_axis(int(n.attrs.get("axis", 0)), len(g[n.inputs[0]].shape), "UNPACK")

    def check(self, g: Graph, n: Node) -> str | None:
        try:
            axis = self._axis(g, n)
        except BadModel as e:
            return str(e)
        if g[n.inputs[0]].shape[axis] != len(n.outputs):
            return "output count differs from the unpacked axis"
        return node_dtype_problem(g, n)

    def infer_shapes(self, g: Graph, n: Node) -> list[tuple[int, ...]]:
        shape, axis = g[n.inputs[0]].shape, self._axis(g, n)
        return [shape[:axis] + shape[axis + 1:]] * shape[axis]

    def reference(self, g: Graph, n: Node, inputs: list[np.ndarray | None]) -> list[np.ndarray]:
        x, axis = np.asarray(inputs[0]), self._axis(g, n)
        return [np.take(x, k, axis=axis) for k in range(x.shape[axis])]

    def emit(self, g: Graph, n: Node, ctx: "EmitContext") -> None:
        x, axis = g[n.inputs[0]], self._axis(g, n)
        part = x.shape[:axis] + x.shape[axis + 1:]
        _, copies = _stack_copies(part, axis, x.shape[axis])
        src = ctx.tensor(x.name)
        for out, c in zip(n.outputs, copies):
            # the same nest read the other way: stacked tensor -> dense part
            emit_copy(ctx, Copy(c.dims, c.dst_strides, c.src_strides, c.dst_offset, 0), src, ctx.tensor(out), x.dtype)
