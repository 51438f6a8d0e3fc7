"""DEPTHWISE_CONV_2D, int8 (TFLite Micro's reference_integer_ops::DepthwiseConvPerChannel).

Filter layout 1HWC with C = input channels * depth multiplier; output
channel oc = ic * multiplier + m. Per-channel scales are on axis 3.
"""
from __future__ import annotations

import numpy as np

from tinyml.ir import Graph, Node
from tinyml.ops.base import Op, register
from tinyml.ops.quantized import (
    accumulator_may_overflow,
    activation_reason,
    arity_reason,
    bias_of,
    conv_requant,
    int8_per_tensor,
    int8_weights,
    int32_bias,
    kernel_args,
    pad_for_window,
    taps,
    window,
)


def depth_multiplier(g: Graph, n: Node) -> int:
    return g[n.inputs[1]].shape[3] // g[n.inputs[0]].shape[3]


@register
class DepthwiseConv2D(Op):
    name = "DEPTHWISE_CONV_2D"

    def check(self, g: Graph, n: Node) -> str | None:
        if why := arity_reason(n, 2):
            return why
        x, y = g[n.inputs[0]], g[n.outputs[0]]
        why = int8_per_tensor(x, "input") or int8_per_tensor(y, "output")
        if why:
            return why
        wt = g[n.inputs[1]]
        if len(wt.shape) != 4 or wt.shape[0] != 1 or len(x.shape) != 4:
            return "depthwise conv needs a 4-D NHWC input and a 1HWC filter"
        cin, cout = x.shape[3], wt.shape[3]
        if cin < 1 or cout % cin:
            return f"filter depth {cout} is not a multiple of input depth {cin}"
        attr = n.attrs.get("depth_multiplier")
        if attr not in (None, cout // cin):
            # TFLite Micro would index with the attribute; a mismatch is a broken model.
            return f"depth_multiplier {attr} disagrees with filter depth {cout} / input depth {cin}"
        try:
            window(g, n, wt.shape[1], wt.shape[2])
        except ValueError as e:
            return str(e)
        bias = g[n.inputs[2]] if len(n.inputs) > 2 and n.inputs[2] is not None else None
        return int8_weights(wt, cout, 3) or int32_bias(bias, cout) or activation_reason(n)

    def infer_shapes(self, g: Graph, n: Node) -> list[tuple[int, ...]]:
        wt = g[n.inputs[1]]
        w = window(g, n, wt.shape[1], wt.shape[2])
        return [(w.batch, w.out_h, w.out_w, wt.shape[3])]

    def reference(self, g: Graph, n: Node, inputs: list[np.ndarray | None]) -> list[np.ndarray]:
        x, wt = inputs[0], inputs[1].astype(np.int64)
        _, k_h, k_w, cout = wt.shape
        w = window(g, n, k_h, k_w)
        mult = depth_multiplier(g, n)
        in_off = -g[n.inputs[0]].quant.zp
        xp = pad_for_window(x.astype(np.int64), w, -in_off) + in_off  # padded taps add 0
        acc = np.zeros((w.batch, w.out_h, w.out_w, cout), np.int64)
        for ky, kx, view in taps(xp, w):
            acc += np.repeat(view, mult, axis=3) * wt[0, ky, kx]
        if len(inputs) > 2 and inputs[2] is not None:
            acc += inputs[2].reshape(-1).astype(np.int64)
        return [conv_requant(g, n, cout).apply(acc)]

    def macs(self, g: Graph, n: Node) -> int:
        y, wt = g[n.outputs[0]], g[n.inputs[1]]
        return int(np.prod(y.shape)) * wt.shape[1] * wt.shape[2]

    def emit(self, g: Graph, n: Node, ctx) -> None:
        wt = g[n.inputs[1]].data.astype(np.int8)
        _, k_h, k_w, cout = wt.shape
        x = g[n.inputs[0]]
        w = window(g, n, k_h, k_w)
        in_off = -x.quant.zp
        bias = bias_of(g, n)
        channel_major = np.ascontiguousarray(wt[0].transpose(2, 0, 1))  # [oc][ky][kx]
        args = kernel_args(
            ctx, channel_major, channel_major.astype(np.int64).sum(axis=(1, 2)), bias, in_off,
            conv_requant(g, n, cout), needs_border=w.has_padding,
            overflow=accumulator_may_overflow(channel_major, bias, in_off, (1, 2)),
        )
        fn = ctx.kernel(
            "depthwise_conv2d.c.j2", win=w, cin=x.shape[3], cout=cout, mult=depth_multiplier(g, n),
            in_offset=in_off, p=args.params, signature=args.signature(),
        )
        ctx.call(fn, ctx.tensor(n.inputs[0]), ctx.tensor(n.outputs[0]), *args.values)
