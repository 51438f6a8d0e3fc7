"""DIV on int8, as TFLite Micro's DivElementwise computes it (div.cc, reference/div.h).

Per element: v1 = a - zp_a, v2 = b - zp_b, both negated when v2 < 0; the
reciprocal of v2 from GetReciprocal (gemmlowp's one_over_one_plus_x on v2
normalized, its exponent rs = 31 - clz(v2)); v1 shifted left by its headroom
(leading sign bits) and multiplied by it; then the output multiplier
s_a / (s_b * s_y) (double, from the float32 scales) and a rounding right shift
by e = headroom + rs - output_shift, + zp_y, clamped to the fused activation.

TFLite Micro shifts by e even past 31 (dividing 0 or a small v1 by a large v2
does), which C leaves undefined; its host build (the oracle) shifts by e & 31
with an all-ones mask, and we do the same, checked on every int8 code pair for
five scale/zero-point sets. A zero divisor is TFLite Micro's DCHECK; its
release arithmetic (clz(0) = 32) is reproduced too. Broadcasting, the loop nest
and the output are elementwise.py's; the reciprocal is a 256-entry table by b's
byte.
"""
from __future__ import annotations

import numpy as np

from tinyml.fixedpoint import quantize_multiplier, rdbpot, srdhm, wrap_int32
from tinyml.ir import Graph, Node
from tinyml.ops.activations import _clz32, one_over_one_plus_x
from tinyml.ops.base import register
from tinyml.ops.elementwise import Arith, BinaryOp, byte_codes
from tinyml.ops.quantized import activation_range

MAX_OUTPUT_SHIFT = 22  # a left shift of the last step (e < 0) would need a multiplier above 2^22


def reciprocal(v2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """GetReciprocal(v2, 31): (Q0.31 reciprocal of v2 normalized, its exponent), v2 >= 0."""
    clz = _clz32(v2)
    return one_over_one_plus_x(((v2 << clz) & 0xFFFFFFFF) - (1 << 31)), 31 - clz


def divide(x1: np.ndarray, x2: np.ndarray, p: Arith) -> np.ndarray:
    v1, v2 = np.asarray(x1, np.int64) + p.off1, np.asarray(x2, np.int64) + p.off2
    v1, v2 = np.where(v2 < 0, -v1, v1), np.abs(v2)
    inv, rs = reciprocal(v2)
    mag = np.where(v1 < 0, ~v1, v1)
    headroom = np.where(mag == 0, 31, _clz32(np.maximum(mag, 1)) - 1)
    q = srdhm(srdhm(wrap_int32(v1 << headroom), inv), p.mo)
    e = headroom + rs - p.so
    big = (q >> (e & 31)) + (q >= 0)  # the host build's shift past 31 (module docstring)
    r = np.where(e <= 31, rdbpot(q, np.minimum(e, 31)), big)
    return np.clip(wrap_int32(r + p.out_zp), p.lo, p.hi)


@register
class Div(BinaryOp):
    name = "DIV"
    fuses_activation = True

    def arith(self, g: Graph, n: Node) -> Arith:
        a, b, y = g[n.inputs[0]], g[n.inputs[1]], g[n.outputs[0]]
        s1, s2, so = (float(np.float32(t.quant.scale[0])) for t in (a, b, y))
        mo, sho = quantize_multiplier(s1 / (s2 * so))
        if sho > MAX_OUTPUT_SHIFT:
            raise ValueError(f"output multiplier {s1 / (s2 * so):g} is too large for TFLite Micro's int8 DIV")
        lo, hi = activation_range(n.attrs.get("fused_activation_function", "NONE"), y)
        return Arith("DIV", off1=-a.quant.zp, off2=-b.quant.zp, out_zp=y.quant.zp, mo=mo, so=sho, lo=lo, hi=hi)

    def reference(self, g: Graph, n: Node, inputs: list[np.ndarray | None]) -> list[np.ndarray]:
        x1, x2 = np.broadcast_arrays(np.asarray(inputs[0], np.int64), np.asarray(inputs[1], np.int64))
        y = divide(x1, x2, self.arith(g, n))
        return [y.reshape(g[n.outputs[0]].shape).astype(np.int8)]

    def byte_tables(self, g: Graph, n: Node, p: Arith) -> list[np.ndarray]:
        """t1: the reciprocal of |b - zp_b| by b's byte (the exponent is one clz in C)."""
        inv, _ = reciprocal(np.abs(byte_codes(g[n.inputs[1]].dtype) + p.off2))
        return [inv]
