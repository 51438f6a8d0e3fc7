"""int8 activations: LOGISTIC, TANH, HARD_SWISH, RELU, RELU6, RELU_N1_TO_1, LEAKY_RELU, PRELU, SOFTMAX.

Every op here except PRELU and SOFTMAX is a function of one int8 value, so
its numpy reference (TFLite Micro's exact integer sequence: gemmlowp
fixed-point logistic/tanh, the int16 hard-swish pipeline, the two LEAKY_RELU
multipliers) is evaluated on all 256 codes at generation time and emitted as
a lookup table: exact by construction, one load per element on Cortex-M, and
safe in place. SOFTMAX keeps its per-row reciprocal in C but takes exp() of
the 256 possible input differences from a table computed the same way.

TFLite Micro quirks reproduced on purpose (see /work/notes/ops.md): RELU6
clamps in the input's quantization and ignores the output's; LOGISTIC and
TANH ignore the output scale (they assume 1/256 and 1/128).
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from tinyml.codegen.cnames import ctype
from tinyml.fixedpoint import INT32_MAX, INT32_MIN, multiply_by_quantized_multiplier, quantize_multiplier
from tinyml.fixedpoint import rdbpot, srdhm, wrap_int32
from tinyml.ir import Graph, Node, Tensor
from tinyml.ops import sigmoid16, softmax16
from tinyml.ops.base import Op, bit_class, register
from tinyml.ops.elementwise import Arith, BinaryOp, byte_codes, emit_lut, per_tensor_reason
from tinyml.ops.quantized import activation_range, int8_per_tensor

if TYPE_CHECKING:
    from tinyml.codegen.context import EmitContext


# -- gemmlowp fixed point on int32 raw values (numpy, int64 containers) -------
def _sat_shl(x: np.ndarray, e: int) -> np.ndarray:
    """SaturatingRoundingMultiplyByPOT<e> for e > 0 (Rescale to fewer integer bits)."""
    thr = (1 << (31 - e)) - 1
    return np.where(x > thr, INT32_MAX, np.where(x < -thr, INT32_MIN, x << e))


def _exp_on_interval(a: np.ndarray) -> np.ndarray:
    """exp(a) for a in [-1/4, 0), Q0.31: Taylor series around -1/8."""
    x = a + (1 << 28)
    x2 = srdhm(x, x)
    x3 = srdhm(x2, x)
    x4 = srdhm(x2, x2)
    poly = rdbpot(srdhm(rdbpot(x4, 2) + x3, 715827883) + x2, 1)
    return 1895147668 + srdhm(1895147668, x + poly)


_EXP_BARREL = ((-2, 1672461947), (-1, 1302514674), (0, 790015084), (1, 290630308),
               (2, 39332535), (3, 720401), (4, 242))


def exp_on_negative_values(a: np.ndarray, integer_bits: int) -> np.ndarray:
    """gemmlowp's exp for a <= 0 given in Q(integer_bits).(31-integer_bits); result Q0.31."""
    frac = 31 - integer_bits
    quarter = 1 << (frac - 2)
    a_mod = (a & (quarter - 1)) - quarter
    result = _exp_on_interval(_sat_shl(a_mod, integer_bits) if integer_bits else a_mod)
    remainder = a_mod - a
    for exponent, multiplier in _EXP_BARREL:
        if integer_bits > exponent:
            bit = (remainder & (1 << (frac + exponent))) != 0
            result = np.where(bit, srdhm(result, multiplier), result)
    if integer_bits > 5:
        result = np.where(a < -(1 << (36 - integer_bits)), 0, result)
    return np.where(a == 0, INT32_MAX, result)


def _newton_reciprocal(a: np.ndarray) -> np.ndarray:
    """x ~ 1 / ((1 + a) / 2) in Q2.29 for a in [0, 1) Q0.31: three Newton-Raphson steps."""
    half = (a + INT32_MAX + 1) // 2  # RoundingHalfSum(a, One) for a >= 0
    x = 1515870810 + srdhm(half, -1010580540)
    for _ in range(3):
        correction = _sat_shl(srdhm(x, (1 << 29) - srdhm(half, x)), 2)
        x = wrap_int32(x + correction)
    return x


