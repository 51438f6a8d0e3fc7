"""The one interface every execution target implements.

A runner executes a generated model on N input sets and returns the outputs
plus whatever cost the target can measure. The host, QEMU, Renode and a real
board over serial all look the same to `tinyml validate` and `tinyml bench`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np


@dataclass
class RunResult:
    outputs: list[list[np.ndarray]]  # [sample][output index], raw bytes reinterpreted
    instructions: int | None = None  # per inference, measured (simulator) or None
    cycles: int | None = None  # per inference from DWT on a real board
    stack_bytes: int | None = None  # stack the inference used, measured by painting
    per_layer: list[int] | None = None  # measured instructions per layer, if asked
    extra: dict[str, object] = field(default_factory=dict)


class Runner(Protocol):
    target: str  # "host", "qemu:netduinoplus2", "renode:stm32f4", "serial:/dev/ttyACM0"

    def run(self, inputs: list[list[np.ndarray]]) -> RunResult:
        """Run one inference per input set; inputs[k][i] is input i of sample k."""
        ...
