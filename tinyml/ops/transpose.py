"""TRANSPOSE: permute axes (PyTorch exports put one NCHW -> NHWC at the input).

A transpose is one strided copy: the output is walked in order and the input
is read with its strides permuted. Dimensions that stay adjacent under the
permutation merge, so e.g. swapping two outer axes becomes row memcpys.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from tinyml.errors import BadModel
from tinyml.ir import Graph, Node
from tinyml.ops.base import Op, register
from tinyml.ops.strided_copy import (
    copy_class, Copy, const_ints, contiguous_strides, emit_copy, node_dtype_problem, strided_copy_terms,
)

if TYPE_CHECKING:
    from tinyml.codegen.context import EmitContext

MAX_RANK = 6  # TFLite's limit


def _perm(g: Graph, n: Node) -> list[int]:
    rank = len(g[n.inputs[0]].shape)
    perm = const_ints(g, n.inputs[1] if len(n.inputs) > 1 else None, "TRANSPOSE perm")
    if sorted(perm) != list(range(rank)):
        raise BadModel(f"TRANSPOSE perm {perm} is not a permutation of {rank} axes")
    return perm


def transpose_copy(in_shape: tuple[int, ...], perm: list[int]) -> Copy:
    strides = contiguous_strides(in_shape)
    out_shape = tuple(in_shape[p] for p in perm)
    return Copy(out_shape, tuple(strides[p] for p in perm), contiguous_strides(out_shape))


@register
class Transpose(Op):
    name = "TRANSPOSE"
    subbyte_io = True  # a 4-bit tensor moves nibble by nibble (equal widths)

    def check(self, g: Graph, n: Node) -> str | None:
        if len(g[n.inputs[0]].shape) > MAX_RANK:
            return f"rank above {MAX_RANK}"
        try:
            _perm(g, n)
        except BadModel as e:
            return str(e)
        if g[n.inputs[0]].bits != g[n.outputs[0]].bits:
            return "input and output widths differ"
        return node_dtype_problem(g, n, nibbles=True)

    def infer_shapes(self, g: Graph, n: Node) -> list[tuple[int, ...]]:
        shape = g[n.inputs[0]].shape
        return [tuple(shape[p] for p in _perm(g, n))]

    def reference(self, g: Graph, n: Node, inputs: list[np.ndarray | None]) -> list[np.ndarray]:
        return [np.transpose(inputs[0], _perm(g, n))]

    def emit(self, g: Graph, n: Node, ctx: "EmitContext") -> None:
        x = g[n.inputs[0]]
        emit_copy(ctx, transpose_copy(x.shape, _perm(g, n)), ctx.tensor(x.name), ctx.tensor(n.outputs[0]), x.dtype,
                  x.bits)

    def cost_terms(self, g: Graph, n: Node) -> tuple[str, dict[str, float]]:
        """The strided copy of the permuted input."""
        x = g[n.inputs[0]]
        return copy_class(x), strided_copy_terms([transpose_copy(x.shape, _perm(g, n))], x.np_dtype.itemsize)
