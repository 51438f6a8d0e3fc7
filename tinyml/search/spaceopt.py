"""Search-space optimisation before the search (TinyNAS, SpaceEvo).

TinyNAS: of the (resolution, width) families, keep the one whose budget-feasible
subnets have the most compute: sample each family uniformly, price every sample
(tinyml.cost on Ray), and compare the mean MACs of those that fit (a family where
little fits, or only tiny nets fit, loses).

SpaceEvo-style operator preference: for each depthwise kernel size, the int8 loss
measured with our own PTQ on the trained supernet (float vs int8 accuracy on the
validation split) and the instructions per MAC of our depthwise kernels (tinyml.cost's
fitted per-layer model); evolution then draws kernels with weights
exp(-extra int8 loss / 2 points) x sqrt(fastest instructions per MAC / this kernel's).
The weighting is a heuristic of ours, reported with the measurements behind it.
"""
from __future__ import annotations

import math
import random

import numpy as np

from tinyml.search.costs import Budget, CostService
from tinyml.search.lower import Task, cost_graph
from tinyml.search.space import Arch, Space


def choose_family(space: Space, svc: CostService, budget: Budget, samples: int, seed: int = 0,
                  progress=None, max_resolution: int | None = None) -> tuple[tuple[int, float] | None, list[dict]]:
    """The family whose feasible subnets have the highest mean MACs, and the table behind the choice.

    Resolutions above `max_resolution` (the data's own) are left out while any family remains: upsampled
    inputs add MACs (and training time) but no information."""
    rng = random.Random(seed)
    families = space.families()
    if max_resolution is not None and any(r <= max_resolution for r, _ in families):
        families = [f for f in families if f[0] <= max_resolution]
    archs = [space.sample(rng, f) for f in families for _ in range(samples)]
    costs = svc.costs(archs, progress=progress)
    table = []
    for i, f in enumerate(families):
        fit = [c for c in costs[i * samples:(i + 1) * samples] if c.fits(budget)]
        macs = [c.macs for c in fit]
        table.append({"resolution": f[0], "width": f[1], "sampled": samples, "feasible": len(fit),
                      "mean_macs": float(np.mean(macs)) if macs else 0.0,
                      "max_macs": int(max(macs)) if macs else 0})
    # A family where under a tenth of the samples fit is a corner of the space, not a family to search.
    usable = [r for r in table if r["feasible"] >= max(1, samples // 10)] or [r for r in table if r["feasible"]]
    if not usable:
        return None, table
    best = max(usable, key=lambda r: (r["mean_macs"], r["feasible"]))
    return (best["resolution"], best["width"]), table


def kernel_instructions_per_mac(space: Space, family: tuple[int, float], task: Task, board: str) -> dict[int, float]:
    """Instructions per MAC of the depthwise layers of the largest subnet with every kernel set to k."""
    from tinyml.cost import estimate

    out = {}
    for k in sorted({k for s in space.stages for k in s.kernels}):
        a = with_kernel(space.largest(family), space, k)
        c = estimate(cost_graph(a, space, task), board, patches="off")
        dw = [x for x in c.layers if x.op == "DEPTHWISE_CONV_2D"]
        out[k] = sum(x.instructions for x in dw) / max(1, sum(x.macs for x in dw))
    return out


def plausible_instructions_per_mac(ipm: dict[int, float]) -> tuple[dict[int, float], list[int]]:
    """Each kernel's figure raised to at least the next smaller kernel's, and the kernels so raised.

    Workaround for a cost-model gap: with no 7x7 depthwise in the fitted zoo, tinyml.cost priced it at
    0.58 instructions/MAC against 3.3 (3x3) and 2.4 (5x5), and the preference then favoured 7x7 for a
    speed it does not have. Our depthwise kernels measure 3.3-3.8 instructions/MAC whatever the kernel
    (NOTES.md), so no larger kernel is assumed cheaper per MAC than the next smaller one."""
    out: dict[int, float] = {}
    raised = []
    for k in sorted(ipm):
        out[k] = max([ipm[k]] + [out[j] for j in out][-1:])
        if out[k] > ipm[k]:
            raised.append(k)
    return out, raised


def with_kernel(a: Arch, space: Space, k: int) -> Arch:
    """`a` with every depthwise kernel set to k (the nearest choice where a stage lacks k)."""
    near = lambda s: min(s.kernels, key=lambda c: (abs(c - k), c))  # noqa: E731
    return Arch(a.resolution, a.width, tuple(tuple((near(s), e) for _, e in blocks)
                                             for s, blocks in zip(space.stages, a.stages)))


def kernel_preferences(int8_loss: dict[int, float], ipm: dict[int, float]) -> dict[int, float]:
    """Sampling weight per kernel from its int8 loss (points) and instructions per MAC."""
    best_loss, fastest = min(int8_loss.values()), min(ipm.values())
    return {k: math.exp(-max(0.0, int8_loss[k] - best_loss) / 2.0) * math.sqrt(fastest / ipm[k]) for k in ipm}
