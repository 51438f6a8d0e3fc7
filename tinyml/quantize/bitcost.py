"""What each bit width of each layer costs and perturbs: the ILP's coefficients.

Two kinds of decision:
- a weighted layer's weight width (8, 4 or 2): packed weight bytes
  ceil(n * b / 8), instructions from tinyml.cost's fitted int8 model times a
  per-op, per-width factor measured per layer, and the perturbation ||Q_b(W) - W||^2 (HAWQ-V3);
- an activation group's width (8 or 4): the tensors that share one Quant
  (a conv's output and the pooled copy after it) and whose producer is a
  weighted layer; perturbation E||Q_a(A) - A||^2 per sample on calibration
  data, arena bytes halve at 4 bits, and the layers reading or writing the
  group run the nibble paths (ACT4_FACTOR x their int8 instructions, per op).
The Hessian traces that weigh the perturbations come from tinyml/train.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from tinyml.ir import Graph
from tinyml.quantize.calibrate import BINS, Calibration, mse_range
from tinyml.quantize.float_ref import run_float
from tinyml.quantize.policy import LayerBits, QuantPolicy
from tinyml.quantize.ptq import activation_bits, quant_groups, weighted_nodes
from tinyml.quantize.scales import (
    MIN_RANGE, WEIGHT_AXIS, dequantize_weights, fake_quantize, quantize_weights, weight_scales,
)

# Instructions of a layer at each weight width relative to int8, per op (an estimate): the largest
# per-layer ratio measured in QEMU on stm32f405 by benchmarks/subbyte_kernels.py
# (benchmarks/results/subbyte_kernels.json): int2 FULLY_CONNECTED runs plain C.
INSTR_FACTOR = {"CONV_2D": {8: 1.0, 4: 1.17, 2: 1.15}, "DEPTHWISE_CONV_2D": {8: 1.0, 4: 1.01, 2: 1.01},
                "FULLY_CONNECTED": {8: 1.0, 4: 1.15, 2: 13.2}}
# A layer reading or writing 4-bit activations, relative to int8 (an estimate): the DSP nibble paths
# measured per layer by `benchmarks/subbyte_kernels.py --acts 4` (docs/dsp_kernels.md: conv 1.02-1.04x,
# depthwise 1.60x, FC 0.95x); other ops (pools, ADD) run plain C nibble loops, ~10x (whole-model ratio
# measured before the DSP paths).
ACT4_FACTOR = {"CONV_2D": 1.04, "DEPTHWISE_CONV_2D": 1.6, "FULLY_CONNECTED": 1.0}
ACT4_OTHER = 10.0
ACT_SAMPLES = 256


@dataclass
class WeightChoice:
    node: str
    op: str
    elements: int
    other_bytes: int  # the bias (int32) and anything else the layer stores
    instructions_int8: int  # tinyml.cost's estimate for the layer in int8
    error: dict[int, float] = field(default_factory=dict)  # bits -> ||Q_b(W) - W||^2

    def bytes(self, bits: int) -> int:
        return (self.elements * bits + 7) // 8 + self.other_bytes

    def instructions(self, bits: int) -> int:
        return round(self.instructions_int8 * INSTR_FACTOR[self.op][bits])


@dataclass
class ActChoice:
    key: str  # the group's representative tensor
    owners: list[str]  # weighted nodes writing into the group (their activation width is this choice)
    tensors: list[str]
    spans: dict[int, tuple[float, float]] = field(default_factory=dict)  # bits -> the group's range at that width
    extra_instructions: int = 0  # what the layers reading or writing the group add at 4 bits (estimate)
    error: dict[int, float] = field(default_factory=dict)  # bits -> E ||Q_a(A) - A||^2 per sample

    def instructions(self, bits: int) -> int:
        """Extra instructions the group's layers run at `bits` (0 at 8)."""
        return self.extra_instructions if bits < 8 else 0


