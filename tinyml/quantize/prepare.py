"""Bring an imported float graph into the form the PTQ pass quantizes.

Shape arithmetic folds away (the int8 legalization passes do this for any
dtype), identity reshapes go, and a standalone RELU/RELU6 after a conv, FC,
elementwise or pooling node becomes that node's fused activation: exact in
float, and what TFLite's int8 kernels want (the clamp happens in the
requantization, and the pre-activation range is never stored).
"""
from __future__ import annotations

import numpy as np

from tinyml.errors import BadModel, UnsupportedOps, show
from tinyml.ir import Graph
from tinyml.ops import traits
from tinyml.passes.cleanup import drop_identities, remove_dead
from tinyml.passes.fold import fold_constants, fold_static_shapes, static_reshape_shapes
from tinyml.passes.fuse import fuse_activations
from tinyml.quantize.float_ref import FLOAT_OPS


def fuse_float_activations(g: Graph) -> None:
    """RELU/RELU6 after a conv, FC, elementwise or pooling node: exact in float, whatever the scales."""
    fuse_activations(g, lambda g, act: traits(act.op).fusable_activation(g, act))


def prepare_float(g: Graph) -> Graph:
    """Fold, fuse and check a float graph in place; raises BadModel/UnsupportedOps (exit 2)."""
    if len(g.inputs) != 1:
        raise BadModel(f"the model has {len(g.inputs)} inputs; tinyml quantize handles single-input models")
    for name in g.inputs + g.outputs:
        if g[name].dtype != "float32":
            raise BadModel(f"{'input' if name in g.inputs else 'output'} {show(name)} is {g[name].dtype}: "
                           f"the model is already quantized (tinyml quantize takes a float32 model)")
    if g[g.inputs[0]].shape[:1] != (1,):
        raise BadModel(f"input {show(g.inputs[0])} has shape {list(g[g.inputs[0]].shape)}; expected batch 1 first")
    for p in (fold_static_shapes, fold_constants, static_reshape_shapes, drop_identities,
              fuse_float_activations, remove_dead):
        p(g)
    missing = [(n.op, show(n.name)) for n in g.nodes if n.op not in FLOAT_OPS]
    if missing:
        raise UnsupportedOps(missing)
    for t in g.activations():
        if t.dtype != "float32":
            raise BadModel(f"tensor {show(t.name)} is {t.dtype}: tinyml quantize takes float32 models")
        if t.shape[:1] != (1,):
            raise BadModel(f"tensor {show(t.name)} has shape {list(t.shape)}: the batch (first) dimension must stay 1")
    for t in g.tensors.values():
        if t.is_const and t.dtype == "float32" and not np.all(np.isfinite(t.data)):
            raise BadModel(f"constant {show(t.name)} holds NaN or infinity")
    return g
