"""LESS, LESS_EQUAL, GREATER, GREATER_EQUAL, EQUAL, NOT_EQUAL on quantized operands, and SELECT_V2.

Comparisons (TFLite Micro's comparisons.cc, `ComparisonWithScaling`): each
input's code minus its zero point, shifted left by 8, is rescaled by its own
scale (QuantizeMultiplierSmallerThanOneExp of the scale itself, in double),
then the two are compared: a bool (0/1 byte) per element, numpy broadcasting
up to 4-D. They are binary element-wise ops (`Arith` kinds, ops/elementwise.py:
the same broadcast loop nest and per-byte rescale tables). TFLite Micro runs
them on int8; its int16 GREATER answers false whatever the inputs (its Prepare
sets no int16 rescaling) and the other int16 ones fail, so int16 is refused.

SELECT_V2 (select.cc): output = condition ? x : y per element, the three
broadcast together (up to 5-D); the codes are copied as they are (TFLite
Micro checks the types only). SELECT (v1) is not registered in TFLite Micro.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from tinyml.codegen.cnames import ctype
from tinyml.ir import Graph, Node
from tinyml.ops.base import Op, bit_class, register
from tinyml.ops.elementwise import COMPARISONS, Arith, BinaryOp, broadcast_shape, per_tensor_reason, smaller_than_one

if TYPE_CHECKING:
    from tinyml.codegen.context import EmitContext

COMPARE_RANK = 4  # Broadcast4DSlow*WithScaling
SELECT_RANK = 5  # BroadcastSelect5DSlow


class Comparison(BinaryOp):
    """Two quantized operands of one type, a bool output."""

    pointwise = True

    def arith(self, g: Graph, n: Node) -> Arith:
        a, b = g[n.inputs[0]], g[n.inputs[1]]
        m1, s1 = smaller_than_one(float(np.float32(a.quant.scale[0])), "input 1 scale as a")
        m2, s2 = smaller_than_one(float(np.float32(b.quant.scale[0])), "input 2 scale as a")
        return Arith(self.name, off1=-a.quant.zp, off2=-b.quant.zp, left_shift=8, m1=m1, s1=s1, m2=m2, s2=s2,
                     lo=0, hi=1)

    def check(self, g: Graph, n: Node) -> str | None:
        if len(n.inputs) != 2 or len(n.outputs) != 1 or None in n.inputs:
            return "expects two inputs and one output"
        a, b, y = g[n.inputs[0]], g[n.inputs[1]], g[n.outputs[0]]
        if a.dtype == "int16" and self.name == "GREATER":  # the pinned TFLite Micro's answer, checked
            return "int16 inputs: TFLite Micro's int16 GREATER leaves its rescaling unset and answers false"
        if a.dtype != "int8" or b.dtype != a.dtype:
            return f"inputs {a.dtype} and {b.dtype}: TFLite Micro compares quantized int8 pairs only"
        if y.dtype != "bool":
            return f"output is {y.dtype}, expected bool"
        if why := per_tensor_reason(a, "input 1") or per_tensor_reason(b, "input 2"):
            return why
        try:
            shape = broadcast_shape(a.shape, b.shape)
            self.arith(g, n)
        except ValueError as e:
            return str(e)
        if a.shape != b.shape and len(shape) > COMPARE_RANK:
            return f"broadcast rank {len(shape)} is above TFLite Micro's {COMPARE_RANK}"
        if y.shape != shape:
            return f"output shape {y.shape} is not the broadcast shape {shape}"
        return None

    def cost_terms(self, g: Graph, n: Node) -> tuple[str, dict[str, float]]:
        a, b, y = g[n.inputs[0]], g[n.inputs[1]], g[n.outputs[0]]
        return bit_class("eltwise_compare", a, b, y), {"call": 1, "out": y.size}


for _kind in COMPARISONS:
    register(type(_kind.title().replace("_", ""), (Comparison,), {"name": _kind}))


def _strides(shape: tuple[int, ...], out: tuple[int, ...]) -> list[int]:
    """Element stride of each output dim in an operand of `shape` (0 where it broadcasts)."""
    padded = (1,) * (len(out) - len(shape)) + tuple(shape)
    strides, step = [], 1
    for d in reversed(padded):
        strides.append(step if d != 1 else 0)
        step *= d
    return strides[::-1]


@register
class SelectV2(Op):
    name = "SELECT_V2"
    pointwise = True

    def check(self, g: Graph, n: Node) -> str | None:
        if len(n.inputs) != 3 or len(n.outputs) != 1 or None in n.inputs:
            return "expects condition, x, y and one output"
        c, x, y, out = g[n.inputs[0]], g[n.inputs[1]], g[n.inputs[2]], g[n.outputs[0]]
        if c.dtype != "bool":
            return f"condition is {c.dtype}, expected bool"
        if x.dtype not in ("int8", "int16") or y.dtype != x.dtype or out.dtype != x.dtype:
            return f"x {x.dtype}, y {y.dtype}, output {out.dtype}: int8 or int16, all alike"
        try:
            shape = broadcast_shape(broadcast_shape(c.shape, x.shape), y.shape)
        except ValueError as e:
            return str(e)
        if len(shape) > SELECT_RANK:
            return f"rank {len(shape)} is above TFLite Micro's {SELECT_RANK}"
        if out.shape != shape:
            return f"output shape {out.shape} is not the broadcast shape {shape}"
        return None

    def infer_shapes(self, g: Graph, n: Node) -> list[tuple[int, ...]]:
        c, x, y = (g[i].shape for i in n.inputs)
        return [broadcast_shape(broadcast_shape(c, x), y)]

    def reference(self, g: Graph, n: Node, inputs: list[np.ndarray | None]) -> list[np.ndarray]:
        c, x, y = inputs
        out = g[n.outputs[0]]
        return [np.where(np.asarray(c).astype(bool), x, y).reshape(out.shape).astype(out.np_dtype)]

    def emit(self, g: Graph, n: Node, ctx: "EmitContext") -> None:
        c, x, y, out = g[n.inputs[0]], g[n.inputs[1]], g[n.inputs[2]], g[n.outputs[0]]
        if c.shape == x.shape == y.shape == out.shape:
            dims = [(out.size, 1, 1, 1)]
        else:
            dims = list(zip(out.shape, *(_strides(t.shape, out.shape) for t in (c, x, y))))
        fn = ctx.kernel("select.c.j2", dims=dims, t=ctype(out.dtype))
        ctx.call(fn, *(ctx.tensor(i) for i in n.inputs), ctx.tensor(n.outputs[0]))

    def cost_terms(self, g: Graph, n: Node) -> tuple[str, dict[str, float]]:
        out = g[n.outputs[0]]
        return bit_class("eltwise_select", g[n.inputs[1]], g[n.inputs[2]], out), {"call": 1, "out": out.size}
