"""SHIFTGELU: I-ViT's integer-only GELU, x * sigmoid(1.702 x) (no TFLite equivalent; TFLite
Micro has no GELU kernel at all, so this numpy reference is the oracle).

With codes in units of 1/i0 (ivit_math.fine_scale of the input scale): y = 1.702 x by shifts
(x + x/2 + x/8 + x/16 = 1.6875 x); sigmoid(y) = e^(y - m) / (e^(y - m) + e^-m) with m = max(y, 0)
and both exponentials ivit_math.shift_exp; one integer division gives it in Q15; the product
(x - zp) * sigmoid is requantized with TFLite's dyadic multiplier. The output is a function of
one int8 code, so the kernel is the 256-entry table of exactly that integer function (lut.c.j2):
the same arithmetic, evaluated at generation time. Error against float: docs/ops.md.
"""
from __future__ import annotations

import numpy as np

from tinyml.fixedpoint import multiply_by_quantized_multiplier, quantize_multiplier
from tinyml.ir import Graph, Node
from tinyml.ops.activations import LutOp
from tinyml.ops.base import register
from tinyml.ops.ivit_math import fine_scale, shift_exp

SIGMOID_BITS = 15


def shift_gelu_codes(codes: np.ndarray, in_scale: float, in_zp: int, out_scale: float, out_zp: int) -> np.ndarray:
    """int8 codes -> ShiftGELU int8 codes (int64 array of the same shape)."""
    p, i0 = fine_scale(in_scale)
    xi = np.asarray(codes, np.int64) - in_zp
    fine = xi << p
    y = fine + (fine >> 1) + (fine >> 3) + (fine >> 4)
    m = np.maximum(y, 0)
    num = shift_exp(y - m, i0)
    sig = (num << SIGMOID_BITS) // (num + shift_exp(-m, i0))
    mult, shift = quantize_multiplier(in_scale / (out_scale * (1 << SIGMOID_BITS)))
    out = multiply_by_quantized_multiplier(xi * sig, mult, shift) + out_zp
    return np.clip(out, -128, 127)


@register
class ShiftGelu(LutOp):
    name = "SHIFTGELU"

    def reason(self, g: Graph, n: Node) -> str | None:
        if fine_scale(float(np.float32(g[n.inputs[0]].quant.scale[0]))) is None:
            return "input scale outside [2^-15, 128]: no integer exponent scale fits"
        return None

    def values(self, g: Graph, n: Node, x: np.ndarray) -> np.ndarray:
        xi, yo = g[n.inputs[0]], g[n.outputs[0]]
        return shift_gelu_codes(x, float(np.float32(xi.quant.scale[0])), xi.quant.zp,
                                float(np.float32(yo.quant.scale[0])), yo.quant.zp)
