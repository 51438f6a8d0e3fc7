"""MEAN and SUM, int8 and int16 (16x8 mode), as TFLite Micro's reduce kernels compute them.

Supported: any set of reduced axes that is contiguous once sorted (global
average pooling over H,W is the case real models use), with or without
keep_dims. Both requantize (sum - zp*count) with TFLite Micro's
reference_ops::QuantizedMeanOrSum; MEAN first folds 1/count into the
fixed-point multiplier. Older TFLite Micro releases took a truncating
sum/count shortcut when input and output quantization were equal; the
oracle we pin does not (tests/test_ops_conv.py: mean_gap_same_quant).
"""
from __future__ import annotations

import numpy as np

from tinyml.fixedpoint import multiply_by_quantized_multiplier, quantize_multiplier
from tinyml.ir import Graph, Node, Tensor
from tinyml.codegen.cnames import ctype
from tinyml.ops.base import Op, bit_class, register
from tinyml.ops.int16 import int16_per_tensor
from tinyml.ops.quantized import arity_reason, c_int32, int8_io_reason
from tinyml.ops.subbyte import signed_range

MAX_REDUCED = 1 << 23  # keeps sum and zp*count inside int32 as in TFLite Micro


def reduced_axes(g: Graph, n: Node) -> list[int]:
    """The axis input resolved as TFLite does: negatives wrapped, duplicates dropped."""
    rank = len(g[n.inputs[0]].shape)
    axes = sorted({int(a) + rank if int(a) < 0 else int(a) for a in g[n.inputs[1]].data.reshape(-1)})
    if any(not 0 <= a < rank for a in axes):
        raise ValueError(f"axis out of range for rank {rank}")
    return axes


def split(shape: tuple[int, ...], axes: list[int]) -> tuple[int, int, int]:
    """(outer, reduced, inner) element counts around the contiguous reduced run."""
    if not axes:
        return int(np.prod(shape)), 1, 1
    lo, hi = axes[0], axes[-1] + 1
    return int(np.prod(shape[:lo])), int(np.prod(shape[lo:hi])), int(np.prod(shape[hi:]))


def out_range(t: Tensor) -> tuple[int, int]:
    return signed_range(16 if t.dtype == "int16" else 8)


class _Reduce(Op):
    is_mean = True

    def check(self, g: Graph, n: Node) -> str | None:
        x = g[n.inputs[0]] if n.inputs and n.inputs[0] is not None else None
        if x is not None and x.dtype == "int16":  # the same arithmetic on int16 (16x8 mode)
            why = arity_reason(n, 2) or int16_per_tensor(x, "input", any_zp=True) \
                or int16_per_tensor(g[n.outputs[0]], "output", any_zp=True)
        else:
            why = int8_io_reason(g, n, 2)
        if why:
            return why
        if not g[n.inputs[1]].is_const:
            return "the reduction axes must be a constant tensor"
        if g[n.inputs[1]].dtype not in ("int32", "int64"):
            return "the reduction axes must be integers"
        try:
            axes = reduced_axes(g, n)
        except ValueError as e:
            return str(e)
        if axes and axes != list(range(axes[0], axes[-1] + 1)):
            return f"reducing non-adjacent axes {axes} is not supported"
        if split(x.shape, axes)[1] > (MAX_REDUCED if x.dtype == "int8" else MAX_REDUCED >> 8):
            return "too many elements reduced into one output"
        return None

    def infer_shapes(self, g: Graph, n: Node) -> list[tuple[int, ...]]:
        shape, axes = g[n.inputs[0]].shape, reduced_axes(g, n)
        if n.attrs.get("keep_dims"):
            return [tuple(1 if i in axes else d for i, d in enumerate(shape))]
        return [tuple(d for i, d in enumerate(shape) if i not in axes)]

    def _multiplier(self, g: Graph, n: Node, count: int) -> tuple[int, int]:
        """input/output scale in double; for MEAN, 1/count folded in as TFLite Micro does."""
        qx, qy = g[n.inputs[0]].quant, g[n.outputs[0]].quant
        mult, shift = quantize_multiplier(float(np.float32(qx.scale[0])) / float(np.float32(qy.scale[0])))
        if self.is_mean:
            s = min(count.bit_length() - 1, 32, 31 + shift)
            mult, shift = (mult << s) // count, shift - s
        return mult, shift

    def reference(self, g: Graph, n: Node, inputs: list[np.ndarray | None]) -> list[np.ndarray]:
        x = inputs[0].astype(np.int64)
        outer, count, inner = split(x.shape, reduced_axes(g, n))
        total = x.reshape(outer, count, inner).sum(axis=1)
        mult, shift = self._multiplier(g, n, count)
        zp = g[n.inputs[0]].quant.zp
        y = multiply_by_quantized_multiplier(total - zp * count, mult, shift) + g[n.outputs[0]].quant.zp
        out = g[n.outputs[0]]
        return [np.clip(y, *out_range(out)).astype(out.np_dtype).reshape(self.infer_shapes(g, n)[0])]

    def emit(self, g: Graph, n: Node, ctx) -> None:
        outer, count, inner = split(g[n.inputs[0]].shape, reduced_axes(g, n))
        mult, shift = self._multiplier(g, n, count)
        fn = ctx.kernel("mean.c.j2", op=self.name, outer=outer, reduced=count, inner=inner,
                        mult=c_int32(mult), shift=shift, zp_sum=g[n.inputs[0]].quant.zp * count,
                        out_zp=g[n.outputs[0]].quant.zp, ct=ctype(g[n.inputs[0]].dtype),
                        lo=out_range(g[n.outputs[0]])[0], hi=out_range(g[n.outputs[0]])[1])
        ctx.call(fn, ctx.tensor(n.inputs[0]), ctx.tensor(n.outputs[0]))

    def cost_terms(self, g: Graph, n: Node) -> tuple[str, dict[str, float]]:
        """A sum over every input element, a requantization per output."""
        x, y = g[n.inputs[0]], g[n.outputs[0]]
        return bit_class("reduce", x, y), {"call": 1, "in": x.size, "out": y.size}


@register
class Mean(_Reduce):
    name = "MEAN"


@register
class Sum(_Reduce):
    name = "SUM"
    is_mean = False
