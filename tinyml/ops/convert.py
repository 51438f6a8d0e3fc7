"""Boundary conversions: QUANTIZE (float -> int, and 8-bit requantization) and DEQUANTIZE.

TFLite Micro's float -> int path (AffineQuantize) divides by the scale in
float32 and rounds half away from zero (std::round), not half to even. Its
conversion to int32 is x86's: values whose rounded quotient leaves the int32
range (and NaN) become INT32_MIN before the zero point is added (with int32
wrap-around) and the result is clamped. We reproduce that, so the host oracle
and the generated C agree even on hostile inputs, on every target (on a
Cortex-M, TFLite Micro itself would saturate instead). Requantizing between
8-bit types is a function of one byte and becomes a lookup table.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from tinyml.codegen.cnames import ctype
from tinyml.fixedpoint import INT32_MIN, multiply_by_quantized_multiplier, quantize_multiplier, wrap_int32
from tinyml.ir import Graph, Node, Tensor
from tinyml.ops.activations import LutOp
from tinyml.ops.base import Op, bit_class, register
from tinyml.ops.elementwise import byte_codes, emit_lut, per_tensor_reason

if TYPE_CHECKING:
    from tinyml.codegen.context import EmitContext

INT_DTYPES = ("int8", "uint8", "int16")


def _limits(dtype: str) -> tuple[int, int]:
    info = np.iinfo(np.dtype(dtype))
    return int(info.min), int(info.max)


def _scale(t: Tensor) -> np.float32:
    return np.float32(t.quant.scale[0])


def c_float(v: np.float32) -> str:
    """An exact float32 C literal."""
    return f"{float(v).hex()}f"


def affine_quantize(x: np.ndarray, scale: np.float32, zero_point: int, dtype: str) -> np.ndarray:
    """AffineQuantize: round(x / scale) (float32 quotient, half away from zero) + zp, clamped."""
    q = (np.asarray(x, np.float32) / scale).astype(np.float64)
    with np.errstate(invalid="ignore"):
        in_range = (q >= -2.0**31) & (q < 2.0**31)  # False for NaN
    safe = np.where(in_range, q, 0.0)
    r = np.where(in_range, np.copysign(np.floor(np.abs(safe) + 0.5), safe), INT32_MIN).astype(np.int64)
    lo, hi = _limits(dtype)
    return np.clip(wrap_int32(r + zero_point), lo, hi).astype(dtype)


def dequantize(x: np.ndarray, scale: np.float32, zero_point: int) -> np.ndarray:
    """scale * (x - zp) rounded once to float32 (TFLite computes it in float or double: same)."""
    return (np.asarray(x, np.int64) - zero_point).astype(np.float32) * scale


def requantize_values(xi: Tensor, yo: Tensor, x: np.ndarray) -> np.ndarray:
    """reference_ops::Requantize between integer types (its int8<->uint8 xor fast path agrees)."""
    q, shift = quantize_multiplier(float(_scale(xi)) / float(_scale(yo)))
    r = multiply_by_quantized_multiplier(x - xi.quant.zp, q, shift) + yo.quant.zp
    return np.clip(wrap_int32(r), *_limits(yo.dtype))


@register
class Quantize(LutOp):
    """float32 -> int8/uint8/int16, or int8/uint8/int16 -> int8/uint8/int16 requantization."""

    name = "QUANTIZE"
    in_dtypes = ("float32", "int8", "uint8", "int16")
    out_dtypes = INT_DTYPES

    def reason(self, g: Graph, n: Node) -> str | None:
        if g[n.inputs[0]].dtype == "uint8" and g[n.outputs[0]].dtype == "int16":
            return "QUANTIZE uint8 -> int16 is not supported"
        if g[n.inputs[0]].dtype == "int16" and g[n.outputs[0]].dtype == "uint8":
            return "QUANTIZE int16 -> uint8 is not supported (TFLite Micro refuses it too)"
        return None

    def values(self, g: Graph, n: Node, x: np.ndarray) -> np.ndarray:
        return requantize_values(g[n.inputs[0]], g[n.outputs[0]], x)

    def reference(self, g: Graph, n: Node, inputs: list[np.ndarray | None]) -> list[np.ndarray]:
        x, y = g[n.inputs[0]], g[n.outputs[0]]
        if x.dtype != "float32":
            return super().reference(g, n, inputs)
        return [affine_quantize(inputs[0], _scale(y), y.quant.zp, y.dtype).reshape(y.shape)]

    def cost_terms(self, g: Graph, n: Node) -> tuple[str, dict[str, float]]:
        """From int16 the requantize loop (tm_requant per element), a kernel apart; else LutOp's."""
        x, y = g[n.inputs[0]], g[n.outputs[0]]
        if x.dtype == "int16":
            return bit_class("requantize", x, y), {"call": 1, "out": y.size}
        return super().cost_terms(g, n)

    def emit(self, g: Graph, n: Node, ctx: "EmitContext") -> None:
        x, y = g[n.inputs[0]], g[n.outputs[0]]
        lo, hi = _limits(y.dtype)
        if x.dtype == "int16":
            q, shift = quantize_multiplier(float(_scale(x)) / float(_scale(y)))
            fn = ctx.kernel("quantize.c.j2", mode="requantize", tx="int16_t", ty=ctype(y.dtype), mult=q,
                            shift=shift, zp_in=x.quant.zp, zp=y.quant.zp, lo=lo, hi=hi)
            ctx.call(fn, ctx.tensor(x.name), ctx.tensor(y.name), f"{x.size}u")
            return
        if x.dtype != "float32":
            emit_lut(ctx, x.name, y.name, self.values(g, n, byte_codes(x.dtype)))
            return
        fn = ctx.kernel("quantize.c.j2", mode="quantize", tx="float", ty=ctype(y.dtype),
                        scale=c_float(_scale(y)), zp=y.quant.zp, lo=lo, hi=hi)
        ctx.call(fn, ctx.tensor(x.name), ctx.tensor(y.name), f"{x.size}u")


@register
class Dequantize(Op):
    """int8/uint8/int16 -> float32."""

    name = "DEQUANTIZE"
    pointwise = True

    def check(self, g: Graph, n: Node) -> str | None:
        if len(n.inputs) != 1 or len(n.outputs) != 1:
            return "expects one input and one output"
        x, y = g[n.inputs[0]], g[n.outputs[0]]
        if x.dtype not in INT_DTYPES:
            return f"input is {x.dtype}, supported: {', '.join(INT_DTYPES)}"
        if y.dtype != "float32":
            return f"output is {y.dtype}, only float32 is supported"
        if x.size != y.size:
            return f"input has {x.size} elements, output {y.size}"
        return per_tensor_reason(x, "input")

    def infer_shapes(self, g: Graph, n: Node) -> list[tuple[int, ...]]:
        return [g[n.inputs[0]].shape]

    def reference(self, g: Graph, n: Node, inputs: list[np.ndarray | None]) -> list[np.ndarray]:
        x, y = g[n.inputs[0]], g[n.outputs[0]]
        return [dequantize(inputs[0], _scale(x), x.quant.zp).reshape(y.shape)]

    def emit(self, g: Graph, n: Node, ctx: "EmitContext") -> None:
        x, y = g[n.inputs[0]], g[n.outputs[0]]
        fn = ctx.kernel("quantize.c.j2", mode="dequantize", tx=ctype(x.dtype), ty="float",
                        scale=c_float(_scale(x)), zp=x.quant.zp, lo=0, hi=0)
        ctx.call(fn, ctx.tensor(x.name), ctx.tensor(y.name), f"{x.size}u")
