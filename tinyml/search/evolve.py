"""Evolutionary search guided by an accuracy predictor (OFA), under the budgets from tinyml.cost.

The predictor is a small MLP on a one-hot encoding of the subnet (kernel and expand
per block slot, depth per stage), trained on subnets sampled from the supernet and
measured on the validation split (BatchNorm re-calibrated). Evolution keeps a
population of budget-feasible subnets, breeds it by mutation and crossover, and
judges children by predicted accuracy; every child is priced first (on Ray), so
infeasible ones never enter. Kernel choices are drawn with the operator
preferences of the space optimisation step (spaceopt.py).
"""
from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from tinyml.search.costs import Budget, CandidateCost
from tinyml.search.space import Arch, Space

PriceFn = Callable[[list[Arch]], list[CandidateCost]]


def encode(arch: Arch, space: Space) -> np.ndarray:
    """One-hot kernel and expand per block slot (zeros past the depth), one-hot depth per stage."""
    parts: list[float] = []
    for stage, blocks in zip(space.stages, arch.stages):
        parts += [float(len(blocks) == d) for d in stage.depths]
        for j in range(stage.max_depth):
            k, e = blocks[j] if j < len(blocks) else (0, 0)
            parts += [float(k == c) for c in stage.kernels] + [float(e == c) for c in stage.expands]
    return np.array(parts, np.float32)


class AccuracyPredictor:
    """accuracy (%) ~ MLP(encoding); fitted on (subnet, measured accuracy) pairs."""

    def __init__(self, space: Space, hidden: int = 128, seed: int = 0):
        self.space, self.hidden, self.seed = space, hidden, seed
        self.model = None
        self.mean = 0.0

    def fit(self, archs: list[Arch], accs: list[float], epochs: int = 400) -> float:
        """Train; returns the root-mean-square error on the training pairs (points)."""
        import torch

        torch.manual_seed(self.seed)
        x = torch.from_numpy(np.stack([encode(a, self.space) for a in archs]))
        y = torch.tensor(accs, dtype=torch.float32)
        self.mean = float(y.mean())
        self.model = torch.nn.Sequential(torch.nn.Linear(x.shape[1], self.hidden), torch.nn.ReLU(),
                                         torch.nn.Linear(self.hidden, self.hidden), torch.nn.ReLU(),
                                         torch.nn.Linear(self.hidden, 1))
        opt = torch.optim.Adam(self.model.parameters(), lr=1e-3, weight_decay=1e-4)
        for _ in range(epochs):
            opt.zero_grad()
            loss = ((self.model(x).squeeze(1) + self.mean - y) ** 2).mean()
            loss.backward()
            opt.step()
        return float(loss.detach().sqrt())

    def held_out_rmse(self, archs: list[Arch], accs: list[float], share: float = 0.2) -> float | None:
        """RMSE (points) on a held-out fifth of the pairs, fitted on the rest (None with too few pairs)."""
        n_out = int(len(archs) * share)
        if n_out < 3:
            return None
        order = np.random.default_rng(self.seed).permutation(len(archs))
        held, kept = order[:n_out], order[n_out:]
        self.fit([archs[i] for i in kept], [accs[i] for i in kept])
        err = self.predict([archs[i] for i in held]) - np.array([accs[i] for i in held])
        return float(np.sqrt(np.mean(err ** 2)))

    def predict(self, archs: list[Arch]) -> np.ndarray:
        import torch

        if not archs:
            return np.zeros(0)
        with torch.no_grad():
            x = torch.from_numpy(np.stack([encode(a, self.space) for a in archs]))
            return self.model(x).squeeze(1).numpy() + self.mean


