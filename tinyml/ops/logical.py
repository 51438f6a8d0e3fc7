"""LOGICAL_AND, LOGICAL_OR, LOGICAL_NOT on bool tensors, and CAST between integer and bool types.

They come with comparisons and SELECT_V2 in masking code (ops/compare.py). AND/OR are
binary element-wise ops (`Arith` kinds of ops/elementwise.py, broadcast up to 4-D as
TFLite Micro's BroadcastBinaryFunction4DSlow); NOT is a byte lookup.

CAST converts values, not quantized reals (TFLite Micro's cast.cc ignores
quantization): from int8, int16, int32 or bool to int8, int16, int32, bool or
float32, narrowing by two's-complement wrap (static_cast), to bool by != 0.
TFLite Micro refuses uint8 either way; float32 sources are refused here (float
compute is out of scope: its saturating float->int8 path is a float kernel).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from tinyml.codegen.cnames import ctype
from tinyml.ir import Graph, Node
from tinyml.ops.base import Op, bit_class, register
from tinyml.ops.compare import COMPARE_RANK
from tinyml.ops.elementwise import LOGICAL, Arith, BinaryOp, broadcast_shape, byte_codes, emit_lut

if TYPE_CHECKING:
    from tinyml.codegen.context import EmitContext

CAST_FROM = ("int8", "int16", "int32", "bool")
CAST_TO = ("int8", "int16", "int32", "bool", "float32")


class Logical(BinaryOp):
    """Two bool operands, a bool output."""

    def arith(self, g: Graph, n: Node) -> Arith:
        return Arith(self.name, lo=0, hi=1)

    def check(self, g: Graph, n: Node) -> str | None:
        if len(n.inputs) != 2 or len(n.outputs) != 1 or None in n.inputs:
            return "expects two inputs and one output"
        a, b, y = g[n.inputs[0]], g[n.inputs[1]], g[n.outputs[0]]
        if (a.dtype, b.dtype, y.dtype) != ("bool", "bool", "bool"):
            return f"inputs {a.dtype}, {b.dtype} and output {y.dtype}: bool expected"
        try:
            shape = broadcast_shape(a.shape, b.shape)
        except ValueError as e:
            return str(e)
        if a.shape != b.shape and len(shape) > COMPARE_RANK:
            return f"broadcast rank {len(shape)} is above TFLite Micro's {COMPARE_RANK}"
        return None if y.shape == shape else f"output shape {y.shape} is not the broadcast shape {shape}"


for _kind in LOGICAL:
    register(type(_kind.title().replace("_", ""), (Logical,), {"name": _kind}))


class _Unary(Op):
    """One input, one output of the same shape; element by element."""

    pointwise = True

    def infer_shapes(self, g: Graph, n: Node) -> list[tuple[int, ...]]:
        return [g[n.inputs[0]].shape]

    def cost_terms(self, g: Graph, n: Node) -> tuple[str, dict[str, float]]:
        x, y = g[n.inputs[0]], g[n.outputs[0]]
        return bit_class(f"lut_{self.name.lower()}", x, y), {"call": 1, "out": y.size}


@register
class LogicalNot(_Unary):
    name = "LOGICAL_NOT"

    def check(self, g: Graph, n: Node) -> str | None:
        if len(n.inputs) != 1 or len(n.outputs) != 1 or n.inputs[0] is None:
            return "expects one input and one output"
        if g[n.inputs[0]].dtype != "bool" or g[n.outputs[0]].dtype != "bool":
            return "input and output must be bool"
        return None

    def reference(self, g: Graph, n: Node, inputs: list[np.ndarray | None]) -> list[np.ndarray]:
        return [np.logical_not(np.asarray(inputs[0]).astype(bool))]

    def emit(self, g: Graph, n: Node, ctx: "EmitContext") -> None:
        emit_lut(ctx, n.inputs[0], n.outputs[0], byte_codes("uint8") == 0)


@register
class Cast(_Unary):
    name = "CAST"

    def check(self, g: Graph, n: Node) -> str | None:
        if len(n.inputs) != 1 or len(n.outputs) != 1 or n.inputs[0] is None:
            return "expects one input and one output"
        x, y = g[n.inputs[0]], g[n.outputs[0]]
        if x.dtype not in CAST_FROM or y.dtype not in CAST_TO:
            return f"from {x.dtype} to {y.dtype}: casts from {', '.join(CAST_FROM)} to {', '.join(CAST_TO)} run"
        return None if x.shape == y.shape else "output shape differs from the input's"

    def reference(self, g: Graph, n: Node, inputs: list[np.ndarray | None]) -> list[np.ndarray]:
        y = g[n.outputs[0]]
        x = np.asarray(inputs[0]).astype(np.int64)
        if y.dtype == "bool":
            return [x != 0]
        return [x.astype(y.np_dtype)]  # numpy's integer narrowing wraps, like static_cast

    def emit(self, g: Graph, n: Node, ctx: "EmitContext") -> None:
        x, y = g[n.inputs[0]], g[n.outputs[0]]
        if x.bits == 8:  # any function of one byte is a table
            codes = byte_codes("uint8" if x.dtype == "bool" else x.dtype)
            emit_lut(ctx, x.name, y.name, self.reference(g, n, [codes])[0])
            return
        fn = ctx.kernel("cast.c.j2", tx=ctype(x.dtype), ty=ctype(y.dtype), to_bool=y.dtype == "bool")
        ctx.call(fn, ctx.tensor(x.name), ctx.tensor(y.name), f"{x.size}u")
