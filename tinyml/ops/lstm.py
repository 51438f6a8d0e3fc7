"""UNIDIRECTIONAL_SEQUENCE_LSTM, int8 (or int16) activations with an int16 cell state, as TFLite Micro computes it.

TFLite Micro's kernel (lstm_eval.h, since 2023) runs the standard LSTM only: all
eight gate weight matrices and four biases present, no peephole, projection,
layer norm or CIFG (it refuses those in Prepare, and so do we). Per time step
and batch row, with h the hidden state (int8, input 18) and c the cell state
(int16, input 19), both variable tensors kept across inferences:

1. each gate (forget, input, cell, then output after the cell update) is two
   FULLY_CONNECTED layers with int16 outputs at scale 2^-12, one on the input
   (with the gate bias) and one on h (no bias), each requantized with its own
   multiplier input_scale * weight_scale / 2^-12 and clamped to int16, then
   added with int16 saturation; sigmoid (tanh for the cell gate: the fused
   activation, the only one the schema lets TFLite Micro run) on int16,
   output scale 2^-15 (ops/sigmoid16.py);
2. c = clamp16(f * c) + clamp16(i * g), saturated to int16, clipped to
   +-cell_clip/scale when cell_clip > 0 (each product requantized with its
   double-precision multiplier: 2^-15 * s_c / s_c and 2^-30 / s_c);
3. h = clamp8(tanh(c) * o * 2^-30 / s_h + zp_h), tanh rescaled by the cell
   scale's power of two; h is copied to the step's output slot.

Batch rows never interact, so batch-major and time-major inputs give the same
values row by row; only the input/output strides differ.

16x8 mode (int16 input, hidden state and output with zero points 0, int64
biases) is the same kernel instantiated for int16: the gate FCs accumulate in
int64 and requantize with the int64 MultiplyByQuantizedMultiplier (ops/int16.py
`requant64`), h is clamped to int16.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from tinyml.fixedpoint import multiply_by_quantized_multiplier, quantize_multiplier, wrap_int32
from tinyml.ir import Graph, Node
from tinyml.ops.base import Op, register
from tinyml.ops.int16 import reduced_multiplier, requant64
from tinyml.ops.quantized import c_int32
from tinyml.ops.sigmoid16 import SIGMOID_TABLE, checked_log2, lut

if TYPE_CHECKING:
    from tinyml.codegen.context import EmitContext

GATES = ("forget", "input", "cell", "output")  # the order TFLite Micro computes them in
_W_IN = {"input": 1, "forget": 2, "cell": 3, "output": 4}  # lstm_shared.h tensor indices
_W_REC = {"input": 5, "forget": 6, "cell": 7, "output": 8}
_BIAS = {"input": 12, "forget": 13, "cell": 14, "output": 15}
_ABSENT = {9: "peephole", 10: "peephole", 11: "peephole", 16: "projection", 17: "projection",
           20: "layer norm", 21: "layer norm", 22: "layer norm", 23: "layer norm"}
HIDDEN, CELL = 18, 19
GATE_IN_SCALE = 2.0 ** -12  # FC outputs, Q3.12
GATE_OUT_SCALE = 2.0 ** -15  # sigmoid/tanh outputs, Q0.15


@dataclass(frozen=True)
class LstmParams:
    batch: int
    steps: int
    n_input: int
    n_state: int
    time_major: bool
    in_zp: int
    h_zp: int
    wide: bool  # 16x8: int16 activations, int64 biases and accumulators
    fc_in: tuple[tuple[int, int], ...]  # (multiplier, shift) per gate, GATES order
    fc_rec: tuple[tuple[int, int], ...]
    forget_mul: tuple[int, int]
    input_mul: tuple[int, int]
    hidden_mul: tuple[int, int]
    cell_tanh: tuple[int, int]  # sigmoid16 (m, shift) of tanh(c)
    clip: int  # quantized cell clip, 0: none


def _f32(x) -> float:
    return float(np.float32(x))


def _tanh_rescale(power: int) -> tuple[int, int]:
    """lstm_internal::Tanh's (multiplier, shift) for a cell scale of 2^power, as reference Tanh resolves them."""
    left = 15 + power - 3
    return (3, -left) if left < 0 else (3 << left, 0)


