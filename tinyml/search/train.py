"""Training in PyTorch on the CPU: the supernet (progressive shrinking + in-place distillation),
BatchNorm re-calibration, evaluation, and the short fine-tune of a delivered subnet.

Progressive shrinking (OFA): the largest network first, then elastic kernel, then
depth, then expand ratio, each phase sampling only the dimensions released so far.
With little compute the largest network first trains at half the resolution (a phase of
its own, `low_resolution`): a step there is ~2.5x cheaper (mcunet space, r28 w1.0: 0.85 vs
2.2 s per batch of 128 on this machine) and the fully convolutional weights carry over to
the family's resolution (progressive resizing; BatchNorm is re-calibrated per subnet anyway).
In-place distillation: every step trains the largest subnet on the labels and the
smallest plus a random subnet on its soft outputs (BigNAS's sandwich). Phases are
bounded by time and by epochs, and a checkpoint is written atomically every
`checkpoint_seconds`, so a search interrupted mid-training resumes mid-phase.
"""
from __future__ import annotations

import copy
import io
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from tinyml.fsutil import write_bytes_atomic
from tinyml.search.space import ELASTIC, Arch
from tinyml.search.supernet import SlicedBN, Supernet, to_tensor

Progress = Callable[[str, float], None]  # (phase, fraction done)


@dataclass
class TrainConfig:
    seconds: float  # wall time for all phases together
    max_epochs: float  # per phase
    batch: int = 128
    lr: float = 3e-3
    checkpoint_seconds: float = 30.0
    augment_shift: int = 1  # random translation (pixels at the task's resolution)
    flip: bool = False  # random horizontal flips (images whose classes are mirror-invariant)
    seed: int = 0
    low_resolution: int = 0  # a first phase of the largest network at this resolution (0: none)


def phases(net: Supernet, low_resolution: int = 0) -> list[tuple[str, frozenset[str]]]:
    """The progressive shrinking schedule, without the phases whose dimension has a single choice."""
    varies = {"kernel": any(len(s.kernels) > 1 for s in net.space.stages),
              "depth": any(len(s.depths) > 1 for s in net.space.stages),
              "expand": any(len(s.expands) > 1 for s in net.space.stages)}
    out, released = [("largest", frozenset())], frozenset()
    if low_resolution:
        out.insert(0, (f"largest at r{low_resolution}", frozenset()))
    for dim in ELASTIC:
        if varies[dim]:
            released = released | {dim}
            out.append((dim, released))
    return out


