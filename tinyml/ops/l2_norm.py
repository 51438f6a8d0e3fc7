"""L2_NORMALIZATION over the last axis, int8: TFLite Micro's reference_integer_ops::L2Normalization.

Per row: the sum of squared (x - zero point), its inverse square root as a
fixed-point multiplier (TFLite's GetInvSqrtQuantizedMultiplierExp: a
Newton-Raphson iteration in Q3.28), then each element rescaled to 1/128 units and
saturated. The output quantization is fixed (scale 1/128, zero point 0), as TFLite
Micro requires. The C twin is kernels/l2_norm.c.j2.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from tinyml.fixedpoint import multiply_by_quantized_multiplier
from tinyml.ir import Graph, Node
from tinyml.ops.base import Op, bit_class, register
from tinyml.ops.quantized import int8_per_tensor
from tinyml.ops.rsqrt import inv_sqrt_multiplier

if TYPE_CHECKING:
    from tinyml.codegen.context import EmitContext

MAX_DEPTH = 1 << 16  # the int32 sum of squares stays exact


def l2_rows(x: np.ndarray, zp: int) -> np.ndarray:
    v = x.astype(np.int64) - zp
    out = np.empty_like(v)
    for r in range(v.shape[0]):
        mult, shift = inv_sqrt_multiplier(int((v[r] * v[r]).sum()))
        out[r] = multiply_by_quantized_multiplier(v[r], mult, shift + 7)
    return np.clip(out, -128, 127)


@register
class L2Normalization(Op):
    name = "L2_NORMALIZATION"

    def check(self, g: Graph, n: Node) -> str | None:
        if len(n.inputs) != 1 or n.inputs[0] is None or len(n.outputs) != 1:
            return "expects one input and one output"
        x, y = g[n.inputs[0]], g[n.outputs[0]]
        if why := int8_per_tensor(x, "input") or int8_per_tensor(y, "output"):
            return why
        if y.quant.zp != 0 or np.float32(y.quant.scale[0]) != np.float32(1.0 / 128):
            return "int8 L2_NORMALIZATION output must have scale 1/128 and zero point 0"
        if not x.shape or x.shape != y.shape or x.shape[-1] > MAX_DEPTH:
            return "input and output shapes differ (or the rows are too long)"
        if n.attrs.get("fused_activation_function", "NONE") != "NONE":
            return "fused activation on L2_NORMALIZATION is not supported"
        return None

    def infer_shapes(self, g: Graph, n: Node) -> list[tuple[int, ...]]:
        return [g[n.inputs[0]].shape]

    def reference(self, g: Graph, n: Node, inputs: list[np.ndarray | None]) -> list[np.ndarray]:
        x, y = g[n.inputs[0]], g[n.outputs[0]]
        rows = np.asarray(inputs[0]).reshape(-1, x.shape[-1])
        return [l2_rows(rows, x.quant.zp).astype(np.int8).reshape(y.shape)]

    def emit(self, g: Graph, n: Node, ctx: "EmitContext") -> None:
        x = g[n.inputs[0]]
        depth = x.shape[-1]
        fn = ctx.kernel("l2_norm.c.j2", rows=x.size // depth, depth=depth, zp=x.quant.zp)
        ctx.call(fn, ctx.tensor(x.name), ctx.tensor(n.outputs[0]))

    def cost_terms(self, g: Graph, n: Node) -> tuple[str, dict[str, float]]:
        x, y = g[n.inputs[0]], g[n.outputs[0]]
        return bit_class("l2norm", x, y), {"call": 1, "out": y.size, "rows": y.size // max(y.shape[-1], 1)}
