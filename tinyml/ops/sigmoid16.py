"""LOGISTIC and TANH on int16 (16x8 mode), as TFLite Micro's reference_integer_ops compute them.

The input is rescaled to 1/(3*4096) per unit (an integer multiplier and a
rounding right shift, derived at Prepare time in double), then both functions
interpolate linearly in one 256-entry table of sigmoid(i/24) in 0.16 fixed
point (tanh(x) = 2 sigmoid(2x) - 1). Output scale 2^-15, zero points 0. The C
kernel (kernels/sigmoid16.c.j2) runs the same integer steps with the same table.
"""
from __future__ import annotations

import math

import numpy as np

from tinyml.fixedpoint import wrap_int32
from tinyml.ir import Graph, Node, Tensor

# TFLite's sigmoid_table_uint16: sigmoid(i / 24) in 0.16 fixed point. Its entries are not
# all the rounded exact values (44 of them sit one below), so they are kept as TFLite has them.
SIGMOID_TABLE = np.array([
    32768, 33451, 34133, 34813, 35493, 36169, 36843, 37513, 38180, 38841, 39498, 40149, 40794, 41432, 42064, 42688,
    43304, 43912, 44511, 45102, 45683, 46255, 46817, 47369, 47911, 48443, 48964, 49475, 49975, 50464, 50942, 51409,
    51865, 52311, 52745, 53169, 53581, 53983, 54374, 54755, 55125, 55485, 55834, 56174, 56503, 56823, 57133, 57433,
    57724, 58007, 58280, 58544, 58800, 59048, 59288, 59519, 59743, 59959, 60168, 60370, 60565, 60753, 60935, 61110,
    61279, 61441, 61599, 61750, 61896, 62036, 62172, 62302, 62428, 62549, 62666, 62778, 62886, 62990, 63090, 63186,
    63279, 63368, 63454, 63536, 63615, 63691, 63765, 63835, 63903, 63968, 64030, 64090, 64148, 64204, 64257, 64308,
    64357, 64405, 64450, 64494, 64536, 64576, 64614, 64652, 64687, 64721, 64754, 64786, 64816, 64845, 64873, 64900,
    64926, 64950, 64974, 64997, 65019, 65039, 65060, 65079, 65097, 65115, 65132, 65149, 65164, 65179, 65194, 65208,
    65221, 65234, 65246, 65258, 65269, 65280, 65291, 65301, 65310, 65319, 65328, 65337, 65345, 65352, 65360, 65367,
    65374, 65381, 65387, 65393, 65399, 65404, 65410, 65415, 65420, 65425, 65429, 65433, 65438, 65442, 65445, 65449,
    65453, 65456, 65459, 65462, 65465, 65468, 65471, 65474, 65476, 65479, 65481, 65483, 65485, 65488, 65489, 65491,
    65493, 65495, 65497, 65498, 65500, 65501, 65503, 65504, 65505, 65507, 65508, 65509, 65510, 65511, 65512, 65513,
    65514, 65515, 65516, 65517, 65517, 65518, 65519, 65520, 65520, 65521, 65522, 65522, 65523, 65523, 65524, 65524,
    65525, 65525, 65526, 65526, 65526, 65527, 65527, 65528, 65528, 65528, 65529, 65529, 65529, 65529, 65530, 65530,
    65530, 65530, 65531, 65531, 65531, 65531, 65531, 65532, 65532, 65532, 65532, 65532, 65532, 65533, 65533, 65533,
    65533, 65533, 65533, 65533, 65533, 65534, 65534, 65534, 65534, 65534, 65534, 65534, 65534, 65534, 65534, 65535,
], dtype=np.int64)


def checked_log2(x: float) -> tuple[bool, int]:
    """TFLite's CheckedLog2 in float32: (is a power of two within 1e-3, rounded log2)."""
    lg = np.float32(np.log(np.float32(x))) * (np.float32(1.0) / np.float32(math.log(np.float32(2.0))))
    rounded = np.float32(math.copysign(math.floor(abs(float(lg)) + 0.5), float(lg)))
    return bool(abs(np.float32(lg - rounded)) < np.float32(1e-3)), int(rounded)


