"""TFLite's 16x8 mode: int16 activations, int8 weights, int64 bias, as TFLite Micro runs it.

CONV_2D, DEPTHWISE_CONV_2D and FULLY_CONNECTED with int16 input call
reference_integer_ops' int16 kernels: no input or output offset (zero points
must be 0), a 64-bit accumulator, and TFLite's MultiplyByQuantizedMultiplier
for int64 values, which is *single* rounding with the multiplier reduced to
16 bits: ((x * ((q + 2^15) >> 16)) + 2^(14 - shift)) >> (15 - shift). The
multipliers themselves come from the same double-precision rule as int8
(quantized.per_channel_multipliers). One C template (kernels/mac16.c.j2) runs
all three ops: a fully connected layer is a 1x1 convolution over its batches.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from tinyml.fixedpoint import multiply_by_quantized_multiplier, wrap_int32
from tinyml.ir import Graph, Node, Tensor
from tinyml.ops.base import inside_taps, remembered
from tinyml.ops.quantized import (
    Requant,
    Window,
    activation_range,
    activation_reason,
    arity_reason,
    bias_tensor,
    c_int32,
    conv_requant,
    int32_bias,
    int8_io_reason,
    int8_weights,
    per_channel_multipliers,
)

INT16_MIN, INT16_MAX = -(1 << 15), (1 << 15) - 1
# TFLite's int64 MultiplyByQuantizedMultiplier assumes |x| < 2^47 and a shift in [-31, 7].
ACC_LIMIT = 1 << 47
MAX_SHIFT = 7


def is_16x8(g: Graph, n: Node) -> bool:
    """The node's first input is int16: the op runs its 16x8 kernel."""
    return bool(n.inputs) and n.inputs[0] is not None and g[n.inputs[0]].dtype == "int16"


def int16_per_tensor(t: Tensor | None, role: str, any_zp: bool = False) -> str | None:
    """Why `t` is not an int16 activation with per-tensor quantization and zero point 0 (any with `any_zp`)."""
    if t is None:
        return f"missing {role}"
    if t.dtype != "int16":
        return f"{role} is {t.dtype}, expected int16 (16x8 mode)"
    if t.quant is None or t.quant.scale.size != 1:
        return f"{role} needs per-tensor quantization"
    if not t.quant.scale[0] > 0 or not math.isfinite(float(t.quant.scale[0])):
        return f"{role} has a non-positive scale"
    if t.quant.zp != 0 and not any_zp:
        return f"{role} has zero point {t.quant.zp}; int16 activations need 0, as TFLite Micro requires"
    return None


def int64_bias(t: Tensor | None, channels: int, allow_int32: bool = False) -> str | None:
    if t is None:
        return None
    if not t.is_const or t.dtype not in (("int64", "int32") if allow_int32 else ("int64",)):
        return f"bias must be a constant int64{' or int32' if allow_int32 else ''} tensor in 16x8 mode, got {t.dtype}"
    if t.size != channels:
        return f"bias has {t.size} values for {channels} channels"
    return None


def reduced_multiplier(q: np.ndarray) -> np.ndarray:
    """The 16-bit multiplier TFLite's int64 MultiplyByQuantizedMultiplier derives from q."""
    q = np.asarray(q, np.int64)
    return np.where(q < 0x7FFF0000, (q + (1 << 15)) >> 16, 0x7FFF)


def requant64(acc: np.ndarray, q: np.ndarray | int, shift: np.ndarray | int) -> np.ndarray:
    """MultiplyByQuantizedMultiplier(int64 x, q, shift): single rounding, int32 result (wrapped)."""
    total = 15 - np.asarray(shift, np.int64)
    x = np.asarray(acc, np.int64) * reduced_multiplier(q) + (np.int64(1) << (total - 1))
    return wrap_int32(x >> total)


