"""Offline tasks and small float CNNs for the quantization tests and benchmark.

Data that needs no network: scikit-learn's digits (8x8, for tests and CI) and
Fashion-MNIST from Debian's dataset-fashion-mnist (28x28). Models are trained
in PyTorch and exported to ONNX (`torch.onnx.export(..., dynamo=False)`), the
path a user's PyTorch model takes into `tinyml quantize`.
"""
from __future__ import annotations

import gzip
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

FASHION = Path("/usr/share/datasets/fashion-mnist")


@dataclass
class Task:
    name: str
    x_train: np.ndarray  # [N, 1, H, W] float32 in [0, 1] (NCHW, as the ONNX model takes it)
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


def digits(test: int = 360) -> Task:
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (d.images / 16.0).astype(np.float32)[:, None]
    y = d.target.astype(np.int64)
    order = np.random.default_rng(0).permutation(len(x))
    x, y = x[order], y[order]
    return Task("digits", x[test:], y[test:], x[:test], y[:test])


def _idx(path: Path) -> np.ndarray:
    with gzip.open(path) as f:
        data = f.read()
    dims = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(dims))
    return np.frombuffer(data, np.uint8, offset=4 + 4 * dims).reshape(shape)


def fashion_mnist(train: int = 60000) -> Task:
    x_tr = _idx(FASHION / "train-images-idx3-ubyte.gz")[:train, None].astype(np.float32) / 255.0
    y_tr = _idx(FASHION / "train-labels-idx1-ubyte.gz")[:train].astype(np.int64)
    x_te = _idx(FASHION / "t10k-images-idx3-ubyte.gz")[:, None].astype(np.float32) / 255.0
    y_te = _idx(FASHION / "t10k-labels-idx1-ubyte.gz").astype(np.int64)
    return Task("fashion", x_tr, y_tr, x_te, y_te)


class SmallCNN(torch.nn.Module):
    """conv-relu blocks (max pool after each but the last), then one or two dense layers."""

    def __init__(self, channels: tuple[int, ...], classes: int, in_hw: int, hidden: int = 0):
        super().__init__()
        convs, c, hw = [], 1, in_hw
        for i, out in enumerate(channels):
            convs.append(torch.nn.Conv2d(c, out, 3, padding=1))
            c = out
            if i < len(channels) - 1:
                hw //= 2
        self.convs = torch.nn.ModuleList(convs)
        self.hidden = torch.nn.Linear(c * hw * hw, hidden) if hidden else None
        self.fc = torch.nn.Linear(hidden or c * hw * hw, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, conv in enumerate(self.convs):
            x = F.relu(conv(x))
            if i < len(self.convs) - 1:
                x = F.max_pool2d(x, 2)
        x = x.reshape(x.shape[0], -1)
        if self.hidden is not None:
            x = F.relu(self.hidden(x))
        return torch.softmax(self.fc(x), -1)


def train(net: torch.nn.Module, task: Task, epochs: int, lr: float = 2e-3, batch: int = 64, seed: int = 0) -> None:
    """Adam on the cross-entropy of the logits (the input of the final softmax)."""
    torch.manual_seed(seed)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    x, y = torch.tensor(task.x_train), torch.tensor(task.y_train)
    net.train()
    for _ in range(epochs):
        order = torch.randperm(len(x))
        for s in range(0, len(x), batch):
            i = order[s:s + batch]
            p = net(x[i])
            loss = F.nll_loss(torch.log(p.clamp_min(1e-12)), y[i])
            opt.zero_grad()
            loss.backward()
            opt.step()
    net.eval()


def export_onnx(net: torch.nn.Module, example: np.ndarray, path: Path) -> Path:
    torch.onnx.export(net, torch.tensor(example[:1]), path, dynamo=False, input_names=["x"], output_names=["y"])
    return path
