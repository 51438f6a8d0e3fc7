"""Arithmetic shared by the int8 compute ops, derived exactly as TFLite Micro does.

TFLite Micro decides several constants at Prepare time from the float32
quantization parameters stored in the model: the padding split, the clamp
range of a fused activation, and the fixed-point multipliers. A one-ulp
difference in any of them changes outputs, so each rule here follows the
oracle's own order of float/double operations (see /work/notes/ops.md).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np

from tinyml.fixedpoint import multiply_by_quantized_multiplier, quantize_multiplier, wrap_int32
from tinyml.ir import Graph, Node, Tensor
from tinyml.ops.subbyte import STORAGE_BITS, pack_bits, signed_range, values_fit

if TYPE_CHECKING:
    from tinyml.codegen.context import EmitContext

# Fused activations TFLite Micro's int8 kernels clamp for; anything else
# (TANH, SIGN_BIT) is silently ignored by its CalculateActivationRangeQuantized,
# so we refuse it rather than guess.
SUPPORTED_ACTIVATIONS = ("NONE", "RELU", "RELU6", "RELU_N1_TO_1")


# -- geometry ---------------------------------------------------------------
@dataclass(frozen=True)
class Window:
    """A sliding window over an NHWC tensor: one spatial layout for conv, depthwise and pooling.

    Only the top/left padding is needed by the kernels: taps outside the
    input are skipped, which is what TFLite Micro does (no padded copy).
    """

    batch: int
    in_h: int
    in_w: int
    k_h: int
    k_w: int
    stride_h: int
    stride_w: int
    dil_h: int
    dil_w: int
    pad_top: int
    pad_bottom: int
    pad_left: int
    pad_right: int
    out_h: int
    out_w: int

    @property
    def has_padding(self) -> bool:
        return any((self.pad_top, self.pad_bottom, self.pad_left, self.pad_right))


def effective_size(k: int, dilation: int) -> int:
    return (k - 1) * dilation + 1


def out_size(padding: str, in_size: int, k: int, stride: int, dilation: int) -> int:
    """TFLite's ComputeOutSize."""
    eff = effective_size(k, dilation)
    if padding == "SAME":
        return (in_size + stride - 1) // stride
    if padding == "VALID":
        return (in_size + stride - eff) // stride
    raise ValueError(f"unknown padding {padding!r}")


def same_padding(in_size: int, k: int, stride: int, dilation: int, out: int) -> tuple[int, int]:
    """TFLite's ComputePaddingWithOffset: (before, after); the odd pixel goes after."""
    total = max((out - 1) * stride + effective_size(k, dilation) - in_size, 0)
    return total // 2, total - total // 2


def window(g: Graph, n: Node, k_h: int, k_w: int, dilated: bool = True) -> Window:
    """The window of a conv/depthwise/pool node from its input shape and attrs.

    `explicit_padding` = (top, bottom, left, right), set by the frontend when
    it folds a PAD into the op, overrides `padding`.
    """
    x = g[n.inputs[0]]
    if len(x.shape) != 4:
        raise ValueError(f"input must be 4-D NHWC, got shape {x.shape}")
    a = n.attrs
    explicit = a.get("explicit_padding")
    return _window(tuple(x.shape), k_h, k_w, int(a.get("stride_h", 1)), int(a.get("stride_w", 1)),
                   int(a.get("dilation_h_factor", 1)) if dilated else 1,
                   int(a.get("dilation_w_factor", 1)) if dilated else 1,
                   None if explicit is None else tuple(int(p) for p in explicit), a.get("padding", "VALID"))


def filter_window(g: Graph, n: Node) -> Window:
    """The window of a conv or depthwise node, sized by its filter (input 1: [out, kh, kw, in])."""
    wt = g[n.inputs[1]]
    return window(g, n, wt.shape[1], wt.shape[2])


