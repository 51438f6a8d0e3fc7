"""Ops that take parts of a tensor: STRIDED_SLICE, SLICE, SPLIT, SPLIT_V, GATHER.

All but GATHER are strided copies whose extents and offsets are known at
generation time. STRIDED_SLICE follows TFLite Micro's index arithmetic
(StridedSliceStartForAxis/EndForAxis: clamp, then apply the masks) and TF's
meaning of ellipsis and new-axis masks, which TFLite Micro ignores; the few
spec corners where TF and TFLite Micro disagree (a shrunk axis with a begin
mask, a negative stride or an out-of-range index) are rejected in check().
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from tinyml.codegen.cnames import ctype
from tinyml.errors import BadModel
from tinyml.ir import Graph, Node
from tinyml.ops.base import Op, register
from tinyml.ops.concat import positive_axis
from tinyml.ops.strided_copy import (
    copy_class,
    Copy,
    const_ints,
    contiguous_strides,
    emit_copy,
    node_dtype_problem,
    plain_dtype_problem,
    strided_copy_terms,
)

if TYPE_CHECKING:
    from tinyml.codegen.context import EmitContext


def _bit(mask: int, i: int) -> bool:
    return bool((mask >> i) & 1)


@dataclass
class SliceAxis:
    """One axis of the sliced view: `count` elements from `start` stepping `step`."""

    start: int
    step: int
    count: int
    in_axis: int | None  # None: an axis inserted by new_axis_mask
    keep: bool  # False: removed by shrink_axis_mask


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def strided_slice_axes(in_shape: tuple[int, ...], begin: list[int], end: list[int], strides: list[int],
                       attrs: dict) -> list[SliceAxis]:
    """Resolve a STRIDED_SLICE spec against `in_shape` into one SliceAxis per view axis."""
    n = len(begin)
    if len(end) != n or len(strides) != n:
        raise BadModel("STRIDED_SLICE begin, end and strides differ in length")
    bm, em = int(attrs.get("begin_mask", 0)), int(attrs.get("end_mask", 0))
    elm, nam = int(attrs.get("ellipsis_mask", 0)), int(attrs.get("new_axis_mask", 0))
    sam, offset = int(attrs.get("shrink_axis_mask", 0)), bool(attrs.get("offset", False))
    rank = len(in_shape)
    ellipses = [i for i in range(n) if _bit(elm, i)]
    if len(ellipses) > 1:
        raise BadModel("STRIDED_SLICE with more than one ellipsis")
    consumed = sum(1 for i in range(n) if not _bit(elm, i) and not _bit(nam, i))
    if consumed > rank:
        raise BadModel(f"STRIDED_SLICE spec indexes {consumed} axes of a rank-{rank} tensor")
    # Dense spec: ("full", None) for axes an ellipsis (explicit or trailing) covers.
    spec: list[tuple[str, int | None]] = []
    for i in range(n):
        if _bit(elm, i):
            spec += [("full", None)] * (rank - consumed)
        elif _bit(nam, i):
            spec.append(("new", i))
        else:
            spec.append(("axis", i))
    if not ellipses:
        spec += [("full", None)] * (rank - consumed)

    axes: list[SliceAxis] = []
    a = 0
    for kind, i in spec:
        if kind == "new":
            axes.append(SliceAxis(0, 1, 1, None, True))
            continue
        dim = in_shape[a]
        if kind == "full":
            axes.append(SliceAxis(0, 1, dim, a, True))
            a += 1
            continue
        stride = strides[i]
        if stride == 0:
            raise BadModel("STRIDED_SLICE stride 0")
        start = begin[i] + dim if begin[i] < 0 else begin[i]
        start = min(max(start, 0), dim) if stride > 0 else min(max(start, -1), dim - 1)
        if _bit(bm, i):
            start = 0 if stride > 0 else dim - 1
        if _bit(sam, i):
            if stride < 0 or _bit(bm, i) or not -dim <= begin[i] < dim:
                raise BadModel("STRIDED_SLICE shrinks an axis with a negative stride, a begin mask "
                               "or an out-of-range index (TF and TFLite Micro disagree there)")
            axes.append(SliceAxis(start, 1, 1, a, False))
            a += 1
            continue
        stop = end[i] + start if offset else end[i]
        stop = stop + dim if stop < 0 else stop
        stop = min(max(stop, 0), dim) if stride > 0 else min(max(stop, -1), dim - 1)
        if _bit(em, i):
            stop = dim if stride > 0 else -1
        count = max(0, _ceil_div(stop - start, stride))
        axes.append(SliceAxis(start, stride, count, a, True))
        a += 1
    return axes


def view_copy(in_shape: tuple[int, ...], axes: list[SliceAxis]) -> Copy:
    """The strided copy that writes the view `axes` of a dense input, densely."""
    strides = contiguous_strides(in_shape)
    offset = sum(ax.start * strides[ax.in_axis] for ax in axes if ax.in_axis is not None)
    src = tuple(ax.step * strides[ax.in_axis] if ax.in_axis is not None else 0 for ax in axes)
    dims = tuple(ax.count for ax in axes)
    return Copy(dims, src, contiguous_strides(dims), offset, 0)


def view_reference(x: np.ndarray, axes: list[SliceAxis]) -> np.ndarray:
    """Gather the view with explicit index lists (independent of the copy's strides)."""
    shape = [1 if ax.in_axis is None else x.shape[ax.in_axis] for ax in axes]
    xe = np.asarray(x).reshape(shape)
    if not axes:
        return xe.copy()
    index = [ax.start + ax.step * np.arange(ax.count) for ax in axes]
    return xe[np.ix_(*index)].reshape(tuple(ax.count for ax in axes if ax.keep))


class _ViewOp(Op):
    """An op whose outputs are views of its data input, resolved at generation time."""

    data_input = 0

    def views(self, g: Graph, n: Node) -> list[list[SliceAxis]]:
        raise NotImplementedError

    def check(self, g: Graph, n: Node) -> str | None:
        try:
            views = self.views(g, n)
        except (BadModel, IndexError, ValueError) as e:
            return str(e) or "malformed parameters"
        if len(views) != len(n.outputs):
            return f"{len(n.outputs)} outputs for {len(views)} slices"
        return node_dtype_problem(g, n, (self.data_input,))

    def infer_shapes(self, g: Graph, n: Node) -> list[tuple[int, ...]]:
        return [tuple(ax.count for ax in axes if ax.keep) for axes in self.views(g, n)]

    def reference(self, g: Graph, n: Node, inputs: list[np.ndarray | None]) -> list[np.ndarray]:
        x = inputs[self.data_input]
        return [view_reference(x, axes) for axes in self.views(g, n)]

    def emit(self, g: Graph, n: Node, ctx: "EmitContext") -> None:
        x = g[n.inputs[self.data_input]]
        for out, axes in zip(n.outputs, self.views(g, n)):
            emit_copy(ctx, view_copy(x.shape, axes), ctx.tensor(x.name), ctx.tensor(out), x.dtype)

    def cost_terms(self, g: Graph, n: Node) -> tuple[str, dict[str, float]]:
        """Strided copies of the views."""
        x = g[n.inputs[self.data_input]]
        copies = [view_copy(x.shape, axes) for axes in self.views(g, n)]
        return copy_class(x), strided_copy_terms(copies, x.np_dtype.itemsize)


@register
class StridedSlice(_ViewOp):
    name = "STRIDED_SLICE"

    def views(self, g: Graph, n: Node) -> list[list[SliceAxis]]:
        if len(n.inputs) != 4:
            raise BadModel("STRIDED_SLICE needs 4 inputs")
        begin = const_ints(g, n.inputs[1], "STRIDED_SLICE begin")
        end = const_ints(g, n.inputs[2], "STRIDED_SLICE end")
        strides = const_ints(g, n.inputs[3], "STRIDED_SLICE strides")
        return [strided_slice_axes(g[n.inputs[0]].shape, begin, end, strides, n.attrs)]


def _range_axes(shape: tuple[int, ...], axis: int, start: int, count: int) -> list[SliceAxis]:
    return [SliceAxis(start if k == axis else 0, 1, count if k == axis else d, k, True) for k, d in enumerate(shape)]


@register
class Slice(_ViewOp):
    name = "SLICE"

    def views(self, g: Graph, n: Node) -> list[list[SliceAxis]]:
        shape = g[n.inputs[0]].shape
        begin = const_ints(g, n.inputs[1] if len(n.inputs) > 1 else None, "SLICE begin")
        size = const_ints(g, n.inputs[2] if len(n.inputs) > 2 else None, "SLICE size")
        if len(begin) != len(shape) or len(size) != len(shape):
            raise BadModel("SLICE begin/size do not match the input rank")
        axes = []
        for k, (d, b, s) in enumerate(zip(shape, begin, size)):
            s = d - b if s == -1 else s
            if not (0 <= b <= d and 0 <= s <= d - b):
                raise BadModel(f"SLICE [{b}, +{s}) out of range on an axis of size {d}")
            axes.append(SliceAxis(b, 1, s, k, True))
        return [axes]


def _split_views(shape: tuple[int, ...], axis: int, sizes: list[int]) -> list[list[SliceAxis]]:
    views, at = [], 0
    for s in sizes:
        views.append(_range_axes(shape, axis, at, s))
        at += s
    return views


@register
class Split(_ViewOp):
    """SPLIT: inputs are (axis, data); `num_splits` equal parts."""

    name = "SPLIT"
    data_input = 1

    def views(self, g: Graph, n: Node) -> list[list[SliceAxis]]:
        if len(n.inputs) != 2:
            raise BadModel("SPLIT needs 2 inputs")
        shape = g[n.inputs[1]].shape
        (axis,) = const_ints(g, n.inputs[0], "SPLIT axis")
        axis = positive_axis(axis, len(shape), "SPLIT")
        parts = int(n.attrs.get("num_splits", len(n.outputs)))
        if parts <= 0 or shape[axis] % parts:
            raise BadModel(f"SPLIT of size {shape[axis]} into {parts} parts")
        return _split_views(shape, axis, [shape[axis] // parts] * parts)


@register
class SplitV(_ViewOp):
    """SPLIT_V: inputs are (data, size_splits, axis); one size may be -1."""

    name = "SPLIT_V"

    def views(self, g: Graph, n: Node) -> list[list[SliceAxis]]:
        if len(n.inputs) != 3:
            raise BadModel("SPLIT_V needs 3 inputs")
        shape = g[n.inputs[0]].shape
        sizes = const_ints(g, n.inputs[1], "SPLIT_V size_splits")
        (axis,) = const_ints(g, n.inputs[2], "SPLIT_V axis")
        axis = positive_axis(axis, len(shape), "SPLIT_V")
        if sizes.count(-1) > 1 or any(s < -1 for s in sizes):
            raise BadModel(f"SPLIT_V sizes {sizes}")
        if -1 in sizes:
            sizes[sizes.index(-1)] = shape[axis] - (sum(sizes) + 1)
        if sum(sizes) != shape[axis] or min(sizes, default=0) < 0:
            raise BadModel(f"SPLIT_V sizes {sizes} do not add up to {shape[axis]}")
        return _split_views(shape, axis, sizes)


@register
class Gather(Op):
    """GATHER (batch_dims 0) with run-time indices.

    TFLite Micro fails the whole inference on an out-of-range index; a
    generated kernel cannot fail, so such slots are written as zeros, here and
    in the C.
    """

    name = "GATHER"

    def _geometry(self, g: Graph, n: Node) -> tuple[int, int, int, int]:
        """(outer, axis size, number of indices, inner) of the gather."""
        shape = g[n.inputs[0]].shape
        axis = positive_axis(int(n.attrs.get("axis", 0)), len(shape), "GATHER")
        outer = int(np.prod(shape[:axis], dtype=np.int64))
        inner = int(np.prod(shape[axis + 1:], dtype=np.int64))
        return outer, shape[axis], g[n.inputs[1]].size, inner

    def check(self, g: Graph, n: Node) -> str | None:
        if len(n.inputs) != 2 or None in n.inputs:
            return "GATHER needs 2 inputs"
        if int(n.attrs.get("batch_dims", 0)) != 0:
            return "batch_dims other than 0"
        if g[n.inputs[1]].dtype not in ("int32", "int64"):
            return "indices must be int32 or int64"
        try:
            self._geometry(g, n)
        except BadModel as e:
            return str(e)
        return plain_dtype_problem(g[n.inputs[1]]) or node_dtype_problem(g, n)

    def infer_shapes(self, g: Graph, n: Node) -> list[tuple[int, ...]]:
        shape = g[n.inputs[0]].shape
        axis = positive_axis(int(n.attrs.get("axis", 0)), len(shape), "GATHER")
        return [shape[:axis] + g[n.inputs[1]].shape + shape[axis + 1:]]

    def reference(self, g: Graph, n: Node, inputs: list[np.ndarray | None]) -> list[np.ndarray]:
        params, idx = np.asarray(inputs[0]), np.asarray(inputs[1]).astype(np.int64)
        axis = positive_axis(int(n.attrs.get("axis", 0)), params.ndim, "GATHER")
        valid = (idx >= 0) & (idx < params.shape[axis])
        out = np.take(params, np.where(valid, idx, 0), axis=axis)
        mask = valid.reshape((1,) * axis + idx.shape + (1,) * (params.ndim - axis - 1))
        return [np.where(mask, out, np.zeros((), params.dtype))]

    def emit(self, g: Graph, n: Node, ctx: "EmitContext") -> None:
        outer, axis_size, count, inner = self._geometry(g, n)
        x, idx = g[n.inputs[0]], g[n.inputs[1]]
        fn = ctx.kernel("gather.c.j2", t=ctype(x.dtype), it=ctype(idx.dtype), outer=outer,
                        axis_size=axis_size, count=count, inner=inner)
        ctx.call(fn, ctx.tensor(x.name), ctx.tensor(idx.name), ctx.tensor(n.outputs[0]))
