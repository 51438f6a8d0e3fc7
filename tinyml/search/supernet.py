"""The once-for-all supernet (OFA): one set of weights every subnet of a family shares.

Elastic kernel: each depthwise layer holds its stage's largest kernel; a smaller
one is the centre of the next larger one through a learned linear transform (OFA's
kernel transformation matrices, initialised to the identity). Elastic expand: the
first `cin * e` hidden channels (importance-sorted before that phase, `sort_channels`).
Elastic depth: the first `d` blocks of a stage. BatchNorm is shared and sliced, and
re-calibrated per subnet before it is judged. Padding is TFLite's SAME (the extra
row/column at the bottom/right for stride 2), so `export_weights` gives exactly the
network `lower.float_graph` builds.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from tinyml.search.lower import LayerSpec, Task, layer_plan
from tinyml.search.space import Arch, Space

BN_EPS = 1e-3
# One thread per process: on a shared machine torch's intra-op threads contend (measured 25x slower
# steps with 2 threads under load); parallelism comes from Ray's processes instead.
torch.set_num_threads(1)


def same_pad(x: torch.Tensor, k: int, stride: int) -> torch.Tensor:
    """TFLite's SAME padding: total max((out - 1) * s + k - in, 0), the odd pixel after."""
    h = x.shape[2]
    out = -(-h // stride)
    total = max((out - 1) * stride + k - h, 0)
    before = total // 2
    return F.pad(x, (before, total - before, before, total - before)) if total else x


class SlicedBN(nn.BatchNorm2d):
    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        c, factor = x.shape[1], 0.0
        if self.training:
            if self.momentum is None:  # re-calibration: a cumulative average over the batches seen
                self.num_batches_tracked += 1
                factor = 1.0 / float(self.num_batches_tracked)
            else:
                factor = self.momentum
        return F.batch_norm(x, self.running_mean[:c], self.running_var[:c], self.weight[:c], self.bias[:c],
                            self.training, factor, self.eps)

    def fold(self, c: int) -> tuple[np.ndarray, np.ndarray]:
        """Per-channel (scale, shift) of the first c channels, in float64."""
        with torch.no_grad():
            var = self.running_var[:c].double() + self.eps
            scale = self.weight[:c].double() / var.sqrt()
            return scale.numpy(), (self.bias[:c].double() - self.running_mean[:c].double() * scale).numpy()


class ConvBN(nn.Module):
    """A full conv (stem, 1x1 expand/project/head) with a BatchNorm; input/output channels sliced."""

    def __init__(self, cin: int, cout: int, k: int = 1, stride: int = 1):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(cout, cin, k, k))
        nn.init.kaiming_normal_(self.weight, mode="fan_out")
        self.bn = SlicedBN(cout, eps=BN_EPS)
        self.k, self.stride = k, stride

    def forward(self, x: torch.Tensor, cout: int | None = None) -> torch.Tensor:
        w = self.weight[:cout or self.weight.shape[0], :x.shape[1]]
        return self.bn(F.conv2d(same_pad(x, self.k, self.stride), w, stride=self.stride))

    def export(self, cin: int, cout: int) -> tuple[np.ndarray, np.ndarray]:
        scale, shift = self.bn.fold(cout)
        w = self.weight[:cout, :cin].detach().double().numpy() * scale[:, None, None, None]
        return w.transpose(0, 2, 3, 1).astype(np.float32), shift.astype(np.float32)


class ElasticDepthwise(nn.Module):
    def __init__(self, channels: int, kernels: tuple[int, ...], stride: int):
        super().__init__()
        self.kmax, self.stride = max(kernels), stride
        self.weight = nn.Parameter(torch.empty(channels, 1, self.kmax, self.kmax))
        nn.init.kaiming_normal_(self.weight, mode="fan_out")
        self.transforms = nn.ParameterDict({f"{k + 2}to{k}": nn.Parameter(torch.eye(k * k))
                                            for k in sorted(kernels) if k < self.kmax})
        self.bn = SlicedBN(channels, eps=BN_EPS)

    def kernel(self, c: int, k: int) -> torch.Tensor:
        w, size = self.weight[:c], self.kmax
        while size > k:
            nxt = size - 2
            if f"{size}to{nxt}" not in self.transforms:  # a size no stage choice uses: plain crop
                w = w[:, :, 1:-1, 1:-1]
            else:
                w = (w[:, :, 1:-1, 1:-1].reshape(c, nxt * nxt) @ self.transforms[f"{size}to{nxt}"]).reshape(c, 1, nxt, nxt)
            size = nxt
        return w

    def forward(self, x: torch.Tensor, k: int) -> torch.Tensor:
        c = x.shape[1]
        return self.bn(F.conv2d(same_pad(x, k, self.stride), self.kernel(c, k), stride=self.stride, groups=c))

    def export(self, c: int, k: int) -> tuple[np.ndarray, np.ndarray]:
        scale, shift = self.bn.fold(c)
        w = self.kernel(c, k).detach().double().numpy()[:, 0] * scale[:, None, None]
        return w.transpose(1, 2, 0)[None].astype(np.float32), shift.astype(np.float32)


