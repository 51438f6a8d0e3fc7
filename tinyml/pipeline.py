"""The passes in order, as the CLI verbs and tests call them.

read (.tflite, untrusted) -> legalize/fold -> check support and shapes ->
plan memory -> emit C. Each stage lives in its own module; this file only
strings them together so every verb runs the same sequence.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from tinyml.errors import BadModel
from tinyml.frontend.tflite import MAX_FILE_BYTES
from tinyml.ir import Graph
from tinyml.schedule.memory import MemoryPlan, plan_memory

if TYPE_CHECKING:
    from tinyml.schedule.patches import PatchOptions, SearchResult


@dataclass
class Compiled:
    graph: Graph
    plan: MemoryPlan
    model_bytes: bytes
    patches: "SearchResult | None" = None  # what the patch scheduler decided, when asked


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


def compile_model(path: str | Path, patches: "PatchOptions | None" = None) -> Compiled:
    """Read, legalize and plan a model; with `patches`, also schedule a patch-based stage."""
    data = read_model_bytes(path)
    g = load_graph(data)
    g.name = Path(path).stem
    plan = plan_memory(g, effort=patches.effort) if patches is not None else plan_memory(g)
    if patches is None:
        return Compiled(g, plan, data)
    from tinyml.schedule.patches import schedule_patches

    result = schedule_patches(g, patches, plan)
    return Compiled(result.graph, result.plan, data, result)
