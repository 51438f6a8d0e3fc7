"""Fusions that TFLite Micro's arithmetic makes exact.

Each rewrite here produces bit-identical outputs to the unfused graph under
TFLite Micro semantics; the conditions spell out why:

- PAD -> CONV_2D/DEPTHWISE_CONV_2D (ops that `accepts_explicit_padding`): TFLite Micro's integer convolutions skip
  taps outside the input, which contributes exactly what a padded value equal
  to the input zero point contributes ((x - zp) * w = 0). So a spatial PAD
  whose pad value is that zero point becomes `explicit_padding` on the conv
  (PyTorch exports: TRANSPOSE + explicit PAD), saving the padded copy.
- CONV/DEPTHWISE/FULLY_CONNECTED/ADD/SUB/MUL/pooling (ops that `fuses_activation`: their
  int8 kernels clamp to the fused activation's range after the final requantization)
  -> RELU/RELU6 (`fusable_activation`): with equal input and
  output quantization, TFLite Micro's standalone RELU is clamp(x, zp, 127)
  (its requantization by 1.0 is exact) and RELU6 is clamp(x, zp,
  zp + round(6 / scale)); a fused activation clamps the same values to the
  same bounds (CalculateActivationRangeQuantized).
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np

from tinyml.ir import Graph, Node
from tinyml.ops import traits
from tinyml.passes.rewrite import drop_nodes, same_quant


def _spatial_pads(g: Graph, pad: Node) -> tuple[int, int, int, int] | None:
    """(top, bottom, left, right) of an NHWC PAD that pads only H and W, else None."""
    if len(pad.inputs) < 2 or pad.inputs[1] is None or not g[pad.inputs[1]].is_const:
        return None
    p = g[pad.inputs[1]].data
    if p.shape != (4, 2) or len(g[pad.inputs[0]].shape) != 4:
        return None
    p = p.astype(np.int64)
    if p[0].any() or p[3].any() or (p < 0).any():
        return None
    return int(p[1, 0]), int(p[1, 1]), int(p[2, 0]), int(p[2, 1])


def _pad_value(g: Graph, pad: Node) -> int | None:
    """The int8 value PAD writes: its constant_values input, else the output zero point."""
    if len(pad.inputs) > 2 and pad.inputs[2] is not None:
        c = g[pad.inputs[2]]
        return int(c.data.reshape(-1)[0]) if c.is_const and c.dtype == "int8" and c.size == 1 else None
    return g[pad.outputs[0]].quant.zp


def fuse_pad_into_conv(g: Graph) -> None:
    consumers = g.consumers()
    fused = []
    for pad in g.nodes:
        if pad.op not in ("PAD", "PADV2") or not pad.inputs or pad.inputs[0] is None:
            continue
        x, y = g[pad.inputs[0]], g[pad.outputs[0]]
        users = consumers.get(y.name, [])
        if len(users) != 1 or y.name in g.outputs:
            continue
        conv = users[0]
        if (not traits(conv.op).accepts_explicit_padding or conv.inputs.count(y.name) != 1 or conv.inputs[0] != y.name
                or conv.attrs.get("padding") != "VALID" or "explicit_padding" in conv.attrs):
            continue
        if x.dtype != "int8" or y.quant is None or y.quant.per_channel or not same_quant(x.quant, y.quant):
            continue
        pads = _spatial_pads(g, pad)
        if pads is None or _pad_value(g, pad) != y.quant.zp:
            continue
        conv.inputs[0] = x.name
        conv.attrs["explicit_padding"] = pads
        conv.attrs["padding"] = "VALID"
        fused.append(pad)
    drop_nodes(g, fused)


def int8_fusable(g: Graph, act: Node) -> bool:
    """An int8 activation folds when it keeps its input's quantization and its op says so."""
    x, y = g[act.inputs[0]], g[act.outputs[0]]
    if x.dtype != "int8" or y.dtype != "int8" or x.shape != y.shape or x.quant is None:
        return False
    if x.quant.per_channel or not same_quant(x.quant, y.quant):
        return False
    return traits(act.op).fusable_activation(g, act)


def fuse_activations(g: Graph, fusable: Callable[[Graph, Node], bool] = int8_fusable) -> None:
    """Fold each standalone activation that `fusable` accepts into the producer it alone reads."""
    producers, consumers = g.producers(), g.consumers()
    fused = []
    for act in g.nodes:
        if len(act.inputs) != 1 or act.inputs[0] is None or not act.outputs:
            continue
        src = act.inputs[0]
        prod = producers.get(src)
        if (prod is None or not traits(prod.op).fuses_activation
                or prod.attrs.get("fused_activation_function", "NONE") != "NONE"
                or consumers.get(src) != [act] or src in g.outputs or not fusable(g, act)):
            continue
        prod.attrs["fused_activation_function"] = act.op
        prod.outputs = [act.outputs[0] if o == src else o for o in prod.outputs]
        fused.append(act)
    drop_nodes(g, fused)
