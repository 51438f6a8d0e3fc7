"""`--bits mixed`: the finalists and the delivered subnet quantized with issue 12's bit allocation.

The search prices candidates with every weight at 4 bits (`CostService(weight_bits=4)`: the flash floor
an allocation of 8 or 4 bits per layer can reach), so a candidate is feasible when some allocation fits.
Each finalist then gets its own allocation: Hutchinson traces on its float graph
(`tinyml.train.mixed.Sensitivity`), HAWQ-V3's ILP for the weight bytes the flash budget leaves once
the rest of the firmware is counted (tinyml.cost's estimate of the non-weight flash), and the PTQ pass at
those widths. Activations stay 8-bit. The predictor is not quantization-aware (APQ's): it ranks by the
supernet's float accuracy; the finalists are then measured as quantized.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

WEIGHT_BITS = (8, 4)
PROBES = 8  # Hutchinson probes per finalist (the traces only rank layers; the ILP is what decides)


@dataclass(frozen=True)
class MixedTarget:
    board: str
    flash_bytes: int  # the whole firmware's budget
    labels: np.ndarray  # of the calibration images (the Hessian's loss)
    margin: float = 0.97  # of the weight budget: the non-weight flash is an estimate


def quantize_mixed(g, calib_nhwc: np.ndarray, target: MixedTarget):
    """The float graph `g` at the ILP's per-layer weight widths -> (tinyml.quantize.Quantized, report dict)."""
    from tinyml.cost import estimate
    from tinyml.cost.model import load_coefficients
    from tinyml.quantize import QuantPolicy, write_quantized
    from tinyml.quantize.allocate import Budgets
    from tinyml.quantize.prepare import prepare_float
    from tinyml.train.mixed import Sensitivity

    prepare_float(g)
    calib = calib_nhwc.astype(np.float32)
    s = Sensitivity.measure(g, calib, QuantPolicy(), WEIGHT_BITS, (8,), labels=target.labels[:len(calib)],
                            probes=PROBES, board=target.board)
    # flash that is not weights (code, per-channel data, the firmware): the int8 graph's, whose kernels are
    # larger in code than the 4-bit ones by the cost model (the safe side; the build measures it)
    c = estimate(s.int8, target.board, mode="fast", patches="off")
    other = c.flash_bytes - c.weights_bytes + load_coefficients()["firmware_flash_bytes"]
    weight_budget = int((target.flash_bytes - other) * target.margin)
    alloc, q = s.solve(Budgets(flash=max(weight_budget, s.limits()["flash"]), sram=None, instructions=None))
    widths = {name: bits for name, bits in alloc.weights.items()}
    report = {"weight_bits": widths, "weight_bytes": alloc.weight_bytes, "weight_budget_bytes": weight_budget,
              "layers_at_4_bits": sum(b == 4 for b in widths.values()), "layers": len(widths),
              "non_weight_flash_estimate": other}
    return write_quantized(s.g, q, s.calibration(alloc), s.policy(alloc)), report
