"""Run a float32 graph in numpy, a whole batch at once: what calibration observes.

The int8 references in tinyml/ops reproduce TFLite Micro's integer
arithmetic; a float model needs plain real arithmetic instead, and
calibration wants many samples per call, so this interpreter treats the
graph's batch dimension (1 in every imported model) as free. Each function
follows the TFLite op's float semantics (NHWC, OHWI filters, 1HWC depthwise
filters, SAME padding with the odd pixel after, average pools dividing by the
taps inside the input).
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np

from tinyml.errors import BadModel, show
from tinyml.ir import Graph, Node
from tinyml.ops.pool import pool_window, valid_taps
from tinyml.ops.quantized import pad_for_window, taps, window

Arrays = list[np.ndarray | None]
FloatFn = Callable[[Graph, Node, Arrays, int], np.ndarray]
Observer = Callable[[Node, Arrays, np.ndarray], None]

ACTIVATIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "NONE": lambda x: x,
    "RELU": lambda x: np.maximum(x, 0),
    "RELU6": lambda x: np.clip(x, 0, 6),
    "RELU_N1_TO_1": lambda x: np.clip(x, -1, 1),
}


def fused(n: Node, x: np.ndarray) -> np.ndarray:
    return ACTIVATIONS[n.attrs.get("fused_activation_function", "NONE")](x)


def conv_linear(g: Graph, n: Node, x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """CONV_2D without bias or activation (bias correction runs it with weight errors)."""
    cout, k_h, k_w, cin_g = w.shape
    win = window(g, n, k_h, k_w)
    groups = x.shape[3] // cin_g
    per_group = cout // groups
    xp = pad_for_window(x, win, 0.0)
    acc = np.zeros((x.shape[0], win.out_h, win.out_w, cout), np.float64)
    for ky, kx, view in taps(xp, win):
        for gi in range(groups):
            xs = view[..., gi * cin_g:(gi + 1) * cin_g]
            acc[..., gi * per_group:(gi + 1) * per_group] += xs @ w[gi * per_group:(gi + 1) * per_group, ky, kx, :].T
    return acc


def depthwise_linear(g: Graph, n: Node, x: np.ndarray, w: np.ndarray) -> np.ndarray:
    _, k_h, k_w, cout = w.shape
    win = window(g, n, k_h, k_w)
    mult = cout // x.shape[3]
    xp = pad_for_window(np.repeat(x, mult, axis=3) if mult > 1 else x, win, 0.0)
    acc = np.zeros((x.shape[0], win.out_h, win.out_w, cout), np.float64)
    for ky, kx, view in taps(xp, win):
        acc += view * w[0, ky, kx, :]
    return acc


def fc_linear(g: Graph, n: Node, x: np.ndarray, w: np.ndarray) -> np.ndarray:
    return x.reshape(-1, w.shape[1]) @ w.T


LINEAR: dict[str, Callable[[Graph, Node, np.ndarray, np.ndarray], np.ndarray]] = {
    "CONV_2D": conv_linear, "DEPTHWISE_CONV_2D": depthwise_linear, "FULLY_CONNECTED": fc_linear,
}


def _with_bias(g: Graph, n: Node, a: Arrays, batch: int) -> np.ndarray:
    acc = LINEAR[n.op](g, n, a[0], a[1])
    if len(a) > 2 and a[2] is not None:
        acc = acc + a[2].reshape(-1)
    return fused(n, acc)


def _pool(g: Graph, n: Node, a: Arrays, batch: int) -> np.ndarray:
    win = pool_window(g, n)
    if n.op == "MAX_POOL_2D":
        xp = pad_for_window(a[0], win, -np.inf)
        out = np.full((a[0].shape[0], win.out_h, win.out_w, a[0].shape[3]), -np.inf)
        for _, _, view in taps(xp, win):
            out = np.maximum(out, view)
    else:
        xp = pad_for_window(a[0], win, 0.0)
        out = sum(view for _, _, view in taps(xp, win)) / valid_taps(win)[None, :, :, None]
    return fused(n, out)


def _elementwise(op: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> FloatFn:
    return lambda g, n, a, batch: fused(n, op(a[0], a[1]))


def _reshape(g: Graph, n: Node, a: Arrays, batch: int) -> np.ndarray:
    return a[0].reshape((batch,) + g[n.outputs[0]].shape[1:])


def _mean(g: Graph, n: Node, a: Arrays, batch: int) -> np.ndarray:
    axes = tuple(int(d) % a[0].ndim for d in np.asarray(a[1]).reshape(-1))
    return a[0].mean(axis=axes, keepdims=bool(n.attrs.get("keep_dims")))


def _concat(g: Graph, n: Node, a: Arrays, batch: int) -> np.ndarray:
    return fused(n, np.concatenate(a, axis=int(n.attrs.get("axis", 0))))


def _pad(g: Graph, n: Node, a: Arrays, batch: int) -> np.ndarray:
    value = float(np.asarray(a[2]).reshape(-1)[0]) if len(a) > 2 and a[2] is not None else 0.0
    return np.pad(a[0], np.asarray(a[1], dtype=np.int64).reshape(-1, 2), constant_values=value)


def _softmax(g: Graph, n: Node, a: Arrays, batch: int) -> np.ndarray:
    z = a[0] * float(n.attrs.get("beta", 1.0))
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _transpose(g: Graph, n: Node, a: Arrays, batch: int) -> np.ndarray:
    return np.transpose(a[0], [int(p) for p in np.asarray(a[1]).reshape(-1)])


FLOAT_OPS: dict[str, FloatFn] = {
    "CONV_2D": _with_bias, "DEPTHWISE_CONV_2D": _with_bias, "FULLY_CONNECTED": _with_bias,
    "MAX_POOL_2D": _pool, "AVERAGE_POOL_2D": _pool,
    "ADD": _elementwise(np.add), "SUB": _elementwise(np.subtract), "MUL": _elementwise(np.multiply),
    "RESHAPE": _reshape, "SQUEEZE": _reshape, "EXPAND_DIMS": _reshape,
    "MEAN": _mean, "CONCATENATION": _concat, "PAD": _pad, "PADV2": _pad, "TRANSPOSE": _transpose,
    "SOFTMAX": _softmax,
    "LOGISTIC": lambda g, n, a, b: 1.0 / (1.0 + np.exp(-a[0])),
    "TANH": lambda g, n, a, b: np.tanh(a[0]),
    "RELU": lambda g, n, a, b: ACTIVATIONS["RELU"](a[0]),
    "RELU6": lambda g, n, a, b: ACTIVATIONS["RELU6"](a[0]),
    "RELU_N1_TO_1": lambda g, n, a, b: ACTIVATIONS["RELU_N1_TO_1"](a[0]),
    "LEAKY_RELU": lambda g, n, a, b: np.where(a[0] >= 0, a[0], a[0] * float(n.attrs.get("alpha", 0.0))),
    "HARD_SWISH": lambda g, n, a, b: a[0] * np.clip(a[0] + 3.0, 0.0, 6.0) / 6.0,
}


def run_float(g: Graph, inputs: list[np.ndarray], observe: Observer | None = None) -> list[np.ndarray]:
    """The graph's outputs for a batch of inputs (each [N, ...] with the input's trailing shape).

    `observe(node, inputs, output)` sees every node's values as they are
    computed (calibration statistics, bias correction); values die after
    their last reader so a large batch stays affordable.
    """
    batch = inputs[0].shape[0]
    values: dict[str, np.ndarray] = {}
    for name, x in zip(g.inputs, inputs):
        values[name] = np.asarray(x, dtype=np.float64).reshape((batch,) + g[name].shape[1:])
    last_use = {i: k for k, n in enumerate(g.nodes) for i in n.inputs if i is not None}
    keep = set(g.outputs)
    for k, n in enumerate(g.nodes):
        args: Arrays = [None if i is None else values[i] if i in values else g[i].data.astype(np.float64)
                        for i in n.inputs]
        if n.op not in FLOAT_OPS:
            raise BadModel(f"node {show(n.name)}: {n.op} has no float implementation for quantization")
        y = np.asarray(FLOAT_OPS[n.op](g, n, args, batch), dtype=np.float64)
        y = y.reshape((batch,) + g[n.outputs[0]].shape[1:])
        if observe is not None:
            observe(n, args, y)
        values[n.outputs[0]] = y
        for i in n.inputs:
            if i is not None and last_use.get(i) == k and i not in keep:
                values.pop(i, None)
    return [values[o] for o in g.outputs]
