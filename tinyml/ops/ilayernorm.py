"""ILAYERNORM: I-ViT's integer-only LayerNorm over the last axis (no TFLite equivalent; the
numpy reference here is the oracle). Inputs: x (int8), gamma and beta (float32 constants, [C]);
attribute `epsilon`.

Per row of C codes, with no rounding until the square root: d = C x - sum(x) is C times the
centred value (the zero point cancels), V = sum(d^2) + E = C^3 (var + eps) in code units
(E = eps C^3 / scale^2). V is brought to [2^28, 2^30) by shifts of two bits (ivit_math.
normalize_even), its root taken by Newton's integer iteration (ivit_math.isqrt), inverted by
one division, floor(2^30 / root). Each output is d * g * inv >> (30 + F + k) rounded, plus
round(beta / out_scale) + zp, where g / 2^F is gamma * sqrt(C) / out_scale as a dyadic number
(15-bit g). Error against float: docs/ops.md.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from tinyml.ir import Graph, Node
from tinyml.ops.base import Op, bit_class, register
from tinyml.ops.ivit_math import dyadic, isqrt, normalize_even
from tinyml.ops.quantized import int8_per_tensor

if TYPE_CHECKING:
    from tinyml.codegen.context import EmitContext

MAX_CHANNELS = 256  # |d| < 2^17, d^2 summed over a row < 2^42
RECIP_BITS = 30
MAX_SHIFT = 62
MAX_EPS_TERM = 1 << 60


def _constants(g: Graph, n: Node) -> tuple[np.ndarray, int, np.ndarray, int]:
    """(g ints, F, output offsets b, E) derived from gamma, beta and the scales."""
    x, y = g[n.inputs[0]], g[n.outputs[0]]
    c = x.shape[-1]
    s_in, s_out = float(np.float32(x.quant.scale[0])), float(np.float32(y.quant.scale[0]))
    gamma = np.asarray(g[n.inputs[1]].data, np.float64).reshape(-1)
    beta = np.asarray(g[n.inputs[2]].data, np.float64).reshape(-1)
    ints, f = dyadic(gamma * np.sqrt(c) / s_out)
    b = np.floor(beta / s_out + 0.5).astype(np.int64) + y.quant.zp
    e = int(np.floor(float(n.attrs.get("epsilon", 1e-5)) * c ** 3 / s_in ** 2 + 0.5))
    return ints, f, np.clip(b, -(1 << 20), 1 << 20), e


def ilayernorm_rows(x: np.ndarray, ints: np.ndarray, f: int, b: np.ndarray, e: int) -> np.ndarray:
    """int8 rows [R, C] -> int8 [R, C]."""
    x = np.asarray(x, np.int64)
    c = x.shape[-1]
    d = c * x - x.sum(axis=-1, keepdims=True)
    out = np.empty_like(x)
    for r in range(x.shape[0]):
        w, k = normalize_even(int(np.sum(d[r] * d[r])) + e)
        root = isqrt(w)
        inv = (1 << RECIP_BITS) // root if root else 0
        sh = min(RECIP_BITS + f + k, MAX_SHIFT)
        out[r] = ((d[r] * ints * inv + (1 << (sh - 1))) >> sh) + b
    return np.clip(out, -128, 127).astype(np.int8)


@register
class ILayerNorm(Op):
    name = "ILAYERNORM"

    def check(self, g: Graph, n: Node) -> str | None:
        if len(n.inputs) != 3 or None in n.inputs or len(n.outputs) != 1:
            return "expects x, gamma, beta and one output"
        x, y = g[n.inputs[0]], g[n.outputs[0]]
        for t, role in ((x, "input"), (y, "output")):
            if why := int8_per_tensor(t, role):
                return why
        if x.shape != y.shape or not x.shape:
            return "input and output shapes differ"
        c = x.shape[-1]
        if c > MAX_CHANNELS:
            return f"rows of {c} elements: at most {MAX_CHANNELS}"
        for i, role in ((1, "gamma"), (2, "beta")):
            t = g[n.inputs[i]]
            if t.data is None or t.dtype != "float32" or t.size != c:
                return f"{role} must be a float32 constant of {c} values"
        ints, f, _, e = _constants(g, n)
        if RECIP_BITS + f - 14 < 1:
            return "gamma * sqrt(C) / output scale too large for a 15-bit dyadic multiplier"
        if not 0 <= e < MAX_EPS_TERM:
            return "epsilon / input scale^2 out of range"
        return None

    def infer_shapes(self, g: Graph, n: Node) -> list[tuple[int, ...]]:
        return [g[n.inputs[0]].shape]

    def reference(self, g: Graph, n: Node, inputs: list[np.ndarray | None]) -> list[np.ndarray]:
        x = g[n.inputs[0]]
        rows = np.asarray(inputs[0]).reshape(-1, x.shape[-1])
        return [ilayernorm_rows(rows, *_constants(g, n)).reshape(x.shape)]

    def inplace_inputs(self, g: Graph, n: Node) -> tuple[int, ...]:
        return (0,)  # ilayernorm.c.j2 reads a whole row before it writes it, x[c] before y[c]

    def emit(self, g: Graph, n: Node, ctx: "EmitContext") -> None:
        x = g[n.inputs[0]]
        c = x.shape[-1]
        ints, f, b, e = _constants(g, n)
        fn = ctx.kernel("ilayernorm.c.j2", channels=c, f=f, eps=e, recip_bits=RECIP_BITS, max_shift=MAX_SHIFT)
        ctx.call(fn, ctx.tensor(x.name), ctx.tensor(n.outputs[0]), ctx.const(ints.astype(np.int16), "ln_gamma"),
                 ctx.const(b.astype(np.int32), "ln_beta"), f"{x.size // c}u")

    def cost_terms(self, g: Graph, n: Node) -> tuple[str, dict[str, float]]:
        """Three passes over each row's elements (sum, squares, outputs); a square root and a
        division per row."""
        x, y = g[n.inputs[0]], g[n.outputs[0]]
        return bit_class("ilayernorm", x, y), {"call": 1, "out": y.size, "rows": y.size // max(y.shape[-1], 1)}
