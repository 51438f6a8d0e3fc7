"""RSQRT, int8 (TFLite Micro's elementwise.cc RsqrtEvalQuantized): the LayerNorm pattern's 1/sqrt.

TFLite Micro computes 1/sqrt(x - zp) with gemmlowp's integer Newton-Raphson
(GetInvSqrtQuantizedMultiplierExp: 5 iterations in Q3.28), scales it up by 2^20
so it stays an integer, then requantizes by 1/(sqrt(in_scale) * out_scale) (in
double) shifted back down by 2^20. The output is a function of one input byte,
so the kernel is a lookup table (lut.c.j2). Codes below the input zero point are
refused by TFLite Micro at run time ("only defined for positive values"); our
table maps them to 127, as TFLite Micro maps x - zp == 0.
"""
from __future__ import annotations

import numpy as np

from tinyml.fixedpoint import INT32_MAX, multiply_by_quantized_multiplier, quantize_multiplier, rdbpot, srdhm
from tinyml.ir import Graph, Node
from tinyml.ops.activations import LutOp, _sat_shl
from tinyml.ops.base import register

SHIFT = 20  # TFLite Micro's kShift: 1/sqrt(v) * 2^20 stays an integer for v >= 1


def inv_sqrt_multiplier(v: int) -> tuple[int, int]:
    """GetInvSqrtQuantizedMultiplierExp(v, kReverseShift=-1): 1/sqrt(v) as (multiplier, left shift)."""
    if v <= 1:
        return INT32_MAX, 0
    shift = 11
    while v >= 1 << 29:
        v //= 4
        shift += 1
    pairs = (32 - v.bit_length() - 1) // 2 - 1  # (clz(v) - 1) / 2 - 1 bit pairs of headroom
    shift -= pairs
    v <<= 2 * pairs
    half_input = int(rdbpot(v >> 1, 1))  # Q3.28 input / 2
    half_three = (1 << 28) + (1 << 27)  # 1.5 in Q3.28
    x = 1 << 28  # 1.0 in Q3.28
    for _ in range(5):
        x3 = int(_sat_shl(srdhm(srdhm(x, x), x), 6))  # Q9 -> Q3
        x = int(_sat_shl(np.int64(int(srdhm(half_three, x)) - int(srdhm(half_input, x3))), 3))  # Q6 -> Q3
    x = int(srdhm(x, 1518500250))  # times sqrt(2)/2 in Q0.31
    if shift < 0:
        x = int(np.int64(x << -shift).astype(np.int32))
        shift = 0
    return x, -shift


def rsqrt_code(v: int, mult: int, shift: int, out_zp: int) -> int:
    """One output code for input code - zero point = v (>= 0)."""
    if v == 0:
        return 127
    m, s = inv_sqrt_multiplier(v)
    data = int(multiply_by_quantized_multiplier(1, m, s + SHIFT))
    out = int(multiply_by_quantized_multiplier(data, mult, shift - SHIFT)) + out_zp
    return min(max(out, -128), 127)


@register
class Rsqrt(LutOp):
    name = "RSQRT"

    def values(self, g: Graph, n: Node, x: np.ndarray) -> np.ndarray:
        xi, yo = g[n.inputs[0]], g[n.outputs[0]]
        s_in, s_out = float(np.float32(xi.quant.scale[0])), float(np.float32(yo.quant.scale[0]))
        mult, shift = quantize_multiplier(1.0 / (np.sqrt(s_in) * s_out))
        codes = np.asarray(x, np.int64)
        table = {int(c): rsqrt_code(max(int(c) - xi.quant.zp, 0), mult, shift, yo.quant.zp)
                 for c in np.unique(codes)}
        return np.vectorize(table.__getitem__, otypes=[np.int64])(codes) if codes.size else codes
