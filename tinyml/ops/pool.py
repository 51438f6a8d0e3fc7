"""AVERAGE_POOL_2D and MAX_POOL_2D, int8 (TFLite Micro's reference_integer_ops pooling).

Neither rescales: both work on the raw int8 values (the converter gives
input and output the same quantization) and clamp to the fused activation's
range. The average divides by the taps inside the input only, rounding
half away from zero in integer arithmetic.
"""
from __future__ import annotations

import numpy as np

from tinyml.codegen.cnames import ctype
from tinyml.ir import Graph, Node
from tinyml.ops.int16 import int16_per_tensor
from tinyml.ops.base import bit_class, inside_taps, Op, output_channels, register
from tinyml.ops.quantized import (
    Window,
    activation_range,
    activation_reason,
    arity_reason,
    int8_per_tensor,
    pad_for_window,
    taps,
    window,
)


def pool_window(g: Graph, n: Node) -> Window:
    return window(g, n, int(n.attrs.get("filter_height", 0)), int(n.attrs.get("filter_width", 0)), dilated=False)


def valid_taps(w: Window) -> np.ndarray:
    """[OH, OW] number of window taps inside the input."""
    def along(out: int, stride: int, pad: int, k: int, size: int) -> np.ndarray:
        start = np.arange(out) * stride - pad
        return np.clip(start + k, 0, size) - np.clip(start, 0, size)
    return np.outer(along(w.out_h, w.stride_h, w.pad_top, w.k_h, w.in_h),
                    along(w.out_w, w.stride_w, w.pad_left, w.k_w, w.in_w))


class _Pool2D(Op):
    kind = ""  # "avg" or "max"
    fuses_activation = True
    subbyte_io = True

    def sliding_window(self, g: Graph, n: Node) -> Window:
        return pool_window(g, n)

    def pixel_cost(self, g: Graph, n: Node) -> tuple[float, float]:
        taps = int(n.attrs.get("filter_height", 1)) * int(n.attrs.get("filter_width", 1))
        return 0.0, output_channels(g, n) * (5 + 2 * taps)

    def check(self, g: Graph, n: Node) -> str | None:
        if why := arity_reason(n, 1):
            return why
        x, y = g[n.inputs[0]], g[n.outputs[0]]
        if x.dtype == "int16":  # 16x8 mode: TFLite Micro pools int16 the same way (no zero point used)
            why = int16_per_tensor(x, "input", any_zp=True) or int16_per_tensor(y, "output", any_zp=True)
        else:
            why = int8_per_tensor(x, "input") or int8_per_tensor(y, "output")
        why = why or activation_reason(n)
        if why:
            return why
        try:
            w = pool_window(g, n)
        except ValueError as e:
            return str(e)
        if not np.all(valid_taps(w) > 0):
            return "a pooling window lies entirely in the padding"
        return None

    def infer_shapes(self, g: Graph, n: Node) -> list[tuple[int, ...]]:
        w = pool_window(g, n)
        return [(w.batch, w.out_h, w.out_w, g[n.inputs[0]].shape[3])]

    def reference(self, g: Graph, n: Node, inputs: list[np.ndarray | None]) -> list[np.ndarray]:
        w = pool_window(g, n)
        lo, hi = activation_range(n.attrs.get("fused_activation_function", "NONE"), g[n.outputs[0]])
        # Padded taps hold a value that cannot win: 0 for a sum, below int16 for a max.
        xp = pad_for_window(inputs[0].astype(np.int64), w, 0 if self.kind == "avg" else -100000)
        views = [v for _, _, v in taps(xp, w)]
        if self.kind == "max":
            acc = np.maximum.reduce(views)
        else:
            total = np.add.reduce(views)
            count = valid_taps(w)[None, :, :, None]
            half = count // 2
            # C division truncates toward zero; both numerators keep the sign of total.
            num = np.where(total > 0, total + half, total - half)
            acc = np.sign(num) * (np.abs(num) // count)
        return [np.clip(acc, lo, hi).astype(g[n.outputs[0]].np_dtype)]

    def emit(self, g: Graph, n: Node, ctx) -> None:
        lo, hi = activation_range(n.attrs.get("fused_activation_function", "NONE"), g[n.outputs[0]])
        fn = ctx.kernel("pool2d.c.j2", kind=self.kind, win=pool_window(g, n), ct=ctype(g[n.inputs[0]].dtype),
                        channels=g[n.inputs[0]].shape[3], lo=lo, hi=hi, xbits=g[n.inputs[0]].bits,
                        ybits=g[n.outputs[0]].bits)
        ctx.call(fn, ctx.tensor(n.inputs[0]), ctx.tensor(n.outputs[0]))

    def cost_terms(self, g: Graph, n: Node) -> tuple[str, dict[str, float]]:
        """Per output element the window rows inside the input and their taps (unrolled at literal
        offsets without padding and up to 8 columns, else a loop: `loop_taps`), the division or
        comparison and the clamp. One template for both kinds (measured within 4 % of each other)
        and for int8 and int16 (within 2 %), one class; sub-byte storage reads through bit helpers."""
        x, y = g[n.inputs[0]], g[n.outputs[0]]
        w = pool_window(g, n)
        rows, cols = inside_taps(w)
        ch = w.batch * x.shape[-1]
        unrolled = not w.has_padding and w.k_w <= 8
        return ("pool" if min(x.bits, y.bits) >= 8 else bit_class("pool", x, y)), {"call": 1, "out": y.size, "rows": ch * rows * w.out_w,
                                         "taps" if unrolled else "loop_taps": ch * rows * cols}


@register
class AveragePool2D(_Pool2D):
    name = "AVERAGE_POOL_2D"
    kind = "avg"


@register
class MaxPool2D(_Pool2D):
    name = "MAX_POOL_2D"
    kind = "max"
