"""Hand-designed baselines, trained the same way and squeezed to the same budget (issue 13, item 6).

- MobileNetV2: the space's stage layout with every block at kernel 3, the largest expand ratio and the
  largest depth, at the (resolution, width) of the space with the most MACs that fits.
- A plain CNN: 3x3 conv (RELU6) layers, stride 2 every other layer, global pooling and a classifier,
  at the widest base width that fits, at the task's own resolution.
"Fits" is judged as for the searched network's finalists: the int8 model compiled and linked for the
board (flash and model RAM measured from the image) plus the stack estimate. Each baseline trains
with the same optimizer and augmentation as the supernet, for as long as the searched network trained in all
(the supernet's time plus the chosen subnet's fine-tune, and at most as many batches), then goes through the
same BN re-calibration, PTQ and int8 evaluation.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from tinyml.search.costs import Budget, CostService, measure_build
from tinyml.search.lower import LayerSpec, Task, layer_plan, plan_cost_graph, plan_graph
from tinyml.search.space import Arch, Space
from tinyml.search.supernet import ConvBN, ElasticDepthwise


def mobilenet_v2(space: Space, family: tuple[int, float]) -> Arch:
    return Arch(*family, tuple(tuple((3, max(s.expands)) for _ in range(s.max_depth)) for s in space.stages))


def plain_cnn(base: int, task: Task, layers: int = 4) -> list[LayerSpec]:
    plan, c = [], task.channels
    for i in range(layers):
        cout = base * 2 ** ((i + 1) // 2)
        plan.append(LayerSpec(f"conv{i}", "conv", c, cout, 3, 2 if i % 2 else 1, True))
        c = cout
    return plan + [LayerSpec("pool", "pool", c, c), LayerSpec("flatten", "flatten", c, c),
                   LayerSpec("classifier", "fc", c, task.classes)]


class PlanNet(nn.Module):
    """A fixed network executing a layer plan (BatchNorm after every conv, folded at export)."""

    def __init__(self, plan: list[LayerSpec]):
        super().__init__()
        self.plan = plan
        self.layers = nn.ModuleDict()
        for s in plan:
            key = s.name.replace("/", "__")
            if s.kind == "conv":
                self.layers[key] = ConvBN(s.cin, s.cout, s.kernel, s.stride)
            elif s.kind == "dw":
                self.layers[key] = ElasticDepthwise(s.cout, (s.kernel,), s.stride)
            elif s.kind == "fc":
                self.layers[key] = nn.Linear(s.cin, s.cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        seen = {"input": x}
        prev = "input"
        for s in self.plan:
            m, h = self.layers[s.name.replace("/", "__")] if s.kind in ("conv", "dw", "fc") else None, seen[prev]
            if s.kind == "conv":
                h = m(h)
            elif s.kind == "dw":
                h = m(h, s.kernel)
            elif s.kind == "add":
                h = h + seen[s.residual]
            elif s.kind == "pool":
                h = h.mean((2, 3))
            elif s.kind == "fc":
                h = m(h)
            seen[s.name] = F.relu6(h) if s.relu6 else h
            prev = s.name
        return seen[prev]

    @torch.no_grad()
    def export(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        out = {}
        for s in self.plan:
            m = self.layers[s.name.replace("/", "__")] if s.kind in ("conv", "dw", "fc") else None
            if s.kind == "conv":
                out[s.name] = m.export(s.cin, s.cout)
            elif s.kind == "dw":
                out[s.name] = m.export(s.cout, s.kernel)
            elif s.kind == "fc":
                out[s.name] = (m.weight.numpy().astype(np.float32).copy(), m.bias.numpy().astype(np.float32).copy())
        return out


def fitting_baselines(space: Space, task: Task, svc: CostService, board: str, budget: Budget,
                      native: int) -> list[tuple[str, list[LayerSpec], int]]:
    """(name, plan, resolution) of each baseline at its largest size whose fast cost fits the budget."""
    out = []
    fams = sorted(space.families(), key=lambda f: -svc.costs([mobilenet_v2(space, f)])[0].macs)
    for f in fams:
        if svc.costs([mobilenet_v2(space, f)], mode="exact")[0].fits(budget):
            out.append((f"MobileNetV2 (k3, largest expand and depth, r{f[0]}, w{f[1]:g})",
                        layer_plan(mobilenet_v2(space, f), space, task), f[0]))
            break
    for base in (64, 48, 32, 24, 16, 12, 8, 4):
        plan = plain_cnn(base, task)
        if _plan_fits(plan, native, task, board, budget):
            out.append((f"plain CNN (4 conv3x3, base width {base}, r{native})", plan, native))
            break
    return out


def _plan_fits(plan: list[LayerSpec], r: int, task: Task, board: str, budget: Budget) -> bool:
    from tinyml.cost import estimate
    from tinyml.cost.model import load_coefficients

    coef = load_coefficients()
    c = estimate(plan_cost_graph(plan, r, task), board, sram_budget=budget.sram_bytes - coef["stack_bytes"])
    return c.peak_sram_bytes <= budget.sram_bytes and c.flash_bytes + coef["firmware_flash_bytes"] <= budget.flash_bytes


def run_baselines(space: Space, task: Task, ds, s, budget: Budget, svc: CostService, out, cfg, progress, log,
                  seconds: float, max_steps: int) -> list:
    """Train, quantize and measure each baseline, all at once as Ray tasks (one process each: with the same
    wall-time bound, running them side by side rather than one after the other halves the wait without
    shortening anyone's training); a baseline whose built firmware exceeds the budget is reported so."""
    ray = svc.ray
    data, remote = ray.put(ds), ray.remote(_baseline)
    pending = {remote.remote(name, plan, r, task, data, s, budget, cfg, seconds, max_steps): i for i, (name, plan, r)
               in enumerate(fitting_baselines(space, task, svc, s.board, budget, ds.resolution))}
    results: dict[int, dict] = {}
    total = len(pending)
    progress("baselines (training side by side)", 0, total)
    while pending:
        ready, _ = ray.wait(list(pending), num_returns=1)
        r = results[pending.pop(ready[0])] = ray.get(ready[0])
        progress("baselines (training side by side)", len(results), total)
        log(f"baseline {r['name']}: int8 {r['int8_test_accuracy']:.2f} %, flash {r['built']['flash_bytes']:,} B "
            f"({'fits' if r['fits_built'] else 'over budget'})")
    return [results[i] for i in sorted(results)]


def _baseline(name: str, plan: list[LayerSpec], r: int, task: Task, ds, s, budget: Budget, cfg, seconds: float,
              max_steps: int) -> dict:
    from tinyml.cost.model import load_coefficients
    from tinyml.quantize import QuantPolicy, quantize_float_graph
    from tinyml.search.deliver import INT8_TEST_LIMIT, int8_accuracy
    from tinyml.search.supernet import to_nhwc
    from tinyml.search.train import tensors, train_plain

    stack = load_coefficients()["stack_bytes"]
    torch.manual_seed(s.seed)
    net = PlanNet(plan)
    x, y = tensors(ds.x_train, ds.y_train, r)
    xt, _ = tensors(ds.x_test, ds.y_test, r)
    train_plain(net, x, y, replace(cfg, seconds=seconds), max_steps)
    net.eval()
    with torch.no_grad():
        float_acc = float((torch.cat([net(xt[i:i + 512]) for i in range(0, len(xt), 512)]).argmax(1).numpy()
                           == ds.y_test).mean() * 100)
    weights = net.export()
    q = quantize_float_graph(plan_graph(plan, r, task, lambda spec: weights[spec.name], "baseline"),
                             to_nhwc(x[:200]), QuantPolicy())
    built = measure_build(q.tflite, s.board, budget.sram_bytes - stack)
    fits = built["flash_bytes"] <= budget.flash_bytes and built["model_ram_bytes"] + stack <= budget.sram_bytes
    n = min(len(ds.y_test), INT8_TEST_LIMIT)
    return {"name": name, "float_test_accuracy": float_acc, "int8_test_samples": n,
            "int8_test_accuracy": int8_accuracy(q, to_nhwc(xt[:n]), ds.y_test[:n]),
            "train_seconds_budget": seconds, "train_batches_max": max_steps,
            "built": built, "fits_built": fits, "layers": len(plan)}
