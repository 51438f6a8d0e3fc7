"""Scales and zero points from ranges, as TFLite defines them.

Weights: symmetric per output channel (zero point 0, codes -qmax..qmax, so
-128 never appears in int8, as TFLite's quantization spec requires).
Activations: asymmetric per tensor over a range widened to contain 0 (so
zero padding and ReLU's floor are exact codes), the zero point nudged to an
integer as TensorFlow's converter does.
"""
from __future__ import annotations

import numpy as np

from tinyml.ops.subbyte import signed_range

# Axis of the output channel in each filter layout (OHWI conv, 1HWC depthwise, [units, depth] FC).
WEIGHT_AXIS = {"CONV_2D": 0, "DEPTHWISE_CONV_2D": 3, "FULLY_CONNECTED": 0}
MIN_RANGE = 1e-6  # an activation that is always 0 still needs a positive scale


def _along(v: np.ndarray, axis: int, ndim: int) -> np.ndarray:
    shape = [1] * ndim
    shape[axis] = -1
    return v.reshape(shape)


def weight_scales(w: np.ndarray, axis: int, bits: int, floor: np.ndarray | None = None) -> np.ndarray:
    """Per-channel symmetric scales: max |w| of each channel over qmax.

    `floor` (per channel) raises a scale where the int32 bias would otherwise
    overflow; an all-zero channel gets the floor or a tiny positive scale.
    """
    qmax = signed_range(bits)[1]
    other = tuple(d for d in range(w.ndim) if d != axis)
    s = np.abs(w).max(axis=other) / qmax
    if floor is not None:
        s = np.maximum(s, floor)
    return np.where(s > 0, s, 1e-12).astype(np.float32)


def quantize_weights(w: np.ndarray, scales: np.ndarray, axis: int, bits: int) -> np.ndarray:
    qmax = signed_range(bits)[1]
    s = _along(scales.astype(np.float64), axis, w.ndim)
    return np.clip(np.round(w / s), -qmax, qmax).astype(np.int8)


def dequantize_weights(q: np.ndarray, scales: np.ndarray, axis: int) -> np.ndarray:
    return q.astype(np.float64) * _along(scales.astype(np.float64), axis, q.ndim)


def activation_quant(lo: float, hi: float, bits: int) -> tuple[np.float32, int]:
    """(scale, zero point) for values in [lo, hi]: TensorFlow's asymmetric rule with zero nudging."""
    qmin, qmax = signed_range(bits)
    lo, hi = min(float(lo), 0.0), max(float(hi), 0.0)
    if hi - lo < MIN_RANGE:
        hi = lo + MIN_RANGE
    scale = np.float32((hi - lo) / (qmax - qmin))
    zp_from_min = qmin - lo / float(scale)
    zp = int(np.clip(np.round(zp_from_min), qmin, qmax))
    return scale, zp


def fake_quantize(x: np.ndarray, lo: float, hi: float, bits: int) -> np.ndarray:
    """x through quantize/dequantize with activation_quant's parameters (for error estimates)."""
    scale, zp = activation_quant(lo, hi, bits)
    qmin, qmax = signed_range(bits)
    return (np.clip(np.round(x / float(scale)) + zp, qmin, qmax) - zp) * float(scale)