class Block(nn.Module):
    """Inverted residual: 1x1 expand (RELU6), kxk depthwise (RELU6), 1x1 project, residual when shapes allow."""

    def __init__(self, cin: int, cout: int, stride: int, kernels: tuple[int, ...], expands: tuple[int, ...]):
        super().__init__()
        hidden = cin * max(expands)
        self.expand = ConvBN(cin, hidden) if max(expands) > 1 else None
        self.dw = ElasticDepthwise(hidden, kernels, stride)
        self.project = ConvBN(hidden, cout)
        self.cin, self.residual = cin, stride == 1 and cin == cout

    def forward(self, x: torch.Tensor, k: int, e: int) -> torch.Tensor:
        h = F.relu6(self.expand(x, self.cin * e)) if e > 1 else x
        y = self.project(F.relu6(self.dw(h, k)))
        return x + y if self.residual else y


class Supernet(nn.Module):
    """Every subnet of one family (resolution, width) of `space`, for `task`."""

    def __init__(self, space: Space, family: tuple[int, float], task: Task):
        super().__init__()
        self.space, self.family, self.task = space, family, task
        largest = space.largest(family)
        ch = lambda c: space.channels(c, family[1])  # noqa: E731
        c = ch(space.stem_channels)
        self.stem = ConvBN(task.channels, c, 3, space.stem_stride)
        self.stages = nn.ModuleList()
        for stage in space.stages:
            blocks = nn.ModuleList()
            for j in range(stage.max_depth):
                blocks.append(Block(c, ch(stage.channels), stage.stride if j == 0 else 1, stage.kernels, stage.expands))
                c = ch(stage.channels)
            self.stages.append(blocks)
        self.head = ConvBN(c, ch(space.head_channels)) if space.head_channels else None
        self.classifier = nn.Linear(ch(space.head_channels) if space.head_channels else c, task.classes)
        self.arch = largest

    def forward(self, x: torch.Tensor, arch: Arch | None = None) -> torch.Tensor:
        arch = arch or self.arch
        x = F.relu6(self.stem(x))
        for blocks, choice in zip(self.stages, arch.stages):
            for block, (k, e) in zip(blocks, choice):
                x = block(x, k, e)
        if self.head is not None:
            x = F.relu6(self.head(x))
        return self.classifier(x.mean((2, 3)))

    @torch.no_grad()
    def export_weights(self, arch: Arch) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """The subnet's BN-folded weights in the IR layout, by `layer_plan` name."""
        out = {}
        for spec in layer_plan(arch, self.space, self.task):
            out[spec.name] = self._export(spec, arch)
        return {k: v for k, v in out.items() if v is not None}

    def _export(self, spec: LayerSpec, arch: Arch) -> tuple[np.ndarray, np.ndarray] | None:
        if spec.name == "stem":
            return self.stem.export(spec.cin, spec.cout)
        if spec.name == "head":
            return self.head.export(spec.cin, spec.cout)
        if spec.name == "classifier":
            return (self.classifier.weight.detach().numpy().astype(np.float32).copy(),
                    self.classifier.bias.detach().numpy().astype(np.float32).copy())
        if spec.kind not in ("conv", "dw"):
            return None
        block_name, part = spec.name.split("/")
        i, j = (int(v) for v in block_name[1:].split("b"))
        block = self.stages[i][j]
        if part == "dw":
            return block.dw.export(spec.cout, spec.kernel)
        return getattr(block, part).export(spec.cin, spec.cout)

    @torch.no_grad()
    def sort_channels(self) -> None:
        """Before the expand phase: hidden channels by importance (L1 of the project weights), OFA's reorganisation."""
        for blocks in self.stages:
            for b in blocks:
                if b.expand is None:
                    continue
                order = b.project.weight.abs().sum((0, 2, 3)).argsort(descending=True)
                b.expand.weight.copy_(b.expand.weight[order])
                for bn in (b.expand.bn, b.dw.bn):
                    for t in (bn.weight, bn.bias, bn.running_mean, bn.running_var):
                        t.copy_(t[order])
                b.dw.weight.copy_(b.dw.weight[order])
                b.project.weight.copy_(b.project.weight[:, order])


def to_tensor(x: np.ndarray, resolution: int) -> torch.Tensor:
    """NHWC images -> NCHW at `resolution` (area-averaged when shrinking, bilinear when growing)."""
    t = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
    if t.shape[2] == resolution:
        return t
    mode = "area" if resolution < t.shape[2] else "bilinear"
    return F.interpolate(t, size=(resolution, resolution), mode=mode, **({} if mode == "area" else {"align_corners": False}))


def to_nhwc(t: torch.Tensor) -> np.ndarray:
    return t.permute(0, 2, 3, 1).contiguous().numpy()