def input_rescale(kind: str, x: Tensor) -> tuple[int, int]:
    """(multiplier, left shift) of Prepare, resolved as Eval does (its power-of-two case included)."""
    scale = float(np.float32(x.quant.scale[0]))
    pot, log2 = checked_log2(scale)
    shift = 12 + log2  # (15 - 3 input integer bits) + log2
    if pot and (shift == 0 or (kind == "TANH" and shift == 1)):
        return 3 << shift, 0
    m = scale * 4096.0 * 3.0
    shift = 0
    while m <= 32767.0 / 2.0 and shift <= 30:
        shift += 1
        m *= 2.0
    return int(m), shift


def reason(g: Graph, n: Node) -> str | None:
    """What TFLite Micro refuses: other types, zero points, an output scale other than 2^-15."""
    x, y = g[n.inputs[0]], g[n.outputs[0]]
    if y.dtype != "int16":
        return f"output is {y.dtype}, expected int16 like the input"
    if x.quant.zp != 0 or y.quant.zp != 0:
        return "int16 zero points must be 0, as TFLite Micro requires"
    pot, log2 = checked_log2(float(np.float32(y.quant.scale[0])))
    if not pot or log2 != -15:
        return "int16 output scale must be 2^-15, as TFLite Micro requires"
    if input_rescale(n.op, x)[0] >= 1 << 31:
        return "input scale too large for TFLite Micro's int16 rescaling"
    return None


def values(kind: str, g: Graph, n: Node, x: np.ndarray) -> np.ndarray:
    """The int16 outputs for int16 input codes `x` (any shape)."""
    return lut(kind, *input_rescale(kind, g[n.inputs[0]]), x)


def lut(kind: str, m: int, shift: int, x: np.ndarray) -> np.ndarray:
    """LOGISTIC/TANH of int16 codes `x` rescaled by m / 2^shift (the LSTM gates call this too)."""
    rnd = (1 << (shift - 1)) if shift > 0 else 0
    # Input scales above 2/3 give multipliers above 32767 that TFLite Micro still uses: the int32
    # product wraps there (real LSTM models have such scales; the wrapped inputs saturate anyway).
    v = wrap_int32(np.asarray(x, np.int64) * m + rnd) >> shift
    a = np.abs(v)
    frac_bits = 9 if kind == "LOGISTIC" else 8
    hi = a >> frac_bits
    idx = np.minimum(hi, 254)
    ua, ub = SIGMOID_TABLE[idx], SIGMOID_TABLE[idx + 1]
    interp = (ua << frac_bits) + (a & ((1 << frac_bits) - 1)) * (ub - ua)
    if kind == "LOGISTIC":
        r = np.where(hi >= 255, 0x7FFF << 10, interp)
        r = np.where(v >= 0, r + (1 << 9), (1 << 25) - r + (1 << 9) - 1) >> 10
    else:
        r = np.where(hi >= 255, 0xFFFF << 8, interp)
        r = np.where(v >= 0, r - (1 << 23) + (1 << 7), -r + (1 << 23) + (1 << 7) - 1) >> 8
    return ((r + (1 << 15)) & 0xFFFF) - (1 << 15)  # the int16 store wraps


def emit(g: Graph, n: Node, ctx) -> None:
    m, shift = input_rescale(n.op, g[n.inputs[0]])
    fn = ctx.kernel("sigmoid16.c.j2", kind=n.op, m=m, shift=shift)
    table = ctx.const(SIGMOID_TABLE.astype(np.uint16), "sigmoid", "uint16_t")
    ctx.call(fn, ctx.tensor(n.inputs[0]), ctx.tensor(n.outputs[0]), table, f"{g[n.inputs[0]].size}u")