def one_over_one_plus_x(a: np.ndarray) -> np.ndarray:
    return _sat_shl(_newton_reciprocal(a), 1)


def one_minus_x_over_one_plus_x(a: np.ndarray) -> np.ndarray:
    return _sat_shl(_newton_reciprocal(a) - (1 << 29), 2)


def fixed_logistic(a: np.ndarray, integer_bits: int) -> np.ndarray:
    positive = a > 0
    r_pos = one_over_one_plus_x(exp_on_negative_values(np.where(positive, -a, a), integer_bits))
    return np.where(a == 0, 1 << 30, np.where(positive, r_pos, INT32_MAX - r_pos))


def fixed_tanh(a: np.ndarray, integer_bits: int) -> np.ndarray:
    negative = a < 0
    t = one_minus_x_over_one_plus_x(exp_on_negative_values(np.where(negative, a, -a), integer_bits + 1))
    return np.where(a == 0, 0, np.where(negative, -t, t))


# -- int16 helpers of TFLite's hard-swish -------------------------------------
def _wrap16(x: np.ndarray) -> np.ndarray:
    return ((np.asarray(x, np.int64) + (1 << 15)) & 0xFFFF) - (1 << 15)


def _trunc_div(x: np.ndarray, d: int) -> np.ndarray:
    return np.where(x >= 0, x // d, -((-x) // d))


def _srdhm16(a: np.ndarray, b: int) -> np.ndarray:
    ab = a * b
    r = _trunc_div(ab + np.where(ab >= 0, 1 << 14, 1 - (1 << 14)), 1 << 15)
    return np.where((a == b) & (a == -(1 << 15)), (1 << 15) - 1, r)


def _sdhm16(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """SaturatingDoublingHighMul: like _srdhm16 but truncating."""
    r = _trunc_div(a * b, 1 << 15)
    return np.where((a == b) & (a == -(1 << 15)), (1 << 15) - 1, r)


def _sat_lshift16(x: np.ndarray, amount: int) -> np.ndarray:
    return np.clip(x * (1 << amount), -(1 << 15), (1 << 15) - 1)


def _rdbpot16(x: np.ndarray, e: int) -> np.ndarray:
    """gemmlowp's RoundingDivideByPOT instantiated for int16_t (every step wraps to int16)."""
    mask = int(_wrap16((1 << e) - 1))
    remainder = _wrap16(x & mask)
    threshold = _wrap16((mask >> 1) + (x < 0))
    return _wrap16((x >> e) + (remainder > threshold))


def _downscale_to_int16(m: int) -> int:
    """DownScaleInt32ToInt16Multiplier."""
    return 32767 if m >= INT32_MAX - (1 << 15) else (m + (1 << 15)) >> 16


# -- one-input ops as lookup tables -------------------------------------------
def _scale(t: Tensor) -> np.float32:
    return np.float32(t.quant.scale[0])


class LutOp(Op):
    """An op whose output is a function of one 8-bit input element.

    Subclasses implement `values(g, n, x)` (x: int64 codes of the input,
    any shape) with TFLite Micro's integer arithmetic; the reference applies
    it to the tensor, emit() applies it to all 256 codes and emits a table.
    """

    in_dtypes: ClassVar[tuple[str, ...]] = ("int8",)
    out_dtypes: ClassVar[tuple[str, ...]] = ("int8",)
    pointwise = True

    def values(self, g: Graph, n: Node, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def reason(self, g: Graph, n: Node) -> str | None:
        """Op-specific restrictions (quantization TFLite Micro refuses)."""
        return None

    def check(self, g: Graph, n: Node) -> str | None:
        if len(n.inputs) < 1 or n.inputs[0] is None or len(n.outputs) != 1:
            return "expects one input and one output"
        x, y = g[n.inputs[0]], g[n.outputs[0]]
        for t, role, allowed in ((x, "input", self.in_dtypes), (y, "output", self.out_dtypes)):
            if t.dtype not in allowed:
                return f"{role} is {t.dtype}, supported: {', '.join(allowed)}"
            if t.dtype != "float32" and (why := per_tensor_reason(t, role)):
                return why
        if x.size != y.size:
            return f"input has {x.size} elements, output {y.size}"
        return self.reason(g, n)

    def infer_shapes(self, g: Graph, n: Node) -> list[tuple[int, ...]]:
        return [g[n.inputs[0]].shape]

    def reference(self, g: Graph, n: Node, inputs: list[np.ndarray | None]) -> list[np.ndarray]:
        y = g[n.outputs[0]]
        return [self.values(g, n, np.asarray(inputs[0]).astype(np.int64)).astype(y.np_dtype).reshape(y.shape)]

    def inplace_inputs(self, g: Graph, n: Node) -> tuple[int, ...]:
        # lut.c.j2 reads x[i] before writing y[i]: in place when elements have one size.
        same = g[n.inputs[0]].np_dtype.itemsize == g[n.outputs[0]].np_dtype.itemsize
        return (0,) if same else ()

    def emit(self, g: Graph, n: Node, ctx: "EmitContext") -> None:
        table = self.values(g, n, byte_codes(g[n.inputs[0]].dtype))
        emit_lut(ctx, n.inputs[0], n.outputs[0], table)

    def cost_terms(self, g: Graph, n: Node) -> tuple[str, dict[str, float]]:
        """A table lookup per element, whatever the function; one kernel per (input, output) C type
        (an unsigned input needs no sign extension: another class)."""
        x, y = _io(g, n)
        both8 = x.bits == y.bits == 8
        cls = "lut" if not both8 or x.dtype == y.dtype == "int8" else f"lut_{x.dtype}_{y.dtype}"
        return bit_class(cls, x, y), {"call": 1, "out": y.size}


def _io(g: Graph, n: Node) -> tuple[Tensor, Tensor]:
    return g[n.inputs[0]], g[n.outputs[0]]


@register
class Relu(LutOp):
    """ReluQuantized: requantize input -> output, clamp below at the output zero point."""

    name = "RELU"
    act = "RELU"

    def fusable_activation(self, g: Graph, n: Node) -> bool:
        # with equal input and output quantization the requantization by 1.0 is exact,
        # leaving clamp(x, zp, 127): the fused RELU's range
        return True

    def values(self, g: Graph, n: Node, x: np.ndarray) -> np.ndarray:
        xi, yo = _io(g, n)
        q, shift = quantize_multiplier(float(_scale(xi)) / float(_scale(yo)))
        lo, hi = activation_range(self.act, yo)
        r = multiply_by_quantized_multiplier(x - xi.quant.zp, q, shift) + yo.quant.zp
        return np.clip(wrap_int32(r), lo, hi)


@register
class ReluN1To1(Relu):
    """Not in TFLite Micro; TFLite's QuantizedReluX(-1, 1) semantics (requantize, clamp)."""

    name = "RELU_N1_TO_1"
    act = "RELU_N1_TO_1"

    def fusable_activation(self, g: Graph, n: Node) -> bool:
        return False  # not a TFLite Micro op: kept standalone


@register
class Relu6(LutOp):
    """Relu6Quantized clamps the raw input codes to [zp, q(6)] of the INPUT quantization;
    TFLite Micro never looks at the output's scale or zero point."""

    name = "RELU6"

    def fusable_activation(self, g: Graph, n: Node) -> bool:
        # the fused clamp is [zp, zp + round(6 / scale)]; the producer computes round(6 / scale)
        # in int32 (CalculateActivationRangeQuantized); a float graph clamps to [0, 6] either way
        q = g[n.inputs[0]].quant
        return q is None or 6.0 / float(q.s) < 2**30

    def values(self, g: Graph, n: Node, x: np.ndarray) -> np.ndarray:
        xi = g[n.inputs[0]]
        q = float(np.float32(6.0) / _scale(xi))
        six = min(max(int(math.copysign(math.floor(abs(q) + 0.5), q)) + xi.quant.zp, -128), 127)
        return np.where(x > six, six, np.where(x < xi.quant.zp, xi.quant.zp, x))


@register
class LeakyRelu(LutOp):
    """Two multipliers taken in float32: in*alpha/out for x < 0 and in/out for x >= 0."""

    name = "LEAKY_RELU"

    def values(self, g: Graph, n: Node, x: np.ndarray) -> np.ndarray:
        xi, yo = _io(g, n)
        alpha = np.float32(n.attrs.get("alpha", 0.2))
        qa, sa = quantize_multiplier(float(_scale(xi) * alpha / _scale(yo)))
        qi, si = quantize_multiplier(float(_scale(xi) / _scale(yo)))
        v = x - xi.quant.zp
        mbqm = multiply_by_quantized_multiplier
        r = np.where(v >= 0, mbqm(v, qi, si), mbqm(v, qa, sa)) + yo.quant.zp
        return np.clip(wrap_int32(r), -128, 127)


def _q4_params(scale: np.float32) -> tuple[int, int, int]:
    """LOGISTIC/TANH Prepare: input multiplier to Q4.27 via frexp, and the saturation radius."""
    mantissa, shift = math.frexp(float(scale) * float(1 << 27))
    q = int(math.copysign(math.floor(abs(mantissa) * 2**31 + 0.5), mantissa))
    q = int(wrap_int32(q))  # a mantissa rounding up to 2^31 wraps in TFLite Micro's int32 cast
    radius = math.floor(15.0 * (1 << 27) / 2.0**shift)
    return q, shift, radius


class _Sigmoidal(LutOp):
    """int8 as a table of gemmlowp's fixed-point function; int16 (16x8 mode) in sigmoid16.py."""

    in_dtypes = ("int8", "int16")
    out_dtypes = ("int8", "int16")
    integer_output_shift: ClassVar[int]
    output_offset: ClassVar[int]

    def fn(self, a: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def reason(self, g: Graph, n: Node) -> str | None:
        if g[n.inputs[0]].dtype == "int16":
            return sigmoid16.reason(g, n)
        if g[n.outputs[0]].dtype != "int8":
            return "output is int16, expected int8 like the input"
        return self.reason8(g, n)

    def reason8(self, g: Graph, n: Node) -> str | None:
        return None

    def emit(self, g: Graph, n: Node, ctx: "EmitContext") -> None:
        if g[n.inputs[0]].dtype == "int16":
            sigmoid16.emit(g, n, ctx)
        else:
            super().emit(g, n, ctx)

    def cost_terms(self, g: Graph, n: Node) -> tuple[str, dict[str, float]]:
        """int16: sigmoid16.c.j2 (rescale, interpolate, per element; a class per function), else a table."""
        if g[n.inputs[0]].dtype == "int16":
            return f"sigmoid16_{self.name.lower()}", {"call": 1, "out": g[n.outputs[0]].size}
        return super().cost_terms(g, n)

    def values(self, g: Graph, n: Node, x: np.ndarray) -> np.ndarray:
        xi = g[n.inputs[0]]
        if xi.dtype == "int16":
            return sigmoid16.values(self.name, g, n, x)
        q, shift, radius = _q4_params(_scale(xi))
        v = x - xi.quant.zp
        inner = np.clip(v, -radius + 1, radius - 1) if radius > 0 else v  # the saturated ones are replaced below
        out = rdbpot(self.fn(multiply_by_quantized_multiplier(inner, q, shift)), self.integer_output_shift)
        out = np.clip(out + self.output_offset, -128, 127)
        return np.where(v <= -radius, -128, np.where(v >= radius, 127, out))


@register
class Logistic(_Sigmoidal):
    """gemmlowp logistic on Q4.27, output Q0.8 with zero point -128 (output scale ignored)."""

    name = "LOGISTIC"
    integer_output_shift = 23
    output_offset = -128

    def fn(self, a: np.ndarray) -> np.ndarray:
        return fixed_logistic(a, 4)

    def reason8(self, g: Graph, n: Node) -> str | None:
        if g[n.outputs[0]].quant.zp != -128:
            return "LOGISTIC output zero point must be -128 (TFLite Micro refuses others)"
        return None


@register
class Tanh(_Sigmoidal):
    """gemmlowp tanh on Q4.27, output Q0.7 with zero point 0 (output quantization ignored)."""

    name = "TANH"
    integer_output_shift = 24
    output_offset = 0

    def fn(self, a: np.ndarray) -> np.ndarray:
        return fixed_tanh(a, 4)


def _hard_swish_params(xi: Tensor, yo: Tensor) -> tuple[int, int, int, int]:
    """HardSwishPrepare: both multipliers from float32 products, narrowed to int16."""
    hires = np.float32(1.0 / 128.0) * _scale(xi)
    mo, eo = quantize_multiplier(float(hires / _scale(yo)))
    mr, er = quantize_multiplier(float(hires / (np.float32(3.0) / np.float32(32768.0))))
    return _downscale_to_int16(mo), eo, _downscale_to_int16(mr), er


@register
class HardSwish(LutOp):
    name = "HARD_SWISH"

    def reason(self, g: Graph, n: Node) -> str | None:
        if _hard_swish_params(*_io(g, n))[1] > 0:
            return "HARD_SWISH output scale below input scale / 128 (TFLite Micro refuses it)"
        return None

    def values(self, g: Graph, n: Node, x: np.ndarray) -> np.ndarray:
        xi, yo = _io(g, n)
        mo, eo, mr, er = _hard_swish_params(xi, yo)
        hires = _wrap16(_wrap16(x - xi.quant.zp) * 128)
        preshift = _srdhm16(hires, mo)
        reluish = hires
        if er > 0:
            reluish = _sat_lshift16(reluish, er - 1)
        reluish = _srdhm16(reluish, mr)
        if er > 0:
            reluish = _sat_lshift16(reluish, 1)
        if er < 0:
            reluish = _rdbpot16(reluish, -er)
        reluish = _wrap16((reluish + (1 << 15)) >> 1)
        out = _rdbpot16(_sdhm16(reluish, preshift), -eo)
        return np.clip(_wrap16(out + yo.quant.zp), -128, 127)


# -- PRELU: binary, alpha broadcast against the input -------------------------
@register
class Prelu(BinaryOp):
    name = "PRELU"

    def arith(self, g: Graph, n: Node) -> Arith:
        x, alpha, y = g[n.inputs[0]], g[n.inputs[1]], g[n.outputs[0]]
        sx, sa, sy = float(_scale(x)), float(_scale(alpha)), float(_scale(y))
        m1, s1 = quantize_multiplier(sx / sy)
        m2, s2 = quantize_multiplier(sx * sa / sy)
        return Arith("PRELU", off1=-x.quant.zp, off2=-alpha.quant.zp, out_zp=y.quant.zp, m1=m1, s1=s1, m2=m2, s2=s2)

    def check(self, g: Graph, n: Node) -> str | None:
        why = super().check(g, n)
        if why is None and g[n.outputs[0]].shape != g[n.inputs[0]].shape:
            return "PRELU alpha must broadcast to the input's shape"
        return why


# -- SOFTMAX -------------------------------------------------------------------
SOFTMAX_MAX_DEPTH = 4095  # beyond, TFLite Micro's Q12.19 sum of exps can overflow int32


def softmax_input_scaling(beta: float, scale: np.float32) -> tuple[int, int, int]:
    """PreprocessSoftmaxScaling + diff_min: (multiplier, left shift, smallest used difference)."""
    real = min(float(np.float32(beta)) * float(scale) * float(1 << 26), float(2**31 - 1))
    q, shift = quantize_multiplier(real)
    if not real > 1.0 or shift < 0:
        raise ValueError(f"softmax beta*scale {real / (1 << 26):g} is too small for TFLite Micro")
    diff_min = -math.floor(31.0 * (1 << 26) / 2.0**shift)
    return q, shift, diff_min


def softmax_exp_table(beta: float, scale: np.float32) -> np.ndarray:
    """exp(beta*scale*d) in Q0.31 for d = 0, -1, ..., -255 (0 where TFLite Micro skips d)."""
    q, shift, diff_min = softmax_input_scaling(beta, scale)
    diff = -np.arange(256, dtype=np.int64)
    e = exp_on_negative_values(srdhm(diff << shift, q), 5)
    return np.where(diff >= diff_min, e, 0)


def _clz32(v: np.ndarray) -> np.ndarray:
    """Leading zeros of positive values below 2^32 (exact: float64 holds them)."""
    return 32 - np.frexp(v.astype(np.float64))[1]


def softmax_rows(x: np.ndarray, table: np.ndarray, out_bits: int) -> np.ndarray:
    """TFLite's quantized Softmax on rows of int8 codes; out zero point is the type's minimum."""
    out_min, out_max = -(1 << (out_bits - 1)), (1 << (out_bits - 1)) - 1
    x = x.astype(np.int64)
    e = table[x.max(axis=1, keepdims=True) - x]
    total = wrap_int32(rdbpot(e, 12).sum(axis=1, keepdims=True))  # Q12.19
    headroom = _clz32(total)
    shifted = ((total << headroom) & 0xFFFFFFFF) - (1 << 31)
    recip = one_over_one_plus_x(shifted)
    exponent = (12 - headroom) + 31 - out_bits
    y = rdbpot(srdhm(recip, e), exponent) + out_min
    return np.clip(y, out_min, out_max)


@register
class Softmax(Op):
    name = "SOFTMAX"

    def check(self, g: Graph, n: Node) -> str | None:
        if len(n.inputs) != 1 or len(n.outputs) != 1:
            return "expects one input and one output"
        x, y = _io(g, n)
        if x.dtype == "int16":  # 16x8 mode
            why = per_tensor_reason(x, "input") or per_tensor_reason(y, "output") or softmax16.reason(g, n)
            if why:
                return why
        elif why := int8_per_tensor(x, "input"):
            return why
        elif y.dtype == "int8":
            if y.quant is None or y.quant.zp != -128 or _scale(y) != np.float32(1.0 / 256):
                return "int8 SOFTMAX output must have scale 1/256 and zero point -128"
        elif y.dtype == "int16":
            if y.quant is None or y.quant.zp != -32768 or abs(_scale(y) - 1 / 65536) > 0.001 / 65536:
                return "int16 SOFTMAX output must have scale 1/65536 and zero point -32768"
        else:
            return f"output is {y.dtype}, supported: int8, int16"
        if not x.shape or x.shape != y.shape:
            return "input and output shapes differ"
        if x.shape[-1] > SOFTMAX_MAX_DEPTH:
            return f"softmax over {x.shape[-1]} > {SOFTMAX_MAX_DEPTH} values overflows TFLite Micro's sum"
        if x.dtype == "int16":
            return None
        try:
            softmax_input_scaling(n.attrs.get("beta", 1.0), _scale(x))
        except ValueError as e:
            return str(e)
        return None

    def infer_shapes(self, g: Graph, n: Node) -> list[tuple[int, ...]]:
        return [g[n.inputs[0]].shape]

    def reference(self, g: Graph, n: Node, inputs: list[np.ndarray | None]) -> list[np.ndarray]:
        x, y = _io(g, n)
        if x.dtype == "int16":
            mult, shift = softmax16.input_scaling(n.attrs.get("beta", 1.0), _scale(x))
            out = softmax16.rows(np.asarray(inputs[0]).reshape(-1, x.shape[-1]), mult, shift)
            return [out.astype(np.int16).reshape(y.shape)]
        table = softmax_exp_table(n.attrs.get("beta", 1.0), _scale(x))
        rows = np.asarray(inputs[0]).reshape(-1, x.shape[-1])
        out = softmax_rows(rows, table, 8 * y.np_dtype.itemsize)
        return [out.astype(y.np_dtype).reshape(y.shape)]

    def emit(self, g: Graph, n: Node, ctx: "EmitContext") -> None:
        x, y = _io(g, n)
        if x.dtype == "int16":
            softmax16.emit(g, n, ctx)
            return
        table = softmax_exp_table(n.attrs.get("beta", 1.0), _scale(x)).astype(np.int32)
        fn = ctx.kernel("softmax.c.j2", ty=ctype(y.dtype), out_bits=8 * y.np_dtype.itemsize)
        depth = x.shape[-1]
        ctx.call(fn, ctx.tensor(x.name), ctx.tensor(y.name), ctx.const(table, "exp_table", "int32_t"),
                 f"{x.size // depth}u", f"{depth}u")

    def cost_terms(self, g: Graph, n: Node) -> tuple[str, dict[str, float]]:
        """Per row: a max pass, an exp pass and a scaling pass over the elements."""
        x, y = g[n.inputs[0]], g[n.outputs[0]]
        return bit_class("softmax", x, y), {"call": 1, "out": y.size, "rows": y.size // max(y.shape[-1], 1)}
