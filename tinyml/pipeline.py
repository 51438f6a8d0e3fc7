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
    integer_only: dict[str, int] | None = None  # ops passes/integer_only.py introduced, when asked


def read_model_bytes(path: str | Path) -> bytes:
    p = Path(path)
    try:
        size = p.stat().st_size
        if size > MAX_FILE_BYTES:
            raise BadModel(f"{p}: {size:,} bytes is larger than any model a microcontroller can hold")
        return p.read_bytes()
    except OSError as e:
        raise BadModel(f"cannot read {p}: {e.strerror or e}") from None


def load_graph(data: bytes, integer_only: dict[str, int] | None = None) -> Graph:
    """Parse, legalize and verify a .tflite model (no TensorFlow involved). With `integer_only` (a
    dict), also replace TFLite's float-based transformer formulations by I-ViT's integer-only ops
    (passes/integer_only.py), recording in it how many of each op went in."""
    from tinyml.frontend.check import check_supported, verify_shapes
    from tinyml.frontend.tflite import load_tflite
    from tinyml.passes.legalize import legalize

    g = legalize(load_tflite(data))
    if integer_only is not None:
        from tinyml.passes.integer_only import integer_only as rewrite

        integer_only.update(rewrite(g))
    check_supported(g)
    verify_shapes(g)
    return g


def prepared_graph(data: bytes, name: str, integer_only: bool = False,
                   attention_block: int | None = None) -> tuple[Graph, dict[str, int] | None]:
    """The graph every verb (and tinyml.cost's callers) schedules: loaded, legalized, with attention
    fused into blocks of query rows (schedule/attention.py), and the integer-only rewrites counted
    when asked. One place, so an estimate prices the graph generate emits."""
    from tinyml.schedule.attention import fuse_attention

    rewrites: dict[str, int] | None = {} if integer_only else None
    g = load_graph(data, rewrites)
    g.name = name
    fuse_attention(g, attention_block)
    return g, rewrites


def compile_model(path: str | Path, patches: "PatchOptions | None" = None, integer_only: bool = False,
                  attention_block: int | None = None) -> Compiled:
    """Read, legalize and plan a model; with `patches`, also schedule a patch-based stage; with
    `integer_only`, run passes/integer_only.py (see load_graph). Attention runs in blocks of
    `attention_block` query rows (schedule/attention.py; None: chosen there, 0: layer by layer)."""
    data = read_model_bytes(path)
    g, rewrites = prepared_graph(data, Path(path).stem, integer_only, attention_block)
    plan = plan_memory(g, effort=patches.effort) if patches is not None else plan_memory(g)
    if patches is None:
        return Compiled(g, plan, data, None, rewrites)
    from tinyml.schedule.patches import schedule_patches

    result = schedule_patches(g, patches, plan)
    return Compiled(result.graph, result.plan, data, result, rewrites)
