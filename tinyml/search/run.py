"""The search from start to finish, step by step, each step's result kept in the state file.

family (TinyNAS) -> supernet (OFA) -> operator preference (SpaceEvo-style) ->
predictor samples -> evolution -> finalists (exact costs, measured accuracy) ->
[random search, baselines] -> delivery (fine-tune, int8 PTQ, QEMU) -> report.
"""
from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from tinyml.errors import CheckFailed, TinymlError
from tinyml.search.costs import Budget, CostService
from tinyml.search.lower import Task
from tinyml.search.space import Arch, Space, load_space
from tinyml.search.state import SearchState
from tinyml.search.tasks import Dataset, load_task

Progress = Callable[[str, float, float], None]  # (step, done, total)

# Of --time-budget; the rest is slack. The fine-tune of the chosen subnet gets a quarter: with little compute
# the supernet's shared weights are a starting point and the specialized subnet needs real training (OFA fine-tunes too).
SHARES = {"supernet": 0.5, "samples": 0.1, "deliver": 0.25}


@dataclass(frozen=True)
class Settings:
    task: str
    board: str
    sram_budget: int
    flash_budget: int
    instr_budget: int | None
    bits: str
    minutes: float
    space: str
    seed: int = 0
    train_limit: int | None = None
    predictor_samples: int = 120
    population: int = 64
    generations: int = 20
    finalists: int = 4
    validate_inputs: int = 10
    random_search: bool = False
    baselines: bool = False


def default_space(ds: Dataset) -> str:
    return "mcunet"


