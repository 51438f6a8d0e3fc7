"""The zoo's catalogue: what each model is, how to build it, what it must contain."""
from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

GROUPS = ("mlperf", "arch", "ops", "io", "edge", "int16", "transformer")


@dataclass(frozen=True)
class ZooModel:
    """One zoo entry.

    `build(tf, **params)` returns a Keras model (TensorFlow is handed in so
    that only building imports it). `exercises` are the TFLite ops the model
    exists to cover; tests assert they survive conversion. `data` names the
    representative-data distribution per input (see convert.sample), `scales`
    multiplies each input's samples so inputs can get different quantization.
    `postprocess` edits the converted flatbuffer (renaming tensors, swapping
    an op the converter never emits for its equivalent). `converter` replaces
    convert.build_tflite for models converted another way (16x8 mode: zoo/int16.py).
    """

    name: str
    group: str
    build: Callable[..., Any]
    exercises: frozenset[str]
    params: dict[str, Any] = field(default_factory=dict)
    io: str = "int8"  # "int8", "uint8" or "float32" model inputs/outputs
    per_channel: bool = True
    data: str = "normal"
    scales: tuple[float, ...] = ()
    postprocess: Callable[[bytes], bytes] | None = None
    samples: int = 32
    note: str = ""
    converter: Callable[["ZooModel"], bytes] | None = None

    @property
    def seed(self) -> int:
        """A fixed seed per model, so two models never share weights by accident."""
        return zlib.crc32(self.name.encode())


MODELS: dict[str, ZooModel] = {}


def add(name: str, group: str, build: Callable[..., Any], exercises: set[str] | tuple[str, ...],
        **options: Any) -> ZooModel:
    """Register a model; `options` are ZooModel fields, anything else is a build parameter."""
    if name in MODELS:
        raise ValueError(f"zoo model {name!r} registered twice")
    if group not in GROUPS:
        raise ValueError(f"unknown zoo group {group!r}")
    fields = set(ZooModel.__dataclass_fields__) - {"name", "group", "build", "exercises", "params"}
    params = {k: v for k, v in options.items() if k not in fields}
    known = {k: v for k, v in options.items() if k in fields}
    model = ZooModel(name, group, build, frozenset(exercises), params, **known)
    MODELS[name] = model
    return model
