"""Generation-time preparation for the Cortex-M DSP-extension kernels (SMLAD on packed pairs).

SMLAD multiplies two int16 halves of one register by the two halves of
another and adds both products. The kernels feed it activations widened by
SXTAB16, which takes bytes 0 and 2 of a word (and, rotated by 8, bytes 1 and
3): so four consecutive activations x0..x3 arrive as the pairs (x0, x2) and
(x1, x3). The weights stay one byte each (flash), two output rows per int16
half: h = w_lo + 256 * w_hi (`pack_row_pairs`). SMLAD on the raw word gives
S = A_lo + 256 * A_hi, SMLAD on its SXTB16 (the low bytes, w_lo) gives A_lo,
and A_hi = (S - A_lo) >> 8, exact while |A_hi| < 2^23 even if S wraps: two
SMLAD per four MACs as with int16 weights, plus one SXTB16 per weight word,
shared by every pixel of a block. Words are interleaved so that one block of
output rows is read with one walking pointer.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tinyml.ops.quantized import Requant

# Position of element k of a 4-group inside the (x0, x2, x1, x3) order.
PAIR_ORDER = np.array([0, 2, 1, 3])


def padded(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


def pack_rows(w: np.ndarray, rows_per_block: int) -> np.ndarray:
    """[rows, depth] weights (int16 range) -> int32 words laid out [block][group of 4][row in block][2 words].

    Depth is zero-padded to a multiple of 4 and rows to a multiple of
    rows_per_block; each word holds two int16 weights, low half first, in
    PAIR_ORDER, which is what SMLAD needs against SXTAB16-widened inputs.
    """
    rows, depth = w.shape
    rp, dp = padded(rows, rows_per_block), padded(depth, 4)
    full = np.zeros((rp, dp), np.int16)
    full[:rows, :depth] = w
    groups = full.reshape(rp // rows_per_block, rows_per_block, dp // 4, 4)[..., PAIR_ORDER]
    halves = groups.transpose(0, 2, 1, 3).reshape(-1)  # block, group, row, 4 halves
    return np.ascontiguousarray(halves.astype("<i2")).view("<i4").astype(np.int32)  # low half first


def pack_row_pairs(w: np.ndarray, rows_per_block: int, xmax: int) -> np.ndarray | None:
    """[rows, depth] int8 weights -> int32 words of row pairs (see the module docstring), or None.

    Rows 2k and 2k+1 share the halves h = w[2k] + 256 * w[2k+1], laid out by
    pack_rows in blocks of rows_per_block rows (rows_per_block / 2 pairs).
    None when some h leaves int16 (w_hi = -128 with w_lo < 0) or some odd
    row's sum could reach 2^23 with inputs of magnitude <= xmax: the kernel
    could then not recover it exactly.
    """
    rows, depth = w.shape
    full = np.zeros((padded(rows, rows_per_block), depth), np.int64)
    full[:rows] = w
    lo, hi = full[0::2], full[1::2]
    h = lo + 256 * hi
    if h.size and (h.min() < -(1 << 15) or h.max() >= 1 << 15 or int(np.abs(hi).sum(axis=1).max()) * xmax >= 1 << 23):
        return None
    return pack_rows(h, rows_per_block // 2)


def pair_bias(bias: np.ndarray | None, rows: int, scale: int) -> np.ndarray:
    """Bias padded to `rows`, odd rows times `scale`: even rows start their accumulator
    (scaled once at the end), odd rows are added after (S - A_lo) >> (8 - log2 scale)."""
    out = padded_bias(np.zeros(0, np.int32) if bias is None else bias, rows)
    out[1::2] *= scale
    return out


def padded_bias(bias: np.ndarray, rows: int) -> np.ndarray:
    out = np.zeros(rows, np.int32)
    out[:bias.size] = bias
    return out


@dataclass(frozen=True)
class DspRequant:
    """How a DSP kernel requantizes: the short exact sequence of tm_requant_dsp, or TFLite's full one.

    tm_requant_dsp2 needs every shift <= 0 (no left shift), |acc| + 2^(e-1)
    < 2^31 (its rounding add cannot overflow) and 2|acc| < 2^31 (it takes
    the accumulator doubled); `acc_bound` bounds |acc| from the constant
    weights and bias, so this is decided per layer (acc_bound < 2^30 covers all).
    """

    fast: bool  # tm_requant_dsp2 on an accumulator the kernel doubles
    per_channel: bool
    mult: np.ndarray  # int32 per channel
    shift: np.ndarray  # int8 per channel: -shift (right shift e >= 0) when fast, else TFLite's shift
    out_zp: int
    lo: int
    hi: int

    @property
    def fold(self) -> bool:
        """tm_requant_dsp2p applies: fast, and e <= 22 so p = 2^e + zp * 2^(e+1) and the
        zero point added before the shift stay far inside int32 (|acc| < 2^30 already)."""
        return self.fast and bool(np.all(self.shift <= 22))

    @property
    def scale(self) -> int:
        """Factor the kernel multiplies its accumulators by before requantizing (tm_requant_dsp2p takes 2 * acc)."""
        return 2 if self.fold else 1

    def pz(self) -> np.ndarray:
        """Per channel p = 2^e + zp * 2^(e+1) for tm_requant_dsp2p (only when `fold`)."""
        e = self.shift.astype(np.int64)
        return ((1 << e) + (self.out_zp << (e + 1))).astype(np.int32)

    def tflite_shift(self) -> np.ndarray:
        """TFLite's (signed) shift per channel, for tm_requant."""
        return (-self.shift if self.fast else self.shift).astype(np.int8)

    @classmethod
    def of(cls, rq: Requant, acc_bound: int) -> "DspRequant":
        e = -rq.shift.astype(np.int64)
        fast = bool(np.all(e >= 0) and np.all(e <= 30) and acc_bound + (1 << 30) < 2**31)
        shift = (e if fast else rq.shift).astype(np.int8)
        return cls(fast, not rq.uniform, rq.mult.astype(np.int32), shift, rq.out_zp, rq.lo, rq.hi)

    def params(self) -> dict[str, object]:
        """What the templates read (literals when uniform)."""
        return dict(fast=self.fast, per_channel=self.per_channel, mult=int(self.mult[0]), shift=int(self.shift[0]),
                    out_zp=self.out_zp, lo=self.lo, hi=self.hi, full_range=(self.lo, self.hi) == (-128, 127),
                    fold=self.fold, pz=int(self.pz()[0]) if self.fold else 0,
                    tflite_shift=int(self.tflite_shift()[0]))


