"""PAD, PADV2 and MIRROR_PAD: one kernel that reads the input once, in order.

Padding value, as TFLite Micro uses it: PAD fills int8/uint8 with the output
zero point (real 0.0) and everything else with 0; PADV2 fills with its
constant_values tensor's raw value (read at run time, so it may be computed).
MIRROR_PAD copies REFLECT (edge excluded) or SYMMETRIC (edge included) borders.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from tinyml.codegen.cnames import ctype
from tinyml.errors import BadModel
from tinyml.ir import Graph, Node
from tinyml.ops.base import Op, bit_class, copy_terms, register
from tinyml.ops.strided_copy import const_ints, node_dtype_problem

if TYPE_CHECKING:
    from tinyml.codegen.context import EmitContext

MIRROR_MODES = {"REFLECT": 1, "SYMMETRIC": 2}


def pad_levels(shape: tuple[int, ...], pads: list[tuple[int, int]], mirror: bool) -> list[tuple[int, int, int]]:
    """(n_in, lo, hi) per loop level, outermost first.

    Unit unpadded dims vanish; an unpadded dim merges into the level outside it
    when both are unpadded, and (constant padding only) also when only the
    outer one is padded: its border blocks then just grow by that factor.
    """
    levels: list[tuple[int, int, int]] = []
    for d, (lo, hi) in zip(shape, pads):
        if d == 1 and lo == 0 and hi == 0:
            continue
        if levels and lo == 0 and hi == 0:
            n0, lo0, hi0 = levels[-1]
            if not mirror or (lo0 == 0 and hi0 == 0):
                levels[-1] = (n0 * d, lo0 * d, hi0 * d)
                continue
        levels.append((d, lo, hi))
    return levels or [(1, 0, 0)]


class _PadBase(Op):
    def pads(self, g: Graph, n: Node) -> list[tuple[int, int]]:
        shape = g[n.inputs[0]].shape
        flat = const_ints(g, n.inputs[1] if len(n.inputs) > 1 else None, f"{self.name} paddings")
        if len(flat) != 2 * len(shape):
            raise BadModel(f"{self.name} paddings have {len(flat)} values for rank {len(shape)}")
        pairs = [(flat[2 * k], flat[2 * k + 1]) for k in range(len(shape))]
        if any(lo < 0 or hi < 0 for lo, hi in pairs):
            raise BadModel(f"{self.name} negative paddings {pairs}")
        return pairs

    def mirror(self, n: Node) -> int:
        return 0

    def check(self, g: Graph, n: Node) -> str | None:
        try:
            pairs = self.pads(g, n)
        except BadModel as e:
            return str(e)
        if self.mirror(n):
            off = 1 if self.mirror(n) == 1 else 0
            if any(max(lo, hi) > d - off for d, (lo, hi) in zip(g[n.inputs[0]].shape, pairs)):
                return f"{n.attrs.get('mode')} padding wider than the input allows"
        return node_dtype_problem(g, n)

    def infer_shapes(self, g: Graph, n: Node) -> list[tuple[int, ...]]:
        shape = g[n.inputs[0]].shape
        return [tuple(d + lo + hi for d, (lo, hi) in zip(shape, self.pads(g, n)))]

    def kernel(self, g: Graph, n: Node, ctx: "EmitContext") -> str:
        x = g[n.inputs[0]]
        mirror = self.mirror(n)
        levels = pad_levels(x.shape, self.pads(g, n), bool(mirror))
        blocks, size = [], 1
        for n_in, lo, hi in reversed(levels):
            blocks.append(size)
            size *= n_in + lo + hi
        return ctx.kernel("pad.c.j2", t=ctype(x.dtype), byte=x.np_dtype.itemsize == 1,
                          levels=levels, blocks=blocks[::-1], mirror=mirror)

    def cost_terms(self, g: Graph, n: Node) -> tuple[str, dict[str, float]]:
        """The input copied into the padded output."""
        y = g[n.outputs[0]]
        return bit_class("copy_pad", g[n.inputs[0]], y), copy_terms(y)


def pad_value(g: Graph, n: Node) -> int:
    """PAD's fill: the output zero point for 8-bit quantized tensors, else 0."""
    out = g[n.outputs[0]]
    if out.dtype in ("int8", "uint8") and out.quant is not None:
        return out.quant.zp
    return 0


@register
class Pad(_PadBase):
    name = "PAD"

    def reference(self, g: Graph, n: Node, inputs: list[np.ndarray | None]) -> list[np.ndarray]:
        x = np.asarray(inputs[0])
        return [np.pad(x, self.pads(g, n), constant_values=np.asarray(pad_value(g, n)).astype(x.dtype))]

    def emit(self, g: Graph, n: Node, ctx: "EmitContext") -> None:
        fn = self.kernel(g, n, ctx)
        ctx.call(fn, ctx.tensor(n.inputs[0]), ctx.tensor(n.outputs[0]), pad_value(g, n))


@register
class PadV2(_PadBase):
    name = "PADV2"

    def check(self, g: Graph, n: Node) -> str | None:
        if len(n.inputs) != 3 or n.inputs[2] is None:
            return "PADV2 needs a constant_values input"
        cv = g[n.inputs[2]]
        if cv.size != 1 or cv.dtype != g[n.inputs[0]].dtype:
            return "constant_values must be one value of the input's dtype"
        return super().check(g, n)

    def reference(self, g: Graph, n: Node, inputs: list[np.ndarray | None]) -> list[np.ndarray]:
        x = np.asarray(inputs[0])
        value = np.asarray(inputs[2]).reshape(-1)[0]
        return [np.pad(x, self.pads(g, n), constant_values=value)]

    def emit(self, g: Graph, n: Node, ctx: "EmitContext") -> None:
        fn = self.kernel(g, n, ctx)
        ctx.call(fn, ctx.tensor(n.inputs[0]), ctx.tensor(n.outputs[0]), f"{ctx.tensor(n.inputs[2])}[0]")


@register
class MirrorPad(_PadBase):
    name = "MIRROR_PAD"

    def mirror(self, n: Node) -> int:
        return MIRROR_MODES.get(str(n.attrs.get("mode", "REFLECT")), 0)

    def check(self, g: Graph, n: Node) -> str | None:
        if not self.mirror(n):
            return f"mirror mode {n.attrs.get('mode')!r}"
        return super().check(g, n)

    def reference(self, g: Graph, n: Node, inputs: list[np.ndarray | None]) -> list[np.ndarray]:
        mode = "reflect" if self.mirror(n) == 1 else "symmetric"
        return [np.pad(np.asarray(inputs[0]), self.pads(g, n), mode=mode)]

    def emit(self, g: Graph, n: Node, ctx: "EmitContext") -> None:
        fn = self.kernel(g, n, ctx)
        ctx.call(fn, ctx.tensor(n.inputs[0]), ctx.tensor(n.outputs[0]))
