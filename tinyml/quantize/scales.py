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
MIN_RANGE = 1e-6
CLIP_GRID = np.linspace(1.0, 0.2, 81)  # sub-byte weight clips tried, as fractions of max |w| (1.0 first: ties keep it)  # an activation that is always 0 still needs a positive scale


def _along(v: np.ndarray, axis: int, ndim: int) -> np.ndarray:
    shape = [1] * ndim
    shape[axis] = -1
    return v.reshape(shape)


def weight_scales(w: np.ndarray, axis: int, bits: int, floor: np.ndarray | None = None) -> np.ndarray:
    """Per-channel symmetric scales: max |w| of each channel over qmax at 8 bits (TFLite's rule),
    the clip with the least squared error below 8 bits (`mse_clip`).

    `floor` (per channel) raises a scale where the int32 bias would otherwise
    overflow; an all-zero channel gets the floor or a tiny positive scale.
    """
    qmax = signed_range(bits)[1]
    rows = np.moveaxis(np.asarray(w, np.float64), axis, 0).reshape(w.shape[axis], -1)
    s = np.abs(rows).max(axis=1) / qmax
    if bits < 8:
        s = s * mse_clip(rows, s, qmax)
    if floor is not None:
        s = np.maximum(s, floor)
    return np.where(s > 0, s, 1e-12).astype(np.float32)


def mse_clip(rows: np.ndarray, s: np.ndarray, qmax: int) -> np.ndarray:
    """Per row, the fraction r of the max-|w| scale s minimising ||clip(round(w / rs)) rs - w||^2.

    At 2 bits (codes -1..1) the max-|w| scale rounds most weights of a bell-shaped channel to 0;
    at 4 bits clipping the few largest weights buys resolution for the rest. Grid search over
    CLIP_GRID, rounding half to even as quantize_weights does.
    """
    best, best_err = np.ones(len(s)), np.full(len(s), np.inf)
    safe = np.where(s > 0, s, 1.0)[:, None]
    for r in CLIP_GRID:
        step = safe * r
        err = ((np.clip(np.round(rows / step), -qmax, qmax) * step - rows) ** 2).sum(axis=1)
        better = err < best_err
        best, best_err = np.where(better, r, best), np.where(better, err, best_err)
    return best


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
