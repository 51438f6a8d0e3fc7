"""Integer arithmetic shared by the I-ViT ops (Li & Gu, "I-ViT: Integer-only Quantization for
Efficient Vision Transformer Inference", ICCV 2023): the shift-based exponential of Shiftmax and
ShiftGELU and the Newton integer square root of I-LayerNorm.

Each function is written with operations a C kernel has one to one (shifts, adds, integer
division, floor semantics of `>>` on negatives as GCC's arithmetic shift), so the numpy value is
the value the kernel computes; the templates (shiftmax.c.j2, ilayernorm.c.j2) follow them line
by line.
"""
from __future__ import annotations

import numpy as np

ONE_BITS = 14  # the code of 1.0 (i0) in the fine exponent scale lies in [2^14, 2^15)
MAX_FINE_SHIFT = 21  # (x - max) << P stays below 2^30 in magnitude for 8-bit codes


def fine_scale(scale: float) -> tuple[int, int] | None:
    """(P, i0) with i0 = round(2^P / scale) in [2^14, 2^15): codes shifted left by P are in units
    of 1/i0, fine enough for the linear 2^-f approximation. None when no 0 <= P <= 21 fits (an
    input scale below 2^-15 or above 128: int8 codes then span a uselessly small or large range)."""
    for p in range(MAX_FINE_SHIFT + 1):
        i0 = int(np.floor(2.0 ** p / scale + 0.5))
        if (1 << ONE_BITS) <= i0 < (1 << (ONE_BITS + 1)):
            return p, i0
    return None


def shift_exp(d: np.ndarray, i0: int) -> np.ndarray:
    """exp(d / i0) * i0 for d <= 0, with shifts only (I-ViT's Shiftmax exponential).

    e^v = 2^(v log2 e); v log2 e ~ v + v/2 - v/16 (1.4375 for 1.4427). Split the (negated) power
    into an integer part q and a remainder r in [0, i0): 2^-(q + r/i0) ~ (1 - r/(2 i0)) >> q.
    Returns values in [0, i0], i0 exactly at d == 0.
    """
    d = np.asarray(d, np.int64)
    t = -(d + (d >> 1) - (d >> 4))  # >= 0
    q = t // i0
    r = t - q * i0
    base = i0 - (r >> 1)
    return np.where(q > 30, 0, base >> np.minimum(q, 30))


def isqrt(n: int) -> int:
    """floor(sqrt(n)) for 0 <= n < 2^31 by Newton's iteration from a power of two above the root
    (I-LayerNorm's integer square root; the same loop as ilayernorm.c.j2's)."""
    if n <= 0:
        return 0
    x = 1 << ((n.bit_length() + 1) // 2)
    while True:
        y = (x + n // x) >> 1
        if y >= x:
            return x
        x = y


def normalize_even(v: int) -> tuple[int, int]:
    """(w, k) with w = v / 4^k (v >> 2k or v << -2k) in [2^28, 2^30) for v > 0, so sqrt(v) =
    sqrt(w) * 2^k with a 14-15 bit root whatever the row's spread; (0, 0) for v == 0."""
    if v <= 0:
        return 0, 0
    k = 0
    while v >= 1 << 30:
        v >>= 2
        k += 1
    while v < 1 << 28:
        v <<= 2
        k -= 1
    return v, k


def dyadic(values: np.ndarray, bits: int = 15) -> tuple[np.ndarray, int]:
    """(ints, F) with ints = round(values * 2^F) and max |ints| < 2^bits: real constants as a
    dyadic number (integer over a power of two), I-ViT's requantization form."""
    values = np.asarray(values, np.float64)
    top = float(np.max(np.abs(values))) if values.size else 0.0
    f = bits - 1 if top == 0.0 else bits - 1 - int(np.floor(np.log2(top)))
    ints = np.floor(values * 2.0 ** f + 0.5).astype(np.int64)
    while ints.size and np.max(np.abs(ints)) >= 1 << bits:
        f -= 1
        ints = np.floor(values * 2.0 ** f + 0.5).astype(np.int64)
    return ints, f