@dataclass(frozen=True)
class Requant16:
    """The end of a 16x8 conv/depthwise/FC layer: int64 accumulator -> int16.

    With an int32 bias (`int32_path`, a newer converter option) TFLite Micro accumulates in
    int32 and requantizes with the int32 MultiplyByQuantizedMultiplier (double rounding)."""

    mult: np.ndarray  # int32 TFLite multipliers per output channel
    shift: np.ndarray
    lo: int
    hi: int
    int32_path: bool = False

    @property
    def rm(self) -> np.ndarray:
        return reduced_multiplier(self.mult).astype(np.int32)

    @property
    def total_shift(self) -> np.ndarray:
        return (15 - self.shift.astype(np.int64)).astype(np.int8)

    @property
    def uniform(self) -> bool:
        return bool(np.all(self.rm == self.rm[0]) and np.all(self.shift == self.shift[0]))

    def apply(self, acc: np.ndarray) -> np.ndarray:
        """acc (int64) has the output channel as its last axis."""
        if self.int32_path:
            y = multiply_by_quantized_multiplier(wrap_int32(acc), self.mult, self.shift)
        else:
            y = requant64(acc, self.mult, self.shift)
        return np.clip(y, self.lo, self.hi).astype(np.int16)


def layer_requant(g: Graph, n: Node, channels: int) -> Requant | Requant16:
    """The requantization a conv/depthwise/FC layer ends with, by its activation type."""
    if not is_16x8(g, n):
        return conv_requant(g, n, channels)
    x, w, y = g[n.inputs[0]], g[n.inputs[1]], g[n.outputs[0]]
    mult, shift = per_channel_multipliers(x, w, y, channels)
    lo, hi = activation_range(n.attrs.get("fused_activation_function", "NONE"), y)
    bias = bias_tensor(g, n)
    return Requant16(mult, shift, lo, hi, bias is not None and bias.dtype == "int32")


def mac16_reason(g: Graph, n: Node, channels: int, axis: int, taps_axis: tuple[int, ...]) -> str | None:
    """The checks a 16x8 conv/depthwise/FC node passes (TFLite Micro's, plus its kernel's assumptions)."""
    wt = g[n.inputs[1]]
    bias = bias_tensor(g, n)
    why = (int16_per_tensor(g[n.inputs[0]], "input") or int16_per_tensor(g[n.outputs[0]], "output")
           or int8_weights(wt, channels, axis) or int64_bias(bias, channels, allow_int32=True)
           or activation_reason(n))
    if why:
        return why
    if n.op == "DEPTHWISE_CONV_2D" and bias is not None and bias.dtype == "int32":
        # its 16x8 kernel reads the bias as int64 whatever its type (tests/test_int16.py)
        return "an int32 bias on a 16x8 depthwise conv, which TFLite Micro misreads as int64"
    rq = layer_requant(g, n, channels)
    if rq.shift.max() > MAX_SHIFT and not rq.int32_path:  # below 2^-31 is a zero multiplier
        return f"a requantization scale is above the 2^{MAX_SHIFT} TFLite's 16x8 kernels assume"
    bound = np.abs(wt.data.astype(np.int64)).sum(axis=taps_axis) * (1 << 15)
    if bias is not None:
        bound = bound + np.abs(bias.data.reshape(-1).astype(np.int64))
    if rq.int32_path and np.any(bound >= 1 << 31):
        return "with an int32 bias TFLite Micro accumulates in int32, which this layer can overflow"
    if np.any(bound >= ACC_LIMIT):
        return "the accumulator can exceed the 2^47 TFLite's 16x8 requantization assumes"
    return None


