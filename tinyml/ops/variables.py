"""READ_VARIABLE and ASSIGN_VARIABLE on state tensors (resource variables, see frontend/variables.py).

After import a resource variable is a state tensor (Tensor.state): it lives
outside the arena and keeps its bytes from one inference to the next.
READ_VARIABLE copies it into an activation; ASSIGN_VARIABLE copies a value
over it, as TFLite Micro's kernels do (byte copies: no requantization, the
converter gives a variable's reads and writes one quantization). Nodes that
touch one state tensor keep their relative order (schedule/order.py), so a
read before an assignment sees the previous inference's value.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from tinyml.ir import Graph, Node
from tinyml.ops.base import Op, copy_terms, register
from tinyml.ops.strided_copy import Copy, emit_copy

if TYPE_CHECKING:
    from tinyml.codegen.context import EmitContext


def _same_bytes(state: object, value: object) -> str | None:
    s, v = state, value
    if not getattr(s, "state", False):
        return "the variable is not a state tensor"
    if s.dtype != v.dtype or s.nbytes != v.nbytes:
        return f"the variable holds {s.dtype}{list(s.shape)}, the value is {v.dtype}{list(v.shape)}"
    return None


@register
class ReadVariable(Op):
    name = "READ_VARIABLE"
    state_inputs = (0,)

    def check(self, g: Graph, n: Node) -> str | None:
        if len(n.inputs) != 1 or n.inputs[0] is None or len(n.outputs) != 1:
            return "expects one variable and one output"
        return _same_bytes(g[n.inputs[0]], g[n.outputs[0]])

    def infer_shapes(self, g: Graph, n: Node) -> list[tuple[int, ...]]:
        return [g[n.outputs[0]].shape]  # a byte copy: check() compared the sizes

    def reference(self, g: Graph, n: Node, inputs: list[np.ndarray | None]) -> list[np.ndarray]:
        return [np.array(inputs[0], copy=True).reshape(g[n.outputs[0]].shape)]

    def emit(self, g: Graph, n: Node, ctx: "EmitContext") -> None:
        y = g[n.outputs[0]]
        emit_copy(ctx, Copy((y.size,), (1,), (1,)), ctx.tensor(n.inputs[0]), ctx.tensor(y.name), y.dtype)

    def cost_terms(self, g: Graph, n: Node) -> tuple[str, dict[str, float]]:
        return "copy", copy_terms(g[n.outputs[0]])


@register
class AssignVariable(Op):
    name = "ASSIGN_VARIABLE"
    state_inputs = (0,)
    writes_state = True

    def check(self, g: Graph, n: Node) -> str | None:
        if len(n.inputs) != 2 or None in n.inputs or n.outputs:
            return "expects a variable and a value, and no output"
        return _same_bytes(g[n.inputs[0]], g[n.inputs[1]])

    def infer_shapes(self, g: Graph, n: Node) -> list[tuple[int, ...]]:
        return []

    def reference(self, g: Graph, n: Node, inputs: list[np.ndarray | None]) -> list[np.ndarray]:
        state, value = inputs
        state[...] = np.asarray(value).reshape(state.shape)  # in place: run_reference hands over the state
        return []

    def emit(self, g: Graph, n: Node, ctx: "EmitContext") -> None:
        s = g[n.inputs[0]]
        emit_copy(ctx, Copy((s.size,), (1,), (1,)), ctx.tensor(n.inputs[1]), ctx.tensor(s.name), s.dtype)

    def cost_terms(self, g: Graph, n: Node) -> tuple[str, dict[str, float]]:
        return "copy", copy_terms(g[n.inputs[0]])