def train_supernet(net: Supernet, x: torch.Tensor, y: torch.Tensor, cfg: TrainConfig, checkpoint: Path,
                   progress: Progress | None = None) -> dict:
    """Train `net` in place through every phase; resumes from `checkpoint` when it exists."""
    schedule = phases(net, cfg.low_resolution)
    low = (F.interpolate(x, size=(cfg.low_resolution,) * 2, mode="area") if cfg.low_resolution else None,
           replace(cfg, augment_shift=max(1, cfg.augment_shift // 2)))
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=1e-4)
    at = {"phase": 0, "step": 0, "spent": 0.0, "sorted": False}
    if checkpoint.exists():
        saved = torch.load(checkpoint, weights_only=False)
        net.load_state_dict(saved["model"])
        opt.load_state_dict(saved["opt"])
        at = saved["at"]
    steps_per_epoch = max(1, len(y) // cfg.batch)
    max_steps = max(1, int(cfg.max_epochs * steps_per_epoch))
    phase_seconds = cfg.seconds / len(schedule)
    rng = random.Random(cfg.seed + 1000 * at["phase"] + at["step"])
    gen = torch.Generator().manual_seed(cfg.seed + 7919 * at["phase"] + at["step"])
    family = net.family
    largest, smallest = net.space.largest(family), net.space.smallest(family)
    net.train()
    while at["phase"] < len(schedule):
        name, elastic = schedule[at["phase"]]
        if name == "expand" and not at["sorted"]:
            net.sort_channels()
            at["sorted"] = True
        base_lr = cfg.lr if name.startswith("largest") else cfg.lr / 2
        started, last_save = time.monotonic() - at["spent"], time.monotonic()
        while True:
            spent = time.monotonic() - started
            done = max(at["step"] / max_steps, spent / phase_seconds)
            if done >= 1.0:
                break
            for group in opt.param_groups:
                group["lr"] = base_lr * 0.5 * (1 + np.cos(np.pi * done))
            idx = torch.randint(0, len(y), (cfg.batch,), generator=gen)
            xb, yb = (augment(low[0][idx], low[1], gen) if name.startswith("largest at") else augment(x[idx], cfg, gen),
                      y[idx])
            opt.zero_grad()
            teacher = net(xb, largest)
            F.cross_entropy(teacher, yb).backward()
            if elastic:
                soft = teacher.detach().softmax(1)
                smallest_now = net.space.sample(rng, family, elastic) if name != "expand" else smallest
                for a in (smallest_now, net.space.sample(rng, family, elastic)):
                    (-(soft * net(xb, a).log_softmax(1)).sum(1).mean()).backward()
            opt.step()
            at["step"] += 1
            if progress:
                progress(name, done)
            if time.monotonic() - last_save > cfg.checkpoint_seconds:
                at["spent"] = time.monotonic() - started
                save_checkpoint(checkpoint, net, opt, at)
                last_save = time.monotonic()
        at = {"phase": at["phase"] + 1, "step": 0, "spent": 0.0, "sorted": at["sorted"]}
        save_checkpoint(checkpoint, net, opt, at)
    return {"phases": [p for p, _ in schedule], "steps_per_phase_max": max_steps, "seconds_per_phase": phase_seconds}


def save_checkpoint(path: Path, net: Supernet, opt: torch.optim.Optimizer, at: dict) -> None:
    buf = io.BytesIO()
    torch.save({"model": net.state_dict(), "opt": opt.state_dict(), "at": dict(at)}, buf)
    write_bytes_atomic(path, buf.getvalue())


def augment(xb: torch.Tensor, cfg: TrainConfig, gen: torch.Generator) -> torch.Tensor:
    """One random translation per batch (zero fill), and per-image horizontal flips when allowed."""
    s = cfg.augment_shift
    if s:
        dy, dx = (int(v) for v in torch.randint(-s, s + 1, (2,), generator=gen))
        xb = torch.roll(F.pad(xb, (s, s, s, s)), (dy, dx), (2, 3))[:, :, s:-s, s:-s]
    if cfg.flip:
        flip = torch.rand(len(xb), generator=gen) < 0.5
        xb = torch.where(flip[:, None, None, None], xb.flip(3), xb)
    return xb


@torch.no_grad()
def recalibrate_bn(net: torch.nn.Module, arch: Arch | None, x: torch.Tensor, batch: int = 256) -> None:
    """BatchNorm statistics of this subnet alone (shared BN saw every subnet): a cumulative average."""
    bns = [m for m in net.modules() if isinstance(m, SlicedBN)]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
    net.train()
    for i in range(0, len(x), batch):
        net(x[i:i + batch], arch) if arch is not None else net(x[i:i + batch])
    for m in bns:
        m.momentum = 0.1
    net.eval()


@torch.no_grad()
def predict(net: Supernet, arch: Arch, x: torch.Tensor, batch: int = 512) -> np.ndarray:
    net.eval()
    return torch.cat([net(x[i:i + batch], arch) for i in range(0, len(x), batch)]).numpy()


def subnet_accuracy(net: Supernet, arch: Arch, x_cal: torch.Tensor, x: torch.Tensor, y: np.ndarray) -> float:
    """Top-1 (%) after re-calibrating BatchNorm for the subnet."""
    recalibrate_bn(net, arch, x_cal)
    return float((predict(net, arch, x).argmax(1) == y).mean() * 100)


FINETUNE_EPOCHS = 10  # the fine-tune's bound in passes over the training set (time bounds it first on big sets)


def finetune_steps(n_train: int, batch: int) -> int:
    return max(50, int(FINETUNE_EPOCHS * n_train / batch))


def finetune(net: Supernet, arch: Arch, x: torch.Tensor, y: torch.Tensor, cfg: TrainConfig, steps: int,
             seconds: float, progress: Progress | None = None) -> Supernet:
    """A copy of the supernet fine-tuned on one subnet alone (only its weights move), on the labels.

    At most `steps` steps and `seconds` of wall time; the learning rate anneals over whichever ends first.
    Labels only: after a short supernet training the largest subnet is a weak teacher."""
    net = copy.deepcopy(net)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr / 2, weight_decay=1e-4)
    gen = torch.Generator().manual_seed(cfg.seed + 17)
    net.train()
    started = time.monotonic()
    for step in range(steps):
        done = max(step / steps, (time.monotonic() - started) / seconds)
        if done >= 1.0:
            break
        for group in opt.param_groups:
            group["lr"] = cfg.lr / 2 * 0.5 * (1 + np.cos(np.pi * done))
        idx = torch.randint(0, len(y), (cfg.batch,), generator=gen)
        opt.zero_grad()
        F.cross_entropy(net(augment(x[idx], cfg, gen), arch), y[idx]).backward()
        opt.step()
        if progress:
            progress("fine-tune", done)
    recalibrate_bn(net, arch, x[:2048])
    return net


def train_plain(net: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, cfg: TrainConfig, max_steps: int,
                progress: Callable[[float], None] | None = None) -> None:
    """A fixed network (a baseline) trained as the supernet is: same optimizer, augmentation and learning-rate
    shape, on the labels, for `cfg.seconds` of wall time and at most `max_steps` batches."""
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=1e-4)
    gen = torch.Generator().manual_seed(cfg.seed + 3)
    started = time.monotonic()
    net.train()
    step = 0
    while True:
        done = max(step / max_steps, (time.monotonic() - started) / cfg.seconds)
        if done >= 1.0:
            break
        for group in opt.param_groups:
            group["lr"] = cfg.lr * 0.5 * (1 + np.cos(np.pi * done))
        idx = torch.randint(0, len(y), (cfg.batch,), generator=gen)
        opt.zero_grad()
        F.cross_entropy(net(augment(x[idx], cfg, gen)), y[idx]).backward()
        opt.step()
        step += 1
        if progress:
            progress(done)
    recalibrate_bn(net, None, x[:2048])


def tensors(images: np.ndarray, labels: np.ndarray, resolution: int) -> tuple[torch.Tensor, torch.Tensor]:
    return to_tensor(images, resolution), torch.from_numpy(labels)
