"""Post-training quantization on the graph IR: float model -> int8 .tflite.

prepare (fold, fuse, check the float graph) -> calibrate (float runs over the
calibration data: ranges, bias shifts) -> ptq (per-channel weights, per-tensor
activations, TFLite's op constraints) -> tflite_writer -> read back through
the ordinary int8 pipeline, which verifies what was written. Every choice of
bit width comes from a QuantPolicy, so mixed precision can drive the same pass.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tinyml.ir import Graph
from tinyml.quantize.calibrate import Calibration, Progress, calibrate
from tinyml.quantize.policy import QuantPolicy
from tinyml.quantize.prepare import prepare_float
from tinyml.quantize.ptq import narrow_widths, quantize_graph, weight_errors

__all__ = ["Quantized", "QuantPolicy", "quantize_float_graph", "write_quantized"]


@dataclass
class Quantized:
    float_graph: Graph  # prepared float graph (what was calibrated)
    int8_graph: Graph  # the written model read back and legalized, as every other verb sees it
    tflite: bytes
    calibration: Calibration


def quantize_float_graph(g: Graph, calib: np.ndarray, policy: QuantPolicy,
                         progress: Progress | None = None) -> Quantized:
    """Quantize an imported float graph (prepared in place) with calibration inputs [N, ...]."""
    policy.check()
    prepare_float(g)
    errors = weight_errors(g, policy) if policy.bias_correction else None
    cal = calibrate(g, calib, policy, errors, progress, narrow_widths(g, policy))
    return write_quantized(g, quantize_graph(g, cal, policy), cal, policy)


def write_quantized(g: Graph, q: Graph, cal: Calibration, policy: QuantPolicy) -> Quantized:
    """Write integer graph q (quantized from float graph g) as .tflite and read it back as every verb would."""
    from tinyml.frontend.tflite_writer import write_tflite
    from tinyml.pipeline import load_graph

    policy.check()
    data = write_tflite(q, description=f"tinyml quantize ({policy.calibration})")
    return Quantized(g, load_graph(data), data, cal)
