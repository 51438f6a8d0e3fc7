"""What the quantizer is asked to do: bit widths per layer, calibration, corrections.

The PTQ pass reads every width from here rather than assuming 8, so a later
mixed-precision search (issue 12: Hessian sensitivities, an ILP under flash,
SRAM and instruction budgets) only has to fill `layers`. Weights may be 8, 4
or 2 bits (packed kernels, INT4 or `tinyml_bits` in the .tflite).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from tinyml.errors import TinymlError

CALIBRATIONS = ("minmax", "percentile", "mse")
# Weights: packed two or four per byte in flash (tinyml/ops/subbyte.py). Activations: 4-bit
# tensors are packed two per byte in the arena where the ops around them have such kernels
# (Op.subbyte_io; ptq.activation_bits keeps the others, and graph inputs and outputs, at 8).
WEIGHT_BITS = (8, 4, 2)
ACTIVATION_BITS = (8, 4)
DEPLOYABLE_ACTIVATION_BITS = (8, 4)  # every width the reference evaluates can be written and deployed


@dataclass(frozen=True)
class LayerBits:
    """Widths for one layer: its weights and the activation it writes."""

    weights: int = 8
    activations: int = 8


@dataclass
class QuantPolicy:
    default: LayerBits = LayerBits()
    # Overrides by node name (a node is named after its first output tensor).
    layers: dict[str, LayerBits] = field(default_factory=dict)
    calibration: str = "minmax"
    percentile: float = 99.99  # clip at the (100-P)th and P-th percentiles, for calibration="percentile"
    bias_correction: bool = True

    def bits_of(self, node_name: str) -> LayerBits:
        return self.layers.get(node_name, self.default)

    def check(self, deploy: bool = True) -> None:
        """Raise TinymlError (exit 2) for anything this version cannot produce (deploy=False: evaluate only)."""
        if self.calibration not in CALIBRATIONS:
            raise TinymlError(f"unknown calibration {self.calibration!r} (choose from {', '.join(CALIBRATIONS)})")
        if not 50.0 < self.percentile <= 100.0:
            raise TinymlError(f"percentile {self.percentile} must lie in (50, 100]")
        for name, b in [("default", self.default), *self.layers.items()]:
            for kind, bits, allowed in (("weight", b.weights, WEIGHT_BITS), ("activation", b.activations,
                                                                              ACTIVATION_BITS)):
                if bits not in allowed:
                    raise TinymlError(f"{kind} bits {bits} for {name}: only "
                                      f"{', '.join(map(str, allowed))} are supported")
                if deploy and kind == "activation" and bits not in DEPLOYABLE_ACTIVATION_BITS:
                    raise TinymlError(f"activation bits {bits} for {name} can be evaluated but not deployed")