@lru_cache(maxsize=1024)  # asked many times per layer by the planner, the patch pass and the cost model
def _window(shape: tuple[int, ...], k_h: int, k_w: int, sh: int, sw: int, dh: int, dw: int,
            explicit: tuple[int, ...] | None, padding: str) -> Window:
    b, in_h, in_w, _ = shape
    if min(sh, sw, dh, dw, k_h, k_w) < 1:
        raise ValueError("strides, dilations and kernel sizes must be >= 1")
    if explicit is not None:
        pt, pb, pl, pr = explicit
        if min(pt, pb, pl, pr) < 0:
            raise ValueError(f"negative explicit padding {explicit}")
        out_h = (in_h + pt + pb - effective_size(k_h, dh)) // sh + 1
        out_w = (in_w + pl + pr - effective_size(k_w, dw)) // sw + 1
    else:
        out_h = out_size(padding, in_h, k_h, sh, dh)
        out_w = out_size(padding, in_w, k_w, sw, dw)
        if padding == "SAME":
            pt, pb = same_padding(in_h, k_h, sh, dh, out_h)
            pl, pr = same_padding(in_w, k_w, sw, dw, out_w)
        else:
            pt = pb = pl = pr = 0
    if out_h < 1 or out_w < 1:
        raise ValueError(f"window {k_h}x{k_w} does not fit input {in_h}x{in_w}")
    return Window(b, in_h, in_w, k_h, k_w, sh, sw, dh, dw, pt, pb, pl, pr, out_h, out_w)


def pad_for_window(x: np.ndarray, w: Window, value: int) -> np.ndarray:
    """numpy-only helper for references: x padded so every tap of every window is in range.

    The extra rows/columns hold `value`, chosen by the caller so a padded tap
    contributes exactly what TFLite Micro's skipped tap contributes.
    """
    need_h = (w.out_h - 1) * w.stride_h + effective_size(w.k_h, w.dil_h)
    need_w = (w.out_w - 1) * w.stride_w + effective_size(w.k_w, w.dil_w)
    bottom = max(need_h - w.pad_top - w.in_h, 0)
    right = max(need_w - w.pad_left - w.in_w, 0)
    return np.pad(x, ((0, 0), (w.pad_top, bottom), (w.pad_left, right), (0, 0)), constant_values=value)


def taps(xp: np.ndarray, w: Window):
    """Yield (ky, kx, view[N, OH, OW, C]) for every kernel tap of a padded input."""
    for ky in range(w.k_h):
        y0 = ky * w.dil_h
        for kx in range(w.k_w):
            x0 = kx * w.dil_w
            yield ky, kx, xp[:, y0:y0 + (w.out_h - 1) * w.stride_h + 1:w.stride_h,
                             x0:x0 + (w.out_w - 1) * w.stride_w + 1:w.stride_w, :]


# -- quantization checks ----------------------------------------------------
def arity_reason(n: Node, needed: int) -> str | None:
    """Why `n` lacks its first `needed` inputs or its output (hostile files), or None."""
    if len(n.inputs) < needed or any(i is None for i in n.inputs[:needed]) or len(n.outputs) != 1:
        return f"expects {needed} inputs and one output"
    return None


def int8_io_reason(g: Graph, n: Node, needed: int) -> str | None:
    """The checks every int8 compute op starts with: its inputs exist, input 0 and the
    output are per-tensor int8 activations."""
    return (arity_reason(n, needed) or int8_per_tensor(g[n.inputs[0]], "input")
            or int8_per_tensor(g[n.outputs[0]], "output"))


def bias_tensor(g: Graph, n: Node) -> Tensor | None:
    """The optional third input (bias) of conv, depthwise and FC."""
    return g[n.inputs[2]] if len(n.inputs) > 2 and n.inputs[2] is not None else None


def int8_per_tensor(t: Tensor | None, role: str) -> str | None:
    """Why `t` is not an int8 per-tensor quantized activation, or None."""
    if t is None:
        return f"missing {role}"
    if t.dtype != "int8":
        return f"{role} is {t.dtype}, only int8 is supported"
    if t.quant is None or t.quant.scale.size != 1:
        return f"{role} needs per-tensor quantization"
    if not t.quant.scale[0] > 0 or not math.isfinite(float(t.quant.scale[0])):
        return f"{role} has a non-positive scale"
    return None


