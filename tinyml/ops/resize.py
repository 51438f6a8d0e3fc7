"""RESIZE_NEAREST_NEIGHBOR: each output pixel copies the input pixel TFLite Micro's index rule picks.

TFLite Micro computes the source index in float32 per output row and column
(scale = in/out, or (in-1)/(out-1) with align_corners; +0.5 with
half_pixel_centers; floor, or round with align_corners; clamped). Where that
rule repeats every input row and column exactly k times (the integer
up-sampling converters emit), the op is one strided copy whose repeat
dimensions read with stride 0; other sizes are refused by name.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from tinyml.errors import BadModel
from tinyml.ir import Graph, Node
from tinyml.ops.base import Op, register
from tinyml.ops.strided_copy import Copy, const_ints, contiguous_strides, copy_pixel_cost, emit_copy, node_dtype_problem

if TYPE_CHECKING:
    from tinyml.codegen.context import EmitContext


def _size(g: Graph, n: Node) -> tuple[int, int]:
    size = const_ints(g, n.inputs[1] if len(n.inputs) > 1 else None, "RESIZE_NEAREST_NEIGHBOR size")
    if len(size) != 2 or min(size) < 1:
        raise BadModel(f"RESIZE_NEAREST_NEIGHBOR size {size} is not two positive sizes")
    return size[0], size[1]


def nearest_indices(in_size: int, out_size: int, align_corners: bool, half_pixel: bool) -> np.ndarray:
    """Source index of each output index, in TFLite Micro's float32 arithmetic."""
    f = np.float32
    if align_corners and out_size > 1:
        scale = f(in_size - 1) / f(out_size - 1)
    else:
        scale = f(in_size) / f(out_size)
    pos = (np.arange(out_size, dtype=f) + f(0.5 if half_pixel else 0.0)) * scale
    # TfLiteRound rounds half away from zero (pos is never negative here)
    idx = np.floor(pos + f(0.5)) if align_corners else np.floor(pos)
    idx = np.minimum(idx.astype(np.int64), in_size - 1)
    return np.maximum(idx, 0) if half_pixel else idx


def _tables(g: Graph, n: Node) -> tuple[np.ndarray, np.ndarray]:
    _, h, w, _ = g[n.inputs[0]].shape
    oh, ow = _size(g, n)
    ac, hp = bool(n.attrs.get("align_corners")), bool(n.attrs.get("half_pixel_centers"))
    return nearest_indices(h, oh, ac, hp), nearest_indices(w, ow, ac, hp)


def _repeat(idx: np.ndarray, in_size: int) -> int | None:
    """k when idx is every input index repeated k times in order, else None."""
    k, rem = divmod(idx.size, in_size)
    if rem or not np.array_equal(idx, np.repeat(np.arange(in_size), k)):
        return None
    return k


@register
class ResizeNearestNeighbor(Op):
    name = "RESIZE_NEAREST_NEIGHBOR"

    def check(self, g: Graph, n: Node) -> str | None:
        x = g[n.inputs[0]]
        if len(x.shape) != 4:
            return "input must be 4-D (NHWC)"
        try:
            rows, cols = _tables(g, n)
        except BadModel as e:
            return str(e)
        if _repeat(rows, x.shape[1]) is None or _repeat(cols, x.shape[2]) is None:
            return "only whole-number up-sampling factors are supported"
        return node_dtype_problem(g, n)

    def infer_shapes(self, g: Graph, n: Node) -> list[tuple[int, ...]]:
        b, _, _, c = g[n.inputs[0]].shape
        return [(b, *_size(g, n), c)]

    def reference(self, g: Graph, n: Node, inputs: list[np.ndarray | None]) -> list[np.ndarray]:
        rows, cols = _tables(g, n)
        return [inputs[0][:, rows][:, :, cols]]

    def pixel_cost(self, g: Graph, n: Node) -> tuple[float, float]:
        return copy_pixel_cost(g, n)

    def emit(self, g: Graph, n: Node, ctx: "EmitContext") -> None:
        x = g[n.inputs[0]]
        b, h, w, c = x.shape
        rows, cols = _tables(g, n)
        kh, kw = _repeat(rows, h), _repeat(cols, w)
        sb, sh, sw, sc = contiguous_strides(x.shape)
        dims = (b, h, kh, w, kw, c)
        emit_copy(ctx, Copy(dims, (sb, sh, 0, sw, 0, sc), contiguous_strides(dims)),
                  ctx.tensor(x.name), ctx.tensor(n.outputs[0]), x.dtype)
