"""The float graph IR as a differentiable PyTorch module, optionally with fake quantization.

Every input format the kit imports ends as the same prepared float Graph
(NHWC, OHWI filters, 1HWC depthwise filters, TFLite padding), so lowering
that graph gives gradients to Keras, .tflite and ONNX models alike: Hessian
traces (hessian.py) and quantization-aware fine-tuning (finetune.py) need
nothing format-specific. The op semantics follow quantize/float_ref.py (the
numpy float interpreter the calibration runs), which the tests compare with.

Fake quantization (`FakeQuant`) mirrors the integer graph the PTQ pass
writes: weights symmetric per output channel at the layer's width, recomputed
from the current float weights (max |w| / qmax at 8 bits, the MSE clip below,
rounded half to even as scales.py does); activations per tensor with the written scale and zero
point, rounded half away from zero as TFLite's requantization does and
clamped to the tensor's code range. Rounding passes gradients straight
through (STE). Reported accuracy never comes from here: it comes from the
integer reference (tinyml/reference.py).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from tinyml.errors import BadModel, show
from tinyml.ir import Graph, Node
from tinyml.ops.pool import pool_window, valid_taps
from tinyml.ops.quantized import filter_window
from tinyml.ops.subbyte import signed_range
from tinyml.quantize.ptq import weighted_nodes
from tinyml.quantize.scales import WEIGHT_AXIS, weight_scales


@dataclass
class FakeQuant:
    """Widths and activation parameters of an integer graph, by node and tensor name."""

    weight_bits: dict[str, int] = field(default_factory=dict)  # weighted node -> bits
    # weighted node -> the integer graph's sub-byte per-channel scales (held during fine-tuning)
    weight_scales: dict[str, np.ndarray] = field(default_factory=dict)
    activations: dict[str, tuple[float, int, int]] = field(default_factory=dict)  # tensor -> (scale, zp, bits)
    # weighted node -> the integer graph's bias as a real number (bias correction included)
    bias: dict[str, np.ndarray] = field(default_factory=dict)

    @classmethod
    def of(cls, q: Graph) -> "FakeQuant":
        """Read from a quantized graph (quantize/ptq.quantize_graph's output)."""
        fq = cls()
        for n in weighted_nodes_of_int(q):
            fq.weight_bits[n.name] = q[n.inputs[1]].bits
            if q[n.inputs[1]].bits < 8:
                fq.weight_scales[n.name] = np.asarray(q[n.inputs[1]].quant.scale, np.float64)
            if len(n.inputs) > 2 and n.inputs[2] is not None:
                b = q[n.inputs[2]]
                fq.bias[n.name] = b.data.reshape(-1).astype(np.float64) * b.quant.scale.astype(np.float64)
        for t in q.activations():
            if t.quant is not None and t.dtype in ("int8", "int4"):
                fq.activations[t.name] = (float(t.quant.s), int(t.quant.zp), t.bits)
        return fq


def weighted_nodes_of_int(q: Graph) -> list[Node]:
    return [n for n in q.nodes if n.op in WEIGHT_AXIS and len(n.inputs) > 1 and n.inputs[1] is not None
            and q[n.inputs[1]].is_const]


def _ste_round(x: torch.Tensor, half_away: bool) -> torch.Tensor:
    r = torch.sign(x) * torch.floor(torch.abs(x) + 0.5) if half_away else torch.round(x)
    return x + (r - x).detach()


def fake_weights(w: torch.Tensor, op: str, bits: int, scales: np.ndarray | None = None) -> torch.Tensor:
    """Per-channel symmetric quantize-dequantize (codes -qmax..qmax) with a straight-through gradient.

    Below 8 bits the scales are `scales` when given (fine-tuning holds the integer graph's: a clip
    searched again at every step jumps between grid points and undoes the training), else the PTQ
    pass's clipped ones (scales.mse_clip)."""
    qmax = signed_range(bits)[1]
    axis = WEIGHT_AXIS[op]
    other = [d for d in range(w.dim()) if d != axis]
    if bits < 8:
        shape = [-1 if d == axis else 1 for d in range(w.dim())]
        s = scales if scales is not None else weight_scales(w.detach().numpy(), axis, bits)
        s = torch.tensor(s, dtype=w.dtype).reshape(shape)
    else:
        s = (w.detach().abs().amax(dim=other, keepdim=True) / qmax).clamp_min(1e-12)
    # the gradient passes straight through the clip too: a clipped weight still moves (and moves the clip)
    q = torch.clamp(torch.round(w.detach() / s), -qmax, qmax) * s
    return w + (q - w.detach())


def fake_activation(x: torch.Tensor, scale: float, zp: int, bits: int) -> torch.Tensor:
    lo, hi = signed_range(bits)
    q = torch.clamp(_ste_round(x / scale, half_away=True) + zp, lo, hi)
    return (q - zp) * scale


class Lowered(torch.nn.Module):
    """forward(x [N, ...] NHWC float) -> logits of the first output (the input of a final SOFTMAX)."""

    def __init__(self, g: Graph, fake: FakeQuant | None = None):
        super().__init__()
        self.g = g
        self.fake = fake
        self.weights = torch.nn.ParameterDict()
        self.biases = torch.nn.ParameterDict()
        self.key: dict[str, str] = {}
        for k, n in enumerate(weighted_nodes(g)):
            self.key[n.name] = f"l{k}"
            self.weights[f"l{k}"] = torch.nn.Parameter(torch.tensor(g[n.inputs[1]].data, dtype=torch.float64))
            if fake is not None and n.name in fake.bias:  # what the integer graph adds (bias correction)
                self.biases[f"l{k}"] = torch.nn.Parameter(torch.tensor(fake.bias[n.name], dtype=torch.float64))
            elif len(n.inputs) > 2 and n.inputs[2] is not None:
                self.biases[f"l{k}"] = torch.nn.Parameter(torch.tensor(g[n.inputs[2]].data.reshape(-1),
                                                                       dtype=torch.float64))
        self.consts = {name: torch.tensor(np.asarray(t.data, dtype=np.float64)) for name, t in g.tensors.items()
                       if t.is_const and t.data is not None}
        out = g.producers().get(g.outputs[0])
        self.logits_of = out.inputs[0] if out is not None and out.op == "SOFTMAX" else g.outputs[0]
        self.keep: set[str] = set()  # tensor names whose values forward leaves in self.values
        self.values: dict[str, torch.Tensor] = {}
        self.override: dict[str, torch.Tensor] = {}  # node -> weights used instead of the parameter

    def weight(self, node: str) -> torch.nn.Parameter:
        return self.weights[self.key[node]]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g = self.g
        vals: dict[str, torch.Tensor] = {g.inputs[0]: self._act(g.inputs[0], x.to(torch.float64))}
        self.values = {}
        for n in g.nodes:
            args = [None if i is None else vals[i] if i in vals else self.consts.get(i) for i in n.inputs]
            fn = TORCH_OPS.get(n.op)
            if fn is None:
                raise BadModel(f"node {show(n.name)}: {n.op} cannot be lowered to PyTorch")
            y = fn(self, n, args).reshape((x.shape[0],) + tuple(g[n.outputs[0]].shape[1:]))
            y = self._act(n.outputs[0], y)
            if n.outputs[0] in self.keep:
                self.values[n.outputs[0]] = y
            vals[n.outputs[0]] = y
            if n.outputs[0] == self.logits_of:
                return y.reshape(x.shape[0], -1)
        return vals[g.outputs[0]].reshape(x.shape[0], -1)

    def _act(self, name: str, y: torch.Tensor) -> torch.Tensor:
        if self.fake is not None and name in self.fake.activations:
            return fake_activation(y, *self.fake.activations[name])
        return y

    def layer_params(self, n: Node) -> tuple[torch.Tensor, torch.Tensor | None]:
        k = self.key[n.name]
        w = self.override.get(n.name, self.weights[k])
        if self.fake is not None and n.name in self.fake.weight_bits:
            w = fake_weights(w, n.op, self.fake.weight_bits[n.name], self.fake.weight_scales.get(n.name))
        return w, self.biases[k] if k in self.biases else None


_ACT = {"NONE": lambda x: x, "RELU": F.relu, "RELU6": lambda x: torch.clamp(x, 0, 6),
        "RELU_N1_TO_1": lambda x: torch.clamp(x, -1, 1)}


def _fused(n: Node, y: torch.Tensor) -> torch.Tensor:
    return _ACT[n.attrs.get("fused_activation_function", "NONE")](y)


def _nchw_padded(x: torch.Tensor, win, value: float = 0.0) -> torch.Tensor:
    """NHWC -> NCHW with TFLite's padding (the odd pixel after) applied explicitly."""
    x = x.permute(0, 3, 1, 2)
    bottom = max((win.out_h - 1) * win.stride_h + (win.k_h - 1) * win.dil_h + 1 - win.pad_top - win.in_h, 0)
    right = max((win.out_w - 1) * win.stride_w + (win.k_w - 1) * win.dil_w + 1 - win.pad_left - win.in_w, 0)
    return F.pad(x, (win.pad_left, right, win.pad_top, bottom), value=value)


def _conv(m: Lowered, n: Node, a: list) -> torch.Tensor:
    w, b = m.layer_params(n)
    win = filter_window(m.g, n)
    x = _nchw_padded(a[0], win)
    if n.op == "DEPTHWISE_CONV_2D":
        weight, groups = w[0].permute(2, 0, 1).unsqueeze(1), a[0].shape[3]
    else:
        weight, groups = w.permute(0, 3, 1, 2), a[0].shape[3] // w.shape[3]
    y = F.conv2d(x, weight, b, stride=(win.stride_h, win.stride_w), dilation=(win.dil_h, win.dil_w), groups=groups)
    return _fused(n, y.permute(0, 2, 3, 1))


def _fc(m: Lowered, n: Node, a: list) -> torch.Tensor:
    w, b = m.layer_params(n)
    return _fused(n, F.linear(a[0].reshape(-1, w.shape[1]), w, b))


def _pool(m: Lowered, n: Node, a: list) -> torch.Tensor:
    win = pool_window(m.g, n)
    k, s = (win.k_h, win.k_w), (win.stride_h, win.stride_w)
    if n.op == "MAX_POOL_2D":
        y = F.max_pool2d(_nchw_padded(a[0], win, -float("inf")), k, s)
    else:
        taps = torch.tensor(valid_taps(win), dtype=torch.float64)
        y = F.avg_pool2d(_nchw_padded(a[0], win), k, s, divisor_override=1) / taps
    return _fused(n, y.permute(0, 2, 3, 1))


def _ints(t: torch.Tensor) -> list[int]:
    return [int(v) for v in t.reshape(-1).tolist()]


def _mean(m: Lowered, n: Node, a: list) -> torch.Tensor:
    axes = [d % a[0].dim() for d in _ints(a[1])]
    return a[0].mean(dim=axes, keepdim=bool(n.attrs.get("keep_dims")))


def _pad(m: Lowered, n: Node, a: list) -> torch.Tensor:
    pads = np.array(_ints(a[1])).reshape(-1, 2)[::-1].reshape(-1).tolist()  # F.pad wants last axis first
    value = float(a[2].reshape(-1)[0]) if len(a) > 2 and a[2] is not None else 0.0
    return F.pad(a[0], pads, value=value)


TORCH_OPS = {
    "CONV_2D": _conv, "DEPTHWISE_CONV_2D": _conv, "FULLY_CONNECTED": _fc,
    "MAX_POOL_2D": _pool, "AVERAGE_POOL_2D": _pool,
    "ADD": lambda m, n, a: _fused(n, a[0] + a[1]), "SUB": lambda m, n, a: _fused(n, a[0] - a[1]),
    "MUL": lambda m, n, a: _fused(n, a[0] * a[1]),
    "RESHAPE": lambda m, n, a: a[0], "SQUEEZE": lambda m, n, a: a[0], "EXPAND_DIMS": lambda m, n, a: a[0],
    "MEAN": _mean, "PAD": _pad, "PADV2": _pad,
    "CONCATENATION": lambda m, n, a: _fused(n, torch.cat(a, dim=int(n.attrs.get("axis", 0)))),
    "TRANSPOSE": lambda m, n, a: a[0].permute(*_ints(a[1])),
    "SOFTMAX": lambda m, n, a: torch.softmax(a[0] * float(n.attrs.get("beta", 1.0)), dim=-1),
    "LOGISTIC": lambda m, n, a: torch.sigmoid(a[0]), "TANH": lambda m, n, a: torch.tanh(a[0]),
    "RELU": lambda m, n, a: F.relu(a[0]), "RELU6": lambda m, n, a: torch.clamp(a[0], 0, 6),
    "RELU_N1_TO_1": lambda m, n, a: torch.clamp(a[0], -1, 1),
    "LEAKY_RELU": lambda m, n, a: torch.where(a[0] >= 0, a[0], a[0] * float(n.attrs.get("alpha", 0.0))),
    "HARD_SWISH": lambda m, n, a: a[0] * torch.clamp(a[0] + 3.0, 0.0, 6.0) / 6.0,
}


def store_weights(m: Lowered, g: Graph) -> None:
    """Write the module's (fine-tuned) float weights and biases back into float graph g."""
    for n in weighted_nodes(g):
        k = m.key[n.name]
        g[n.inputs[1]].data = m.weights[k].detach().numpy().astype(np.float32)
        if k in m.biases and len(n.inputs) > 2 and n.inputs[2] is not None:
            g[n.inputs[2]].data = m.biases[k].detach().numpy().astype(np.float32).reshape(g[n.inputs[2]].shape)
