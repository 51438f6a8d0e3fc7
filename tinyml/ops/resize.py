"""RESIZE_NEAREST_NEIGHBOR and RESIZE_BILINEAR (NHWC, constant size), as TFLite Micro computes them.

Nearest: TFLite Micro computes the source index in float32 per output row and
column (scale = in/out, or (in-1)/(out-1) with align_corners; +0.5 with
half_pixel_centers; floor, or round with align_corners; clamped). Where that
rule repeats every input row and column exactly k times (the integer
up-sampling converters emit), the op is one strided copy whose repeat
dimensions read with stride 0; any other size copies pixels through two
generated index tables (kernels/resize.c.j2).

Bilinear (int8): ResizeBilinearInteger, no floating point: scales in 1/1024
units rounded to nearest, source positions and neighbours per output row and
column (tables built here), four int8 taps weighted in 1/2^20 units, rounded
half away from zero. Raw codes are interpolated: TFLite Micro never looks at
the output's quantization, and neither do we.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from tinyml.codegen.cnames import ctype
from tinyml.errors import BadModel
from tinyml.ir import Graph, Node
from tinyml.ops.base import Op, bit_class, register
from tinyml.ops.strided_copy import Copy, const_ints, contiguous_strides, copy_pixel_cost, emit_copy, node_dtype_problem

if TYPE_CHECKING:
    from tinyml.codegen.context import EmitContext


def _size(g: Graph, n: Node) -> tuple[int, int]:
    size = const_ints(g, n.inputs[1] if len(n.inputs) > 1 else None, f"{n.op} size")
    if len(size) != 2 or min(size) < 1:
        raise BadModel(f"{n.op} size {size} is not two positive sizes")
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
        if kh is None or kw is None:  # any other size: a pixel copy per output pixel through index tables
            emit_resize(ctx, g, n, "nearest", (rows * w * c).astype(np.int32), (cols * c).astype(np.int32))
            return
        sb, sh, sw, sc = contiguous_strides(x.shape)
        dims = (b, h, kh, w, kw, c)
        emit_copy(ctx, Copy(dims, (sb, sh, 0, sw, 0, sc), contiguous_strides(dims)),
                  ctx.tensor(x.name), ctx.tensor(n.outputs[0]), x.dtype)


def emit_resize(ctx: "EmitContext", g: Graph, n: Node, mode: str, rows: np.ndarray, cols: np.ndarray) -> None:
    """kernels/resize.c.j2 over per-output-row and per-output-column tables of element offsets."""
    x, y = g[n.inputs[0]], g[n.outputs[0]]
    b, h, w, c = x.shape
    fn = ctx.kernel("resize.c.j2", mode=mode, t=ctype(x.dtype), batches=b, in_batch=h * w * c,
                    out_h=y.shape[1], out_w=y.shape[2], depth=c)
    ctx.call(fn, ctx.tensor(x.name), ctx.tensor(y.name), ctx.const(rows.reshape(-1), "rows", "int32_t"),
             ctx.const(cols.reshape(-1), "cols", "int32_t"))


def _trunc_div(v: np.ndarray, d: int) -> np.ndarray:
    return np.where(v >= 0, v // d, -((-v) // d))


def bilinear_axis(in_size: int, out_size: int, align_corners: bool, half_pixel: bool) -> np.ndarray:
    """(lower index, upper index, position - 1024 * lower) per output index: TFLite's
    ComputeInterpolationValuesInteger with the 1/1024 scale ResizeBilinearInteger rounds."""
    if align_corners and out_size > 1:
        scale = (1024 * (in_size - 1) + (out_size - 1) // 2) // (out_size - 1)
    else:
        scale = (1024 * in_size + out_size // 2) // out_size
    v = np.arange(out_size, dtype=np.int64) * scale + ((scale // 2 - 512) if half_pixel else 0)
    lo = np.maximum(_trunc_div(v, 1024), 0)
    hi = np.minimum(_trunc_div(v + 1023, 1024), in_size - 1)
    return np.stack([lo, hi, v - 1024 * lo], axis=1)


def _bilinear_tables(g: Graph, n: Node) -> tuple[np.ndarray, np.ndarray]:
    _, h, w, _ = g[n.inputs[0]].shape
    oh, ow = _size(g, n)
    ac, hp = bool(n.attrs.get("align_corners")), bool(n.attrs.get("half_pixel_centers"))
    return bilinear_axis(h, oh, ac, hp), bilinear_axis(w, ow, ac, hp)


@register
class ResizeBilinear(Op):
    name = "RESIZE_BILINEAR"

    def check(self, g: Graph, n: Node) -> str | None:
        x = g[n.inputs[0]]
        if len(x.shape) != 4:
            return "input must be 4-D (NHWC)"
        if n.attrs.get("align_corners") and n.attrs.get("half_pixel_centers"):
            return "align_corners and half_pixel_centers together (TFLite Micro refuses them)"
        try:
            _size(g, n)
        except BadModel as e:
            return str(e)
        if x.dtype != "int8" or g[n.outputs[0]].dtype != "int8":
            return f"{x.dtype} -> {g[n.outputs[0]].dtype}, only int8 is supported"
        return node_dtype_problem(g, n)

    def infer_shapes(self, g: Graph, n: Node) -> list[tuple[int, ...]]:
        b, _, _, c = g[n.inputs[0]].shape
        return [(b, *_size(g, n), c)]

    def reference(self, g: Graph, n: Node, inputs: list[np.ndarray | None]) -> list[np.ndarray]:
        rows, cols = _bilinear_tables(g, n)
        x = np.asarray(inputs[0]).astype(np.int64)
        fy = rows[:, 2][None, :, None, None]
        fx = cols[:, 2][None, None, :, None]
        top, bottom = x[:, rows[:, 0]], x[:, rows[:, 1]]
        acc = (top[:, :, cols[:, 0]] * (1024 - fy) * (1024 - fx) + bottom[:, :, cols[:, 0]] * fy * (1024 - fx)
               + top[:, :, cols[:, 1]] * (1024 - fy) * fx + bottom[:, :, cols[:, 1]] * fy * fx)
        out = _trunc_div(acc + np.where(acc > 0, 1 << 19, -(1 << 19)), 1 << 20)
        return [out.astype(np.int8)]

    def emit(self, g: Graph, n: Node, ctx: "EmitContext") -> None:
        _, _, w, c = g[n.inputs[0]].shape
        rows, cols = _bilinear_tables(g, n)
        rows = rows * np.array([w * c, w * c, 1])  # row offsets in elements, and the row weight
        cols = cols * np.array([c, c, 1])
        emit_resize(ctx, g, n, "bilinear", rows.astype(np.int32), cols.astype(np.int32))

    def cost_terms(self, g: Graph, n: Node) -> tuple[str, dict[str, float]]:
        """Four taps per output element, weights per output pixel."""
        x, y = g[n.inputs[0]], g[n.outputs[0]]
        return bit_class("resize_bilinear", x, y), {"call": 1, "out": y.size, "pixels": y.size // y.shape[-1]}
