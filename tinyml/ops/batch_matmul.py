"""BATCH_MATMUL, int8 (TFLite Micro's batch_matmul.cc over reference_ops::BatchMatMul).

out[b, i, j] = sum_k (lhs[b, i, k] - lhs_zp) * (rhs[b, k, j] - rhs_zp), requantized
by lhs_scale * rhs_scale / out_scale (in double, as FULLY_CONNECTED) with the
double-rounding MultiplyByQuantizedMultiplier, + out_zp, clamped to int8 (the op
has no fused activation). adj_x / adj_y read lhs / rhs transposed in their last
two axes; ranks 2 to 5, batch axes broadcast where one side has 1 (TFLite Micro's
rules). Attention's Q.K^T and softmax(scores).V are this op.
"""
from __future__ import annotations

import numpy as np

from tinyml.fixedpoint import multiply_by_quantized_multiplier, quantize_multiplier, wrap_int32
from tinyml.ir import Graph, Node
from tinyml.ops.base import Op, bit_class, register
from tinyml.ops.quantized import c_int32, int8_per_tensor

MAX_BATCH_AXES = 3  # rank 5


def _matrices(g: Graph, n: Node) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...], int, int, int]:
    """(output batch shape, lhs batch shape, rhs batch shape, rows, cols, depth), batch shapes
    left-padded with 1 to the output's batch rank."""
    a, b = g[n.inputs[0]].shape, g[n.inputs[1]].shape
    rank = max(len(a), len(b))
    la, lb = (1,) * (rank - len(a)) + tuple(a), (1,) * (rank - len(b)) + tuple(b)
    rows, depth = (la[-1], la[-2]) if n.attrs.get("adj_x") else (la[-2], la[-1])
    depth_b, cols = (lb[-1], lb[-2]) if n.attrs.get("adj_y") else (lb[-2], lb[-1])
    if depth != depth_b:
        raise ValueError(f"inner dimensions differ: {depth} and {depth_b}")
    batch = []
    for x, y in zip(la[:-2], lb[:-2]):
        if x != y and 1 not in (x, y):
            raise ValueError(f"batch axes {la[:-2]} and {lb[:-2]} do not broadcast")
        batch.append(max(x, y))
    return tuple(batch), la[:-2], lb[:-2], rows, cols, depth


def _requant(g: Graph, n: Node) -> tuple[int, int]:
    return matmul_multiplier(*(g[t].quant.scale[0] for t in (n.inputs[0], n.inputs[1], n.outputs[0])))


def matmul_multiplier(sa: float, sb: float, so: float) -> tuple[int, int]:
    """lhs scale * rhs scale / output scale (the stored float32 scales, in double) as (q, shift)."""
    sa, sb, so = (float(np.float32(v)) for v in (sa, sb, so))
    return quantize_multiplier(sa * sb / so)


def _strides(batch: tuple[int, ...], own: tuple[int, ...], matrix: int) -> list[int]:
    """Element offset per step of each output batch axis in one operand (0 where it broadcasts)."""
    strides, step = [], matrix
    for size in reversed(own):
        strides.append(step if size > 1 else 0)
        step *= size
    return list(reversed(strides))


