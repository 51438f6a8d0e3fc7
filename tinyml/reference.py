"""Run a graph with the ops' numpy references: the project's own oracle.

It is checked against TFLite Micro wherever both apply, and it is the oracle
where TFLite has no equivalent (int4, patches, mixed precision). Keeping every
intermediate tensor makes per-layer comparisons possible.
"""
from __future__ import annotations

import numpy as np

from tinyml.errors import BadModel
from tinyml.ir import Graph
from tinyml.ops import get_op


def initial_state(g: Graph) -> dict[str, np.ndarray]:
    """Every state tensor's value before the first inference (what tinyml_reset() restores)."""
    return {t.name: np.array(t.init, dtype=t.np_dtype, copy=True).reshape(t.shape) for t in g.states()}


def run_reference(g: Graph, inputs: list[np.ndarray],
                  state: dict[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """Evaluate every node in order; returns every tensor's value by name.

    `state` holds the state tensors' values (initial_state(g) when None) and
    is updated in place, so one dict passed along a sequence of inputs runs
    the model as a stream, as the generated code and TFLite Micro do.
    """
    if len(inputs) != len(g.inputs):
        raise BadModel(f"model has {len(g.inputs)} inputs, got {len(inputs)}")
    values = dict(initial_state(g) if state is None else state)  # the same arrays: updated in place
    for name, x in zip(g.inputs, inputs):
        t = g[name]
        values[name] = np.asarray(x, dtype=t.np_dtype).reshape(t.shape)
    for n in g.nodes:
        args = [None if i is None else values[i] if i in values else g[i].data for i in n.inputs]
        outs = get_op(n.op).reference(g, n, args)  # ops writing state change its array in place
        for name, y in zip(n.outputs, outs):
            t = g[name]
            values[name] = np.asarray(y).astype(t.np_dtype, copy=False).reshape(t.shape)
    return values


def reference_outputs(g: Graph, inputs: list[np.ndarray],
                      state: dict[str, np.ndarray] | None = None) -> list[np.ndarray]:
    values = run_reference(g, inputs, state)
    return [values[o] if o in values else g[o].data for o in g.outputs]


def reference_sequence(g: Graph, batch: list[list[np.ndarray]]) -> list[list[np.ndarray]]:
    """Outputs for each entry of `batch`, run in order from the initial state (frame after frame)."""
    state = initial_state(g)
    return [reference_outputs(g, inputs, state) for inputs in batch]


class ReferenceOracle:
    """The numpy reference as the oracle, for models TFLite Micro cannot run as written
    (sub-byte widths it has no kernels for, recorded by frontend/bits_meta.py). Same calls
    as oracle.TflmOracle; it has no arena of its own to report."""

    name = "numpy reference"

    def __init__(self, g: Graph):
        self.graph = g

    def run(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        return reference_outputs(self.graph, inputs)

    def run_batch(self, batch: list[list[np.ndarray]]) -> list[list[np.ndarray]]:
        return reference_sequence(self.graph, batch)  # one stream when the model keeps state

    def arena_bytes(self) -> None:
        return None
