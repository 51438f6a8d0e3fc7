"""ADD_N on int8, as TFLite Micro's add_n.cc computes it.

All inputs share one scale and zero point (TFLite Micro's Prepare checks it). Each
code minus the zero point, shifted left by 20, is rescaled by 1/2 (input multiplier
s / 2s); the sum starts, as TFLite Micro's reference AddN does, from the rescaled
*input offset* itself (x = input1_offset, a quirk checked against the oracle), then
the output multiplier 2s / (2^20 s_y), + zero point, clamped to int8. The per-input
rescale is a 256-entry table by byte (kernels/add_n.c.j2).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from tinyml.fixedpoint import multiply_by_quantized_multiplier
from tinyml.ir import Graph, Node
from tinyml.ops.base import Op, bit_class, register
from tinyml.ops.elementwise import byte_codes, smaller_than_one
from tinyml.ops.quantized import c_int32, int8_per_tensor

if TYPE_CHECKING:
    from tinyml.codegen.context import EmitContext

LEFT_SHIFT = 20  # kAddNIntegerShift


def _params(g: Graph, n: Node) -> tuple[int, int, int, int, int, int]:
    """(input offset, input multiplier, shift, output multiplier, shift, output zero point)."""
    x, y = g[n.inputs[0]], g[n.outputs[0]]
    s, so = float(np.float32(x.quant.scale[0])), float(np.float32(y.quant.scale[0]))
    mi, si = smaller_than_one(s / (2 * s), "input")
    mo, sho = smaller_than_one(2 * s / ((1 << LEFT_SHIFT) * so), "output")
    return -x.quant.zp, mi, si, mo, sho, y.quant.zp


def _rescaled(codes: np.ndarray, off: int, m: int, s: int) -> np.ndarray:
    return multiply_by_quantized_multiplier((np.asarray(codes, np.int64) + off) << LEFT_SHIFT, m, s)


@register
class AddN(Op):
    name = "ADD_N"
    pointwise = True

    def check(self, g: Graph, n: Node) -> str | None:
        if len(n.inputs) < 2 or len(n.outputs) != 1 or None in n.inputs:
            return "expects two or more inputs and one output"
        xs, y = [g[i] for i in n.inputs], g[n.outputs[0]]
        for t, role in [*((t, f"input {k}") for k, t in enumerate(xs)), (y, "output")]:
            if why := int8_per_tensor(t, role):
                return why
        if any(t.shape != y.shape for t in xs):
            return "inputs and output must have one shape"
        first = xs[0].quant
        if any(t.quant.zp != first.zp or t.quant.scale[0] != first.scale[0] for t in xs[1:]):
            return "inputs with different scales or zero points (TFLite Micro requires them equal)"
        try:
            _params(g, n)
        except ValueError as e:
            return str(e)
        return None

    def infer_shapes(self, g: Graph, n: Node) -> list[tuple[int, ...]]:
        return [g[n.inputs[0]].shape]

    def reference(self, g: Graph, n: Node, inputs: list[np.ndarray | None]) -> list[np.ndarray]:
        off, mi, si, mo, so, zo = _params(g, n)
        acc = np.full(np.shape(inputs[0]), int(_rescaled(0, off, mi, si)), np.int64)
        for x in inputs:
            acc = acc + _rescaled(x, off, mi, si)
        y = multiply_by_quantized_multiplier(acc, mo, so) + zo
        return [np.clip(y, -128, 127).astype(np.int8).reshape(g[n.outputs[0]].shape)]

    def emit(self, g: Graph, n: Node, ctx: "EmitContext") -> None:
        off, mi, si, mo, so, zo = _params(g, n)
        table = ctx.const(_rescaled(byte_codes("int8"), off, mi, si).astype(np.int32), "rescale", "int32_t")
        fn = ctx.kernel("add_n.c.j2", count=len(n.inputs), init=int(_rescaled(0, off, mi, si)),
                        mo=c_int32(mo), so=so, zo=zo)
        ctx.call(fn, *(ctx.tensor(i) for i in n.inputs), ctx.tensor(n.outputs[0]), table,
                 f"{g[n.outputs[0]].size}u")

    def cost_terms(self, g: Graph, n: Node) -> tuple[str, dict[str, float]]:
        y = g[n.outputs[0]]
        return bit_class("eltwise_add_n", g[n.inputs[0]], y), {"call": 1, "out": y.size,
                                                                  "in": y.size * len(n.inputs)}
