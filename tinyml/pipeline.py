"""The passes in order, as the CLI verbs and tests call them.

read (.tflite, untrusted) -> legalize/fold -> check support and shapes ->
plan memory -> emit C. Each stage lives in its own module; this file only
strings them together so every verb runs the same sequence.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tinyml.errors import BadModel
from tinyml.frontend.tflite import MAX_FILE_BYTES
from tinyml.ir import Graph
from tinyml.schedule.memory import MemoryPlan, plan_memory


@dataclass
class Compiled:
    graph: Graph
    plan: MemoryPlan
    model_bytes: bytes


def read_model_bytes(path: str | Path) -> bytes:
    p = Path(path)
    try:
        size = p.stat().st_size
        if size > MAX_FILE_BYTES:
            raise BadModel(f"{p}: {size:,} bytes is larger than any model a microcontroller can hold")
        return p.read_bytes()
    except OSError as e:
        raise BadModel(f"cannot read {p}: {e.strerror or e}") from None


def load_graph(data: bytes) -> Graph:
    """Parse, legalize and verify a .tflite model (no TensorFlow involved)."""
    from tinyml.frontend.check import check_supported, verify_shapes
    from tinyml.frontend.tflite import load_tflite
    from tinyml.passes.legalize import legalize

    g = legalize(load_tflite(data))
    check_supported(g)
    verify_shapes(g)
    return g


def compile_model(path: str | Path) -> Compiled:
    data = read_model_bytes(path)
    g = load_graph(data)
    g.name = Path(path).stem
    return Compiled(g, plan_memory(g), data)
