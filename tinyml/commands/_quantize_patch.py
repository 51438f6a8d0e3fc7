"""`tinyml quantize --patch-precision value`: QuantMCU's per-patch precision decision for the quantized
model's first patch stage (tinyml/quantize/patch_precision.py), reported with its bit grid as a PNG.

The written model keeps 8-bit activations in the stage: the generated code does not run patches at
mixed widths (docs/quantmcu.md: on Cortex-M4/M7 they would save neither RAM nor instructions)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from tinyml.errors import TinymlError

MAX_INPUTS = 32  # calibration inputs the decision simulates (each one reference run per candidate)


def patch_precision(tflite: bytes, calib: np.ndarray, png: str | None) -> dict:
    """Schedule the quantized model's patches (auto), decide its first stage's bits, draw the grid."""
    from tinyml.pipeline import load_graph
    from tinyml.quantize.patch_precision import decide, plot_grid
    from tinyml.schedule.patches import schedule_patches
    from tinyml.schedule.patches.options import PatchOptions

    g = load_graph(tflite)
    result = schedule_patches(g, PatchOptions())
    if not result.chosen.stages:
        raise TinymlError("--patch-precision: the patch scheduler runs this model layer by layer (no patch stage)")
    spec = result.chosen.stages[0].spec
    x = g[g.inputs[0]]
    if x.dtype != "int8":
        raise TinymlError(f"--patch-precision: the quantized model's input is {x.dtype}, expected int8")
    data = np.asarray(calib[:MAX_INPUTS], np.float64).reshape(-1, *x.shape[1:])
    q = np.clip(np.round(data / float(x.quant.s)) + x.quant.zp, -128, 127).astype(np.int8)
    pp = decide(g, spec.split, spec.rows, spec.cols, [[v[None]] for v in q], reuse=spec.reuse, vertical=spec.vertical)
    out = pp.describe()
    out["stage"] = result.chosen.stages[0].label
    out["emitted_bits"] = 8
    if png:
        plot_grid(pp, data[0] if data.ndim == 4 and data.shape[-1] in (1, 3) else None, Path(png))
        out["png"] = png
    return out