def int8_weights(t: Tensor | None, channels: int, axis: int) -> str | None:
    """Why `t` is not a constant symmetric int8 filter (per-tensor or per-channel on `axis`).

    Sub-byte filters (`bits` 4 or 2 in the int8 container) pass when their values fit."""
    if t is None or not t.is_const:
        return "weights must be a constant tensor"
    if t.dtype != "int8":
        return f"weights are {t.dtype}, only int8 is supported"
    if t.bits not in STORAGE_BITS:
        return f"{t.bits}-bit weights are not supported (8, 4 or 2)"
    if not values_fit(t):
        return f"weights hold values outside their {t.bits}-bit range"
    q = t.quant
    if q is None:
        return "weights are not quantized"
    if q.scale.size not in (1, channels) or (q.scale.size > 1 and q.axis != axis):
        return "weights are quantized along an unexpected axis"
    if np.any(q.zero_point != 0):
        return "asymmetric weights (non-zero weight zero point) are not supported"
    if not np.all(np.isfinite(q.scale)):
        return "weights have a non-finite scale"
    return None


def int32_bias(t: Tensor | None, channels: int) -> str | None:
    if t is None:
        return None
    if not t.is_const or t.dtype != "int32":
        return f"bias must be a constant int32 tensor, got {t.dtype}"
    if t.size != channels:
        return f"bias has {t.size} values for {channels} channels"
    return None


def activation_reason(n: Node) -> str | None:
    act = n.attrs.get("fused_activation_function", "NONE")
    if act not in SUPPORTED_ACTIVATIONS:
        return f"fused activation {act} is not supported"
    return None


# -- constants as TFLite Micro derives them -----------------------------------
def _quantize_float(value: float, scale: np.float32, zero_point: int) -> int:
    """TFLite's Quantize in kernel_util.cc: round(f / scale) in float32, then + zp."""
    q = float(np.float32(value) / np.float32(scale))
    return zero_point + int(math.copysign(math.floor(abs(q) + 0.5), q))  # std::round


def activation_range(act: str, out: Tensor) -> tuple[int, int]:
    """CalculateActivationRangeQuantized for an int8 or int16 output (a 4-bit one clamps to its codes)."""
    assert out.quant is not None
    lo, hi = signed_range(16 if out.dtype == "int16" else min(out.bits, 8))
    scale, zp = np.float32(out.quant.scale[0]), out.quant.zp
    if act in ("RELU", "RELU6", "RELU_N1_TO_1"):
        lo = max(lo, _quantize_float(-1.0 if act == "RELU_N1_TO_1" else 0.0, scale, zp))
    if act in ("RELU6", "RELU_N1_TO_1"):
        hi = min(hi, _quantize_float(6.0 if act == "RELU6" else 1.0, scale, zp))
    return lo, hi


def per_channel_multipliers(x: Tensor, w: Tensor, y: Tensor, channels: int) -> tuple[np.ndarray, np.ndarray]:
    """PopulateConvolutionQuantizationParams: input*filter/output in double, per channel.

    Per-tensor filters broadcast their one scale. Conv, depthwise and fully
    connected (per-tensor included, see fully_connected.py) all use this rule.
    """
    sx, sy = float(np.float32(x.quant.scale[0])), float(np.float32(y.quant.scale[0]))
    scales = np.broadcast_to(w.quant.scale.astype(np.float32), (channels,))
    pairs = [quantize_multiplier(sx * float(s) / sy) for s in scales]
    return np.array([p[0] for p in pairs], np.int32), np.array([p[1] for p in pairs], np.int32)


def requantize(acc: np.ndarray, mult: np.ndarray | int, shift: np.ndarray | int,
               out_zp: int, lo: int, hi: int) -> np.ndarray:
    """int32 accumulator -> int8, as every TFLite Micro int8 compute kernel ends."""
    y = multiply_by_quantized_multiplier(wrap_int32(acc), mult, shift) + out_zp
    return np.clip(y, lo, hi).astype(np.int8)


def accumulator_may_overflow(w: np.ndarray, bias: np.ndarray | None, in_offset: int, taps_axis: tuple[int, ...]) -> bool:
    """True when some output channel's int32 sum could leave the int32 range.

    Never the case for real models, but a hostile file must not make the
    generated C hit signed-overflow UB: such layers accumulate in uint32.
    """
    xmax = max(abs(-128 + in_offset), abs(127 + in_offset))
    bound = np.abs(w.astype(np.int64)).sum(axis=taps_axis) * xmax
    if bias is not None:
        bound = bound + np.abs(bias.astype(np.int64))
    return bool(np.any(bound >= 2**31))


