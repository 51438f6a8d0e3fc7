"""The post-training quantization pass: a float32 graph + calibration -> an int8 graph.

Same nodes, same attrs; every float tensor gets an integer type and a Quant:
- conv/depthwise/FC weights: symmetric per output channel; biases int32 with
  scale input_scale * weight_scale[c] (zero point 0), shifted by the bias
  correction measured during calibration;
- activations: asymmetric per tensor from the calibrated range, except where
  TFLite's int8 kernels fix the output (SOFTMAX and LOGISTIC 1/256 at -128,
  TANH 1/128 at 0) or need the output to share the input's parameters
  (pooling, reshapes, transpose, pad, concatenation: those tensors form one
  group whose range is the union of its members');
- other float constants (an ADD or MUL operand): asymmetric per tensor.
Graph inputs and outputs become int8 (what TensorFlow's converter gives with
inference_input_type=inference_output_type=tf.int8).
"""
from __future__ import annotations

import copy

import numpy as np

from tinyml.errors import TinymlError, show
from tinyml.ir import Graph, Node, Quant, Tensor
from tinyml.ops import get_op
from tinyml.quantize.calibrate import Calibration
from tinyml.quantize.policy import QuantPolicy
from tinyml.quantize.scales import (
    WEIGHT_AXIS,
    activation_quant,
    dequantize_weights,
    quantize_weights,
    weight_scales,
)

# Ops whose int8 kernels copy or compare codes without rescaling: output(s) and inputs share one Quant.
SHARES_QUANT = ("MAX_POOL_2D", "AVERAGE_POOL_2D", "RESHAPE", "SQUEEZE", "EXPAND_DIMS", "TRANSPOSE",
                "PAD", "PADV2", "CONCATENATION")
# Fixed int8 output parameters of TFLite's kernels (scale, zero point).
FIXED_OUTPUT = {"SOFTMAX": (1.0 / 256, -128), "LOGISTIC": (1.0 / 256, -128), "TANH": (1.0 / 128, 0)}
INT32_MAX = 2**31 - 1


def weighted_nodes(g: Graph) -> list[Node]:
    """Nodes with a constant float filter the pass quantizes per channel."""
    return [n for n in g.nodes if n.op in WEIGHT_AXIS and len(n.inputs) > 1 and n.inputs[1] is not None
            and g[n.inputs[1]].is_const and g[n.inputs[1]].dtype == "float32"]


def weight_errors(g: Graph, policy: QuantPolicy) -> dict[str, np.ndarray]:
    """W - deq(q(W)) per weighted node: what bias correction measures on real inputs."""
    out = {}
    for n in weighted_nodes(g):
        w, axis, bits = g[n.inputs[1]].data.astype(np.float64), WEIGHT_AXIS[n.op], policy.bits_of(n.name).weights
        s = weight_scales(w, axis, bits)
        out[n.name] = w - dequantize_weights(quantize_weights(w, s, axis, bits), s, axis)
    return out


def quant_groups(g: Graph) -> dict[str, str]:
    """tensor name -> representative of the tensors that must share one Quant."""
    parent: dict[str, str] = {}

    def find(a: str) -> str:
        while parent.get(a, a) != a:
            a = parent[a]
        return a

    for n in g.nodes:
        if n.op not in SHARES_QUANT:
            continue
        data = [i for i in (n.inputs if n.op == "CONCATENATION" else n.inputs[:1]) if i is not None]
        for t in data + n.outputs:
            if not g[t].is_const:
                parent[find(t)] = find(n.outputs[0])
    return {t: find(t) for t in g.tensors}


def activation_bits(g: Graph, policy: QuantPolicy, group: dict[str, str]) -> dict[str, int]:
    """Each activation's width: the narrowest its group's producers ask for (the members share one
    Quant), but 8 for a whole group when a member is a graph input or output or an op without
    packed 4-bit kernels touches one (Op.subbyte_io)."""
    producer, consumers = g.producers(), g.consumers()
    narrowest: dict[str, int] = {}
    forced: set[str] = set()
    for t in g.activations():
        r = group[t.name]
        bits = policy.bits_of(producer[t.name].name).activations if t.name in producer else policy.default.activations
        narrowest[r] = min(bits, narrowest.get(r, bits))
        users = ([producer[t.name]] if t.name in producer else []) + consumers.get(t.name, [])
        if t.name in g.inputs or t.name in g.outputs or not all(get_op(n.op).subbyte_io for n in users):
            forced.add(r)
    return {t.name: 8 if group[t.name] in forced else narrowest[group[t.name]] for t in g.activations()}


