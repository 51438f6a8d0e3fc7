"""Subnet accuracies measured on Ray: the predictor's training pairs, finalists, random search.

Each Ray task gets the supernet and the data from the object store (put once),
re-calibrates BatchNorm for each of its subnets and scores it on the validation split.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np

from tinyml.search.space import Arch


class AccuracyService:
    def __init__(self, ray, net, x_cal, x_val, y_val: np.ndarray, chunk: int = 4):
        self.ray, self.chunk = ray, chunk
        self.net = ray.put(net)
        self.data = ray.put((x_cal, x_val, y_val))
        self._remote = ray.remote(_accuracies)

    def accuracies(self, archs: list[Arch], progress: Callable[[int, int], None] | None = None) -> list[float]:
        chunks = [archs[i:i + self.chunk] for i in range(0, len(archs), self.chunk)]
        pending = {self._remote.remote(self.net, self.data, c): i for i, c in enumerate(chunks)}
        results: dict[int, list[float]] = {}
        while pending:
            ready, _ = self.ray.wait(list(pending), num_returns=1)
            results[pending.pop(ready[0])] = self.ray.get(ready[0])
            if progress:
                progress(sum(len(v) for v in results.values()), len(archs))
        return [acc for i in range(len(chunks)) for acc in results[i]]


def _accuracies(net, data: tuple, archs: list[Arch]) -> list[float]:
    from tinyml.search.train import subnet_accuracy

    x_cal, x_val, y_val = data
    return [subnet_accuracy(net, a, x_cal, x_val, y_val) for a in archs]
