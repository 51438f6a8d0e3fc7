"""Sub-byte storage: int4 and int2 values packed two or four to a byte.

The IR keeps sub-byte values in an int8 container (`Tensor.bits` says how
wide they are); they are packed only where bytes are stored: weights in the
.tflite file and in flash, 4-bit activations in the arena. One layout
everywhere: element k of a run sits in byte k // per_byte, the first element
in the lowest bits (TFLite's INT4 layout), so a kernel reads element i as
`(int8_t)(byte[i >> s] << (8 - b - b * (i & m))) >> (8 - b)`.
"""
from __future__ import annotations

import numpy as np

from tinyml.ir import Tensor

SUBBYTE_BITS = (2, 4)
STORAGE_BITS = (2, 4, 8)


def signed_range(bits: int) -> tuple[int, int]:
    """The integer codes of a signed `bits`-wide value: (-2^(b-1), 2^(b-1) - 1)."""
    return -(1 << (bits - 1)), (1 << (bits - 1)) - 1


def pack_bits(values: np.ndarray, bits: int) -> np.ndarray:
    """Signed values (within `bits`) -> uint8 bytes, first value in the lowest bits; the last
    byte is zero-filled. bits = 8 returns the values' bytes unchanged."""
    v = np.asarray(values).reshape(-1).astype(np.int64)
    if bits == 8:
        return v.astype(np.int8).view(np.uint8)
    per = 8 // bits
    lo, hi = signed_range(bits)
    if v.size and (v.min() < lo or v.max() > hi):
        raise ValueError(f"values outside the {bits}-bit range [{lo}, {hi}]")
    full = np.zeros(-(-v.size // per) * per, np.int64)
    full[:v.size] = v & ((1 << bits) - 1)
    shifts = np.arange(per, dtype=np.int64) * bits
    return (full.reshape(-1, per) << shifts).sum(axis=1).astype(np.uint8)


def unpack_bits(packed: np.ndarray, bits: int, count: int) -> np.ndarray:
    """The inverse of pack_bits: `count` sign-extended values as int8."""
    b = np.asarray(packed, np.uint8).reshape(-1).astype(np.int64)
    if bits == 8:
        return b[:count].astype(np.uint8).view(np.int8)
    per = 8 // bits
    fields = (b[:, None] >> (np.arange(per) * bits)) & ((1 << bits) - 1)
    half = 1 << (bits - 1)
    return ((fields.reshape(-1)[:count] ^ half) - half).astype(np.int8)


def packed_rows(values: np.ndarray, bits: int) -> np.ndarray:
    """[rows, depth] -> uint8 [rows, bytes per row]: each row packed on its own (a kernel
    starting a row never has to split a byte)."""
    rows = np.asarray(values).reshape(values.shape[0], -1)
    return np.stack([pack_bits(r, bits) for r in rows]) if rows.shape[0] else np.zeros((0, 0), np.uint8)


def values_fit(t: Tensor) -> bool:
    """Whether a constant's values lie within its storage width."""
    if t.data is None or t.bits >= 8:
        return True
    lo, hi = signed_range(t.bits)
    return bool(t.data.size == 0 or (int(t.data.min()) >= lo and int(t.data.max()) <= hi))