@dataclass(frozen=True)
class Requant:
    """Everything after the int32 accumulator: multipliers, output offset, clamp."""

    mult: np.ndarray  # int32 per output channel
    shift: np.ndarray  # int32 per output channel
    out_zp: int
    lo: int
    hi: int

    @property
    def uniform(self) -> bool:
        """All channels share one multiplier: emit it as a literal, not an array."""
        return bool(np.all(self.mult == self.mult[0]) and np.all(self.shift == self.shift[0]))

    def apply(self, acc: np.ndarray) -> np.ndarray:
        """acc has the output channel as its last axis."""
        return requantize(acc, self.mult, self.shift, self.out_zp, self.lo, self.hi)


def conv_requant(g: Graph, n: Node, channels: int) -> Requant:
    x, w, y = g[n.inputs[0]], g[n.inputs[1]], g[n.outputs[0]]
    mult, shift = per_channel_multipliers(x, w, y, channels)
    lo, hi = activation_range(n.attrs.get("fused_activation_function", "NONE"), y)
    return Requant(mult, shift, y.quant.zp, lo, hi)


def bias_of(g: Graph, n: Node) -> np.ndarray | None:
    name = n.inputs[2] if len(n.inputs) > 2 else None
    return None if name is None else g[name].data.reshape(-1).astype(np.int32)


def c_int32(v: int) -> str:
    """An int32 value as a C literal (INT32_MIN cannot be written directly)."""
    v = int(v)
    return "INT32_MIN" if v == -(2**31) else str(v)


# -- what the kernel templates receive ----------------------------------------
@dataclass
class KernelArgs:
    """The constant arrays a compute kernel takes, in signature order, plus template flags.

    The input offset is folded into the bias at generation time
    (sum w*(x+off) = sum w*x + off*sum w), which is exact for every window
    that lies fully inside the input. Windows that overlap the padding skip
    taps, so they start from the unfolded bias and add the offset per tap;
    the template picks per output pixel. The same split is what a DSP
    variant needs (SMLAD on raw int8 pairs, offset in the bias).
    """

    names: list[str]  # C parameter names, after (input, output)
    values: list[str]  # the C expressions passed for them
    ctypes: list[str]
    params: dict[str, object]  # template flags: bias_full, bias_border, rq, acc_t

    def signature(self) -> str:
        return ", ".join(f"const {t} *{n}" for t, n in zip(self.ctypes, self.names))


def kernel_args(ctx: EmitContext, weights: np.ndarray, weight_sums: np.ndarray, bias: np.ndarray | None,
                in_offset: int, rq: Requant, needs_border: bool, overflow: bool, bits: int = 8) -> KernelArgs:
    """Register the constants of one conv/depthwise/FC layer and describe them to its template.

    Sub-byte weights (`bits` 4 or 2) are stored packed in their C order (subbyte.pack_bits)."""
    if bits == 8:
        names, values, ctypes = ["weights"], [ctx.const(weights, "w", "int8_t")], ["int8_t"]
    else:
        names, values, ctypes = ["weights"], [ctx.const(pack_bits(weights, bits), "w", "uint8_t")], ["uint8_t"]
    raw = np.zeros(rq.mult.size, np.int64) if bias is None else bias.astype(np.int64)
    full = wrap_int32(raw + in_offset * weight_sums.astype(np.int64)).astype(np.int32)
    bias_full = bool(np.any(full != 0))
    if bias_full:
        names.append("bias_full"), values.append(ctx.const(full, "bias", "int32_t")), ctypes.append("int32_t")
    # Border windows start from the raw bias (the folded one when nothing was folded in).
    if not np.any(raw != 0):
        bias_border = "zero"
    elif not needs_border or np.array_equal(raw, full):
        bias_border = "full"
    else:
        bias_border = "own"
        names.append("bias_border"), values.append(ctx.const(raw.astype(np.int32), "bias", "int32_t"))
        ctypes.append("int32_t")
    if not rq.uniform:
        names += ["mult", "shift"]
        values += [ctx.const(rq.mult, "mult", "int32_t"), ctx.const(rq.shift.astype(np.int8), "shift", "int8_t")]
        ctypes += ["int32_t", "int8_t"]
    params = dict(
        bias_full=bias_full,
        bias_border=bias_border,
        rq=dict(per_channel=not rq.uniform, mult=c_int32(rq.mult[0]), shift=int(rq.shift[0]),
                out_zp=rq.out_zp, lo=rq.lo, hi=rq.hi),
        acc_t="uint32_t" if overflow else "int32_t",
    )
    return KernelArgs(names, values, ctypes, params)
