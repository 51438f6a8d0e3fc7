"""CONV_2D, int8 (TFLite Micro's reference_integer_ops::ConvPerChannel).

Filters are OHWI; a filter depth smaller than the input depth means grouped
convolution (input depth = groups * filter depth), which TFLite Micro also
runs. Per-tensor filters use the per-channel path with one broadcast scale.
"""
from __future__ import annotations

import math

import numpy as np

from tinyml.ir import Graph, Node
from tinyml.ops.base import bit_class, border_pixels, Op, output_channels, per_channel_scales, register, remembered
from tinyml.ops.int16 import io_reason, is_16x8, layer_requant, mac16_cost_terms, mac16_emit, weights_reason
from tinyml.ops.dsp_pack import (
    CRUMB_SUM_LIMIT,
    NIBBLE_SUM_LIMIT,
    DspRequant,
    acc_bound,
    pack_crumb_pairs,
    pack_nibble_pairs,
    pack_row_pairs,
    pack_rows,
    pair_bias,
    padded,
    padded_bias,
)
from tinyml.ops.quantized import (
    accumulator_may_overflow,
    bias_of,
    conv_requant,
    filter_window,
    kernel_args,
    pad_for_window,
    taps,
    window,
    Window,
)
from tinyml.ops.subbyte import signed_range


