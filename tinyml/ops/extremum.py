"""REDUCE_MAX / REDUCE_MIN and ARG_MAX / ARG_MIN over int8 tensors, as TFLite Micro computes them.

REDUCE_MAX/MIN: the extreme raw code over the reduced axes (contiguous once
sorted, as MEAN; TFLite Micro starts from the type's lowest/highest value and
requires equal input and output quantization, so nothing is requantized).
ARG_MAX/ARG_MIN: the index along one axis of the first extreme value (TFLite's
strict comparison keeps the first), written as int32 (TFLite Micro fails to invoke an int64 ARG_MAX).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

import numpy as np

from tinyml.codegen.cnames import ctype
from tinyml.ir import Graph, Node
from tinyml.ops.base import Op, bit_class, register
from tinyml.ops.mean import reduced_axes, split
from tinyml.ops.quantized import int8_io_reason, int8_per_tensor

if TYPE_CHECKING:
    from tinyml.codegen.context import EmitContext


def _emit(ctx: "EmitContext", n: Node, src_t: str, dst_t: str, shape: tuple[int, int, int], arg: bool,
          larger: bool) -> None:
    outer, count, inner = shape
    fn = ctx.kernel("extremum.c.j2", tx=src_t, ty=dst_t, outer=outer, count=count, inner=inner, arg=arg,
                    cmp=">" if larger else "<")
    ctx.call(fn, ctx.tensor(n.inputs[0]), ctx.tensor(n.outputs[0]))


class _ReduceExtremum(Op):
    larger: ClassVar[bool]

    def check(self, g: Graph, n: Node) -> str | None:
        if why := int8_io_reason(g, n, 2):
            return why
        x, y = g[n.inputs[0]], g[n.outputs[0]]
        if np.float32(x.quant.scale[0]) != np.float32(y.quant.scale[0]) or x.quant.zp != y.quant.zp:
            return f"{n.op} input and output quantization differ (TFLite Micro requires them equal)"
        if not g[n.inputs[1]].is_const or g[n.inputs[1]].dtype not in ("int32", "int64"):
            return "the reduction axes must be a constant integer tensor"
        try:
            axes = reduced_axes(g, n)
        except ValueError as e:
            return str(e)
        if axes and axes != list(range(axes[0], axes[-1] + 1)):
            return f"reducing non-adjacent axes {axes} is not supported"
        return None

    def infer_shapes(self, g: Graph, n: Node) -> list[tuple[int, ...]]:
        shape, axes = g[n.inputs[0]].shape, reduced_axes(g, n)
        if n.attrs.get("keep_dims"):
            return [tuple(1 if i in axes else d for i, d in enumerate(shape))]
        return [tuple(d for i, d in enumerate(shape) if i not in axes)]

    def reference(self, g: Graph, n: Node, inputs: list[np.ndarray | None]) -> list[np.ndarray]:
        x = np.asarray(inputs[0])
        outer, count, inner = split(x.shape, reduced_axes(g, n))
        rows = x.reshape(outer, count, inner)
        y = rows.max(axis=1) if self.larger else rows.min(axis=1)
        return [y.astype(np.int8).reshape(self.infer_shapes(g, n)[0])]

    def emit(self, g: Graph, n: Node, ctx: "EmitContext") -> None:
        shape = split(g[n.inputs[0]].shape, reduced_axes(g, n))
        _emit(ctx, n, "int8_t", "int8_t", shape, False, self.larger)

    def cost_terms(self, g: Graph, n: Node) -> tuple[str, dict[str, float]]:
        x, y = g[n.inputs[0]], g[n.outputs[0]]
        return bit_class("reduce_extremum", x, y), {"call": 1, "in": x.size, "out": y.size}


@register
class ReduceMax(_ReduceExtremum):
    name = "REDUCE_MAX"
    larger = True


@register
class ReduceMin(_ReduceExtremum):
    name = "REDUCE_MIN"
    larger = False


class _ArgExtremum(Op):
    larger: ClassVar[bool]

    def _axis(self, g: Graph, n: Node) -> int:
        a = g[n.inputs[1]]
        if not a.is_const or a.dtype not in ("int32", "int64") or a.size != 1:
            raise ValueError("the axis must be one constant integer")
        rank = len(g[n.inputs[0]].shape)
        axis = int(a.data.reshape(-1)[0])
        axis = axis + rank if axis < 0 else axis
        if not 0 <= axis < rank:
            raise ValueError(f"axis out of range for rank {rank}")
        return axis

    def check(self, g: Graph, n: Node) -> str | None:
        if len(n.inputs) != 2 or None in n.inputs or len(n.outputs) != 1:
            return "expects an input, an axis and one output"
        if why := int8_per_tensor(g[n.inputs[0]], "input"):
            return why
        if g[n.outputs[0]].dtype != "int32":  # TFLite Micro fails to invoke an int64 one
            return f"output is {g[n.outputs[0]].dtype}, only int32 is supported (as TFLite Micro)"
        try:
            self._axis(g, n)
        except ValueError as e:
            return str(e)
        return None

    def infer_shapes(self, g: Graph, n: Node) -> list[tuple[int, ...]]:
        shape, axis = g[n.inputs[0]].shape, self._axis(g, n)
        return [tuple(d for i, d in enumerate(shape) if i != axis)]

    def reference(self, g: Graph, n: Node, inputs: list[np.ndarray | None]) -> list[np.ndarray]:
        x, axis = np.asarray(inputs[0]), self._axis(g, n)
        idx = np.argmax(x, axis=axis) if self.larger else np.argmin(x, axis=axis)  # first extreme
        return [idx.astype(g[n.outputs[0]].np_dtype).reshape(self.infer_shapes(g, n)[0])]

    def emit(self, g: Graph, n: Node, ctx: "EmitContext") -> None:
        shape = split(g[n.inputs[0]].shape, [self._axis(g, n)])
        _emit(ctx, n, "int8_t", ctype(g[n.outputs[0]].dtype), shape, True, self.larger)

    def cost_terms(self, g: Graph, n: Node) -> tuple[str, dict[str, float]]:
        x = g[n.inputs[0]]
        return bit_class("reduce_arg", x), {"call": 1, "in": x.size, "out": g[n.outputs[0]].size}


@register
class ArgMax(_ArgExtremum):
    name = "ARG_MAX"
    larger = True


@register
class ArgMin(_ArgExtremum):
    name = "ARG_MIN"
    larger = False
