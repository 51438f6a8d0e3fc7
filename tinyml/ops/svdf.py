"""SVDF, int8 with int16 (or int8) state, as TFLite Micro's integer SVDF computes it.

A rank-r SVDF layer is a feature projection (weights_feature, one row per
filter) whose results are pushed into a per-filter memory of the last
n_memory values (the state, input 4, kept across inferences), then a time
projection (weights_time) over that memory, summed over each unit's r
filters, plus bias, requantized to int8. TFLite Micro's steps, reproduced:

1. shift the state left by one element;
2. per filter: dot(weights_feature, input - input_zp), requantized with
   (input_scale * wf_scale / state_scale, float32 products as TFLite computes
   them), clamped to the state type, + state_zp: the newest memory slot;
3. per filter: dot(weights_time, state - state_zp) over the memory (int32);
4. per unit: bias + the sum of its rank filters, requantized with
   (state_scale * wt_scale / output_scale), + output_zp, clamped to int8.

The fused activation is not applied: TFLite Micro's integer path clamps to
int8 only. Accumulators are int32 and wrap as TFLite Micro's do.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from tinyml.fixedpoint import multiply_by_quantized_multiplier, quantize_multiplier, wrap_int32
from tinyml.ir import Graph, Node
from tinyml.ops.base import Op, register
from tinyml.ops.quantized import c_int32, int8_per_tensor

if TYPE_CHECKING:
    from tinyml.codegen.context import EmitContext

_RANGES = {"int8": (-128, 127), "int16": (-32768, 32767)}


@dataclass(frozen=True)
class SvdfParams:
    batch: int
    n_input: int
    n_filter: int
    n_memory: int
    rank: int
    in_zp: int
    state_zp: int
    out_zp: int
    mult1: int
    shift1: int
    mult2: int
    shift2: int

    @property
    def n_unit(self) -> int:
        return self.n_filter // self.rank


def _scale(t) -> np.float32:
    return np.float32(t.quant.scale[0])


def svdf_params(g: Graph, n: Node) -> SvdfParams:
    x, wf, wt, _, state = (g[i] if i is not None else None for i in n.inputs[:5])
    y = g[n.outputs[0]]
    # float32 arithmetic, then double, as TFLite Micro's Prepare computes the effective scales
    m1, s1 = quantize_multiplier(float(_scale(x) * _scale(wf) / _scale(state)))
    m2, s2 = quantize_multiplier(float(_scale(state) * _scale(wt) / _scale(y)))
    return SvdfParams(x.shape[0], x.shape[1], wf.shape[0], wt.shape[1], int(n.attrs.get("rank", 0)),
                      x.quant.zp, state.quant.zp, y.quant.zp, m1, s1, m2, s2)


@register
class Svdf(Op):
    name = "SVDF"
    state_inputs = (4,)
    writes_state = True

    def check(self, g: Graph, n: Node) -> str | None:
        if len(n.inputs) != 5 or None in (n.inputs[0], n.inputs[1], n.inputs[2], n.inputs[4]) or len(n.outputs) != 1:
            return "expects input, weights_feature, weights_time, optional bias, state and one output"
        x, wf, wt, state = (g[n.inputs[i]] for i in (0, 1, 2, 4))
        y = g[n.outputs[0]]
        if why := int8_per_tensor(x, "input") or int8_per_tensor(y, "output"):
            return why
        if not wf.is_const or wf.dtype != "int8" or len(wf.shape) != 2 or wf.quant is None or wf.quant.per_channel:
            return "weights_feature must be constant per-tensor int8 [filters, inputs]"
        if not wt.is_const or wt.dtype not in _RANGES or len(wt.shape) != 2 or wt.quant is None \
                or wt.quant.per_channel:
            return "weights_time must be constant per-tensor int16 or int8 [filters, memory]"
        if not state.state or state.dtype not in _RANGES or state.quant is None or state.quant.per_channel:
            return "the state must be a per-tensor int16 or int8 variable tensor"
        rank = int(n.attrs.get("rank", 0))
        if len(x.shape) != 2 or wf.shape[1] != x.shape[1] or wt.shape[0] != wf.shape[0]:
            return f"shapes input {list(x.shape)}, weights_feature {list(wf.shape)}, weights_time {list(wt.shape)} disagree"
        if rank < 1 or wf.shape[0] % rank:
            return f"rank {rank} does not divide {wf.shape[0]} filters"
        if state.size != x.shape[0] * wf.shape[0] * wt.shape[1]:
            return f"state {list(state.shape)} is not batch x filters x memory"
        if n.inputs[3] is not None:
            b = g[n.inputs[3]]
            if not b.is_const or b.dtype != "int32" or b.size != wf.shape[0] // rank:
                return "bias must be a constant int32 vector, one per unit"
            if b.quant is not None and abs(float(b.quant.scale[0]) - float(_scale(state) * _scale(wt))) >= 1e-5:
                return "bias scale is not state scale x weights_time scale (TFLite Micro checks it)"
        return None

    def infer_shapes(self, g: Graph, n: Node) -> list[tuple[int, ...]]:
        x, wf = g[n.inputs[0]], g[n.inputs[1]]
        return [(x.shape[0], wf.shape[0] // int(n.attrs.get("rank", 1) or 1))]

    def reference(self, g: Graph, n: Node, inputs: list[np.ndarray | None]) -> list[np.ndarray]:
        p = svdf_params(g, n)
        x, wf, wt, bias, state = inputs
        lo, hi = _RANGES[g[n.inputs[4]].dtype]
        mem = state.reshape(p.batch, p.n_filter, p.n_memory)  # a view: updated in place
        mem[:, :, :-1] = mem[:, :, 1:].copy()
        feat = (x.reshape(p.batch, p.n_input).astype(np.int64) - p.in_zp) @ wf.astype(np.int64).T
        feat = np.clip(multiply_by_quantized_multiplier(wrap_int32(feat), p.mult1, p.shift1), lo, hi)
        mem[:, :, -1] = (feat + p.state_zp).astype(np.int32).astype(state.dtype)  # wraps like the C cast
        per_filter = wrap_int32(((mem.astype(np.int64) - p.state_zp) * wt.astype(np.int64)).sum(axis=2))
        acc = per_filter.reshape(p.batch, p.n_unit, p.rank).sum(axis=2)
        if bias is not None:
            acc = acc + bias.astype(np.int64)
        y = multiply_by_quantized_multiplier(wrap_int32(acc), p.mult2, p.shift2) + p.out_zp
        return [np.clip(y, -128, 127).astype(np.int8)]

    def macs(self, g: Graph, n: Node) -> int:
        p = svdf_params(g, n)
        return p.batch * p.n_filter * (p.n_input + p.n_memory)

    def emit(self, g: Graph, n: Node, ctx: "EmitContext") -> None:
        p = svdf_params(g, n)
        state = g[n.inputs[4]]
        lo, hi = _RANGES[state.dtype]
        fn = ctx.kernel("svdf.c.j2", p=p, st="int16_t" if state.dtype == "int16" else "int8_t",
                        wt="int16_t" if g[n.inputs[2]].dtype == "int16" else "int8_t", lo=lo, hi=hi,
                        mult1=c_int32(p.mult1), mult2=c_int32(p.mult2), has_bias=n.inputs[3] is not None)
        bias = ctx.tensor(n.inputs[3]) if n.inputs[3] is not None else "0"
        ctx.call(fn, ctx.tensor(n.inputs[0]), ctx.tensor(n.inputs[1]), ctx.tensor(n.inputs[2]), bias,
                 ctx.tensor(n.inputs[4]), ctx.tensor(n.outputs[0]))

    def cost_terms(self, g: Graph, n: Node) -> tuple[str, dict[str, float]]:
        """A feature and a time matmul (FC loops: the fc family until fitted), a requantization per filter and unit."""
        p = svdf_params(g, n)
        return "fc_svdf", {"call": 1, "macs": self.macs(g, n), "out": p.batch * (p.n_filter + p.n_unit)}
