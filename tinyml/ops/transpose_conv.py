"""TRANSPOSE_CONV, int8 with per-channel (or per-tensor) filters: TFLite Micro's
reference_integer_ops::TransposeConv.

TFLite Micro scatters each input pixel times the filter into an int32 buffer the
size of the output, then adds the bias and requantizes per channel. The sum is
exact integer arithmetic, so the kernel here gathers instead (output pixel by
output pixel, only the taps whose input position is whole and inside), which
needs no output-sized int32 buffer. Inputs: output shape (constant), filter OHWI,
input, optional int32 bias. Padding is TFLite's ComputePaddingHeightWidth taken
on the output size (the input of the equivalent convolution).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from tinyml.errors import BadModel
from tinyml.ir import Graph, Node
from tinyml.ops.base import Op, bit_class, register
from tinyml.ops.int16 import ACC_LIMIT, MAX_SHIFT, int16_per_tensor, int64_bias, layer_requant
from tinyml.ops.quantized import (
    activation_reason,
    int8_per_tensor,
    int8_weights,
    int32_bias,
    out_size,
    same_padding,
)
from tinyml.ops.strided_copy import const_ints

if TYPE_CHECKING:
    from tinyml.codegen.context import EmitContext


def _output_shape(g: Graph, n: Node) -> tuple[int, ...]:
    shape = const_ints(g, n.inputs[0], "TRANSPOSE_CONV output shape")
    if len(shape) != 4 or min(shape) < 1:
        raise BadModel(f"TRANSPOSE_CONV output shape {shape} is not 4 positive sizes")
    return tuple(shape)


def _geometry(g: Graph, n: Node) -> tuple[int, int, int, int]:
    """(stride_h, stride_w, pad_top, pad_left)."""
    sh, sw = int(n.attrs.get("stride_h", 1)), int(n.attrs.get("stride_w", 1))
    if sh < 1 or sw < 1:
        raise BadModel(f"TRANSPOSE_CONV strides {sh}x{sw} must be positive")
    padding = n.attrs.get("padding", "SAME")
    _, oh, ow, _ = _output_shape(g, n)
    _, kh, kw, _ = g[n.inputs[1]].shape
    try:
        top = same_padding(oh, kh, sh, 1, out_size(padding, oh, kh, sh, 1))[0]
        left = same_padding(ow, kw, sw, 1, out_size(padding, ow, kw, sw, 1))[0]
    except ValueError as e:
        raise BadModel(f"TRANSPOSE_CONV {e}") from None
    return sh, sw, top, left


def _bias(g: Graph, n: Node) -> np.ndarray | None:
    name = n.inputs[3] if len(n.inputs) > 3 else None
    return None if name is None else g[name].data.reshape(-1).astype(np.int64)


@register
class TransposeConv(Op):
    name = "TRANSPOSE_CONV"

    def check(self, g: Graph, n: Node) -> str | None:
        if len(n.inputs) < 3 or any(i is None for i in n.inputs[:3]) or len(n.outputs) != 1:
            return "expects output shape, filter and input, and one output"
        x, wt, y = g[n.inputs[2]], g[n.inputs[1]], g[n.outputs[0]]
        wide = x.dtype == "int16"  # 16x8 mode (tinyml/ops/int16.py)
        check_io = int16_per_tensor if wide else int8_per_tensor
        if why := check_io(x, "input") or check_io(y, "output"):
            return why
        if len(x.shape) != 4 or len(wt.shape) != 4:
            return "needs a 4-D NHWC input and a 4-D OHWI filter"
        try:
            shape = _output_shape(g, n)
            _geometry(g, n)
        except BadModel as e:
            return str(e)
        if shape[0] != x.shape[0] or shape[3] != wt.shape[0] or wt.shape[3] != x.shape[3]:
            return f"output shape {list(shape)}, filter {list(wt.shape)} and input {list(x.shape)} disagree"
        bias = g[n.inputs[3]] if len(n.inputs) > 3 and n.inputs[3] is not None else None
        if not wide:
            return int8_weights(wt, wt.shape[0], 0) or int32_bias(bias, wt.shape[0]) or activation_reason(n)
        if why := int8_weights(wt, wt.shape[0], 0) or int64_bias(bias, wt.shape[0]) or activation_reason(n):
            return why
        if conv_requant_io(g, n, wt.shape[0]).shift.max() > MAX_SHIFT:
            return f"a requantization scale is above the 2^{MAX_SHIFT} TFLite's 16x8 kernels assume"
        bound = np.abs(wt.data.astype(np.int64)).sum(axis=(1, 2, 3)) * (1 << 15)
        if np.any(bound + (0 if bias is None else np.abs(bias.data.reshape(-1).astype(np.int64))) >= ACC_LIMIT):
            return "the accumulator can exceed the 2^47 TFLite's 16x8 requantization assumes"
        return None

    def infer_shapes(self, g: Graph, n: Node) -> list[tuple[int, ...]]:
        return [_output_shape(g, n)]

    def reference(self, g: Graph, n: Node, inputs: list[np.ndarray | None]) -> list[np.ndarray]:
        x, wt = g[n.inputs[2]], g[n.inputs[1]].data.astype(np.int64)
        b, oh, ow, oc = _output_shape(g, n)
        sh, sw, top, left = _geometry(g, n)
        _, kh, kw, _ = wt.shape
        xo = np.asarray(inputs[2]).astype(np.int64) - x.quant.zp
        _, ih, iw, _ = xo.shape
        acc = np.zeros((b, oh, ow, oc), np.int64)
        for ky in range(kh):
            oy = np.arange(ih) * sh - top + ky
            rows = (oy >= 0) & (oy < oh)
            for kx in range(kw):
                ox = np.arange(iw) * sw - left + kx
                cols = (ox >= 0) & (ox < ow)
                part = xo[:, rows][:, :, cols] @ wt[:, ky, kx, :].T
                acc[:, oy[rows][:, None], ox[cols][None, :], :] += part
        if (bias := _bias(g, n)) is not None:
            acc += bias
        return [conv_requant_io(g, n, oc).apply(acc)]

    def macs(self, g: Graph, n: Node) -> int:
        x, wt = g[n.inputs[2]], g[n.inputs[1]]
        return int(np.prod(x.shape)) * int(np.prod(wt.shape[:3]))

    def emit(self, g: Graph, n: Node, ctx: "EmitContext") -> None:
        x, wt = g[n.inputs[2]], g[n.inputs[1]]
        b, oh, ow, oc = _output_shape(g, n)
        sh, sw, top, left = _geometry(g, n)
        _, kh, kw, ic = wt.shape
        rq = conv_requant_io(g, n, oc)
        bias = _bias(g, n)
        if x.dtype == "int16":  # 16x8: the reduced multipliers and total shifts of Requant16, no offsets
            fn = ctx.kernel("transpose_conv.c.j2", wide=True, batches=b, ih=x.shape[1], iw=x.shape[2], ic=ic, oh=oh,
                            ow=ow, oc=oc, kh=kh, kw=kw, sh=sh, sw=sw, top=top, left=left, lo=rq.lo, hi=rq.hi)
            bias64 = bias if bias is not None else np.zeros(oc, np.int64)
            ctx.call(fn, ctx.tensor(x.name), ctx.tensor(n.outputs[0]),
                     ctx.const(wt.data.astype(np.int8), "w", "int8_t"), ctx.const(bias64, "bias", "int64_t"),
                     ctx.const(rq.rm, "mult", "int32_t"), ctx.const(rq.total_shift, "shift", "int8_t"))
            return
        fn = ctx.kernel("transpose_conv.c.j2", wide=False, batches=b, ih=x.shape[1], iw=x.shape[2], ic=ic, oh=oh, ow=ow,
                        oc=oc, kh=kh, kw=kw, sh=sh, sw=sw, top=top, left=left, in_off=-x.quant.zp,
                        out_zp=rq.out_zp, lo=rq.lo, hi=rq.hi)
        bias_arr = (bias if bias is not None else np.zeros(oc, np.int64)).astype(np.int32)
        ctx.call(fn, ctx.tensor(x.name), ctx.tensor(n.outputs[0]), ctx.const(wt.data.astype(np.int8), "w", "int8_t"),
                 ctx.const(bias_arr, "bias", "int32_t"), ctx.const(rq.mult, "mult", "int32_t"),
                 ctx.const(rq.shift.astype(np.int8), "shift", "int8_t"))

    def cost_terms(self, g: Graph, n: Node) -> tuple[str, dict[str, float]]:
        """Multiply-accumulates over the whole taps, a requantization per output element."""
        y = g[n.outputs[0]]
        return bit_class("tconv", g[n.inputs[2]], y), {"call": 1, "macs": self.macs(g, n), "out": y.size}


def conv_requant_io(g: Graph, n: Node, channels: int):
    """The layer's requantization (int8 or 16x8) with TRANSPOSE_CONV's input order (input is input 2)."""
    view = Node(n.op, [n.inputs[2], n.inputs[1]], n.outputs, n.attrs, name=n.name)
    return layer_requant(g, view, channels)
