"""SPACE_TO_DEPTH, DEPTH_TO_SPACE, SPACE_TO_BATCH_ND and BATCH_TO_SPACE_ND (NHWC), raw copies.

Each moves runs of channels ("units") from one place to another, so one kernel
(kernels/unit_gather.c.j2) does all four: output unit k is the `depth` elements
at input offset table[k], or the padding value where table[k] is -1 (SPACE_TO_BATCH
pads with the output zero point, as TFLite Micro). The tables are built here from
the index rules; the numpy references use reshapes and transposes instead, so the
two are independent, and both are checked against TFLite Micro. Old TensorFlow
converters wrap every dilated convolution in SPACE_TO_BATCH_ND / BATCH_TO_SPACE_ND.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from tinyml.codegen.cnames import ctype
from tinyml.errors import BadModel
from tinyml.ir import Graph, Node
from tinyml.ops.base import Op, bit_class, copy_terms, register
from tinyml.ops.strided_copy import const_ints, node_dtype_problem

if TYPE_CHECKING:
    from tinyml.codegen.context import EmitContext


def _nhwc(g: Graph, n: Node) -> tuple[int, int, int, int]:
    """The input as 4-D NHWC (a 3-D input is N, H, C with W = 1, as TFLite extends it)."""
    shape = g[n.inputs[0]].shape
    if len(shape) == 3:
        return shape[0], shape[1], 1, shape[2]
    if len(shape) != 4:
        raise BadModel(f"{n.op} needs a 3-D or 4-D input, got {list(shape)}")
    return tuple(shape)  # type: ignore[return-value]


def _block(g: Graph, n: Node) -> int:
    b = int(n.attrs.get("block_size", 0))
    if b < 1:
        raise BadModel(f"{n.op} block size {b} must be positive")
    return b


def _block_pads(g: Graph, n: Node, rank: int) -> tuple[list[int], list[int]]:
    """(block [bh, bw], pads/crops [top, bottom, left, right]) for a 4-D (or 3-D: bw 1) input."""
    block = const_ints(g, n.inputs[1] if len(n.inputs) > 1 else None, f"{n.op} block shape")
    pads = const_ints(g, n.inputs[2] if len(n.inputs) > 2 else None, f"{n.op} paddings/crops")
    spatial = rank - 2
    if len(block) != spatial or len(pads) != 2 * spatial or min(block) < 1 or min(pads) < 0:
        raise BadModel(f"{n.op} block {block} / paddings {pads} do not fit a rank-{rank} input")
    if spatial == 1:
        block, pads = block + [1], pads + [0, 0]
    return block, pads


def _gather(ctx: "EmitContext", g: Graph, n: Node, table: np.ndarray, depth: int, pad: int = 0) -> None:
    x = g[n.inputs[0]]
    fn = ctx.kernel("unit_gather.c.j2", t=ctype(x.dtype), units=table.size, depth=depth, pad=pad)
    ctx.call(fn, ctx.tensor(x.name), ctx.tensor(n.outputs[0]), ctx.const(table.astype(np.int32), "units", "int32_t"))


class _SpaceOp(Op):
    def check(self, g: Graph, n: Node) -> str | None:
        if not n.inputs or n.inputs[0] is None or len(n.outputs) != 1:
            return "expects an input and one output"
        try:
            self.infer_shapes(g, n)
        except BadModel as e:
            return str(e)
        return node_dtype_problem(g, n)

    def cost_terms(self, g: Graph, n: Node) -> tuple[str, dict[str, float]]:
        return bit_class("copy_units", g[n.inputs[0]]), copy_terms(g[n.outputs[0]])


@register
class DepthToSpace(_SpaceOp):
    name = "DEPTH_TO_SPACE"

    def infer_shapes(self, g: Graph, n: Node) -> list[tuple[int, ...]]:
        nb, h, w, c = _nhwc(g, n)
        b = _block(g, n)
        if len(g[n.inputs[0]].shape) != 4 or c % (b * b):
            raise BadModel(f"DEPTH_TO_SPACE: depth {c} is not a multiple of {b}x{b} (or the input is not 4-D)")
        return [(nb, h * b, w * b, c // (b * b))]

    def reference(self, g: Graph, n: Node, inputs: list[np.ndarray | None]) -> list[np.ndarray]:
        nb, h, w, c = _nhwc(g, n)
        b = _block(g, n)
        x = np.asarray(inputs[0]).reshape(nb, h, w, b, b, c // (b * b))
        return [x.transpose(0, 1, 3, 2, 4, 5).reshape(self.infer_shapes(g, n)[0])]

    def emit(self, g: Graph, n: Node, ctx: "EmitContext") -> None:
        nb, h, w, c = _nhwc(g, n)
        b = _block(g, n)
        co = c // (b * b)
        bi, oy, ox = np.meshgrid(np.arange(nb), np.arange(h * b), np.arange(w * b), indexing="ij")
        src = ((bi * h + oy // b) * w + ox // b) * c + ((oy % b) * b + ox % b) * co
        _gather(ctx, g, n, src.reshape(-1), co)


@register
class SpaceToDepth(_SpaceOp):
    name = "SPACE_TO_DEPTH"

    def infer_shapes(self, g: Graph, n: Node) -> list[tuple[int, ...]]:
        nb, h, w, c = _nhwc(g, n)
        b = _block(g, n)
        if len(g[n.inputs[0]].shape) != 4 or h % b or w % b:
            raise BadModel(f"SPACE_TO_DEPTH: {h}x{w} is not a multiple of the block {b} (or the input is not 4-D)")
        return [(nb, h // b, w // b, c * b * b)]

    def reference(self, g: Graph, n: Node, inputs: list[np.ndarray | None]) -> list[np.ndarray]:
        nb, h, w, c = _nhwc(g, n)
        b = _block(g, n)
        x = np.asarray(inputs[0]).reshape(nb, h // b, b, w // b, b, c)
        return [x.transpose(0, 1, 3, 2, 4, 5).reshape(self.infer_shapes(g, n)[0])]

    def emit(self, g: Graph, n: Node, ctx: "EmitContext") -> None:
        nb, h, w, c = _nhwc(g, n)
        b = _block(g, n)
        bi, oy, ox, i, j = np.meshgrid(np.arange(nb), np.arange(h // b), np.arange(w // b), np.arange(b),
                                       np.arange(b), indexing="ij")
        src = ((bi * h + oy * b + i) * w + ox * b + j) * c
        _gather(ctx, g, n, src.reshape(-1), c)


@register
class SpaceToBatchNd(_SpaceOp):
    name = "SPACE_TO_BATCH_ND"

    def infer_shapes(self, g: Graph, n: Node) -> list[tuple[int, ...]]:
        nb, h, w, c = _nhwc(g, n)
        rank = len(g[n.inputs[0]].shape)
        (bh, bw), (pt, pb, pl, pr) = _block_pads(g, n, rank)
        if (h + pt + pb) % bh or (w + pl + pr) % bw:
            raise BadModel(f"SPACE_TO_BATCH_ND: padded {h + pt + pb}x{w + pl + pr} is not a multiple of {bh}x{bw}")
        out = (nb * bh * bw, (h + pt + pb) // bh, (w + pl + pr) // bw, c)
        return [out if rank == 4 else (out[0], out[1], c)]

    def _padded_codes(self, g: Graph, n: Node) -> int:
        y = g[n.outputs[0]]
        return y.quant.zp if y.quant is not None and y.quant.scale.size == 1 else 0

    def reference(self, g: Graph, n: Node, inputs: list[np.ndarray | None]) -> list[np.ndarray]:
        nb, h, w, c = _nhwc(g, n)
        (bh, bw), (pt, pb, pl, pr) = _block_pads(g, n, len(g[n.inputs[0]].shape))
        x = np.asarray(inputs[0]).reshape(nb, h, w, c)
        xp = np.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)), constant_values=self._padded_codes(g, n))
        hp, wp = (h + pt + pb) // bh, (w + pl + pr) // bw
        y = xp.reshape(nb, hp, bh, wp, bw, c).transpose(2, 4, 0, 1, 3, 5)
        return [y.reshape(self.infer_shapes(g, n)[0])]

    def emit(self, g: Graph, n: Node, ctx: "EmitContext") -> None:
        nb, h, w, c = _nhwc(g, n)
        (bh, bw), (pt, pb, pl, pr) = _block_pads(g, n, len(g[n.inputs[0]].shape))
        hp, wp = (h + pt + pb) // bh, (w + pl + pr) // bw
        ob, oy, ox = np.meshgrid(np.arange(nb * bh * bw), np.arange(hp), np.arange(wp), indexing="ij")
        src_b, shift = ob % nb, ob // nb
        iy, ix = oy * bh + shift // bw - pt, ox * bw + shift % bw - pl
        inside = (iy >= 0) & (iy < h) & (ix >= 0) & (ix < w)
        src = np.where(inside, ((src_b * h + iy) * w + ix) * c, -1)
        _gather(ctx, g, n, src.reshape(-1), c, self._padded_codes(g, n))


@register
class BatchToSpaceNd(_SpaceOp):
    name = "BATCH_TO_SPACE_ND"

    def infer_shapes(self, g: Graph, n: Node) -> list[tuple[int, ...]]:
        nb, h, w, c = _nhwc(g, n)
        rank = len(g[n.inputs[0]].shape)
        (bh, bw), (ct, cb, cl, cr) = _block_pads(g, n, rank)
        if nb % (bh * bw) or h * bh - ct - cb < 1 or w * bw - cl - cr < 1:
            raise BadModel(f"BATCH_TO_SPACE_ND: batch {nb}, block {bh}x{bw} and crops do not fit")
        out = (nb // (bh * bw), h * bh - ct - cb, w * bw - cl - cr, c)
        return [out if rank == 4 else (out[0], out[1], c)]

    def reference(self, g: Graph, n: Node, inputs: list[np.ndarray | None]) -> list[np.ndarray]:
        nb, h, w, c = _nhwc(g, n)
        (bh, bw), (ct, cb, cl, cr) = _block_pads(g, n, len(g[n.inputs[0]].shape))
        x = np.asarray(inputs[0]).reshape(bh, bw, nb // (bh * bw), h, w, c).transpose(2, 3, 0, 4, 1, 5)
        full = x.reshape(nb // (bh * bw), h * bh, w * bw, c)
        return [full[:, ct:h * bh - cb, cl:w * bw - cr].reshape(self.infer_shapes(g, n)[0])]

    def emit(self, g: Graph, n: Node, ctx: "EmitContext") -> None:
        nb, h, w, c = _nhwc(g, n)
        (bh, bw), (ct, cb, cl, cr) = _block_pads(g, n, len(g[n.inputs[0]].shape))
        out_b = nb // (bh * bw)
        ob, oy, ox = np.meshgrid(np.arange(out_b), np.arange(h * bh - ct - cb), np.arange(w * bw - cl - cr),
                                 indexing="ij")
        fy, fx = oy + ct, ox + cl  # position in the uncropped output
        src_b = ((fy % bh) * bw + fx % bw) * out_b + ob
        src = ((src_b * h + fy // bh) * w + fx // bw) * c
        _gather(ctx, g, n, src.reshape(-1), c)
