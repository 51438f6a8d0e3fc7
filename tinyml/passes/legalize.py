"""Bring an imported graph into the canonical form the later passes expect.

Order matters: shapes fold first so constant chains become foldable; RESHAPE
shape inputs become constants so leftover shape arithmetic dies; fusions run
on the folded graph; ops whose kernels fit badly become the equivalent op
(passes/canonical.py); dead code goes last. Every pass keeps the graph
bit-exact with TFLite Micro (see each pass for why). Boundary QUANTIZE and
DEQUANTIZE nodes are kept: they are real computation on the model's I/O.
"""
from __future__ import annotations

from tinyml.ir import Graph
from tinyml.passes.canonical import depthwise_as_conv
from tinyml.passes.cleanup import drop_identities, remove_dead
from tinyml.passes.fold import fold_constants, fold_static_shapes, static_reshape_shapes
from tinyml.passes.fuse import fuse_activations, fuse_pad_into_conv
from tinyml.passes.variables import read_variables_in_place

PASSES = (fold_static_shapes, fold_constants, static_reshape_shapes, fuse_pad_into_conv,
          fuse_activations, depthwise_as_conv, drop_identities, read_variables_in_place, remove_dead)


def legalize(g: Graph) -> Graph:
    """Run every legalization pass in place; returns `g` for chaining."""
    for p in PASSES:
        p(g)
    return g