def weight_choices(g: Graph, int8: Graph, bits: tuple[int, ...]) -> list[WeightChoice]:
    """Per weighted node of the prepared float graph g; `int8` is its uniform int8 quantization."""
    from tinyml.cost import estimate

    instr = {layer.name: layer.instructions for layer in estimate(int8, mode="fast", patches="off").layers}
    out = []
    for n in weighted_nodes(g):
        w = g[n.inputs[1]].data.astype(np.float64)
        axis = WEIGHT_AXIS[n.op]
        qn = next(m for m in int8.nodes if m.name == n.name)
        other = sum(int8[i].nbytes for i in qn.inputs[2:] if i is not None and int8[i].is_const)
        c = WeightChoice(n.name, n.op, w.size, other, instr.get(n.name, 0))
        for b in bits:
            s = weight_scales(w, axis, b)
            c.error[b] = float(((dequantize_weights(quantize_weights(w, s, axis, b), s, axis) - w) ** 2).sum())
        out.append(c)
    return out


def activation_choices(g: Graph, cal: Calibration, calib: np.ndarray, bits: tuple[int, ...],
                       instr: dict[str, int] | None = None) -> list[ActChoice]:
    """Activation groups written by weighted layers, with their quantization error at each width
    (`instr`: node -> int8 instruction estimate, for the groups' 4-bit charge)."""
    group = quant_groups(g)
    # groups the PTQ pass keeps at 8 bits whatever is asked (graph outputs, ops without 4-bit kernels)
    at4 = activation_bits(g, QuantPolicy(default=LayerBits(8, 4)), group)
    owners: dict[str, list[str]] = {}
    for n in weighted_nodes(g):
        if at4[n.outputs[0]] < 8 or bits == (8,):
            owners.setdefault(group[n.outputs[0]], []).append(n.name)
    members: dict[str, list[str]] = {}
    for t in g.activations():
        if group[t.name] in owners:
            members.setdefault(group[t.name], []).append(t.name)
    x = calib[:ACT_SAMPLES].astype(np.float64)
    span = _group_spans(g, cal, x, members, group, bits)
    sums = {k: dict.fromkeys(bits, 0.0) for k in owners}
    watched = {n: k for k, ns in owners.items() for n in ns}

    def observe(node, args, y: np.ndarray) -> None:
        k = watched.get(node.name)
        if k is not None:
            for b in bits:
                sums[k][b] += float(((fake_quantize(y, *span[k][b], b) - y) ** 2).sum())

    run_float(g, [x], observe)
    producer, consumers = g.producers(), g.consumers()
    touching = {k: {n.name: n.op for t in members[k] for n in [producer.get(t), *consumers.get(t, [])]
                    if n is not None} for k in owners}
    extra = {k: round(sum((instr or {}).get(n, 0) * (ACT4_FACTOR.get(op, ACT4_OTHER) - 1) for n, op in ns.items()))
             for k, ns in touching.items()}
    return [ActChoice(k, owners[k], members[k], span[k], extra[k], {b: v / len(x) for b, v in sums[k].items()})
            for k in owners]


def _group_spans(g: Graph, cal: Calibration, x: np.ndarray, members: dict[str, list[str]], group: dict[str, str],
                 bits: tuple[int, ...]) -> dict[str, dict[int, tuple[float, float]]]:
    """Each group's range per width as calibration picks it: the int8 calibration's at 8 bits, each
    member's MSE clip at the width (calibrate.mse_range, as for sub-byte tensors) below; the union."""
    narrow = [b for b in bits if b < 8]
    watched = {t for ts in members.values() for t in ts if t in cal.minmax}
    hists = {t: np.zeros(BINS, np.int64) for t in watched} if narrow else {}

    def observe(node, args, y: np.ndarray) -> None:
        t = node.outputs[0]
        if t in hists and cal.minmax[t][1] - cal.minmax[t][0] >= MIN_RANGE:
            hists[t] += np.histogram(y, bins=BINS, range=cal.minmax[t])[0]

    if hists:
        run_float(g, [x], observe)
    out: dict[str, dict[int, tuple[float, float]]] = {}
    for k, ts in members.items():
        out[k] = {}
        for b in bits:
            pieces = [cal.ranges[t] if b == 8 or not hists.get(t, np.zeros(1)).sum()
                      else mse_range(hists[t], *cal.minmax[t], QuantPolicy(), b) for t in ts if t in cal.ranges]
            out[k][b] = (min(p[0] for p in pieces), max(p[1] for p in pieces))
    return out
