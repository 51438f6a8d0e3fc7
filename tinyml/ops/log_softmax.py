"""LOG_SOFTMAX over the last axis: int8 (TFLite Micro's fixed point) and float32 (libm).

int8: reference_integer_ops::LogSoftmax. The sum of exps is SOFTMAX's (the same
256-entry exp table, Q12.19 sum); its log is gemmlowp-style
`log_x_for_x_greater_than_or_equal_to_1` (Q5.26), and each output is
(diff_q5 - log_sum) / 2^22 + 127, saturated, or -128 below the reverse-scaled
cut-off. The output quantization is fixed (scale 16/256, zero point 127), as
TFLite Micro requires.

float32 (PyTorch exports put it after a DEQUANTIZE): TFLite's reference order,
max, sum of expf(x - max) in float32, then x - max - logf(sum). The C calls libm;
the numpy reference takes exp and log in float64 rounded once to float32, which is
what glibc's and newlib's expf/logf return except in rare last-bit cases (the
stated tolerance, docs/ops.md: one float32 ulp of the sum, a few ulp of the output).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from tinyml.fixedpoint import INT32_MAX, INT32_MIN, multiply_by_quantized_multiplier, quantize_multiplier
from tinyml.fixedpoint import rdbpot, srdhm, wrap_int32
from tinyml.ir import Graph, Node, Tensor
from tinyml.ops.activations import SOFTMAX_MAX_DEPTH, one_over_one_plus_x, softmax_exp_table, softmax_input_scaling
from tinyml.ops.base import Op, bit_class, register
from tinyml.ops.quantized import int8_per_tensor

if TYPE_CHECKING:
    from tinyml.codegen.context import EmitContext

OUTPUT_SCALE = np.float32(16.0 / 256.0)
OUTPUT_ZP = 127


def _sat_mul_pot(x: np.ndarray, e: int) -> np.ndarray:
    """SaturatingRoundingMultiplyByPOTParam for e >= 0 (TFLite's; e == 0 returns x)."""
    if e == 0:
        return x
    thr = (1 << (31 - e)) - 1
    return np.where(x > thr, INT32_MAX, np.where(x < -thr, INT32_MIN, x << e))


def _sat_mul_pot_each(x: np.ndarray, e: np.ndarray) -> np.ndarray:
    """_sat_mul_pot with a per-element exponent (0 <= e <= 30)."""
    thr = (np.int64(1) << (31 - np.maximum(e, 1))) - 1
    shifted = np.where(x > thr, INT32_MAX, np.where(x < -thr, INT32_MIN, x << e))
    return np.where(e == 0, x, shifted)


def _clamp32(x: np.ndarray) -> np.ndarray:
    return np.clip(x, INT32_MIN, INT32_MAX)


def _clz32(v: np.ndarray) -> np.ndarray:
    """Leading zeros of 32-bit words given as non-negative int64 (32 for 0)."""
    v = np.asarray(v, np.int64) & 0xFFFFFFFF
    return np.where(v == 0, 32, 32 - np.frexp(np.maximum(v, 1).astype(np.float64))[1])


# gemmlowp constants of log_x_for_x_greater_than_or_equal_to_1 (Q0.31)
LOG_2, SQRT_SQRT_HALF, SQRT_HALF = 1488522236, 1805811301, 1518500250
ALPHA_N, ALPHA_D, ALPHA_I, ALPHA_F = 117049297, 127690142, 1057819769, 638450708


def log_q5(sum_q12: np.ndarray) -> np.ndarray:
    """log(x) in Q5.26 of x >= 1 in Q12.19 (TFLite's log_x_for_x_greater_than_or_equal_to_1<5>)."""
    in_bits, acc_bits = 12, 6
    z_a = np.asarray(sum_q12, np.int64)
    shifted_quarter = int(rdbpot(1 << 29, acc_bits))
    head_a = _clz32(z_a)
    r_a = _sat_mul_pot(wrap_int32(srdhm(_sat_mul_pot_each(z_a, head_a - 1), SQRT_HALF)), 1)
    pow_a = _clamp32(_sat_mul_pot(in_bits - head_a, 31 - acc_bits) + shifted_quarter)
    z_b = srdhm(z_a, SQRT_HALF)
    head_b = _clz32(z_b) - 1
    r_b = _sat_mul_pot_each(z_a, head_b)
    pow_b = _clamp32(_sat_mul_pot(in_bits - head_b, 31 - acc_bits) - shifted_quarter)
    r = np.minimum(r_a, r_b)
    pow_adj = np.maximum(pow_a, pow_b)
    total = r + SQRT_SQRT_HALF
    nudged = total + np.where(total >= 0, 1, -1)  # RoundingHalfSum: (a + b +- 1) / 2, truncating
    p = np.where(nudged >= 0, nudged // 2, -((-nudged) // 2))
    q = wrap_int32(r - SQRT_SQRT_HALF)
    q = wrap_int32(q + q)
    sq = srdhm(q, q)
    num = wrap_int32(srdhm(q, r) + srdhm(srdhm(q, sq), ALPHA_N))
    inner = wrap_int32(wrap_int32(ALPHA_I + q) + srdhm(ALPHA_D, sq))
    denom = wrap_int32(srdhm(p, inner) + srdhm(ALPHA_F, q))
    recip = one_over_one_plus_x(denom)
    num_scaled = rdbpot(num, acc_bits)
    acc = wrap_int32(srdhm(pow_adj, LOG_2) + srdhm(num_scaled, recip))
    return _sat_mul_pot(acc, acc_bits - 5)


def log_softmax_params(scale: np.float32) -> tuple[int, int, int, int, int]:
    """LogSoftmaxPrepare: (input multiplier, left shift, reverse multiplier, reverse shift, diff_min)."""
    q, shift, diff_min = softmax_input_scaling(1.0, scale)
    reverse = float(1 << (31 - shift)) / float(q)
    if not 0.0 < reverse < 1.0:
        raise ValueError(f"LOG_SOFTMAX input scale {float(scale):g} gives a reverse scale TFLite Micro refuses")
    rq, rshift = quantize_multiplier(reverse)
    return q, shift, rq, rshift, diff_min


def log_softmax_rows(x: np.ndarray, scale: np.float32) -> np.ndarray:
    """reference_integer_ops::LogSoftmax on rows of int8 codes."""
    q, shift, rq, rshift, diff_min = log_softmax_params(scale)
    table = softmax_exp_table(1.0, scale)
    x = x.astype(np.int64)
    d = x - x.max(axis=1, keepdims=True)
    total = wrap_int32(rdbpot(table[-d], 12).sum(axis=1, keepdims=True))
    log_sum = log_q5(total)
    cut = np.maximum(diff_min - 1, multiply_by_quantized_multiplier(wrap_int32(log_sum + INT32_MIN), rq, rshift))
    diff_q5 = multiply_by_quantized_multiplier(d, q, shift)
    y = np.clip(rdbpot(wrap_int32(diff_q5 - log_sum), 31 - 5 - 4) + OUTPUT_ZP, -128, 127)
    return np.where(d > cut, y, -128)


def log_softmax_float_rows(x: np.ndarray) -> np.ndarray:
    """TFLite's float LogSoftmax in its order; exp/log correctly rounded to float32."""
    x = x.astype(np.float32)
    mx = x.max(axis=1, keepdims=True)
    e = np.exp((x - mx).astype(np.float64)).astype(np.float32)
    total = np.zeros((x.shape[0], 1), np.float32)
    for c in range(x.shape[1]):  # float32 accumulation in index order, as the C loop
        total = (total + e[:, c:c + 1]).astype(np.float32)
    log_sum = np.log(total.astype(np.float64)).astype(np.float32)
    return ((x - mx) - log_sum).astype(np.float32)


def _io(g: Graph, n: Node) -> tuple[Tensor, Tensor]:
    return g[n.inputs[0]], g[n.outputs[0]]


@register
class LogSoftmax(Op):
    name = "LOG_SOFTMAX"

    def check(self, g: Graph, n: Node) -> str | None:
        if len(n.inputs) != 1 or len(n.outputs) != 1 or n.inputs[0] is None:
            return "expects one input and one output"
        x, y = _io(g, n)
        if not x.shape or x.shape != y.shape:
            return "input and output shapes differ"
        if x.dtype == "float32":
            return None if y.dtype == "float32" else f"float32 input with {y.dtype} output"
        if why := int8_per_tensor(x, "input") or int8_per_tensor(y, "output"):
            return why
        if y.quant.zp != OUTPUT_ZP or np.float32(y.quant.scale[0]) != OUTPUT_SCALE:
            return "int8 LOG_SOFTMAX output must have scale 16/256 and zero point 127"
        if x.shape[-1] > SOFTMAX_MAX_DEPTH:
            return f"log-softmax over {x.shape[-1]} > {SOFTMAX_MAX_DEPTH} values overflows TFLite Micro's sum"
        try:
            log_softmax_params(np.float32(x.quant.scale[0]))
        except ValueError as e:
            return str(e)
        return None

    def infer_shapes(self, g: Graph, n: Node) -> list[tuple[int, ...]]:
        return [g[n.inputs[0]].shape]

    def inplace_inputs(self, g: Graph, n: Node) -> tuple[int, ...]:
        return (0,)  # log_softmax.c.j2 reads a whole row before writing it

    def float_tolerance(self, g: Graph, n: Node) -> tuple[float, float] | None:
        """float32 only: expf/logf of two C libraries differ by an ulp now and then. Each exp (<= 1)
        and each partial sum (<= depth) may then round differently, moving log(sum) by at most
        about 1.5 * depth * 2^-23, logf itself by one ulp of log(sum) (< 2^-19), the last
        subtraction by one ulp of the output: atol (2 * depth + 16) * 2^-23, rtol 2^-22."""
        if g[n.inputs[0]].dtype != "float32":
            return None
        return (2 * g[n.inputs[0]].shape[-1] + 16) * 2.0**-23, 2.0**-22

    def reference(self, g: Graph, n: Node, inputs: list[np.ndarray | None]) -> list[np.ndarray]:
        x, y = _io(g, n)
        rows = np.asarray(inputs[0]).reshape(-1, x.shape[-1])
        if x.dtype == "float32":
            out = log_softmax_float_rows(rows)
        else:
            out = log_softmax_rows(rows, np.float32(x.quant.scale[0]))
        return [out.astype(y.np_dtype).reshape(y.shape)]

    def emit(self, g: Graph, n: Node, ctx: "EmitContext") -> None:
        x, y = _io(g, n)
        depth = x.shape[-1]
        rows = f"{x.size // depth}u"
        if x.dtype == "float32":
            ctx.uses_libm = True
            fn = ctx.kernel("log_softmax.c.j2", float=True)
            ctx.call(fn, ctx.tensor(x.name), ctx.tensor(y.name), rows, f"{depth}u")
            return
        scale = np.float32(x.quant.scale[0])
        q, shift, rq, rshift, diff_min = log_softmax_params(scale)
        table = softmax_exp_table(1.0, scale).astype(np.int32)
        fn = ctx.kernel("log_softmax.c.j2", float=False)
        ctx.call(fn, ctx.tensor(x.name), ctx.tensor(y.name), ctx.const(table, "exp_table", "int32_t"),
                 q, shift, rq, rshift, diff_min, rows, f"{depth}u")

    def cost_terms(self, g: Graph, n: Node) -> tuple[str, dict[str, float]]:
        """Per row: max, exp-sum and output passes over the elements, and one log."""
        x, y = _io(g, n)
        return bit_class("log_softmax", x, y), {"call": 1, "out": y.size, "rows": y.size // max(y.shape[-1], 1)}
