"""ELU on int8: TFLite Micro's elu.cc lookup table, built the way its Prepare builds it.

For each of the 256 codes: dequantize in float32 (scale * (code - zp)), x < 0 ?
expf(x) - 1 : x, times 1/output scale (float32), std::round, + zero point,
clamped. The table is computed at generation time with the C library's own
expf (through ctypes: numpy's float32 exp may differ from it in the last bit,
and one ulp can move a rounding), so the firmware only looks codes up.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import math
from functools import lru_cache

import numpy as np

from tinyml.ir import Graph, Node
from tinyml.ops.activations import LutOp
from tinyml.ops.base import register


@lru_cache(maxsize=1)
def _expf():
    """libm's expf, or numpy's float32 exp where no C library is found."""
    name = ctypes.util.find_library("m")
    if name is None:
        return lambda v: np.float32(np.exp(np.float32(v)))
    fn = ctypes.CDLL(name).expf
    fn.restype, fn.argtypes = ctypes.c_float, [ctypes.c_float]
    return lambda v: np.float32(fn(float(v)))


@register
class Elu(LutOp):
    name = "ELU"

    def values(self, g: Graph, n: Node, x: np.ndarray) -> np.ndarray:
        xi, yo = g[n.inputs[0]], g[n.outputs[0]]
        s_in, inv = np.float32(xi.quant.scale[0]), np.float32(1) / np.float32(yo.quant.scale[0])
        expf = _expf()
        table = {}
        for code in range(-128, 128):
            v = np.float32(s_in * np.float32(code - xi.quant.zp))
            t = np.float32(expf(v) - np.float32(1)) if v < 0 else v
            r = np.float32(t * inv)
            rounded = math.copysign(math.floor(abs(float(r)) + 0.5), float(r))  # std::round
            table[code] = int(min(max(int(np.float32(rounded) + np.float32(yo.quant.zp)), -128), 127))
        lut = np.array([table[c] for c in range(-128, 128)], np.int64)
        return lut[np.asarray(x, np.int64) + 128]
