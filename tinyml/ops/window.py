"""READ_WINDOW and WRITE_WINDOW: the copies a patch schedule is made of.

A patch-based stage (tinyml/schedule/patches/) runs its layers on small
tensors that each hold one spatial window of a full-size tensor. These two
internal ops (no TFLite equivalent) move the windows:

    READ_WINDOW(src) -> dst            dst = src[begin : begin + dst.shape]
    WRITE_WINDOW(acc, src) -> out      out = acc, with out[begin : begin + src.shape] = src

`begin` is an attr with one start index per axis. A READ_WINDOW of a
streamed graph input (Tensor.streamed) calls the application's
tinyml_read_input() instead of copying from the arena. WRITE_WINDOW updates its
first input in place (`updates_input`): the memory planner gives `acc` and
`out` one buffer, so a chain of writes fills one full-size tensor patch by
patch. `acc` may be absent for the first write of a chain; the elements it
leaves unwritten are undefined in C (zero in the reference) until later
writes cover them. Both are strided copies of the shared kernel family.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from tinyml.ir import Graph, Node
from tinyml.ops.base import bit_class, Op, register
from tinyml.ops.strided_copy import (
    contiguous_strides, Copy, copy_class, copy_pixel_cost, emit_copy, node_dtype_problem, strided_copy_terms,
)

if TYPE_CHECKING:
    from tinyml.codegen.context import EmitContext


def window_slices(begin: tuple[int, ...], shape: tuple[int, ...]) -> tuple[slice, ...]:
    return tuple(slice(b, b + s) for b, s in zip(begin, shape))


def window_problem(outer: tuple[int, ...], begin: tuple[int, ...], inner: tuple[int, ...]) -> str | None:
    """Why the window `inner` at `begin` does not lie inside a tensor of shape `outer`."""
    if not (len(outer) == len(begin) == len(inner)):
        return f"window begin {list(begin)} does not match ranks {len(outer)} and {len(inner)}"
    if any(b < 0 or b + s > d for b, s, d in zip(begin, inner, outer)):
        return f"window {list(inner)} at {list(begin)} leaves a tensor of shape {list(outer)}"
    return None


def window_copy(outer: tuple[int, ...], begin: tuple[int, ...], inner: tuple[int, ...], into_outer: bool) -> Copy:
    """The strided copy between a dense window tensor and its place in a dense outer tensor."""
    outer_strides = contiguous_strides(outer)
    offset = sum(b * s for b, s in zip(begin, outer_strides))
    dense = contiguous_strides(inner)
    if into_outer:
        return Copy(tuple(inner), dense, outer_strides, 0, offset)
    return Copy(tuple(inner), outer_strides, dense, offset, 0)


def _begin(n: Node) -> tuple[int, ...]:
    return tuple(int(b) for b in n.attrs.get("begin", ()))


@register
class ReadWindow(Op):
    name = "READ_WINDOW"

    def pixel_cost(self, g: Graph, n: Node) -> tuple[float, float]:
        return copy_pixel_cost(g, n)

    def check(self, g: Graph, n: Node) -> str | None:
        if len(n.inputs) != 1 or n.inputs[0] is None or len(n.outputs) != 1:
            return "READ_WINDOW takes one input and one output"
        src, dst = g[n.inputs[0]], g[n.outputs[0]]
        if src.streamed and (src.name not in g.inputs or len(src.shape) != 4 or src.shape[0] != 1
                             or dst.shape[3] != src.shape[3] or _begin(n)[3:] != (0,)):
            return "a streamed input is read in windows of whole pixels of a batch-1 NHWC graph input"
        return window_problem(src.shape, _begin(n), dst.shape) or node_dtype_problem(g, n)

    def infer_shapes(self, g: Graph, n: Node) -> list[tuple[int, ...]]:
        # The window's extent is the output tensor's shape; nothing to derive.
        return [g[n.outputs[0]].shape]

    def reference(self, g: Graph, n: Node, inputs: list[np.ndarray | None]) -> list[np.ndarray]:
        return [np.array(inputs[0][window_slices(_begin(n), g[n.outputs[0]].shape)])]

    def emit(self, g: Graph, n: Node, ctx: "EmitContext") -> None:
        src, dst = g[n.inputs[0]], g[n.outputs[0]]
        if src.streamed:  # the application hands the window over (tinyml_model.h)
            _, row, col, _ = _begin(n)
            ctx.call("tinyml_read_input", f"{g.inputs.index(src.name)}u", f"{row}u", f"{col}u",
                     f"{dst.shape[1]}u", f"{dst.shape[2]}u", ctx.tensor(dst.name))
            return
        emit_copy(ctx, window_copy(src.shape, _begin(n), dst.shape, into_outer=False),
                  ctx.tensor(src.name), ctx.tensor(dst.name), dst.dtype)

    def cost_terms(self, g: Graph, n: Node) -> tuple[str, dict[str, float]]:
        """A strided copy of the window out of the full tensor (the application's, when streamed)."""
        src, dst = g[n.inputs[0]], g[n.outputs[0]]
        if src.streamed:
            return bit_class("copy_streamed", dst), {"call": 1, "bytes": dst.nbytes}
        copy = window_copy(src.shape, _begin(n), dst.shape, into_outer=False)
        return copy_class(dst), strided_copy_terms([copy], dst.np_dtype.itemsize)


@register
class WriteWindow(Op):
    name = "WRITE_WINDOW"
    updates_input = True

    def pixel_cost(self, g: Graph, n: Node) -> tuple[float, float]:
        return copy_pixel_cost(g, n)

    def check(self, g: Graph, n: Node) -> str | None:
        if len(n.inputs) != 2 or n.inputs[1] is None or len(n.outputs) != 1:
            return "WRITE_WINDOW takes (accumulator or none, window) and one output"
        out = g[n.outputs[0]]
        if n.inputs[0] is not None and g[n.inputs[0]].shape != out.shape:
            return "WRITE_WINDOW accumulator and output shapes differ"
        return window_problem(out.shape, _begin(n), g[n.inputs[1]].shape) or node_dtype_problem(g, n, (0, 1))

    def infer_shapes(self, g: Graph, n: Node) -> list[tuple[int, ...]]:
        return [g[n.outputs[0]].shape]

    def reference(self, g: Graph, n: Node, inputs: list[np.ndarray | None]) -> list[np.ndarray]:
        out = g[n.outputs[0]]
        y = np.zeros(out.shape, out.np_dtype) if inputs[0] is None else np.array(inputs[0])
        y[window_slices(_begin(n), inputs[1].shape)] = inputs[1]
        return [y]

    def emit(self, g: Graph, n: Node, ctx: "EmitContext") -> None:
        acc, src, out = n.inputs[0], g[n.inputs[1]], g[n.outputs[0]]
        if acc is not None and ctx.offsets.get(acc) != ctx.offsets.get(out.name):
            # The planner kept them apart (it is free to): carry the earlier patches over first.
            emit_copy(ctx, Copy((out.size,), (1,), (1,)), ctx.tensor(acc), ctx.tensor(out.name), out.dtype)
        emit_copy(ctx, window_copy(out.shape, _begin(n), src.shape, into_outer=True),
                  ctx.tensor(src.name), ctx.tensor(out.name), out.dtype)

    def cost_terms(self, g: Graph, n: Node) -> tuple[str, dict[str, float]]:
        """A strided copy of the window into the full tensor (the planner keeps the accumulator in place)."""
        src, out = g[n.inputs[1]], g[n.outputs[0]]
        copy = window_copy(out.shape, _begin(n), src.shape, into_outer=True)
        return copy_class(src), strided_copy_terms([copy], src.np_dtype.itemsize)
