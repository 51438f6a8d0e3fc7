"""Accuracy of a float graph and of an int8 graph on labelled data.

The int8 graph runs on tinyml's own numpy references (bit-exact with TFLite
Micro by contract, tests check it); to run thousands of samples in a few
calls, a copy of the graph gets batch N instead of 1: every int8 reference
reads its batch from the tensor shapes, and RESHAPE's (constant) target
shape is the only place a batch of 1 is spelled out.
"""
from __future__ import annotations

import copy
from collections.abc import Callable

import numpy as np

from tinyml.ir import Graph
from tinyml.quantize.float_ref import run_float
from tinyml.reference import reference_outputs

BATCH = 256


def with_batch(g: Graph, n: int) -> Graph:
    b = copy.deepcopy(g)
    for t in b.tensors.values():
        if not t.is_const and t.shape[:1] == (1,):
            t.shape = (n,) + t.shape[1:]
    for node in b.nodes:
        if node.op == "RESHAPE" and len(node.inputs) > 1 and node.inputs[1] is not None:
            shape = b[node.inputs[1]]
            shape.data = np.array(b[node.outputs[0]].shape, dtype=shape.np_dtype)
    return b


def quantize_input(g: Graph, x: np.ndarray) -> np.ndarray:
    """Float inputs to the int8 codes of the graph's input (round half away from zero, as TFLite)."""
    q = g[g.inputs[0]].quant
    codes = np.trunc(x.astype(np.float64) / float(q.s) + np.copysign(0.5, x)) + q.zp
    return np.clip(codes, -128, 127).astype(np.int8)


def run_int8(g: Graph, x: np.ndarray, progress: Callable[[int, int], None] | None = None) -> np.ndarray:
    """The first output's int8 codes for float inputs x [N, ...]; progress(done, total) after each batch."""
    codes = quantize_input(g, x)
    out = []
    batched: dict[int, Graph] = {}
    for start in range(0, len(codes), BATCH):
        chunk = codes[start:start + BATCH]
        gb = batched.setdefault(len(chunk), with_batch(g, len(chunk)))
        out.append(reference_outputs(gb, [chunk])[0].reshape(len(chunk), -1))
        if progress:
            progress(start + len(chunk), len(codes))
    return np.concatenate(out)


def float_outputs(g: Graph, x: np.ndarray) -> np.ndarray:
    return np.concatenate([run_float(g, [x[s:s + BATCH]])[0].reshape(min(BATCH, len(x) - s), -1)
                           for s in range(0, len(x), BATCH)])


def accuracy(scores: np.ndarray, labels: np.ndarray) -> float:
    """Top-1 accuracy in percent (argmax of the last axis; int8 codes rank like their reals)."""
    return 100.0 * float(np.mean(np.argmax(scores.reshape(len(labels), -1), axis=1) == labels))
