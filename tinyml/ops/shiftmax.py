"""SHIFTMAX: I-ViT's integer-only softmax over the last axis (no TFLite equivalent; the numpy
reference here is the oracle).

Per row: d = (x - max) << P puts the codes in units of 1/i0 (ivit_math.fine_scale of the input
scale times beta); e = shift_exp(d) is exp(d / i0) * i0 with shifts and one division by the
constant i0; the row sum's reciprocal is one integer division, floor(2^29 / sum); each output is
round(e * that / 2^21), i.e. the probability in units of 1/256, saturated to 255, minus 128. The
output quantization is SOFTMAX's int8 one (scale 1/256, zero point -128), so the op replaces an
int8 SOFTMAX in place (passes/integer_only.py). Error against float: docs/ops.md.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from tinyml.ir import Graph, Node
from tinyml.ops.base import Op, bit_class, register
from tinyml.ops.ivit_math import fine_scale, shift_exp
from tinyml.ops.quantized import int8_per_tensor

if TYPE_CHECKING:
    from tinyml.codegen.context import EmitContext

RECIP_BITS = 29  # floor(2^29 / sum) * e < 2^30 since e <= i0 < 2^15 and sum >= i0 >= 2^14
MAX_DEPTH = 1 << 16  # the row sum of values below 2^15 stays below 2^31


def _fine(g: Graph, n: Node) -> tuple[int, int] | None:
    return fine_scale(float(np.float32(g[n.inputs[0]].quant.scale[0])) * float(n.attrs.get("beta", 1.0)))


def shiftmax_rows(rows: np.ndarray, p: int, i0: int) -> np.ndarray:
    """int8 rows (any leading shape, softmax over the last axis) -> int8 Shiftmax codes."""
    x = np.asarray(rows, np.int64)
    e = shift_exp((x - x.max(axis=-1, keepdims=True)) << p, i0)
    recip = (1 << RECIP_BITS) // e.sum(axis=-1, keepdims=True)
    out = (e * recip + (1 << (RECIP_BITS - 9))) >> (RECIP_BITS - 8)
    return (np.minimum(out, 255) - 128).astype(np.int8)


@register
class Shiftmax(Op):
    name = "SHIFTMAX"

    def check(self, g: Graph, n: Node) -> str | None:
        if len(n.inputs) != 1 or n.inputs[0] is None or len(n.outputs) != 1:
            return "expects one input and one output"
        x, y = g[n.inputs[0]], g[n.outputs[0]]
        for t, role in ((x, "input"), (y, "output")):
            if why := int8_per_tensor(t, role):
                return why
        if y.quant.zp != -128 or float(y.quant.scale[0]) != 1 / 256:
            return "output quantization must be SOFTMAX's int8 one (scale 1/256, zero point -128)"
        if x.shape != y.shape or not x.shape:
            return "input and output shapes differ"
        if x.shape[-1] > MAX_DEPTH:
            return f"rows of {x.shape[-1]} elements: at most {MAX_DEPTH}"
        if _fine(g, n) is None:
            return "input scale times beta outside [2^-15, 128]: no integer exponent scale fits"
        return None

    def infer_shapes(self, g: Graph, n: Node) -> list[tuple[int, ...]]:
        return [g[n.inputs[0]].shape]

    def reference(self, g: Graph, n: Node, inputs: list[np.ndarray | None]) -> list[np.ndarray]:
        p, i0 = _fine(g, n)
        return [shiftmax_rows(np.asarray(inputs[0]).reshape(g[n.inputs[0]].shape), p, i0)]

    def inplace_inputs(self, g: Graph, n: Node) -> tuple[int, ...]:
        return (0,)  # shiftmax.c.j2 reads x[c] before writing y[c], and rows never overlap

    def emit(self, g: Graph, n: Node, ctx: "EmitContext") -> None:
        x = g[n.inputs[0]]
        p, i0 = _fine(g, n)
        depth = x.shape[-1]
        fn = ctx.kernel("shiftmax.c.j2", p=p, i0=i0, recip_bits=RECIP_BITS)
        ctx.call(fn, ctx.tensor(x.name), ctx.tensor(n.outputs[0]), f"{x.size // depth}u", f"{depth}u")

    def cost_terms(self, g: Graph, n: Node) -> tuple[str, dict[str, float]]:
        """Per element: a max pass, two shift-exponentials (sum pass and output pass); one
        division per row."""
        x, y = g[n.inputs[0]], g[n.outputs[0]]
        return bit_class("shiftmax", x, y), {"call": 1, "out": y.size, "rows": y.size // max(y.shape[-1], 1)}