def mac16_emit(g: Graph, n: Node, ctx, win: Window, weights: np.ndarray, depthwise: bool,
               cin: int, cin_g: int, cout: int) -> None:
    """Render kernels/mac16.c.j2 for one layer (weights in the layout the template indexes)."""
    rq = layer_requant(g, n, cout)
    bias = bias_tensor(g, n)
    variant = mac16_variant(weights, rq.int32_path, win, depthwise, cin, cin_g, cout, ctx.target.dsp)
    acc_t = "int64_t" if variant == "loop64" else "int32_t"
    names, values = ["weights"], [ctx.const(weights.astype(np.int8), "w", "int8_t")]
    ctypes = ["int8_t"]
    has_bias = bias is not None and bool(np.any(bias.data != 0))
    bias_t = "int32_t" if rq.int32_path else "int64_t"
    if has_bias:
        names.append("bias"), values.append(ctx.const(bias.data.reshape(-1).astype(bias_t[:-2]), "bias", bias_t))
        ctypes.append(bias_t)
    # the int32 path keeps TFLite's (q, shift) for tm_requant, the int64 one the reduced pair
    m, s = (rq.mult, rq.shift) if rq.int32_path else (rq.rm, rq.total_shift)
    if not rq.uniform:
        names += ["rm", "ts"]
        values += [ctx.const(m.astype(np.int32), "mult", "int32_t"), ctx.const(s.astype(np.int8), "shift", "int8_t")]
        ctypes += ["int32_t", "int8_t"]
    dsp, dsp_rows = variant == "dot", variant == "rows"
    if dsp or dsp_rows:  # runs of 4 weights as (w0, w2, w1, w3): kernels/_mac16_dsp.j2, _conv16_dsp.j2
        rows = weights.reshape(cout if dsp else cout * win.k_h, -1)
        values[0] = ctx.const(smlad_order(rows), "w", "int8_t")
    fn = ctx.kernel(
        "mac16.c.j2", dsp=dsp, dsp_rows=dsp_rows, batches=win.batch, depth=int(np.prod(weights.shape[1:])), win=win, depthwise=depthwise, cin=cin, cin_g=cin_g, cout=cout,
        groups=1 if depthwise else cin // cin_g, mult=cout // cin if depthwise else 1,
        acc_t=acc_t, has_bias=has_bias, per_channel=not rq.uniform, rm=c_int32(m[0]), ts=int(s[0]),
        lo=rq.lo, hi=rq.hi, int32_path=rq.int32_path,
        signature=", ".join(f"const {t} *{nm}" for t, nm in zip(ctypes, names)),
    )
    ctx.call(fn, ctx.tensor(n.inputs[0]), ctx.tensor(n.outputs[0]), *values)


def fc_window(batches: int) -> Window:
    """A fully connected layer as mac16.c.j2 runs it: a 1x1 convolution over its batches."""
    return Window(batches, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 1, 1)


def mac16_variant(weights: np.ndarray, int32_path: bool, win: Window, depthwise: bool, cin: int, cin_g: int,
                  cout: int, dsp_core: bool) -> str:
    """The kernel mac16.c.j2 runs (emit and cost_terms decide alike): "loop64" (the C loop on an int64
    accumulator), "dot" (_mac16_dsp.j2), "rows" (_conv16_dsp.j2) or "loop" (the C loop, int32)."""
    # An int32 accumulator (one MLA per tap) is exact while the taps' sum cannot leave int32.
    if not int32_path and acc_peak(weights, depthwise, cout) >= 1 << 31:
        return "loop64"
    if dsp_core and dot_layer(win, depthwise, cin, cin_g):
        return "dot"
    if dsp_core and row_runs(win, depthwise, cin, cin_g):
        return "rows"
    return "loop"


def acc_peak(weights: np.ndarray, depthwise: bool, cout: int) -> int:
    """The largest |accumulator| an output can reach on int16 inputs (bias excluded)."""
    w = np.abs(weights.astype(np.int64))
    return int((w.reshape(cout, -1) if not depthwise else w.reshape(-1, cout).T).sum(axis=1).max()) * (1 << 15)


