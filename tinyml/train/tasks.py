"""Offline tasks and small float CNNs for the quantization tests and benchmark.

Data comes from tinyml.search.tasks (offline: digits, Fashion-MNIST,
synthesized keyword spotting). Models are trained in PyTorch and exported to ONNX (`torch.onnx.export(..., dynamo=False)`), the
path a user's PyTorch model takes into `tinyml quantize`.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F


@dataclass
class Task:
    name: str
    x_train: np.ndarray  # [N, C, H, W] float32 in [0, 1] (NCHW, as the exported ONNX model takes it)
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


def load(spec: str, limit: int | None = None) -> Task:
    """A task of tinyml.search.tasks ("digits", "fashion", "kws"), NCHW for PyTorch."""
    from tinyml.search.tasks import load_task

    ds = load_task(spec, limit)
    nchw = lambda a: np.ascontiguousarray(a.transpose(0, 3, 1, 2))  # noqa: E731
    return Task(ds.name, nchw(ds.x_train), ds.y_train, nchw(ds.x_test), ds.y_test)


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