def lstm_params(g: Graph, n: Node) -> LstmParams:
    x, h, c = g[n.inputs[0]], g[n.inputs[HIDDEN]], g[n.inputs[CELL]]
    major = bool(n.attrs.get("time_major", False))
    steps, batch = (x.shape[0], x.shape[1]) if major else (x.shape[1], x.shape[0])
    sx, sh, sc = _f32(x.quant.scale[0]), _f32(h.quant.scale[0]), _f32(c.quant.scale[0])

    def fc(src: float, w: str) -> tuple[int, int]:  # CalculateOpDataFullyConnected: double product
        return quantize_multiplier(src * _f32(g[w].quant.scale[0]) / GATE_IN_SCALE)

    clip = _f32(n.attrs.get("cell_clip", 0.0) or 0.0)
    _, power = checked_log2(sc)
    return LstmParams(
        batch, steps, x.shape[2], h.size // batch, major, x.quant.zp, h.quant.zp, x.dtype == "int16",
        tuple(fc(sx, n.inputs[_W_IN[k]]) for k in GATES), tuple(fc(sh, n.inputs[_W_REC[k]]) for k in GATES),
        quantize_multiplier(GATE_OUT_SCALE * sc / sc), quantize_multiplier(GATE_OUT_SCALE * GATE_OUT_SCALE / sc),
        quantize_multiplier(GATE_OUT_SCALE * GATE_OUT_SCALE / sh), _tanh_rescale(power),
        int(math.trunc(min(max(clip / sc, -32768.0), 32767.0))) if clip > 0 else 0)


