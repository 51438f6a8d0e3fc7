"""Model zoo built by the tests and benchmarks (needs TensorFlow to build).

Models are Keras networks with fixed seeds, converted to full-integer
.tflite and cached (see cache.py), so only the first run pays for
TensorFlow. Groups: "mlperf" (the MLPerf Tiny / TFLite Micro benchmark
networks), "arch" (MobileNetV2-0.35, micro_speech), "ops" (one op each on
awkward shapes), "io" (I/O types, layouts, names), "edge" (fast-path edges),
"transformer" (a tiny ViT: attention, LayerNorm pattern).
Importing this package does not import TensorFlow.
"""
from __future__ import annotations

from pathlib import Path

from tinyml.zoo import arch, edge, int16, io_variants, mlperf, ops, recurrent, transformer  # noqa: F401  (registration)
from tinyml.zoo.cache import cache_dir, ensure_built
from tinyml.zoo.registry import GROUPS, MODELS, ZooModel

__all__ = ["GROUPS", "ZooModel", "build_all", "cache_dir", "get", "names", "path"]


def names(group: str | None = None) -> list[str]:
    """Zoo model names, in registration order, optionally of one group."""
    if group is not None and group not in GROUPS:
        raise ValueError(f"unknown zoo group {group!r} (groups: {', '.join(GROUPS)})")
    return [n for n, m in MODELS.items() if group is None or m.group == group]


def get(name: str) -> ZooModel:
    """The catalogue entry of one model (group, ops it exercises, build options)."""
    try:
        return MODELS[name]
    except KeyError:
        raise KeyError(f"no zoo model named {name!r}") from None


def path(name: str) -> Path:
    """Path of the model's .tflite file, building it first if it is not cached."""
    return ensure_built(get(name))


def build_all(group: str | None = None) -> list[Path]:
    return [path(n) for n in names(group)]
