"""NEG, float32 (TFLite Micro's neg.cc handles float32 only).

The int8 converter emits it inside Keras' LayerNormalization as DEQUANTIZE ->
NEG -> QUANTIZE (the mean negated in float); a sign flip is exact, so the
float kernel agrees with TFLite Micro bit for bit.
"""
from __future__ import annotations

import numpy as np

from tinyml.ir import Graph, Node
from tinyml.ops.base import Op, register


@register
class Neg(Op):
    name = "NEG"
    pointwise = True

    def check(self, g: Graph, n: Node) -> str | None:
        if len(n.inputs) != 1 or n.inputs[0] is None or len(n.outputs) != 1:
            return "expects one input and one output"
        x, y = g[n.inputs[0]], g[n.outputs[0]]
        if x.dtype != "float32" or y.dtype != "float32":
            return f"NEG on {x.dtype} is not supported: TFLite Micro negates float32 only"
        if x.shape != y.shape:
            return "input and output shapes differ"
        return None

    def infer_shapes(self, g: Graph, n: Node) -> list[tuple[int, ...]]:
        return [g[n.inputs[0]].shape]

    def reference(self, g: Graph, n: Node, inputs: list[np.ndarray | None]) -> list[np.ndarray]:
        return [np.negative(np.asarray(inputs[0], np.float32))]

    def inplace_inputs(self, g: Graph, n: Node) -> tuple[int, ...]:
        return (0,)  # neg.c.j2 reads x[i] before writing y[i]

    def emit(self, g: Graph, n: Node, ctx) -> None:
        fn = ctx.kernel("neg.c.j2")
        ctx.call(fn, ctx.tensor(n.inputs[0]), ctx.tensor(n.outputs[0]), f"{g[n.inputs[0]].size}u")