def narrow_widths(g: Graph, policy: QuantPolicy) -> dict[str, int]:
    """Activation tensors stored below 8 bits under `policy`, with their width (calibrate's `narrow`)."""
    return {k: b for k, b in activation_bits(g, policy, quant_groups(g)).items() if b < 8}


def quantize_graph(g: Graph, cal: Calibration, policy: QuantPolicy) -> Graph:
    """A new int8 graph from float graph `g` (left unchanged)."""
    q = copy.deepcopy(g)
    group = quant_groups(q)
    fixed: dict[str, tuple[float, int]] = {}
    for n in q.nodes:
        if n.op in FIXED_OUTPUT:
            fixed[group[n.outputs[0]]] = FIXED_OUTPUT[n.op]
    span: dict[str, tuple[float, float]] = {}
    for name, (lo, hi) in cal.ranges.items():
        r = group[name]
        a, b = span.get(r, (lo, hi))
        span[r] = (min(a, lo), max(b, hi))
    widths = activation_bits(q, policy, group)
    for t in q.activations():
        if t.dtype != "float32":
            continue
        r = group[t.name]
        bits = 8 if r in fixed else widths[t.name]
        if r in fixed:
            scale, zp = np.float32(fixed[r][0]), fixed[r][1]
        elif r in span:
            scale, zp = activation_quant(*span[r], bits)
        else:
            raise TinymlError(f"tensor {show(t.name)} was never computed during calibration")
        t.dtype, t.bits, t.quant = "int8", bits, Quant(scale=[scale], zero_point=[zp])
    for n in weighted_nodes(q):
        _quantize_layer(q, n, cal, policy)
    for n in q.nodes:
        _quantize_constants(q, n)
    return q


def _quantize_layer(g: Graph, n: Node, cal: Calibration, policy: QuantPolicy) -> None:
    """Per-channel weights and an int32 bias (created when absent, if correction needs one)."""
    wt, axis, bits = g[n.inputs[1]], WEIGHT_AXIS[n.op], policy.bits_of(n.name).weights
    w = wt.data.astype(np.float64)
    channels = w.shape[axis]
    s_in = float(g[n.inputs[0]].quant.s)
    bias_t = g[n.inputs[2]] if len(n.inputs) > 2 and n.inputs[2] is not None else None
    bias = bias_t.data.astype(np.float64).reshape(-1) if bias_t is not None else np.zeros(channels)
    if policy.bias_correction and n.name in cal.bias_shift:
        bias = bias + cal.bias_shift[n.name]
    # A scale so small that bias / (s_in * s_w) leaves int32 is raised (TensorFlow does the same).
    floor = 2.0 * np.abs(bias) / (s_in * INT32_MAX)
    s_w = weight_scales(w, axis, bits, floor)
    wt.data = quantize_weights(w, s_w, axis, bits)
    wt.dtype, wt.bits, wt.quant = "int8", bits, Quant(scale=s_w, zero_point=np.zeros(channels), axis=axis)
    if bias_t is None and not np.any(bias):
        return
    bias_scale = (np.float64(s_in) * s_w.astype(np.float64)).astype(np.float32)
    codes = np.clip(np.round(bias / bias_scale.astype(np.float64)), -INT32_MAX, INT32_MAX).astype(np.int32)
    if bias_t is None:
        bias_t = g.add_tensor(Tensor(name=f"{n.name}/bias", shape=(channels,), dtype="int32"))
        n.inputs = n.inputs[:2] + [bias_t.name]
    bias_t.data, bias_t.dtype, bias_t.bits = codes.reshape(bias_t.shape), "int32", 32
    bias_t.quant = Quant(scale=bias_scale, zero_point=np.zeros(channels), axis=0)


def _quantize_constants(g: Graph, n: Node) -> None:
    """Float constants left after the weights: operands of ADD/MUL/... and PADV2's value."""
    for k, name in enumerate(n.inputs):
        if name is None or not g[name].is_const or g[name].dtype != "float32":
            continue
        t = g[name]
        if n.op == "PADV2" and k == 2:  # the padded value shares the output's parameters
            scale, zp = g[n.outputs[0]].quant.s, g[n.outputs[0]].quant.zp
        else:
            scale, zp = activation_quant(float(t.data.min()), float(t.data.max()), 8)
        codes = np.clip(np.round(t.data.astype(np.float64) / float(scale)) + zp, -128, 127).astype(np.int8)
        t.data, t.dtype, t.bits, t.quant = codes, "int8", 8, Quant(scale=[scale], zero_point=[zp])