def mac16_cost_terms(g: Graph, n: Node, win: Window, depthwise: bool, cin: int, cin_g: int,
                     cout: int) -> tuple[str, dict[str, float]]:
    """Op.cost_terms of a 16x8 conv/depthwise/FC layer: the kernel emit runs on a DSP core (its own
    class) and its loops. "dot": per output row, steps of 4 inputs and a depth % 4 scalar tail;
    "rows": per output pixel its window computation (`px`), per output and window row inside the
    input a run of taps (`rows`) taken 4 at a time (`steps`) with a scalar `tail` (`pad_`: the runs' bounds
    vary per pixel, GCC keeps fewer of its pointers in registers: measured up to 2x per step); the C loops: per
    output the taps inside the input, per tap its input channels (`macs`). Every output ends in a
    64-bit requantization (`out`)."""
    wt = g[n.inputs[1]]
    bias = bias_tensor(g, n)
    int32_path = bias is not None and bias.dtype == "int32"
    variant = remembered((wt.data,), ("mac16", int32_path, depthwise, cout, win, cin, cin_g),
                         lambda: mac16_variant(wt.data, int32_path, win, depthwise, cin, cin_g, cout, True))
    outputs = win.batch * win.out_h * win.out_w * cout
    rows_in, cols_in = inside_taps(win)
    if variant == "dot":
        depth = int(np.prod(wt.shape[1:]))
        return "mac16_dot", {"call": 1, "out": outputs, "steps": outputs * (depth // 4),
                             "tail": outputs * (depth % 4)}
    if variant == "rows":  # padded layers have cin % 4 == 0: runs of whole groups
        rows, run = win.batch * cout * rows_in * win.out_w, win.k_w * cin
        steps = win.batch * cout * rows_in * (cols_in * cin // 4) if win.has_padding else rows * (run // 4)
        pad = {"pad_rows": rows, "pad_steps": steps} if win.has_padding else {}
        return "mac16_rows", {"call": 1, "px": outputs // cout, "out": outputs, "rows": rows, "steps": steps,
                              "tail": 0 if win.has_padding else rows * (run % 4), **pad}
    taps = win.batch * cout * rows_in * cols_in
    cls = ("mac16_dw" if depthwise else "mac16_loop") + ("64" if variant == "loop64" else "")
    return cls, {"call": 1, "out": outputs, "taps": taps, **({} if depthwise else {"macs": taps * cin_g})}


def io_reason(g: Graph, n: Node, needed: int) -> str | None:
    """int8_io_reason, or its 16x8 counterpart when input 0 is int16."""
    if not is_16x8(g, n):
        return int8_io_reason(g, n, needed)
    return (arity_reason(n, needed) or int16_per_tensor(g[n.inputs[0]], "input")
            or int16_per_tensor(g[n.outputs[0]], "output"))


def weights_reason(g: Graph, n: Node, channels: int, axis: int, taps_axis: tuple[int, ...]) -> str | None:
    """The weight, bias and activation checks of a conv/depthwise/FC node, by its mode."""
    if is_16x8(g, n):
        return mac16_reason(g, n, channels, axis, taps_axis)
    return int8_weights(g[n.inputs[1]], channels, axis) or int32_bias(bias_tensor(g, n), channels) \
        or activation_reason(n)


def dot_layer(win: Window, depthwise: bool, cin: int, cin_g: int) -> bool:
    """One output pixel whose window is the whole input, one group (fully connected layers, and
    convolutions over their whole input): each output is a dot product over contiguous input."""
    return not depthwise and cin == cin_g and (win.out_h, win.out_w) == (1, 1) and not win.has_padding \
        and (win.k_h, win.k_w) == (win.in_h, win.in_w)


def row_runs(win: Window, depthwise: bool, cin: int, cin_g: int) -> bool:
    """A convolution whose window rows are contiguous input runs starting at whole groups of 4
    (one group, no dilation; no padding, or input channels a multiple of 4): _conv16_dsp.j2."""
    return not depthwise and cin == cin_g and (win.dil_h, win.dil_w) == (1, 1) \
        and (not win.has_padding or cin % 4 == 0)


def smlad_order(rows: np.ndarray) -> np.ndarray:
    """Each row's groups of 4 weights as (w0, w2, w1, w3) (SXTB16 / SXTB16 ROR 8 pairs); the row % 4
    tail stays in order."""
    n, length = rows.shape
    cut = length - length % 4
    head = rows[:, :cut].reshape(n, -1, 4)[:, :, [0, 2, 1, 3]].reshape(n, cut)
    return np.hstack([head, rows[:, cut:]]).astype(np.int8)