@register
class Conv2D(Op):
    name = "CONV_2D"
    accepts_explicit_padding = True
    fuses_activation = True
    subbyte_io = True

    def sliding_window(self, g: Graph, n: Node) -> Window:
        return filter_window(g, n)

    def pixel_cost(self, g: Graph, n: Node) -> tuple[float, float]:
        _, k_h, k_w, cin_g = g[n.inputs[1]].shape
        per_out = 12 + 0.7 * k_h * k_w * cin_g
        return 0.0, output_channels(g, n) * per_out * (1.6 if cin_g < 4 else 1.0)

    def check(self, g: Graph, n: Node) -> str | None:
        if why := io_reason(g, n, 2):
            return why
        x = g[n.inputs[0]]
        wt = g[n.inputs[1]]
        if len(wt.shape) != 4 or len(x.shape) != 4:
            return "conv needs a 4-D NHWC input and a 4-D OHWI filter"
        cout, _, _, cin_g = wt.shape
        if cin_g < 1 or x.shape[3] < cin_g or x.shape[3] % cin_g or cout % (x.shape[3] // cin_g):
            return f"filter depth {cin_g} does not divide input depth {x.shape[3]} into groups"
        try:
            window(g, n, wt.shape[1], wt.shape[2])
        except ValueError as e:
            return str(e)
        return weights_reason(g, n, cout, 0, (1, 2, 3))

    def infer_shapes(self, g: Graph, n: Node) -> list[tuple[int, ...]]:
        wt = g[n.inputs[1]]
        w = window(g, n, wt.shape[1], wt.shape[2])
        return [(w.batch, w.out_h, w.out_w, wt.shape[0])]

    def reference(self, g: Graph, n: Node, inputs: list[np.ndarray | None]) -> list[np.ndarray]:
        x, wt = inputs[0], inputs[1].astype(np.int64)
        cout, k_h, k_w, cin_g = wt.shape
        w = window(g, n, k_h, k_w)
        groups = x.shape[3] // cin_g
        # Padded taps hold -offset so that (x + offset) is 0: exactly a skipped tap.
        in_off = -g[n.inputs[0]].quant.zp
        xp = pad_for_window(x.astype(np.int64), w, -in_off) + in_off
        acc = np.zeros((w.batch, w.out_h, w.out_w, cout), np.int64)
        per_group = cout // groups
        for ky, kx, view in taps(xp, w):
            for gi in range(groups):
                xs = view[..., gi * cin_g:(gi + 1) * cin_g]
                ws = wt[gi * per_group:(gi + 1) * per_group, ky, kx, :]
                acc[..., gi * per_group:(gi + 1) * per_group] += xs @ ws.T
        if len(inputs) > 2 and inputs[2] is not None:
            acc += inputs[2].reshape(-1).astype(np.int64)
        return [layer_requant(g, n, cout).apply(acc)]

    def macs(self, g: Graph, n: Node) -> int:
        y, wt = g[n.outputs[0]], g[n.inputs[1]]
        return math.prod(y.shape) * math.prod(wt.shape[1:])

    def scratch_bytes(self, g: Graph, n: Node) -> int:
        """The DSP GEMM's widened windows: GEMM_PIXELS pixels x depth padded to 4, int16.

        Reserved whatever the target (the plan does not depend on it); cores
        without the DSP extension leave it unused.
        """
        if not dsp_shape(g, n) or is_16x8(g, n):
            return 0
        return GEMM_PIXELS * padded(int(np.prod(g[n.inputs[1]].shape[1:])), 4) * 2

    def inplace_inputs(self, g: Graph, n: Node) -> tuple[int, ...]:
        """A pointwise convolution writes over its input, pixel by pixel in order.

        With no more output channels, output pixel p covers only input bytes of
        pixels <= p; with more, the planner puts the input at the end of the
        output (tinyml/schedule/inplace.py) and the same holds. The DSP GEMM
        widens all pixels of a block before writing any, and the plain kernel
        reads each pixel from a scratch copy (`stash`)."""
        return (0,) if in_place_shape(g, n) and not is_16x8(g, n) and g[n.inputs[0]].bits == g[n.outputs[0]].bits == 8 \
            else ()

    def emit(self, g: Graph, n: Node, ctx) -> None:
        wt = g[n.inputs[1]].data.astype(np.int8)
        cout, k_h, k_w, cin_g = wt.shape
        x = g[n.inputs[0]]
        w = window(g, n, k_h, k_w)
        if is_16x8(g, n):
            mac16_emit(g, n, ctx, w, wt, depthwise=False, cin=x.shape[3], cin_g=cin_g, cout=cout)
            return
        in_off = -x.quant.zp
        bias = bias_of(g, n)
        bits = g[n.inputs[1]].bits
        io8 = x.bits == g[n.outputs[0]].bits == 8
        if ctx.target.dsp and dsp_io(g, n) and dsp_shape(g, n) and not accumulator_may_overflow(wt, bias, in_off, (1, 2, 3)) \
                and emit_dsp(g, n, ctx, wt, w, in_off, bias):
            return
        args = kernel_args(
            ctx, wt, wt.astype(np.int64).sum(axis=(1, 2, 3)), bias, in_off, conv_requant(g, n, cout),
            needs_border=w.has_padding,
            overflow=accumulator_may_overflow(wt, bias, in_off, (1, 2, 3)), bits=bits,
        )
        stash = in_place_shape(g, n) and io8
        fn = ctx.kernel(
            "conv2d.c.j2", dsp=False, win=w, cin=x.shape[3], cin_g=cin_g, cout=cout, groups=x.shape[3] // cin_g,
            in_offset=in_off, p=args.params, signature=args.signature(), stash=stash, wbits=bits,
            xbits=x.bits, ybits=g[n.outputs[0]].bits,
        )
        extra = [ctx.scratch(x.shape[3])] if stash else []
        ctx.call(fn, ctx.tensor(n.inputs[0]), ctx.tensor(n.outputs[0]), *args.values, *extra)

    def cost_terms(self, g: Graph, n: Node) -> tuple[str, dict[str, float]]:
        """The kernel emit picks on a DSP core and its loops. The DSP GEMM (first layers with 1-3
        input channels a class apart) runs blocks of GEMM_PIXELS pixels (a short last block repeats
        a pixel) against pairs of output rows, GEMM `steps` of 4 taps each; per block and pair a
        requantization of 6 outputs (`pair_blocks`; `_pc`: per-channel multipliers read from the
        weights stream); each pixel slot widens its window once (by words when kw x cin is a
        multiple of 4, else tap by tap; `window_rows` rows of it), windows reaching into the padding
        through the border function (`border_px` calls, by words when cin is a multiple of 4). Small
        layers (`wide`) keep int16 weights, 4-bit ones nibble pairs (a class of their own by width).
        Else (groups, dilation, weights the row pairs cannot hold, an accumulator that may overflow)
        the C loop, per output element and MAC; 16x8 layers: int16.mac16_cost_terms."""
        x, wt, y = g[n.inputs[0]], g[n.inputs[1]], g[n.outputs[0]]
        cout, k_h, k_w, cin_g = wt.shape
        w = window(g, n, k_h, k_w)
        if is_16x8(g, n):
            return mac16_cost_terms(g, n, w, False, x.shape[3], cin_g, cout)
        border = border_pixels(w) * w.batch
        variant, per_channel = dsp_variant(g, n)
        if variant is None:
            return bit_class("conv_loop", x, wt, y), {"call": 1, "macs": self.macs(g, n), "out": y.size,
                                                     "px": y.size // cout, "border_px": border}
        npix = w.out_h * w.out_w
        blocks = w.batch * -(-npix // GEMM_PIXELS)
        pair_blocks = blocks * -(-cout // 2)
        slots = blocks * GEMM_PIXELS
        # the short last block repeats the last pixel: through the border function again if it is a border pixel
        iy, ix = (w.out_h - 1) * w.stride_h - w.pad_top, (w.out_w - 1) * w.stride_w - w.pad_left
        if min(iy, ix) < 0 or iy > w.in_h - k_h or ix > w.in_w - k_w:
            border += slots - w.batch * npix
        full = slots - border
        pointwise = (k_h, k_w, w.stride_h, w.stride_w) == (1, 1, 1, 1) and not w.has_padding and cin_g % 4 == 0
        depth = k_h * k_w * cin_g
        pc = "_pc" if per_channel else ""
        steps = "wide_steps" if variant == "wide" else "steps"
        widen = "window" if k_w * cin_g % 4 == 0 else "window_taps"
        cls = "conv_first" if cin_g <= 3 else "conv_gemm"
        return bit_class(cls, x, wt, y), {
            "call": 1, steps: pair_blocks * -(-depth // 4), f"pair_blocks{pc}": pair_blocks,
            "pointwise_slots" if pointwise else "slots": slots,
            widen: full * depth, "window_rows": full * k_h, "border_px": border,
            "border_window" if cin_g % 4 == 0 else "border_taps": border * depth}


# Output pixels per DSP GEMM block: the most whose accumulators (two per row
# pair) fit the registers beside the weights, columns, pointers and counter.
GEMM_PIXELS = 3


# Layers with at most this many weight bytes keep them widened to int16 (times
# the requantization scale): for such small layers -- first convolutions,
# early pointwise ones, run once per patch -- the per-output work of the int8
# row pairs costs up to a fifth of their instructions, for at most this many
# bytes of flash each.
WIDE_MAX_BYTES = 2048


def dsp_shape(g: Graph, n: Node) -> bool:
    """Whether the layer's shape suits the DSP GEMM: one group, no dilation."""
    x, wt = g[n.inputs[0]], g[n.inputs[1]]
    return wt.shape[3] == x.shape[3] and n.attrs.get("dilation_h_factor", 1) == 1 \
        and n.attrs.get("dilation_w_factor", 1) == 1


def dsp_variant(g: Graph, n: Node) -> tuple[str | None, bool]:
    """Which kernel emit runs on a DSP core: "wide" (the DSP GEMM with int16 weights), "pairs" (int8
    row pairs), "nibbles" (4- or 2-bit weights), or None (the C loop; also 4-bit activations over
    odd channel counts, see dsp_io); and whether the requantization is per channel. Decided on
    the weights as emit decides, remembered per weights array (a search asks again on every call)."""
    wt, x = g[n.inputs[1]], g[n.inputs[0]]
    bias = g[n.inputs[2]].data if len(n.inputs) > 2 and n.inputs[2] is not None else None

    def decide() -> tuple[str | None, bool]:
        pc = per_channel_scales(wt)
        w = wt.data.astype(np.int8)
        in_off = -x.quant.zp
        if wt.bits not in (8, 4, 2) or not dsp_io(g, n) or not dsp_shape(g, n) \
                or accumulator_may_overflow(w, bias_of(g, n), in_off, (1, 2, 3)):
            return None, pc
        xmax = input_extent(x)
        if wt.bits < 8:  # nibble (int2: crumb) pairs, their own class by bit width
            limit = NIBBLE_SUM_LIMIT if wt.bits == 4 else CRUMB_SUM_LIMIT
            return ("nibbles" if acc_bound(w.reshape(w.shape[0], -1), None, xmax) < limit else None), pc
        if w.size <= WIDE_MAX_BYTES:
            return "wide", pc
        return ("pairs" if pack_row_pairs(w.reshape(w.shape[0], -1), 2, xmax) is not None else None), pc

    return remembered((wt.data, bias, wt.quant.scale if wt.quant else None),
                      ("conv", wt.bits, x.bits, g[n.outputs[0]].bits, x.quant.zp, x.shape[3],
                       n.attrs.get("dilation_h_factor", 1), n.attrs.get("dilation_w_factor", 1)), decide)


def dsp_io(g: Graph, n: Node) -> bool:
    """Activation widths the DSP GEMM takes: 8 or 4 bits in and out, 4-bit ones only where every
    pixel starts on a byte (even input resp. output channels): the GEMM widens 4 taps from two
    bytes and stores each pair of output rows as one byte."""
    x, y = g[n.inputs[0]], g[n.outputs[0]]
    return x.bits in (8, 4) and y.bits in (8, 4) and (x.bits == 8 or x.shape[3] % 2 == 0) \
        and (y.bits == 8 or y.shape[3] % 2 == 0)


def input_extent(x) -> int:
    """The largest |x + input offset| of an activation at its storage width (the packing bounds)."""
    lo, hi = signed_range(min(x.bits, 8))
    return max(abs(lo - x.quant.zp), abs(hi - x.quant.zp))


def in_place_shape(g: Graph, n: Node) -> bool:
    """1x1, stride 1, no padding, one group (see inplace_inputs)."""
    wt = g[n.inputs[1]]
    w = window(g, n, wt.shape[1], wt.shape[2])
    return (wt.shape[1], wt.shape[2], w.stride_h, w.stride_w) == (1, 1, 1, 1) and not w.has_padding \
        and dsp_shape(g, n)


def emit_dsp(g: Graph, n: Node, ctx, wt: np.ndarray, w, in_off: int, bias: np.ndarray | None) -> bool:
    """Windows widened to int16 with the input offset added (so no bias fold and no border
    path), int8 weights packed for SMLAD in pairs of output rows (dsp_pack.pack_row_pairs).
    False (nothing emitted) when the weights cannot be packed exactly."""
    cout = wt.shape[0]
    depth = int(np.prod(wt.shape[1:]))
    rows = wt.reshape(cout, depth)
    x, y = g[n.inputs[0]], g[n.outputs[0]]
    xmax = input_extent(x)
    r = DspRequant.of(conv_requant(g, n, cout), acc_bound(rows, bias, xmax))
    groups4 = padded(depth, 4) // 4
    cin = wt.shape[3]
    pairs = padded(cout, 2) // 2
    wsub = g[n.inputs[1]].bits
    nib = wsub < 8
    wide = rows.size <= WIDE_MAX_BYTES and not nib
    if nib:  # one word per 4 taps (int2: 8) of a row pair; the accumulators hold 4096 (16384) x the sums
        if acc_bound(rows, None, xmax) >= (NIBBLE_SUM_LIMIT if wsub == 4 else CRUMB_SUM_LIMIT):
            return False
        packed = pack_nibble_pairs(rows) if wsub == 4 else pack_crumb_pairs(rows)
        head, trailer = [padded_bias(np.zeros(0, np.int32) if bias is None else bias * r.scale,
                                     2 * pairs).reshape(pairs, 2)], []
    elif wide:  # per pair and group: both rows' (x0, x2) words, then both rows' (x1, x3) words
        packed = pack_rows(rows.astype(np.int16) * r.scale, 2).reshape(pairs, groups4, 2, 2).transpose(0, 1, 3, 2)
        biases = padded_bias(np.zeros(0, np.int32) if bias is None else bias * r.scale, 2 * pairs).reshape(pairs, 2)
        head, trailer = [biases], []
    else:
        packed = pack_row_pairs(rows, 2, xmax)
        if packed is None:
            return False
        biases = pair_bias(bias, 2 * pairs, r.scale).reshape(pairs, 2)
        head, trailer = [biases[:, :1]], [biases[:, 1:]]  # the odd row's bias (scaled) after the words
    if r.per_channel:
        q, e = r.mult, (r.shift if r.fold else r.tflite_shift())
        pz = r.pz() if r.fold else np.zeros(cout, np.int32)
        trailer += [padded_bias(v.astype(np.int32), 2 * pairs).reshape(pairs, 2) for v in (q, pz, e)]
    stream = np.hstack([*head, packed.reshape(pairs, -1), *trailer]).astype(np.int32)
    k_h, k_w = wt.shape[1], wt.shape[2]
    pointwise = (k_h, k_w, w.stride_h, w.stride_w) == (1, 1, 1, 1) and not w.has_padding and wt.shape[3] % 4 == 0
    fn = ctx.kernel(
        "conv2d.c.j2", dsp=True, px=GEMM_PIXELS, k_h=k_h, k_w=k_w, stride_h=w.stride_h, stride_w=w.stride_w, batch=w.batch,
        cin=cin, cout=cout, cout_pad=2 * pairs, groups4=groups4, in_offset=in_off,
        pointwise=pointwise, wide=wide, r=r.params(), **({"nib": True, "wsub": wsub} if nib else {}),
        **({} if x.bits == y.bits == 8 else {"xbits": x.bits, "ybits": y.bits}),
    )
    geometry = (w.in_h, w.in_w, w.out_w, w.out_h * w.out_w, w.pad_top, w.pad_left)
    ctx.call(fn, ctx.tensor(n.inputs[0]), ctx.tensor(n.outputs[0]), ctx.const(stream, "w", "int32_t"),
             ctx.scratch(Conv2D().scratch_bytes(g, n)), *geometry)
    return True