def _gate_weights(g: Graph, n: Node) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Input weights [4,S,I], recurrent [4,S,S] (GATES order), input-FC biases with the input offset
    folded in and recurrent-FC biases of the hidden offset alone (int32, wrapping as TFLite Micro's)."""
    p = lstm_params(g, n)
    w_in = np.stack([g[n.inputs[_W_IN[k]]].data.astype(np.int64) for k in GATES])
    w_rec = np.stack([g[n.inputs[_W_REC[k]]].data.astype(np.int64) for k in GATES])
    bias = np.stack([g[n.inputs[_BIAS[k]]].data.astype(np.int64).reshape(-1) for k in GATES])
    if p.wide:  # zero points are 0: nothing to fold, int64 sums do not wrap
        return w_in, w_rec, bias, np.zeros_like(bias)
    b_in = wrap_int32(bias - p.in_zp * w_in.sum(axis=2))
    b_rec = wrap_int32(-p.h_zp * w_rec.sum(axis=2))
    return w_in, w_rec, b_in, b_rec


def _requant16(acc: np.ndarray, mult_shift: tuple[int, int]) -> np.ndarray:
    return np.clip(multiply_by_quantized_multiplier(wrap_int32(acc), *mult_shift), -32768, 32767)


def _fc16(acc: np.ndarray, mult_shift: tuple[int, int], wide: bool) -> np.ndarray:
    """A gate FC's int16 output: int32 (int8 mode) or int64 (16x8) MultiplyByQuantizedMultiplier."""
    return np.clip(requant64(acc, *mult_shift), -32768, 32767) if wide else _requant16(acc, mult_shift)


@register
class UnidirectionalSequenceLstm(Op):
    name = "UNIDIRECTIONAL_SEQUENCE_LSTM"
    state_inputs = (HIDDEN, CELL)
    writes_state = True

    def check(self, g: Graph, n: Node) -> str | None:
        if len(n.inputs) != 24 or len(n.outputs) != 1:
            return "expects 24 inputs and one output"
        for i, what in _ABSENT.items():
            if n.inputs[i] is not None:
                return f"has {what} tensors, which TFLite Micro's LSTM kernel does not run"
        needed = [0, *range(1, 9), *range(12, 16), HIDDEN, CELL]
        if any(n.inputs[i] is None for i in needed):
            return "lacks a gate weight, bias or state tensor (CIFG LSTM), which TFLite Micro does not run"
        x, h, c, y = g[n.inputs[0]], g[n.inputs[HIDDEN]], g[n.inputs[CELL]], g[n.outputs[0]]
        if x.dtype not in ("int8", "int16") or y.dtype != x.dtype or h.dtype != x.dtype:
            return f"input {x.dtype}, hidden state {h.dtype}, output {y.dtype}: int8 or int16 activations, all alike"
        if c.dtype != "int16":
            return f"cell state is {c.dtype}; TFLite Micro's quantized LSTM needs int16"
        if not (h.state and c.state):
            return "hidden and cell state must be variable tensors"
        for t in (x, h, c, y):
            if t.quant is None or t.quant.per_channel:
                return f"{t.name} must be per-tensor quantized"
        if c.quant.zp != 0:
            return "cell state zero point must be 0"
        wide = x.dtype == "int16"
        if wide and (x.quant.zp or h.quant.zp or y.quant.zp):
            return "int16 activations need zero point 0 (16x8 mode)"
        for i in range(1, 9):
            w = g[n.inputs[i]]
            if not w.is_const or w.dtype != "int8" or len(w.shape) != 2 or w.quant is None \
                    or w.quant.per_channel or w.quant.zp != 0:
                return f"gate weights {w.name} must be constant symmetric per-tensor int8"
        for i in range(12, 16):
            b = g[n.inputs[i]]
            if not b.is_const or b.dtype != ("int64" if wide else "int32"):
                return f"gate bias {b.name} must be a constant {'int64' if wide else 'int32'} vector"
        if len(x.shape) != 3 or len(y.shape) != 3:
            return "input and output must be 3-D (time and batch major)"
        major = bool(n.attrs.get("time_major", False))
        batch, n_in = (x.shape[1] if major else x.shape[0]), x.shape[2]
        n_state = g[n.inputs[2]].shape[0]
        for i in range(1, 5):
            if g[n.inputs[i]].shape != (n_state, n_in):
                return f"input weights {list(g[n.inputs[i]].shape)} are not [{n_state}, {n_in}]"
        for i in range(5, 9):
            if g[n.inputs[i]].shape != (n_state, n_state):
                return f"recurrent weights {list(g[n.inputs[i]].shape)} are not [{n_state}, {n_state}]"
        if any(g[n.inputs[i]].size != n_state for i in range(12, 16)):
            return "gate biases must hold one value per state unit"
        if h.size != batch * n_state or c.size != batch * n_state:
            return f"state tensors must hold batch x {n_state} values"
        if float(n.attrs.get("cell_clip", 0.0) or 0.0) < 0:
            return "negative cell_clip"
        if n.attrs.get("fused_activation_function") != "TANH":  # the schema cannot express SIGMOID
            return f"cell gate activation {n.attrs.get('fused_activation_function')} (TFLite Micro runs TANH)"
        return None

    def infer_shapes(self, g: Graph, n: Node) -> list[tuple[int, ...]]:
        x = g[n.inputs[0]]
        return [(x.shape[0], x.shape[1], g[n.inputs[2]].shape[0])]

    def reference(self, g: Graph, n: Node, inputs: list[np.ndarray | None]) -> list[np.ndarray]:
        p = lstm_params(g, n)
        w_in, w_rec, b_in, b_rec = _gate_weights(g, n)
        x = inputs[0].reshape(g[n.inputs[0]].shape).astype(np.int64)
        if p.time_major:
            x = x.transpose(1, 0, 2)  # [batch, steps, input]
        h = inputs[HIDDEN].reshape(p.batch, p.n_state)  # views: updated in place
        c = inputs[CELL].reshape(p.batch, p.n_state)
        out = np.empty((p.batch, p.steps, p.n_state), np.int16 if p.wide else np.int8)
        for t in range(p.steps):
            xt, ht = x[:, t, :], h.astype(np.int64)

            def gate(k: int, kind: str) -> np.ndarray:
                a = _fc16(xt @ w_in[k].T + b_in[k], p.fc_in[k], p.wide)
                r = _fc16(ht @ w_rec[k].T + b_rec[k], p.fc_rec[k], p.wide)
                return lut(kind, 3, 0, np.clip(a + r, -32768, 32767))

            f, i, gc = gate(0, "LOGISTIC"), gate(1, "LOGISTIC"), gate(2, "TANH")
            fc = _requant16(f * c.astype(np.int64), p.forget_mul)
            ig = _requant16(i * gc, p.input_mul)
            cn = np.clip(fc + ig, -32768, 32767)
            if p.clip:
                cn = np.clip(cn, -p.clip, p.clip)
            c[...] = cn
            o = gate(3, "LOGISTIC")
            th = lut("TANH", *p.cell_tanh, cn)
            hn = multiply_by_quantized_multiplier(wrap_int32(th * o), *p.hidden_mul) + p.h_zp
            h[...] = np.clip(hn, *((-32768, 32767) if p.wide else (-128, 127)))
            out[:, t, :] = h
        if p.time_major:
            out = out.transpose(1, 0, 2)
        return [np.ascontiguousarray(out)]

    def macs(self, g: Graph, n: Node) -> int:
        p = lstm_params(g, n)
        return p.batch * p.steps * 4 * p.n_state * (p.n_input + p.n_state)

    def scratch_bytes(self, g: Graph, n: Node) -> int:
        """Five int16 vectors of one batch row: the four gates and one FC/product temporary."""
        return 5 * 2 * lstm_params(g, n).n_state

    def emit(self, g: Graph, n: Node, ctx: "EmitContext") -> None:
        p = lstm_params(g, n)
        w_in, w_rec, b_in, b_rec = _gate_weights(g, n)
        sig = ctx.kernel("sigmoid16.c.j2", kind="LOGISTIC", m=3, shift=0)
        tanh_g = ctx.kernel("sigmoid16.c.j2", kind="TANH", m=3, shift=0)
        tanh_c = ctx.kernel("sigmoid16.c.j2", kind="TANH", m=p.cell_tanh[0], shift=p.cell_tanh[1])
        ms = lambda pair: (c_int32(pair[0]), pair[1])  # noqa: E731
        # 16x8: the gate FCs take the int64 requantization's reduced multiplier and total right shift
        fc = (lambda pair: (int(reduced_multiplier(pair[0])), 15 - pair[1])) if p.wide else ms  # noqa: E731
        fn = ctx.kernel("lstm.c.j2", p=p, sig=sig, tanh_g=tanh_g, tanh_c=tanh_c,
                        fc_in=[fc(v) for v in p.fc_in], fc_rec=[fc(v) for v in p.fc_rec],
                        forget_mul=ms(p.forget_mul), input_mul=ms(p.input_mul), hidden_mul=ms(p.hidden_mul),
                        at="int16_t" if p.wide else "int8_t", bt="int64_t" if p.wide else "int32_t")
        table = ctx.const(SIGMOID_TABLE.astype(np.uint16), "sigmoid", "uint16_t")
        bias = (np.int64, "int64_t") if p.wide else (np.int32, "int32_t")
        ctx.call(fn, ctx.tensor(n.inputs[0]), ctx.const(w_in.astype(np.int8), "w", "int8_t"),
                 ctx.const(w_rec.astype(np.int8), "w", "int8_t"), ctx.const(b_in.astype(bias[0]), "bias", bias[1]),
                 ctx.const(b_rec.astype(bias[0]), "bias", bias[1]), ctx.tensor(n.inputs[HIDDEN]),
                 ctx.tensor(n.inputs[CELL]), ctx.tensor(n.outputs[0]), table,
                 f"(int16_t *){ctx.scratch(self.scratch_bytes(g, n))}")

    def cost_terms(self, g: Graph, n: Node) -> tuple[str, dict[str, float]]:
        """Eight gate FC loops per step (the fc family until fitted) and ~10 int16 passes per state unit."""
        p = lstm_params(g, n)
        return "fc_lstm", {"call": 1, "macs": self.macs(g, n), "out": p.batch * p.steps * p.n_state * 10}
