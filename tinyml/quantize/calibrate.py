"""Activation ranges from calibration data, and the bias shift weight rounding causes.

Pass 1 runs the float graph over the data in batches and records every
activation's min/max, plus, for each conv/depthwise/FC layer, the mean per
output channel of that layer applied with its weight *errors* (W - deq(q(W)))
to its real inputs: the shift bias correction removes (Nagel et al., "Data-Free
Quantization", empirical variant). Pass 2, for percentile and MSE calibration,
fills a fixed-range histogram per tensor, from which the range is chosen;
with min/max calibration it still runs for the tensors stored at 4 bits, whose
ranges come from the MSE search at their width.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from tinyml.errors import TinymlError, show
from tinyml.ir import Graph, Node
from tinyml.ops.subbyte import signed_range
from tinyml.quantize.float_ref import LINEAR, Arrays, run_float
from tinyml.quantize.policy import QuantPolicy
from tinyml.quantize.scales import MIN_RANGE, activation_quant

BINS = 2048
BATCH = 64
SEARCH_STEPS = 64  # candidate clip points per side for MSE
Progress = Callable[[str, int, int], None]  # (phase, samples done, samples in all)


@dataclass
class Calibration:
    """What the data said: per-tensor min/max, the chosen ranges, and bias shifts per layer."""

    minmax: dict[str, tuple[float, float]]
    ranges: dict[str, tuple[float, float]]
    bias_shift: dict[str, np.ndarray] = field(default_factory=dict)  # node name -> per-channel mean error
    samples: int = 0


def calibrate(g: Graph, data: np.ndarray, policy: QuantPolicy,
              weight_error: dict[str, np.ndarray] | None = None,
              progress: Progress | None = None, narrow: dict[str, int] | None = None) -> Calibration:
    """Observe `data` ([N, ...] float inputs of the graph's single input) and pick ranges.

    `narrow`: the tensors the PTQ pass stores below 8 bits, with their width (ptq.narrow_widths)."""
    lo: dict[str, float] = {}
    hi: dict[str, float] = {}
    shift_sum: dict[str, np.ndarray] = {}
    shift_count: dict[str, int] = {}
    errors = weight_error or {}

    def record(name: str, y: np.ndarray) -> None:
        lo[name] = min(lo.get(name, np.inf), float(y.min()))
        hi[name] = max(hi.get(name, -np.inf), float(y.max()))

    def observe_minmax(n: Node, args: Arrays, y: np.ndarray) -> None:
        record(n.outputs[0], y)
        if n.name in errors:
            e = LINEAR[n.op](g, n, args[0], errors[n.name])
            e = e.reshape(-1, e.shape[-1])
            shift_sum[n.name] = shift_sum.get(n.name, 0.0) + e.sum(axis=0)
            shift_count[n.name] = shift_count.get(n.name, 0) + e.shape[0]

    _passes(g, data, "calibrating (min/max)", progress, observe_minmax, record)
    minmax = {k: (lo[k], hi[k]) for k in lo}
    for k, (a, b) in minmax.items():
        if not (np.isfinite(a) and np.isfinite(b)):
            raise TinymlError(f"the float model computes NaN or infinity at {show(k)} on the calibration data")
    ranges = dict(minmax)
    narrow = narrow or {}
    histogrammed = minmax if policy.calibration != "minmax" else {k: minmax[k] for k in narrow if k in minmax}
    if histogrammed:
        hists = {k: np.zeros(BINS, np.int64) for k in histogrammed}

        def fill(name: str, y: np.ndarray) -> None:
            if name not in hists:
                return
            a, b = minmax[name]
            if b - a >= MIN_RANGE:
                hists[name] += np.histogram(y, bins=BINS, range=(a, b))[0]

        _passes(g, data, f"calibrating ({'mse' if policy.calibration == 'minmax' else policy.calibration})",
                progress, lambda n, args, y: fill(n.outputs[0], y), fill)
        for k, (a, b) in histogrammed.items():
            if not hists[k].sum():
                continue
            if policy.calibration == "percentile":
                ranges[k] = percentile_range(hists[k], a, b, policy)
            else:  # mse, or minmax's sub-byte tensors: one 4-bit code is 1/15 of the range, outliers cost
                ranges[k] = mse_range(hists[k], a, b, policy, narrow.get(k, 8))
    shift = {k: shift_sum[k] / shift_count[k] for k in shift_sum}
    return Calibration(minmax, ranges, shift, int(data.shape[0]))


def _passes(g: Graph, data: np.ndarray, phase: str, progress: Progress | None,
            observe, observe_input: Callable[[str, np.ndarray], None]) -> None:
    n = data.shape[0]
    for start in range(0, n, BATCH):
        batch = data[start:start + BATCH].astype(np.float64)
        observe_input(g.inputs[0], batch)
        run_float(g, [batch], observe)
        if progress:
            progress(phase, min(start + BATCH, n), n)


def _edges(a: float, b: float) -> np.ndarray:
    return np.linspace(a, b, BINS + 1)


def percentile_range(counts: np.ndarray, a: float, b: float, policy: QuantPolicy) -> tuple[float, float]:
    """Clip each side that crosses zero at the given percentile of the values."""
    edges = _edges(a, b)
    cum = np.cumsum(counts) / counts.sum()
    tail = 1.0 - policy.percentile / 100.0
    hi = float(edges[min(np.searchsorted(cum, 1.0 - tail) + 1, BINS)]) if b > 0 else b
    lo = float(edges[np.searchsorted(cum, tail, side="right")]) if a < 0 else a
    return min(lo, 0.0), max(hi, 0.0)


def mse_range(counts: np.ndarray, a: float, b: float, policy: QuantPolicy,
              bits: int | None = None) -> tuple[float, float]:
    """The clip range whose quantization at `bits` (default: the policy's activation width) of the
    histogram has the least squared error."""
    bits = policy.default.activations if bits is None else bits
    qmin, qmax = signed_range(bits)
    edges = _edges(a, b)
    keep = counts > 0
    v = ((edges[:-1] + edges[1:]) / 2)[keep]
    c = counts[keep].astype(np.float64)
    fractions = np.linspace(1.0 / SEARCH_STEPS, 1.0, SEARCH_STEPS)
    his = max(b, 0.0) * fractions if b > 0 else np.zeros(1)
    los = min(a, 0.0) * fractions if a < 0 else np.zeros(1)
    best, best_err = (a, b), np.inf
    for lo in los:
        params = [activation_quant(lo, h, bits) for h in his]
        s = np.array([p[0] for p in params], np.float64)[:, None]
        zp = np.array([p[1] for p in params], np.float64)[:, None]
        deq = (np.clip(np.round(v[None, :] / s) + zp, qmin, qmax) - zp) * s
        err = ((deq - v[None, :]) ** 2 * c[None, :]).sum(axis=1)
        k = int(np.argmin(err))
        if err[k] < best_err:
            best, best_err = (float(lo), float(his[k])), float(err[k])
    return best