def acc_bound(w: np.ndarray, bias: np.ndarray | None, xmax: int) -> int:
    """Largest |accumulator| any output row can reach: sum |w| * max |input| + |bias|."""
    b = np.abs(w.astype(np.int64)).reshape(w.shape[0], -1).sum(axis=1) * xmax
    if bias is not None:
        b = b + np.abs(bias.astype(np.int64))
    return int(b.max()) if b.size else 0


# |sum| the nibble kernels can take: they accumulate 4096 x the sum in 32 bits.
NIBBLE_SUM_LIMIT = 1 << 19


def pack_nibble_pairs(w: np.ndarray) -> np.ndarray:
    """[rows, depth] int4 weights -> int32 words [row pair][group of 4 taps], one word per group.

    Nibble positions (0 lowest) of the word for rows e = 2k, o = 2k + 1 and taps t0..t3:
    3, 7: e[t0], e[t2]; 2, 6: o[t0], o[t2]; 1, 5: e[t1], e[t3]; 0, 4: o[t1], o[t3]. Shifted
    left by 0, 4, 8 and 12 bits and ANDed with 0xF000F000, the word gives the (t0, t2) and
    (t1, t3) pairs of each row times 4096 in the int16 halves SMLAD reads against the
    (x0, x2) and (x1, x3) pairs SXTAB16 makes (kernels/_conv_dsp.j2, `nib`).
    """
    rows, depth = w.shape
    rp, dp = padded(rows, 2), padded(depth, 4)
    full = np.zeros((rp, dp), np.int64)
    full[:rows, :depth] = w
    e = full[0::2].reshape(rp // 2, dp // 4, 4) & 0xF
    o = full[1::2].reshape(rp // 2, dp // 4, 4) & 0xF
    placed = [(e[..., 0], 3), (e[..., 2], 7), (o[..., 0], 2), (o[..., 2], 6),
              (e[..., 1], 1), (e[..., 3], 5), (o[..., 1], 0), (o[..., 3], 4)]
    word = sum(v << (4 * pos) for v, pos in placed)
    return word.astype(np.uint32).view(np.int32)


def pack_nibble_quads(w: np.ndarray) -> np.ndarray:
    """[rows, depth] int4 weights (depth a multiple of 4) -> int32 words [block of 4 rows][group of 4
    inputs][2]: word 0 holds inputs 0 and 2, word 1 inputs 1 and 3, one per int16 half.

    Within a half, nibble k is row k of the block: rows 0-2 offset by +8 (unsigned 0..15), row 3
    signed at the top. SMLAD of the (x0, x2) / (x1, x3) pairs against the word ANDed with
    0x000F000F, 0x00FF00FF, 0xF000F000 and the raw word gives sums from which each row's dot
    product follows exactly (kernels/_fc_dsp.j2, `nib`); the +8 costs 8 x sum(x) per row.
    """
    rows, depth = w.shape
    full = np.zeros((padded(rows, 4), depth), np.int64)
    full[:rows] = w
    q = full.reshape(-1, 4, depth // 4, 4)  # block, row, group, input
    nib = np.concatenate([q[:, :3] + 8, q[:, 3:] & 0xF], axis=1)
    half = sum(nib[:, k] << (4 * k) for k in range(4))  # block, group, input: one int16 half each
    words = np.stack([half[..., 0] | (half[..., 2] << 16), half[..., 1] | (half[..., 3] << 16)], axis=-1)
    return words.astype(np.uint32).view(np.int32).reshape(-1)


CRUMB_SUM_LIMIT = 1 << 17  # the int2 kernels accumulate 16384 x the sum


def pack_crumb_pairs(w: np.ndarray) -> np.ndarray:
    """[rows, depth] int2 weights -> int32 words [row pair][pair of groups of 4 taps]: as
    pack_nibble_pairs with 2-bit fields, the first group's (row, tap pair)s in the top fields
    7, 6, 5, 4 of both halves (shifts 0, 2, 4, 6), the second group's in 3, 2, 1, 0 (shifts 8..14);
    an odd last group leaves the low fields zero."""
    rows, depth = w.shape
    rp, dp = padded(rows, 2), padded(depth, 8)
    full = np.zeros((rp, dp), np.int64)
    full[:rows, :depth] = w
    e = full[0::2].reshape(rp // 2, dp // 8, 2, 4) & 3
    o = full[1::2].reshape(rp // 2, dp // 8, 2, 4) & 3
    word = np.zeros(e.shape[:2], np.int64)
    for g in range(2):  # field k of a half: bits 2k..2k+1; (row, taps) at field 7 - (4 g + j) of each half
        for j, (src, taps) in enumerate(((e, (0, 2)), (o, (0, 2)), (e, (1, 3)), (o, (1, 3)))):
            field = 7 - (4 * g + j)
            word |= src[:, :, g, taps[0]] << (2 * field)
            word |= src[:, :, g, taps[1]] << (16 + 2 * field)
    return word.astype(np.uint32).view(np.int32)
