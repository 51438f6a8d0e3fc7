"""SOFTMAX on int16 (16x8 mode), as TFLite Micro's reference_ops::SoftmaxInt16 computes it.

Prepare builds two 513-entry int16 tables in float32 (TFLite's LUT generator:
512 samples, each nudged by half the error of linear interpolation at the
step's midpoint, plus one end value): exp(x) on [-10, 0] and 1/(1+x) on [0, 1],
outputs in [-1, 1). Per row: the differences to the row maximum are scaled so
[-65535, 0] is [-10, 0] (double-rounding requantization), looked up with linear
interpolation, summed, the sum's reciprocal looked up after normalizing it by
its leading zeros, and each exp multiplied by it with a rounding shift. Output
scale 2^-15, zero points 0. The tables are constants of the generated C.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import math

import numpy as np

from tinyml.fixedpoint import multiply_by_quantized_multiplier, quantize_multiplier
from tinyml.ir import Graph, Node

LUT_SIZE = 513
_F = np.float32


def _libm_expf():
    """The C library's expf, which TFLite Micro's std::exp(float) calls (None where unavailable)."""
    name = ctypes.util.find_library("m")
    if not name:
        return None
    fn = ctypes.CDLL(name).expf
    fn.restype, fn.argtypes = ctypes.c_float, [ctypes.c_float]
    return fn


_EXPF = _libm_expf()


def _exp(v: np.float32) -> np.float32:
    return _F(_EXPF(float(v))) if _EXPF is not None else _F(math.exp(float(v)))


def _recip(v: np.float32) -> np.float32:
    return _F(1.0) / (_F(1.0) + v)


def _round(v: np.float32) -> np.float32:
    return _F(math.copysign(math.floor(abs(float(v)) + 0.5), float(v)))  # std::round


def lut(fn, in_min: float, in_max: float, out_min: float, out_max: float) -> np.ndarray:
    """TFLite's int16 LUT generator, step for step in float32."""
    in_min, in_max = _F(in_min), _F(in_max)
    step = (in_max - in_min) / _F(512)
    half = step / _F(2)
    inv = _F(65536) / (_F(out_max) - _F(out_min))
    table = np.zeros(LUT_SIZE, np.int64)
    for i in range(512):
        at = in_min + _F(i) * step
        val, mid, nxt = fn(at), fn(at + half), fn(in_min + _F(i + 1) * step)
        sample = _round(val * inv)
        interp = _round((nxt * inv + _round(val * inv)) / _F(2))
        bias = _round((interp - _round(mid * inv)) / _F(2))
        table[i] = int(min(max(sample - bias, _F(-32768)), _F(32767)))
    table[512] = int(min(max(_round(fn(in_max) * inv), _F(-32768)), _F(32767)))
    return table


EXP_LUT = lut(_exp, -10.0, 0.0, -1.0, 1.0)
RECIP_LUT = lut(_recip, 0.0, 1.0, -1.0, 1.0)


def lookup(value: np.ndarray, table: np.ndarray) -> np.ndarray:
    """LUTLookup: 512 segments of 128 codes, linear interpolation rounded (int16 wrap at the end)."""
    v = np.asarray(value, np.int64)
    idx = 256 + (v >> 7)
    base, slope = table[idx], table[idx + 1] - table[idx]
    r = base + ((slope * (v & 0x7F) + 64) >> 7)
    return ((r + (1 << 15)) & 0xFFFF) - (1 << 15)


def input_scaling(beta: float, scale: float) -> tuple[int, int]:
    """QuantizeMultiplier(input scale * beta / (10 / 65535)), in double."""
    return quantize_multiplier(float(np.float32(scale)) * float(np.float32(beta)) / (10.0 / 65535.0))


def reason(g: Graph, n: Node) -> str | None:
    x, y = g[n.inputs[0]], g[n.outputs[0]]
    if y.dtype != "int16":
        return f"output is {y.dtype}, expected int16 like the input"
    if x.quant.zp != 0 or y.quant.zp != 0:
        return "int16 SOFTMAX zero points must be 0, as TFLite Micro requires"
    if abs(float(np.float32(y.quant.scale[0])) - 1 / 32768) > 0.001 / 32768:
        return "int16 SOFTMAX output must have scale 1/32768"
    return None


def rows(x: np.ndarray, mult: int, shift: int) -> np.ndarray:
    """SoftmaxInt16 on each row of x ([rows, depth] int16 codes)."""
    x = np.asarray(x, np.int64)
    diff = x - x.max(axis=1, keepdims=True)
    scaled = multiply_by_quantized_multiplier(diff, mult, shift) + 32767
    exps = lookup(np.clip(scaled, -32768, 32767), EXP_LUT)
    total = exps.sum(axis=1, keepdims=True)
    clz = np.array([[32 - int(s).bit_length()] for s in total.reshape(-1)], np.int64)
    shifted = ((total << (clz - 1)) + (1 << 13)) >> 14
    recip = lookup(np.clip(shifted - (1 << 15) - (1 << 16), -32768, 32767), RECIP_LUT)
    right = 31 - clz
    out = (exps * recip + (np.int64(1) << (right - 1))) >> right
    return np.clip(out, 0, 32767)


def emit(g: Graph, n: Node, ctx) -> None:
    x = g[n.inputs[0]]
    mult, shift = input_scaling(n.attrs.get("beta", 1.0), x.quant.scale[0])
    fn = ctx.kernel("softmax16.c.j2", mult=mult, shift=shift)
    depth = x.shape[-1]
    ctx.call(fn, ctx.tensor(x.name), ctx.tensor(n.outputs[0]), ctx.const(EXP_LUT.astype(np.int16), "exp_lut", "int16_t"),
             ctx.const(RECIP_LUT.astype(np.int16), "recip_lut", "int16_t"), f"{x.size // depth}u", f"{depth}u")