@dataclass
class Evolution:
    space: Space
    family: tuple[int, float]
    budget: Budget
    price: PriceFn
    score: Callable[[list[Arch]], np.ndarray]
    kernel_weights: dict[int, float] = field(default_factory=dict)  # operator preference (spaceopt)
    population: int = 100
    parents: float = 0.25
    mutate_prob: float = 0.15
    mutation_share: float = 0.5
    seed: int = 0
    evaluated: int = 0  # candidates priced

    def feasible(self, archs: list[Arch]) -> list[tuple[Arch, CandidateCost]]:
        costs = self.price(archs)
        self.evaluated += len(archs)
        return [(a, c) for a, c in zip(archs, costs) if c.fits(self.budget)]

    def random_feasible(self, n: int, rng: random.Random, tries: int = 50) -> list[tuple[Arch, CandidateCost]]:
        out: dict[Arch, CandidateCost] = {}
        for _ in range(tries):
            if len(out) >= n:
                break
            out.update(self.feasible([self.sample(rng) for _ in range(max(64, 2 * (n - len(out))))]))
        return list(out.items())[:n]

    def sample(self, rng: random.Random) -> Arch:
        return Arch(*self.family, tuple(tuple((self._kernel(rng, s.kernels), rng.choice(s.expands))
                                              for _ in range(rng.choice(s.depths))) for s in self.space.stages))

    def _kernel(self, rng: random.Random, options: tuple[int, ...]) -> int:
        w = [self.kernel_weights.get(k, 1.0) for k in options]
        return rng.choices(options, w)[0] if sum(w) > 0 else rng.choice(options)

    def mutate(self, a: Arch, rng: random.Random) -> Arch:
        stages = []
        for s, blocks in zip(self.space.stages, a.stages):
            depth = rng.choice(s.depths) if rng.random() < self.mutate_prob else len(blocks)
            new = []
            for j in range(depth):
                k, e = blocks[j] if j < len(blocks) else (self._kernel(rng, s.kernels), rng.choice(s.expands))
                if rng.random() < self.mutate_prob:
                    k = self._kernel(rng, s.kernels)
                if rng.random() < self.mutate_prob:
                    e = rng.choice(s.expands)
                new.append((k, e))
            stages.append(tuple(new))
        return Arch(a.resolution, a.width, tuple(stages))

    @staticmethod
    def crossover(a: Arch, b: Arch, rng: random.Random) -> Arch:
        return Arch(a.resolution, a.width, tuple(rng.choice((x, y)) for x, y in zip(a.stages, b.stages)))

    def run(self, generations: int, progress: Callable[[int, float], None] | None = None,
            start: list[Arch] | None = None) -> tuple[list[tuple[Arch, float, CandidateCost]], list[float]]:
        """The final population (subnet, predicted accuracy, cost), best first, and the best score per generation."""
        rng = random.Random(self.seed)
        pool = dict(self.feasible(start)) if start else {}
        if len(pool) < self.population:
            pool.update(self.random_feasible(self.population - len(pool), rng))
        if not pool:
            return [], []
        ranked = self._rank(pool)
        history = [ranked[0][1]]
        n_parents = max(2, int(self.parents * self.population))
        for g in range(generations):
            parents = [a for a, _, _ in ranked[:n_parents]]
            children: dict[Arch, CandidateCost] = {}
            for _ in range(10):  # rounds until enough feasible children
                want = self.population - n_parents - len(children)
                if want <= 0:
                    break
                n_mut = int(want * self.mutation_share) + 1
                kids = [self.mutate(rng.choice(parents), rng) for _ in range(n_mut)]
                kids += [self.crossover(*rng.sample(parents, 2), rng) for _ in range(want - n_mut + 1)]
                children.update(self.feasible([k for k in kids if k not in pool]))
            pool = {a: c for a, _, c in ranked[:n_parents]} | children
            ranked = self._rank(pool)
            history.append(ranked[0][1])
            if progress:
                progress(g + 1, ranked[0][1])
        return ranked, history

    def _rank(self, pool: dict[Arch, CandidateCost]) -> list[tuple[Arch, float, CandidateCost]]:
        archs = list(pool)
        scores = self.score(archs)
        order = np.argsort(-scores, kind="stable")
        return [(archs[i], float(scores[i]), pool[archs[i]]) for i in order]