def run_search(s: Settings, out: Path, progress: Progress, address: str | None = None,
               log: Callable[[str], None] = print) -> dict:
    """Run (or resume) the search into `out`; returns the report dict (also written by report.py)."""
    import torch

    from tinyml.search.cluster import ray_session
    from tinyml.search.supernet import Supernet
    from tinyml.search.train import TrainConfig, tensors, train_supernet

    ds = load_task(s.task, s.train_limit, s.seed)
    space = load_space(s.space)
    if ds.channels > 16:
        raise TinymlError(f"task {s.task}: {ds.channels} input channels; at most 16")
    task = Task(ds.channels, ds.classes)
    budget = Budget(s.sram_budget, s.flash_budget, s.instr_budget)
    # The comparisons (random search, baselines) are add-ons: a rerun that asks for them resumes the search.
    state = SearchState(out, {k: v for k, v in asdict(s).items() if k not in ("random_search", "baselines")})
    if state.resumed:
        log(f"resuming: {', '.join(state.resumed)} done")
    ray = ray_session(address)
    svc = CostService(space, task, s.board, budget, weight_bits=4 if s.bits == "mixed" else 8)
    seconds = s.minutes * 60

    family = _family(state, space, svc, budget, s, ds.resolution, progress)
    r = family[0]
    torch.manual_seed(s.seed)
    net = Supernet(space, family, task)
    x, y = tensors(ds.x_train, ds.y_train, r)
    xv, _ = tensors(ds.x_val, ds.y_val, r)
    cfg = TrainConfig(seconds=seconds * SHARES["supernet"], max_epochs=_epochs(len(ds.y_train)), seed=s.seed,
                      flip=ds.name == "fashion", augment_shift=max(1, r // 14), low_resolution=_low_resolution(r))
    info = train_supernet(net, x, y, cfg, out / "supernet.pt", lambda name, f: progress(f"supernet: {name}", f, 1.0))
    if not state.get("supernet"):
        state.put("supernet", info)
    x_cal = x[: min(len(x), 1024)]
    n_sub = min(len(ds.y_val), 2000)

    from tinyml.search.measure import AccuracyService

    acc_sub = AccuracyService(ray, net, x_cal, xv[:n_sub], ds.y_val[:n_sub])
    operators = state.get("operators") or state.put("operators", _operators(net, space, family, task, s, ds, x_cal,
                                                                           xv, progress))
    kernel_weights = {int(k): v for k, v in operators["weights"].items()}
    samples = _samples(state, space, family, svc, budget, acc_sub, s, kernel_weights,
                       seconds * SHARES["samples"], progress)

    from tinyml.search.evolve import AccuracyPredictor, Evolution

    predictor = AccuracyPredictor(space, seed=s.seed)
    archs, accs = [Arch.from_json(a) for a, _ in samples], [acc for _, acc in samples]
    held_out_rmse = predictor.held_out_rmse(archs, accs)
    predictor.fit(archs, accs)
    acc_full = AccuracyService(ray, net, x_cal, xv, ds.y_val)
    finalists = state.get("finalists")
    if finalists is None:
        start = sorted(zip(accs, archs), key=lambda p: -p[0])[: s.population // 4]
        search_budget, rounds = budget, []
        for _ in range(3):  # evolve; compile the finalists; if none fits as built, tighten by what was measured
            evo = Evolution(space, family, search_budget, svc.costs, predictor.predict, kernel_weights,
                            population=s.population, seed=s.seed + len(rounds))
            ranked, history = evo.run(s.generations, lambda g, best: progress("evolution", g, s.generations),
                                      start=[a for _, a in start])
            if not ranked:
                break
            finalists = _measure_finalists(ranked[: s.finalists], net, space, task, svc, acc_full, x_cal,
                                           ds.y_train[:len(x_cal)], s, budget,
                                           progress)
            rounds.append({"budget": search_budget.describe(), "history": history, "priced": evo.evaluated,
                           "finalists_fitting_as_built": sum(f["fits_built"] for f in finalists)})
            if any(f["fits_built"] for f in finalists):
                break
            search_budget = _tightened(search_budget, finalists)
        if not ranked or not finalists:
            raise CheckFailed("no subnet of the chosen family fits the budget")
        state.put("evolution", {"history": history, "priced": sum(r["priced"] for r in rounds),
                                "predictor_rmse_held_out": held_out_rmse, "rounds": rounds,
                                "population": [{"arch": a.to_json(), "predicted": p, "cost": c.describe()}
                                               for a, p, c in ranked]})
        finalists = state.put("finalists", finalists)
    if s.random_search and not state.get("random_search"):
        state.put("random_search", _random_search(space, family, svc, budget, acc_sub, acc_full, len(samples)
                                                   + s.finalists, s.seed, progress))
    from tinyml.search.deliver import deliver_best

    delivered = state.get("delivered") or state.put("delivered", deliver_best(
        net, finalists, space, task, ds, s, budget, out, seconds * SHARES["deliver"], progress, log))
    if s.baselines and not state.get("baselines"):
        from tinyml.search.baselines import run_baselines

        from tinyml.search.train import finetune_steps, phases

        # Fair protocol: each baseline trains as long as the searched network did in all (supernet + fine-tune),
        # in wall time and in batches.
        batches = len(phases(net, cfg.low_resolution)) * int(cfg.max_epochs * max(1, len(ds.y_train) // cfg.batch)) \
            + finetune_steps(len(ds.y_train), cfg.batch)
        state.put("baselines", run_baselines(space, task, ds, s, budget, svc, out, cfg, progress, log,
                                             seconds * (SHARES["supernet"] + SHARES["deliver"]), batches))
    from tinyml.search.report import write_report

    return write_report(out, s, space, ds, state, budget)


def _low_resolution(r: int) -> int:
    """The supernet's warm-up resolution: half the family's, a multiple of 4, at least 8 (0: none below 16)."""
    return max(8, r // 2 // 4 * 4) if r >= 16 else 0


def _epochs(n_train: int) -> float:
    """Per phase: enough passes over a small set, a few over a big one (time bounds it too)."""
    return float(np.clip(40000 / max(n_train, 1), 2, 40))


def _family(state: SearchState, space: Space, svc: CostService, budget: Budget, s: Settings, native: int,
            progress: Progress) -> tuple[int, float]:
    from tinyml.search.spaceopt import choose_family

    saved = state.get("family")
    if saved is None:
        fam, table = choose_family(space, svc, budget, samples=200, seed=s.seed, max_resolution=native,
                                   progress=lambda d, t: progress("pricing families", d, t))
        if fam is None:
            raise CheckFailed(f"no subnet of space {space.name} fits {budget.sram_bytes:,} B SRAM and "
                              f"{budget.flash_bytes:,} B flash on {s.board} (fast cost estimate); raise the budgets "
                              "or give a smaller space")
        saved = state.put("family", {"resolution": fam[0], "width": fam[1], "table": table})
    return int(saved["resolution"]), float(saved["width"])


def _operators(net, space: Space, family, task: Task, s: Settings, ds: Dataset, x_cal, xv,
               progress: Progress) -> dict:
    """Per kernel: int8 loss measured with our PTQ on one subnet (300 validation images; the numpy reference is
    the cost here), instructions per MAC from tinyml.cost."""
    from tinyml.search.deliver import int8_accuracy, quantize_subnet
    from tinyml.search.spaceopt import (kernel_instructions_per_mac, kernel_preferences,
                                        plausible_instructions_per_mac, with_kernel)
    from tinyml.search.supernet import to_nhwc
    from tinyml.search.train import predict, recalibrate_bn

    ipm_estimated = kernel_instructions_per_mac(space, family, task, s.board)
    ipm, raised = plausible_instructions_per_mac(ipm_estimated)
    rng = random.Random(s.seed + 5)
    n = min(len(ds.y_val), 300)
    xv_nhwc, yv = to_nhwc(xv[:n]), ds.y_val[:n]
    calib = to_nhwc(x_cal[:100])
    loss: dict[int, float] = {}
    probe = space.sample(rng, family)
    kernels = sorted(ipm)
    for i, k in enumerate(kernels):
        a = with_kernel(probe, space, k)
        recalibrate_bn(net, a, x_cal)
        f = float((predict(net, a, xv[:n]).argmax(1) == yv).mean() * 100)  # the same images as the int8 score
        q = quantize_subnet(net.export_weights(a), a, space, task, calib)
        loss[k] = f - int8_accuracy(q, xv_nhwc, yv)
        progress("operator preference", i + 1, len(kernels))
    return {"int8_loss_points": loss, "instructions_per_mac": ipm, "instructions_per_mac_estimated": ipm_estimated,
            "raised_to_the_smaller_kernel": raised, "weights": kernel_preferences(loss, ipm)}


def _samples(state: SearchState, space: Space, family, svc: CostService, budget: Budget, acc_sub, s: Settings,
             kernel_weights: dict, seconds: float, progress: Progress) -> list:
    """(subnet, validation accuracy) pairs for the predictor, measured in chunks and saved after each."""
    from tinyml.search.evolve import Evolution

    samples = state.get("samples", {"pairs": [], "done": False})
    if samples["done"]:
        return samples["pairs"]
    evo = Evolution(space, family, budget, svc.costs, lambda a: np.zeros(len(a)), kernel_weights,
                    seed=s.seed + 11 + len(samples["pairs"]))
    rng = random.Random(s.seed + 13 + len(samples["pairs"]))
    started = time.monotonic()
    seen = {Arch.from_json(a) for a, _ in samples["pairs"]}
    while len(samples["pairs"]) < s.predictor_samples:
        chunk = [a for a, _ in evo.random_feasible(16, rng) if a not in seen][:8]
        if not chunk:
            break
        for a, acc in zip(chunk, acc_sub.accuracies(chunk)):
            samples["pairs"].append([a.to_json(), acc])
            seen.add(a)
        state.put("samples", samples)
        progress("predictor samples", len(samples["pairs"]), s.predictor_samples)
        if time.monotonic() - started > seconds and len(samples["pairs"]) >= 24:
            break
    samples["done"] = True
    return state.put("samples", samples)["pairs"]


def _measure_finalists(ranked: list, net, space: Space, task: Task, svc: CostService, acc_full, x_cal, y_cal,
                       s: Settings, budget: Budget, progress: Progress) -> list[dict]:
    """The best predicted subnets: exact-mode costs, validation accuracy measured, and compiled with their
    own (int8, supernet) weights so flash and model RAM are measured from the linked firmware."""
    from tinyml.cost.model import load_coefficients
    from tinyml.search.deliver import mixed_target, quantize_subnet
    from tinyml.search.supernet import to_nhwc
    from tinyml.search.train import recalibrate_bn

    archs = [a for a, _, _ in ranked]
    exact = svc.costs(archs, mode="exact")
    accs = acc_full.accuracies(archs, lambda d, t: progress("finalists: accuracy", d, t))
    models = []
    for a in archs:
        recalibrate_bn(net, a, x_cal)
        models.append(quantize_subnet(net.export_weights(a), a, space, task, to_nhwc(x_cal[:200]),
                                      mixed_target(s, budget, y_cal[:200])).tflite)
    stack = load_coefficients()["stack_bytes"]
    progress("finalists: compiling", 0, 1)
    built = svc.builds(models, s.board, budget.sram_bytes - stack)
    rows = []
    for a, (_, predicted, fast), c, acc, b in zip(archs, ranked, exact, accs, built):
        # the linked image decides flash and RAM; instructions are still the exact-mode estimate
        fits = "error" not in b and b["flash_bytes"] <= budget.flash_bytes \
            and b["model_ram_bytes"] + stack <= budget.sram_bytes \
            and (budget.instructions is None or c.instructions <= budget.instructions)
        rows.append({"arch": a.to_json(), "label": a.label(), "predicted": predicted, "val_accuracy": acc,
                     "cost_fast": fast.describe(), "cost_exact": c.describe(), "fits_exact": c.fits(budget),
                     "built": b, "fits_built": fits})
    rows.sort(key=lambda r: (not r["fits_built"], -r["val_accuracy"]))
    return rows


def _tightened(b: Budget, finalists: list[dict]) -> Budget:
    """The search budget scaled by how far the estimates fell short of the built firmware (worst finalist)."""
    flash = min(f["cost_exact"]["flash_bytes"] / f["built"]["flash_bytes"] for f in finalists if "error" not in f["built"])
    stack = finalists[0]["cost_exact"]["sram_bytes"] - finalists[0]["cost_exact"]["arena_bytes"]
    sram = min(f["cost_exact"]["sram_bytes"] / (f["built"]["model_ram_bytes"] + stack)
               for f in finalists if "error" not in f["built"])
    return Budget(int(b.sram_bytes * min(1.0, sram) * 0.98), int(b.flash_bytes * min(1.0, flash) * 0.98),
                  b.instructions)


def _random_search(space: Space, family, svc: CostService, budget: Budget, acc_sub, acc_full, n: int, seed: int,
                   progress: Progress) -> dict:
    """Random search with as many measured candidates as the evolution used: the best by validation accuracy."""
    from tinyml.search.evolve import Evolution

    rng = random.Random(seed + 99)
    evo = Evolution(space, family, budget, svc.costs, lambda a: np.zeros(len(a)), seed=seed + 99)
    archs = [a for a, _ in evo.random_feasible(n, rng)]
    accs = acc_sub.accuracies(archs, lambda d, t: progress("random search", d, t))
    best = archs[int(np.argmax(accs))]
    return {"candidates": len(archs), "best": best.to_json(), "label": best.label(),
            "val_accuracy": acc_full.accuracies([best])[0]}
