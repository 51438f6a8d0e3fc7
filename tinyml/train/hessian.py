"""Per-layer Hessian traces by Hutchinson's method (HAWQ-V2), on the lowered float graph.

For a layer's weights W (or an activation tensor A) and the cross-entropy loss
L on calibration data, tr(H) = E[v^T H v] over Rademacher vectors v, and H v
is the gradient of (grad L . v): two backward passes per probe, never the
Hessian itself. HAWQ-V2 ranks layers by the *average* trace tr(H) / n; HAWQ-V3
weighs each bit width's perturbation ||Q(W) - W||^2 by it. HAWQ's public code
has no per-layer trace, so this is written here: one probe vector per layer,
all layers' H v from the same double backward.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from tinyml.train.lowering import Lowered

Progress = Callable[[str, int, int], None]


@dataclass
class Traces:
    """Average Hessian trace (trace / elements) per weighted node and per activation tensor."""

    weights: dict[str, float]
    activations: dict[str, float]
    probes: int


def _loss(m: Lowered, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(m(x), y)


def hutchinson_traces(m: Lowered, x: np.ndarray, y: np.ndarray, probes: int = 32,
                      activations: list[str] | None = None, batch: int = 256, seed: int = 0,
                      progress: Progress | None = None) -> Traces:
    """Average traces of d2L/dW2 for every weighted layer (and d2L/dA2 for `activations`).

    The activation Hessian is the per-sample one (the loss of one sample depends on its own
    activations only), summed over the batch so each sample's block counts once.
    """
    gen = torch.Generator().manual_seed(seed)
    params = {name: m.weight(name) for name in m.key}
    acts = list(activations or [])
    w_sum = dict.fromkeys(params, 0.0)
    a_sum = dict.fromkeys(acts, 0.0)
    a_size: dict[str, int] = {}
    chunks = [(s, min(s + batch, len(x))) for s in range(0, len(x), batch)]
    m.keep = set(acts)
    try:
        for k in range(probes):
            for s, e in chunks:
                xb, yb = torch.tensor(x[s:e]), torch.tensor(y[s:e], dtype=torch.long)
                # sum over samples of per-sample losses: each activation block is one sample's Hessian
                loss = F.cross_entropy(m(xb), yb, reduction="sum")
                values = [m.values[a] for a in acts]
                targets = list(params.values()) + values
                grads = torch.autograd.grad(loss, targets, create_graph=True)
                vs = [torch.randint(0, 2, t.shape, generator=gen, dtype=torch.float64) * 2 - 1 for t in targets]
                dot = sum((g * v).sum() for g, v in zip(grads, vs))
                hv = torch.autograd.grad(dot, targets)
                for i, name in enumerate(params):
                    # loss was summed: divide by N for the mean loss's Hessian
                    w_sum[name] += float((hv[i] * vs[i]).sum()) / len(x)
                for j, name in enumerate(acts):
                    i = len(params) + j
                    a_sum[name] += float((hv[i] * vs[i]).sum())
                    a_size[name] = int(values[j][0].numel())
            if progress:
                progress("sensitivity (Hessian traces)", k + 1, probes)
    finally:
        m.keep = set()
    weights = {n: w_sum[n] / probes / params[n].numel() for n in params}
    # per-sample activation Hessians, averaged over samples and elements
    act = {n: a_sum[n] / probes / len(x) / a_size[n] for n in acts}
    return Traces(weights, act, probes)


def exact_weight_hessian(m: Lowered, name: str, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """d2L/dW2 as an [n, n] matrix (torch.autograd.functional.hessian): the check on tiny models."""
    xb, yb = torch.tensor(x), torch.tensor(y, dtype=torch.long)

    def loss_of(w: torch.Tensor) -> torch.Tensor:
        m.override = {name: w}
        try:
            return _loss(m, xb, yb)
        finally:
            m.override = {}

    w0 = m.weight(name).detach().clone()
    n = w0.numel()
    return torch.autograd.functional.hessian(loss_of, w0).reshape(n, n).numpy()
