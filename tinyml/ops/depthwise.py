"""DEPTHWISE_CONV_2D, int8 (TFLite Micro's reference_integer_ops::DepthwiseConvPerChannel).

Filter layout 1HWC with C = input channels * depth multiplier; output
channel oc = ic * multiplier + m. Per-channel scales are on axis 3.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from functools import lru_cache

import numpy as np

from tinyml.ir import Graph, Node
from tinyml.ops.base import bit_class, inside_taps, Op, output_channels, register, remembered
from tinyml.ops.dsp_pack import DspRequant
from tinyml.ops.int16 import io_reason, is_16x8, layer_requant, mac16_cost_terms, mac16_emit, weights_reason
from tinyml.ops.subbyte import pack_bits
from tinyml.ops.quantized import (
    Window,
    accumulator_may_overflow,
    bias_of,
    conv_requant,
    kernel_args,
    pad_for_window,
    taps,
    filter_window,
    window,
)


def depth_multiplier(g: Graph, n: Node) -> int:
    return g[n.inputs[1]].shape[3] // g[n.inputs[0]].shape[3]


@register
class DepthwiseConv2D(Op):
    name = "DEPTHWISE_CONV_2D"
    accepts_explicit_padding = True
    fuses_activation = True
    subbyte_io = True

    def sliding_window(self, g: Graph, n: Node) -> Window:
        return filter_window(g, n)

    def pixel_cost(self, g: Graph, n: Node) -> tuple[float, float]:
        _, k_h, k_w, _ = g[n.inputs[1]].shape
        # a plane copy per input pixel, the taps per output pixel
        return 7.7 * g[n.inputs[0]].shape[-1], output_channels(g, n) * (2 + 2.1 * k_h * k_w)

    def check(self, g: Graph, n: Node) -> str | None:
        if why := io_reason(g, n, 2):
            return why
        x = g[n.inputs[0]]
        wt = g[n.inputs[1]]
        if len(wt.shape) != 4 or wt.shape[0] != 1 or len(x.shape) != 4:
            return "depthwise conv needs a 4-D NHWC input and a 1HWC filter"
        cin, cout = x.shape[3], wt.shape[3]
        if cin < 1 or cout % cin:
            return f"filter depth {cout} is not a multiple of input depth {cin}"
        attr = n.attrs.get("depth_multiplier")
        if attr not in (None, cout // cin):
            # TFLite Micro would index with the attribute; a mismatch is a broken model.
            return f"depth_multiplier {attr} disagrees with filter depth {cout} / input depth {cin}"
        try:
            window(g, n, wt.shape[1], wt.shape[2])
        except ValueError as e:
            return str(e)
        return weights_reason(g, n, cout, 3, (0, 1, 2))

    def infer_shapes(self, g: Graph, n: Node) -> list[tuple[int, ...]]:
        wt = g[n.inputs[1]]
        w = window(g, n, wt.shape[1], wt.shape[2])
        return [(w.batch, w.out_h, w.out_w, wt.shape[3])]

    def reference(self, g: Graph, n: Node, inputs: list[np.ndarray | None]) -> list[np.ndarray]:
        x, wt = inputs[0], inputs[1].astype(np.int64)
        _, k_h, k_w, cout = wt.shape
        w = window(g, n, k_h, k_w)
        mult = depth_multiplier(g, n)
        in_off = -g[n.inputs[0]].quant.zp
        xp = pad_for_window(x.astype(np.int64), w, -in_off) + in_off  # padded taps add 0
        acc = np.zeros((w.batch, w.out_h, w.out_w, cout), np.int64)
        for ky, kx, view in taps(xp, w):
            acc += np.repeat(view, mult, axis=3) * wt[0, ky, kx]
        if len(inputs) > 2 and inputs[2] is not None:
            acc += inputs[2].reshape(-1).astype(np.int64)
        return [layer_requant(g, n, cout).apply(acc)]

    def macs(self, g: Graph, n: Node) -> int:
        y, wt = g[n.outputs[0]], g[n.inputs[1]]
        return math.prod(y.shape) * wt.shape[1] * wt.shape[2]

    def scratch_bytes(self, g: Graph, n: Node) -> int:
        plane = channel_plane(g, n)
        return 0 if plane is None else plane.bytes

    def inplace_inputs(self, g: Graph, n: Node) -> tuple[int, ...]:
        # The plane kernel copies channel c before writing output channel c,
        # and the output (same channels, no more pixels) fits in the input.
        return (0,) if channel_plane(g, n) is not None and depth_multiplier(g, n) == 1 \
            and g[n.inputs[0]].bits == g[n.outputs[0]].bits else ()

    def emit(self, g: Graph, n: Node, ctx) -> None:
        wt = g[n.inputs[1]].data.astype(np.int8)
        _, k_h, k_w, cout = wt.shape
        x = g[n.inputs[0]]
        w = window(g, n, k_h, k_w)
        if is_16x8(g, n):
            mac16_emit(g, n, ctx, w, wt, depthwise=True, cin=x.shape[3], cin_g=1, cout=cout)
            return
        in_off = -x.quant.zp
        bias = bias_of(g, n)
        channel_major = np.ascontiguousarray(wt[0].transpose(2, 0, 1))  # [oc][ky][kx]
        plane = channel_plane(g, n)
        if plane is not None:
            self._emit_plane(g, n, ctx, w, channel_major, plane)
            return
        args = kernel_args(
            ctx, channel_major, channel_major.astype(np.int64).sum(axis=(1, 2)), bias, in_off,
            conv_requant(g, n, cout), needs_border=w.has_padding,
            overflow=accumulator_may_overflow(channel_major, bias, in_off, (1, 2)), bits=g[n.inputs[1]].bits,
        )
        fn = ctx.kernel(
            "depthwise_conv2d.c.j2", win=w, cin=x.shape[3], cout=cout, mult=depth_multiplier(g, n),
            in_offset=in_off, p=args.params, signature=args.signature(), plane=None, wbits=g[n.inputs[1]].bits,
            xbits=x.bits, ybits=g[n.outputs[0]].bits,
        )
        ctx.call(fn, ctx.tensor(n.inputs[0]), ctx.tensor(n.outputs[0]), *args.values)

    @staticmethod
    def _emit_plane(g: Graph, n: Node, ctx, w: Window, channel_major: np.ndarray, plane: "Plane") -> None:
        """The per-channel kernel: folded bias, requant constants per channel, packed pairs on DSP cores."""
        cout = channel_major.shape[0]
        dsp = ctx.target.dsp
        rq = DspRequant.of(conv_requant(g, n, cout), plane.acc_bound)
        x, y = g[n.inputs[0]], g[n.outputs[0]]
        if not dsp:  # tm_requant_dsp and __ssat are DSP-header helpers; plain C takes TFLite's sequence
            rq = replace(rq, fast=False, shift=conv_requant(g, n, cout).shift.astype(np.int8))
        pairs = pair_schedule(w.k_h, w.k_w, w.stride_w) if dsp and w.out_w >= 2 else None
        # Packed pairs carry weights (and the bias) doubled where tm_requant_dsp2p applies: its
        # SaturatingRoundingDoublingHighMul is one SMMULR and the zero point rides in its rounding term.
        fold = pairs is not None and rq.fold
        # every e >= 1: tm_requant_dsp2h takes p / 2 and saves an instruction per output
        half = fold and bool(np.all(rq.shift >= 1))
        pz = rq.pz() >> 1 if half else rq.pz() if fold else None
        r = dict(rq.params(), fold=fold, half=half, pz=int(pz[0]) if fold else 0)
        if rq.per_channel:  # loaded once per channel into locals (an int8 store could alias the arrays)
            r.update(mult="qm", shift="qs", pz="qp")
        scale = 2 if fold else 1
        bits = g[n.inputs[1]].bits
        if bits < 8:  # packed taps; the plane kernel builds each channel's words (if any) from them
            weights = ctx.const(pack_bits(channel_major, bits), "w", "uint8_t")
        elif pairs is None:
            weights = ctx.const(channel_major, "w", "int8_t")
        else:
            weights = ctx.const(pack_pairs(channel_major.astype(np.int64) * scale, pairs), "wpack", "int32_t")
        values = [weights, ctx.const(plane.bias_full * scale, "bias", "int32_t")]
        if rq.per_channel:
            values += [ctx.const(rq.mult, "mult", "int32_t"), ctx.const(rq.shift, "shift", "int8_t")]
            if fold:
                values.append(ctx.const(pz, "pz", "int32_t"))
        mult = depth_multiplier(g, n)
        fn = ctx.kernel("depthwise_conv2d.c.j2", win=w, cin=cout // mult, cout=cout, mult=mult, plane=plane, r=r,
                        per_channel=rq.per_channel, dsp=dsp, pk=pairs, wbits=bits, wscale=scale,
                        **({} if x.bits == y.bits == 8 else {"xbits": x.bits, "ybits": y.bits}))
        ctx.call(fn, ctx.tensor(n.inputs[0]), ctx.tensor(n.outputs[0]), *values, ctx.scratch(plane.bytes))

    def cost_terms(self, g: Graph, n: Node) -> tuple[str, dict[str, float]]:
        """The per-channel plane kernel by window and stride: the plane filled once per call (`fill`
        bytes), each channel's rows copied in by blocks of 8 pixels (4 when narrower) and single
        ones, per-channel constants (`ch`), output rows and pixel steps (pairs of pixels where the
        pair schedule pairs them; `odd`: a last pixel computed alone), a requantization per output; with depth multiplier M one
        plane copy per input channel serves M output channels. Else the generic loop (dilation,
        sums that could leave int32): per output its requantization, the window rows and taps
        inside the input. 16x8 layers: int16.mac16_cost_terms."""
        x, wt, y = g[n.inputs[0]], g[n.inputs[1]], g[n.outputs[0]]
        _, k_h, k_w, cout = wt.shape
        w = window(g, n, k_h, k_w)
        if is_16x8(g, n):
            return mac16_cost_terms(g, n, w, True, x.shape[3], 1, cout)
        if channel_plane(g, n) is None:  # the generic loop
            rows_in, cols_in = inside_taps(w)
            return bit_class("dw_generic", x, wt, y), {"call": 1, "out": y.size,
                                                       "taps": w.batch * cout * rows_in * cols_in,
                                                       "rows": w.batch * cout * rows_in * w.out_w}
        cls = f"dw_{k_h}x{k_w}_s{w.stride_h}" if k_h == k_w and w.stride_h == w.stride_w and w.stride_h in (1, 2) \
            else "dw_other"
        schedule = pair_schedule(k_h, k_w, w.stride_w)
        plane = channel_plane(g, n)
        block = 8 if plane.copy_w >= 8 else 4  # the copy loop's unrolling
        planes, copies = w.batch * cout, w.batch * x.shape[3]
        rows = planes * w.out_h
        pixels = schedule.pixels if w.out_w >= 2 else 1
        return bit_class(cls, x, wt, y), {
            "call": 1, "fill": plane.bytes, "ch": planes, "copy_rows": copies * plane.copy_h,
            "copy_blocks": copies * plane.copy_h * (plane.copy_w // block),
            "copy_singles": copies * plane.copy_h * (plane.copy_w % block),
            "rows": rows, "steps": rows * (w.out_w // pixels), "odd": rows * (w.out_w % pixels), "out": y.size}


@dataclass(frozen=True)
class Plane:
    """The zero-point-bordered scratch copy of one input channel (TinyEngine's in-place depthwise).

    h x w covers every tap of every window; copy_h x copy_w input pixels go
    in at (pad_top, pad_left); the rest holds the input zero point, which
    contributes exactly 0 once the offset is folded into the bias. `bytes`
    has slack for the word loads of the paired DSP loop (they read past a
    row's taps, times zero weights); the kernel fills all of it once per call.
    """

    h: int
    w: int
    copy_h: int
    copy_w: int
    zp: int
    bytes: int
    bias_full: np.ndarray  # int32 per channel: bias + input offset * sum of weights
    acc_bound: int  # largest |accumulator| any window can reach


def channel_plane(g: Graph, n: Node) -> Plane | None:
    """The plane of the per-channel kernel, or None when the layer needs the generic one.

    Needs no dilation and an accumulator that cannot leave int32 with the
    offset folded into the bias for every window. With depth multiplier M the
    plane of input channel c serves output channels c * M .. c * M + M - 1.
    """
    x, wt = g[n.inputs[0]], g[n.inputs[1]]
    _, k_h, k_w, cout = wt.shape
    w = window(g, n, k_h, k_w)
    if w.dil_h != 1 or w.dil_w != 1 or is_16x8(g, n) or x.bits not in (8, 4) or g[n.outputs[0]].bits not in (8, 4):
        return None
    if (x.bits == 4 and x.shape[3] % 2) or (g[n.outputs[0]].bits == 4 and cout % 2):
        return None  # 4-bit: the plane copy and stores need every pixel on a byte (generic kernel otherwise)
    bias_t = n.inputs[2] if len(n.inputs) > 2 else None

    def plane() -> Plane | None:
        taps_w = wt.data.reshape(-1, cout).astype(np.int64)
        bias = bias_of(g, n)
        folded = (0 if bias is None else bias.astype(np.int64)) - x.quant.zp * taps_w.sum(axis=0)
        bound = np.abs(folded) + 128 * np.abs(taps_w).sum(axis=0)
        if np.any(bound >= 2**31):
            return None
        h = (w.out_h - 1) * w.stride_h + k_h
        pw = (w.out_w - 1) * w.stride_w + k_w
        copy_h = max(0, min(w.in_h, h - w.pad_top))
        copy_w = max(0, min(w.in_w, pw - w.pad_left))
        slack = pair_schedule(k_h, k_w, w.stride_w).reach
        return Plane(h, pw, copy_h, copy_w, int(x.quant.zp), h * pw + slack, folded.astype(np.int32),
                     int(bound.max()))

    # the planner's in-place rule asks on every estimate call of a search: once per weights array
    return remembered((wt.data, None if bias_t is None else g[bias_t].data), ("plane", int(x.quant.zp), w), plane)


@dataclass(frozen=True)
class PairSchedule:
    """How neighbouring output pixels share the input words of the kernel rows.

    Pixel p (0 or 1) of a step starts p * stride taps to the right. Each row
    loads a word at each offset in `loads` (bytes from the step's first tap):
    SXTB16 gives the int16 pairs (o, o+2) ("lo") and, after a rotate by 8,
    (o+1, o+3) ("hi"). A data pair whose two taps both meet the kernel is one
    SMLAD with a packed weight pair; a pair with one tap is one SMLAxy
    (bottom/top half times a weight half). Identical weight pairs share a word
    and single taps share words two by two, which keeps the weights of a 3x3
    kernel in five registers.
    steps[ky][i] = [(pixel, "lo"|"hi", intrinsic, weight word)] for the load at loads[i];
    words[i] = (low tap, high tap) as kernel tap indices ky * k_w + kx, -1 for zero.
    """

    steps: list[list[list[tuple[int, str, str, int]]]]
    words: list[tuple[int, int]]
    pixels: int  # output pixels per step: 2, or 1 where two would share too few words
    loads: tuple[int, ...]  # byte offsets of a row's word loads

    @property
    def per_row(self) -> int:
        return len(self.loads)

    @property
    def reach(self) -> int:
        """Bytes a row's loads span from the step's first tap."""
        return max(self.loads) + 4


@lru_cache(maxsize=64)  # a few kernel shapes, asked for every depthwise layer's plane (read only)
def pair_schedule(k_h: int, k_w: int, stride: int) -> PairSchedule:
    """Two pixels per step share input words at stride 1 and for wide kernels (aligned words
    over both pixels' taps). A 3-wide kernel at stride 2 shares only the middle word: pixel 1
    reads a second word at offset 2, whose low pair is its (0, 2) taps, and takes its centre tap
    from the top of the first word's odd pair. Pairs first, then single taps, each tap once."""
    pixels = 2 if stride == 1 or k_w >= 5 or (stride == 2 and k_w == 3) else 1
    span = k_w + (pixels - 1) * stride  # taps the pixels of a step cover together
    loads = (0, 2) if stride == 2 and k_w == 3 else tuple(4 * j for j in range((span + 3) // 4))
    halves = [(i, half, o + d) for i, o in enumerate(loads) for half, d in (("lo", 0), ("hi", 1))]
    words: list[tuple[int, int]] = []
    singles: dict[int, tuple[int, str]] = {}  # tap -> (word, "b"|"t")
    open_word: int | None = None  # a single-tap word whose top half is still free

    def single(tap: int) -> tuple[int, str]:
        nonlocal open_word
        if tap not in singles:
            if open_word is not None:  # second single of a shared word
                words[open_word] = (words[open_word][0], tap)
                singles[tap], open_word = (open_word, "t"), None
            else:
                words.append((tap, -1))
                singles[tap], open_word = (len(words) - 1, "b"), len(words) - 1
        return singles[tap]

    steps = []
    for ky in range(k_h):
        paired: dict[tuple[int, int, str], tuple[int, int]] = {}  # (load, pixel, half) -> kernel taps
        for p in range(pixels):
            free = set(range(k_w))  # taps of pixel p that no pair covers yet
            for i, half, first in halves:
                kx = (first - p * stride, first + 2 - p * stride)
                if kx[0] in free and kx[1] in free:
                    paired[i, p, half] = (ky * k_w + kx[0], ky * k_w + kx[1])
                    free -= set(kx)
        row: list[list[tuple[int, str, str, int]]] = [[] for _ in loads]
        todo = {p: set(range(k_w)) - {t - ky * k_w for (_, q, _), pr in paired.items() if q == p for t in pr}
                for p in range(pixels)}  # taps left for single multiplies
        order = [(h, p) for i in range(len(loads)) for p in range(pixels) for h in halves[2 * i:2 * i + 2]]
        for (i, half, first), p in order:  # load by load, as the words are laid out
            if (i, p, half) in paired:
                pair = paired[i, p, half]
                if pair not in words:
                    words.append(pair)
                row[i].append((p, half, "smlad", words.index(pair)))
                continue
            for pos, t in (("b", first), ("t", first + 2)):
                if t - p * stride in todo[p]:
                    word, wpos = single(ky * k_w + t - p * stride)
                    row[i].append((p, half, "smla" + pos + wpos, word))
                    todo[p].discard(t - p * stride)
        assert not any(todo.values()), "every tap of the kernel row is read by some load"
        steps.append(row)
    return PairSchedule(steps, words, pixels, loads)


def pack_pairs(channel_major: np.ndarray, s: PairSchedule) -> np.ndarray:
    """[oc][word] int32: the kernel taps of each weight word as int16 halves (low half first)."""
    oc = channel_major.shape[0]
    taps = np.concatenate([channel_major.reshape(oc, -1).astype(np.int64), np.zeros((oc, 1), np.int64)], axis=1)
    words = np.zeros((oc, len(s.words)), np.int64)
    for k, (a, b) in enumerate(s.words):  # tap -1 is the zero column
        words[:, k] = (taps[:, a] & 0xFFFF) | ((taps[:, b] & 0xFFFF) << 16)
    return words.astype(np.uint32).view(np.int32).reshape(-1)
