"""Quantization-aware fine-tuning: the float weights trained through the integer graph's fake quantization.

The lowered module quantizes weights per channel at each layer's width and
activations with the integer graph's scales and zero points (lowering.py);
rounding passes gradients straight through. Afterwards the float weights go
back into the float graph, which is quantized again as usual, so what is
deployed is always the PTQ pass's output on better weights.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from tinyml.ir import Graph
from tinyml.quantize.calibrate import Progress
from tinyml.train.lowering import FakeQuant, Lowered, store_weights


def finetune(g: Graph, q: Graph, x: np.ndarray, y: np.ndarray, epochs: int, progress: Progress | None = None,
             lr: float = 1e-3, batch: int = 32, seed: int = 0) -> None:
    """Train g's weights in place for `epochs` passes over (x, y) with q's fake quantization."""
    torch.manual_seed(seed)
    m = Lowered(g, FakeQuant.of(q))
    opt = torch.optim.Adam(m.parameters(), lr=lr)
    xt, yt = torch.tensor(x, dtype=torch.float64), torch.tensor(y, dtype=torch.long)
    for epoch in range(epochs):
        order = torch.randperm(len(xt))
        for s in range(0, len(xt), batch):
            i = order[s:s + batch]
            loss = F.cross_entropy(m(xt[i]), yt[i])
            opt.zero_grad()
            loss.backward()
            opt.step()
        if progress:
            progress("fine-tuning", epoch + 1, epochs)
    store_weights(m, g)
