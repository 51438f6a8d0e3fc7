"""FULLY_CONNECTED, int8 (TFLite Micro's reference_integer_ops::FullyConnected[PerChannel]).

The input may have any rank: it is read as [batches, depth] with depth the
filter's second dimension. Multipliers follow the conv rule (input*filter/
output scale in double) for per-tensor filters too: older TFLite sources
multiply input*filter in float32 first (GetQuantizedConvolutionMultipler),
but the TFLite Micro we pin does not -- tests/test_ops_conv.py pins it with
accumulators on which the two rules disagree.
"""
from __future__ import annotations

import numpy as np

from tinyml.ir import Graph, Node
from tinyml.ops.base import bit_class, Op, output_channels, register, remembered
from tinyml.ops.int16 import fc_window, io_reason, is_16x8, layer_requant, mac16_cost_terms, mac16_emit, weights_reason
from tinyml.ops.dsp_pack import (
    NIBBLE_SUM_LIMIT,
    DspRequant,
    acc_bound,
    pack_nibble_quads,
    pack_row_pairs,
    padded,
    padded_bias,
)
from tinyml.fixedpoint import wrap_int32
from tinyml.ops.quantized import (
    accumulator_may_overflow,
    bias_of,
    conv_requant,
    kernel_args,
)


@register
class FullyConnected(Op):
    name = "FULLY_CONNECTED"
    fuses_activation = True
    subbyte_io = True

    def pixel_cost(self, g: Graph, n: Node) -> tuple[float, float]:
        return 0.0, output_channels(g, n) * (12 + 0.7 * g[n.inputs[1]].shape[-1])

    def check(self, g: Graph, n: Node) -> str | None:
        if why := io_reason(g, n, 2):
            return why
        x = g[n.inputs[0]]
        wt = g[n.inputs[1]]
        if len(wt.shape) != 2 or wt.shape[1] < 1:
            return "fully connected needs a 2-D [units, depth] weight tensor"
        if x.size % wt.shape[1]:
            return f"input of {x.size} values is not a whole number of rows of depth {wt.shape[1]}"
        if n.attrs.get("keep_num_dims") and x.shape[-1] != wt.shape[1]:
            return "keep_num_dims needs the input's last dimension to equal the weight depth"
        if n.attrs.get("weights_format", "DEFAULT") != "DEFAULT":
            return f"weights format {n.attrs['weights_format']} is not supported"
        why = weights_reason(g, n, wt.shape[0], 0, (1,))
        if why is None and wt.quant.scale.size == 1 and wt.quant.scale[0] < 0:
            # TFLite Micro's per-tensor multiplier needs input scale x weight scale >= 0
            return "the per-tensor weight scale is negative, which TFLite Micro refuses too"
        return why

    def infer_shapes(self, g: Graph, n: Node) -> list[tuple[int, ...]]:
        x, wt = g[n.inputs[0]], g[n.inputs[1]]
        units, depth = wt.shape
        if n.attrs.get("keep_num_dims"):
            return [tuple(x.shape[:-1]) + (units,)]
        return [(x.size // depth, units)]

    def reference(self, g: Graph, n: Node, inputs: list[np.ndarray | None]) -> list[np.ndarray]:
        wt = inputs[1].astype(np.int64)
        x = inputs[0].astype(np.int64).reshape(-1, wt.shape[1]) - g[n.inputs[0]].quant.zp
        acc = x @ wt.T
        if len(inputs) > 2 and inputs[2] is not None:
            acc += inputs[2].reshape(-1).astype(np.int64)
        return [layer_requant(g, n, g[n.inputs[1]].shape[0]).apply(acc).reshape(self.infer_shapes(g, n)[0])]

    def macs(self, g: Graph, n: Node) -> int:
        return g[n.inputs[0]].size * g[n.inputs[1]].shape[0]

    def scratch_bytes(self, g: Graph, n: Node) -> int:
        """A 4-bit input (depth % 4 == 0) widened once to int16 pairs, at any depth: the DSP kernel
        reads nibbles only there (4 bytes per 4 inputs beside their 2 packed bytes); without it
        the layer would run the C loop, ~11x the instructions."""
        depth = g[n.inputs[1]].shape[1]
        return 2 * depth if g[n.inputs[0]].bits == 4 and depth % 4 == 0 and not is_16x8(g, n) else 0

    def optional_scratch_bytes(self, g: Graph, n: Node) -> int:
        """The DSP kernel's input widened once to int16 pairs (depth % 4 tail excluded), for
        depths up to WIDEN_MAX_DEPTH: otherwise every block of 4 rows widens it again (2 of its
        16 instructions per 16 MACs). Optional: at the peak step the RAM is worth more. (4-bit
        inputs: scratch_bytes.)"""
        depth = g[n.inputs[1]].shape[1]
        if is_16x8(g, n) or self.scratch_bytes(g, n):
            return 0
        return 2 * (depth - depth % 4) if depth <= WIDEN_MAX_DEPTH else 0

    def emit(self, g: Graph, n: Node, ctx) -> None:
        wt = g[n.inputs[1]].data.astype(np.int8)
        units, depth = wt.shape
        if is_16x8(g, n):
            win = fc_window(g[n.inputs[0]].size // depth)
            mac16_emit(g, n, ctx, win, wt, depthwise=False, cin=depth, cin_g=depth, cout=units)
            return
        in_off = -g[n.inputs[0]].quant.zp
        bias = bias_of(g, n)
        bits = g[n.inputs[1]].bits
        if ctx.target.dsp and dsp_io(g, n) and bits in (8, 4) and not accumulator_may_overflow(wt, bias, in_off, (1,)) \
                and emit_dsp(g, n, ctx, wt, in_off, bias):
            return
        args = kernel_args(
            ctx, wt, wt.astype(np.int64).sum(axis=1), bias, in_off, conv_requant(g, n, g[n.inputs[1]].shape[0]),
            needs_border=False, overflow=accumulator_may_overflow(wt, bias, in_off, (1,)), bits=bits,
        )
        fn = ctx.kernel(
            "fully_connected.c.j2", dsp=False, batches=g[n.inputs[0]].size // depth, depth=depth, units=units,
            p=args.params, signature=args.signature(), wbits=bits, xbits=g[n.inputs[0]].bits,
            ybits=g[n.outputs[0]].bits,
        )
        ctx.call(fn, ctx.tensor(n.inputs[0]), ctx.tensor(n.outputs[0]), *args.values)

    def cost_terms(self, g: Graph, n: Node) -> tuple[str, dict[str, float]]:
        """The kernel emit picks on a DSP core: the whole-layer asm kernel (depth and units multiples
        of 4; input widened once up to WIDEN_MAX_DEPTH), the DSP kernel (rows padded to blocks of 4,
        each block a scalar `tail` loop of depth % 4 over its 4 rows), or the C loop (weights the row
        pairs cannot hold exactly)."""
        x, wt, y = g[n.inputs[0]], g[n.inputs[1]], g[n.outputs[0]]
        units, depth = wt.shape
        if is_16x8(g, n):
            return mac16_cost_terms(g, n, fc_window(x.size // depth), False, depth, depth, units)
        terms = {"call": 1, "macs": self.macs(g, n), "out": y.size, "in": x.size}
        consts = tuple(g[t].data for t in n.inputs[1:3] if t is not None)  # weights, bias

        def c_loop() -> bool:
            w = wt.data.astype(np.int8)
            return accumulator_may_overflow(w, bias_of(g, n), -x.quant.zp, (1,)) or \
                pack_row_pairs(w[:, :depth - depth % 4], 4, 128) is None

        if remembered(consts, ("fc_loop", x.quant.zp), c_loop):
            return bit_class("fc_loop", x, wt, y), terms
        if depth % 4 == 0 and units % 4 == 0:  # deeper inputs are widened again per block of rows
            return bit_class("fc_asm" if depth <= WIDEN_MAX_DEPTH else "fc_asm_deep", x, wt, y), terms
        batches, blocks = x.size // depth, padded(units, 4) // 4
        # below 4 deep there is no asm step at all: a block is its scalar tail and requantization
        return bit_class("fc_dsp", x, wt, y), {"call": 1, "blocks" if depth >= 4 else "tail_blocks": batches * blocks,
                                               "steps": batches * blocks * (depth // 4),
                                               "tail": batches * blocks * (depth % 4), "out": y.size}


def dsp_io(g: Graph, n: Node) -> bool:
    """Activation widths the DSP kernel takes: 8 or 4 bits; a 4-bit input with depth % 4 == 0 (no
    scalar tail over nibbles), a 4-bit output with even units (two rows per stored byte)."""
    x, y, depth = g[n.inputs[0]], g[n.outputs[0]], g[n.inputs[1]].shape[1]
    return x.bits in (8, 4) and y.bits in (8, 4) and (x.bits == 8 or depth % 4 == 0) \
        and (y.bits == 8 or y.size // max(x.size // depth, 1) % 2 == 0)


# Deepest input widened once into scratch (2 bytes per input); deeper layers widen it in
# registers per block of rows rather than hold that much more RAM.
WIDEN_MAX_DEPTH = 128


def emit_dsp(g: Graph, n: Node, ctx, wt: np.ndarray, in_off: int, bias: np.ndarray | None) -> bool:
    """Rows in blocks of four on SMLAD; raw int8 inputs with the offset folded into the bias
    (widened once into scratch up to WIDEN_MAX_DEPTH, else in registers per block), int8
    weights in row pairs (dsp_pack.pack_row_pairs). False (nothing emitted) when they cannot
    be packed exactly."""
    units, depth = wt.shape
    raw = np.zeros(units, np.int64) if bias is None else bias.astype(np.int64)
    full = wrap_int32(raw + in_off * wt.astype(np.int64).sum(axis=1)).astype(np.int32)
    body = wt[:, :depth - depth % 4]
    nib = g[n.inputs[1]].bits == 4
    if nib:  # the nibble sums stay exact: 4096 x row 3's, 256 x row 2's (+8 offset) within int32
        if depth < 4 or acc_bound(body, None, 128) >= NIBBLE_SUM_LIMIT or 15 * 128 * depth >= 1 << 23:
            return False
        packed = pack_nibble_quads(body)
    else:
        packed = pack_row_pairs(body, 4, 128)
    if packed is None:
        return False
    r = DspRequant.of(conv_requant(g, n, units), acc_bound(wt, full, 128))
    rows = padded(units, 4)
    xw = FullyConnected().scratch_bytes(g, n) or FullyConnected().optional_scratch_bytes(g, n)
    xw = xw if xw and ctx.scratch_planned() >= xw else 0
    xbits, ybits = g[n.inputs[0]].bits, g[n.outputs[0]].bits
    if xbits == 4 and not xw:  # a 4-bit input is widened only into scratch
        return False
    common = dict(dsp=True, batches=g[n.inputs[0]].size // depth, depth=depth, units=units, r=r.params(), xw=xw > 0,
                  **({"nib": True} if nib else {}), **({} if xbits == ybits == 8 else {"xbits": xbits, "ybits": ybits}))
    # the asm kernel keeps output - input in 24 signed bits: any arena below 8 MB
    near = max(ctx.offsets.values(), default=0) + sum(b for _, b in ctx.scratch_plan.values()) < 1 << 23
    if depth % 4 == 0 and units % 4 == 0 and r.fold and near and not nib and xbits == ybits == 8:
        per_row = np.stack([r.mult, r.pz()], axis=1) if r.per_channel else None
        args = [ctx.const(block_stream(packed, full, (8 if xw else 4) * depth // 4, per_row), "w", "int32_t")]
        fn = ctx.kernel("fully_connected.c.j2", layer_asm=True, **common)
    else:
        args = [ctx.const(packed, "w", "int32_t")] if depth >= 4 else []
        has_bias = bool(np.any(full != 0))
        if has_bias:
            args.append(ctx.const(padded_bias(full, rows), "bias", "int32_t"))
        if r.per_channel:
            shift = r.shift if r.fold else r.tflite_shift()
            args += [ctx.const(padded_bias(r.mult, rows), "mult", "int32_t"),
                     ctx.const(padded_bias(shift, rows).astype(np.int8), "shift", "int8_t")]
            if r.fold:
                args.append(ctx.const(padded_bias(r.pz(), rows), "pz", "int32_t"))
        if depth % 4:
            tail = np.zeros((rows, depth % 4), np.int8)
            tail[:units] = wt[:, depth - depth % 4:]
            args.append(ctx.const(tail, "w", "int8_t"))
        fn = ctx.kernel("fully_connected.c.j2", layer_asm=False, units_pad=rows, has_bias=has_bias, scale=r.scale,
                        **common)
    ctx.call(fn, ctx.tensor(n.inputs[0]), ctx.tensor(n.outputs[0]), *args, *([ctx.scratch(xw)] if xw else []))
    return True


def block_stream(packed: np.ndarray, bias: np.ndarray, bytes_per_block: int,
                 per_row: np.ndarray | None = None) -> np.ndarray:
    """One int32 stream for the whole-layer asm kernel: per block of 4 rows its packed weight
    words, then 2 x bias of the 4 rows (the kernel requantizes doubled accumulators) and
    ctl = 2 * (4 * block - bytes_per_block) + (1 on the last block): where the block's 4 output
    bytes go relative to the input pointer after the block's pass, and when to stop. Per-channel
    layers add each row's requantization constants `per_row` ([rows, (q, p)]) after ctl (the
    kernel takes the shift e from p's lowest set bit: p = 2^e (1 + 2 zp))."""
    blocks = bias.size // 4
    words = packed.reshape(blocks, -1)
    ctl = 2 * (4 * np.arange(blocks, dtype=np.int64) - bytes_per_block)
    ctl[-1] += 1
    parts = [words.astype(np.int64), 2 * bias.astype(np.int64).reshape(blocks, 4), ctl[:, None]]
    if per_row is not None:
        parts.append(per_row.astype(np.int64).reshape(blocks, -1))
    return np.concatenate(parts, axis=1).astype(np.int32).reshape(-1)