@register
class BatchMatMul(Op):
    name = "BATCH_MATMUL"

    def check(self, g: Graph, n: Node) -> str | None:
        if len(n.inputs) != 2 or None in n.inputs or len(n.outputs) != 1:
            return "expects two inputs and one output"
        for t, role in ((n.inputs[0], "lhs"), (n.inputs[1], "rhs"), (n.outputs[0], "output")):
            if why := int8_per_tensor(g[t], role):
                return why
        ra, rb = len(g[n.inputs[0]].shape), len(g[n.inputs[1]].shape)
        if not (2 <= ra <= 5 and 2 <= rb <= 5):
            return f"operand ranks {ra} and {rb}: TFLite Micro supports 2 to 5"
        try:
            _matrices(g, n)
        except ValueError as e:
            return str(e)
        return None

    def infer_shapes(self, g: Graph, n: Node) -> list[tuple[int, ...]]:
        batch, _, _, rows, cols, _ = _matrices(g, n)
        return [(*batch, rows, cols)]

    def reference(self, g: Graph, n: Node, inputs: list[np.ndarray | None]) -> list[np.ndarray]:
        batch, ba, bb, rows, cols, depth = _matrices(g, n)
        a = inputs[0].astype(np.int64).reshape(*ba, *inputs[0].shape[-2:]) - g[n.inputs[0]].quant.zp
        b = inputs[1].astype(np.int64).reshape(*bb, *inputs[1].shape[-2:]) - g[n.inputs[1]].quant.zp
        if n.attrs.get("adj_x"):
            a = np.swapaxes(a, -1, -2)
        if n.attrs.get("adj_y"):
            b = np.swapaxes(b, -1, -2)
        acc = wrap_int32(np.matmul(a, b))
        mult, shift = _requant(g, n)
        y = multiply_by_quantized_multiplier(acc, mult, shift) + g[n.outputs[0]].quant.zp
        return [np.clip(y, -128, 127).astype(np.int8).reshape(*batch, rows, cols)]

    def macs(self, g: Graph, n: Node) -> int:
        batch, _, _, rows, cols, depth = _matrices(g, n)
        return int(np.prod(batch, dtype=np.int64)) * rows * cols * depth

    def emit(self, g: Graph, n: Node, ctx) -> None:
        batch, ba, bb, rows, cols, depth = _matrices(g, n)
        pad = (1,) * (MAX_BATCH_AXES - len(batch))
        batch, ba, bb = pad + batch, pad + ba, pad + bb
        mult, shift = _requant(g, n)
        adj_x, adj_y = bool(n.attrs.get("adj_x")), bool(n.attrs.get("adj_y"))
        fn = ctx.kernel(
            "batch_matmul.c.j2", dsp=bool(ctx.target.dsp) and dsp_applies(g, n), depth4=depth - depth % 4, batch=batch, lhs_strides=_strides(batch, ba, rows * depth),
            rhs_strides=_strides(batch, bb, depth * cols), rows=rows, cols=cols, depth=depth,
            # element steps along i and k in lhs, along k and j in rhs
            lhs_i=1 if adj_x else depth, lhs_k=rows if adj_x else 1,
            rhs_k=1 if adj_y else cols, rhs_j=depth if adj_y else 1,
            lhs_zp=g[n.inputs[0]].quant.zp, rhs_zp=g[n.inputs[1]].quant.zp,
            mult=c_int32(mult), shift=shift, out_zp=g[n.outputs[0]].quant.zp, out_i=cols)
        ctx.call(fn, ctx.tensor(n.inputs[0]), ctx.tensor(n.inputs[1]), ctx.tensor(n.outputs[0]))

    def cost_terms(self, g: Graph, n: Node) -> tuple[str, dict[str, float]]:
        """A multiply-accumulate per (output, depth) pair and a requantization per output; on a DSP
        core (the cost model's assumption, as for FULLY_CONNECTED) the SMLAD kernel when it applies,
        which also gathers each rhs column once per batch."""
        y = g[n.outputs[0]]
        batch, _, _, rows, cols, depth = _matrices(g, n)
        if dsp_applies(g, n):
            gathers = int(np.prod(batch, dtype=np.int64)) * cols * depth
            return bit_class("matmul_dsp", g[n.inputs[0]], g[n.inputs[1]], y), \
                {"call": 1, "macs": self.macs(g, n), "out": y.size, "in": gathers}
        return bit_class("matmul", g[n.inputs[0]], g[n.inputs[1]], y), \
            {"call": 1, "macs": self.macs(g, n), "out": y.size}


DSP_MAX_DEPTH = 256  # the kernel's int16 column lives on the stack: at most 520 bytes


def dsp_applies(g: Graph, n: Node) -> bool:
    """Whether the SMLAD kernel runs (on a DSP core): lhs rows contiguous in depth (not adj_x),
    at least four deep, a column that fits the stack buffer."""
    depth = _matrices(g, n)[5]
    return not n.attrs.get("adj_x") and 4 <= depth <= DSP_MAX_DEPTH
