"""The typed graph IR every pass reads and writes.

One Graph holds tensors by unique name and nodes in a valid execution order.
Layout and op semantics follow TFLite (NHWC activations, OHWI conv filters,
1HWC depthwise filters) so the bit-exact oracle maps one to one; later passes
(mixed precision, patches, transformer ops) extend this, they do not replace it.
"""
from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

# dtype name -> (numpy dtype, bits). Sub-byte widths reuse an int8 container in
# numpy and are packed only when emitted.
DTYPES: dict[str, tuple[np.dtype, int]] = {
    "int4": (np.dtype(np.int8), 4),
    "int8": (np.dtype(np.int8), 8),
    "uint8": (np.dtype(np.uint8), 8),
    "int16": (np.dtype(np.int16), 16),
    "int32": (np.dtype(np.int32), 32),
    "int64": (np.dtype(np.int64), 64),
    "float32": (np.dtype(np.float32), 32),
    "bool": (np.dtype(np.bool_), 8),
}


@dataclass
class Quant:
    """Affine quantization: real = scale * (q - zero_point).

    `scale`/`zero_point` have one entry (per-tensor) or one per slice along
    `axis` (per-channel). Scales keep the float32 values stored in the model:
    the oracle derives its fixed-point multipliers from exactly those.
    """

    scale: np.ndarray  # float32, shape (1,) or (C,)
    zero_point: np.ndarray  # int64, same length as scale
    axis: int = 0

    def __post_init__(self) -> None:
        self.scale = np.asarray(self.scale, dtype=np.float32).reshape(-1)
        self.zero_point = np.asarray(self.zero_point, dtype=np.int64).reshape(-1)

    @property
    def per_channel(self) -> bool:
        return self.scale.size > 1

    @property
    def s(self) -> float:
        """The per-tensor scale (error if per-channel)."""
        assert not self.per_channel, "per-tensor scale requested on a per-channel tensor"
        return float(self.scale[0])

    @property
    def zp(self) -> int:
        return int(self.zero_point[0])


@dataclass
class Tensor:
    """A value in the graph: an activation (data is None) or a constant."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    quant: Quant | None = None
    data: np.ndarray | None = None
    # Storage width in bits; equals the dtype's width unless a quantization
    # pass narrows it (e.g. int4 weights in an int8 container).
    bits: int = 0
    # A graph input the application hands over window by window (patch
    # schedules with a streamed input): it has no arena buffer, and the
    # READ_WINDOW nodes that read it call tinyml_read_input() instead.
    streamed: bool = False
    # State kept across inferences (a resource variable, an SVDF/LSTM state
    # tensor): it lives in its own region outside the arena, starts as `init`
    # and is restored to it by tinyml_reset(); only ops listing it among their
    # `state_inputs` read or write it.
    state: bool = False
    init: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.dtype not in DTYPES:
            raise ValueError(f"unknown dtype {self.dtype!r}")
        self.shape = tuple(int(d) for d in self.shape)
        if not self.bits:
            self.bits = DTYPES[self.dtype][1]

    @property
    def is_const(self) -> bool:
        return self.data is not None

    @property
    def np_dtype(self) -> np.dtype:
        return DTYPES[self.dtype][0]

    @property
    def size(self) -> int:
        return math.prod(self.shape)  # python ints: exact, and cheap on the planner's hot path

    @property
    def nbytes(self) -> int:
        """Bytes this tensor occupies when stored packed at `bits` per element."""
        return (self.size * self.bits + 7) // 8


@dataclass
class Node:
    """One operator application.

    `inputs` may hold None for an absent optional input (e.g. no bias).
    `attrs` mirror the TFLite builtin options table of the op in snake_case
    (`stride_w`, `padding`, `fused_activation_function`, ...), enums as their
    schema names ("SAME", "RELU6"); legalization passes may add keys.
    """

    op: str
    inputs: list[str | None]
    outputs: list[str]
    attrs: dict[str, Any] = field(default_factory=dict)
    name: str = ""  # the model's name for the node (diagnostics only, never C)


@dataclass
class Graph:
    tensors: dict[str, Tensor] = field(default_factory=dict)
    nodes: list[Node] = field(default_factory=list)
    inputs: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    name: str = "model"

    def __getitem__(self, name: str) -> Tensor:
        return self.tensors[name]

    def add_tensor(self, t: Tensor) -> Tensor:
        """Insert `t`, renaming it if its name is taken; returns the stored tensor."""
        base, n = t.name or "t", 1
        while t.name in self.tensors or not t.name:
            t.name = f"{base}_{n}"
            n += 1
        self.tensors[t.name] = t
        return t

    def producers(self) -> dict[str, Node]:
        return {o: n for n in self.nodes for o in n.outputs}

    def consumers(self) -> dict[str, list[Node]]:
        out: dict[str, list[Node]] = {}
        for n in self.nodes:
            for i in n.inputs:
                if i is not None:
                    out.setdefault(i, []).append(n)
        return out

    def activations(self) -> Iterator[Tensor]:
        """Tensors computed at run time (everything that is neither a constant nor state)."""
        return (t for t in self.tensors.values() if not t.is_const and not t.state)

    def states(self) -> list[Tensor]:
        """Tensors kept across inferences, in a stable order (their region's layout)."""
        return [t for t in self.tensors.values() if t.state]

    def remove_unused_tensors(self) -> None:
        used = set(self.inputs) | set(self.outputs)
        for n in self.nodes:
            used.update(i for i in n.inputs if i is not None)
            used.update(n.outputs)
        self.tensors = {k: v for k, v in self.tensors.items() if k in used}
