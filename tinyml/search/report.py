"""The search's report: JSON, the Pareto fronts (PNG), the delivered network's layer table.

Accuracy vs SRAM, flash and instructions for the final population (predicted
accuracy, fast-mode costs: both estimates, labelled so), the finalists (measured
validation accuracy, exact-mode costs) and the delivered model (int8 test accuracy,
QEMU-measured SRAM/flash/instructions).
"""
from __future__ import annotations

import json
from pathlib import Path

from tinyml.fsutil import write_text_atomic
from tinyml.search.costs import Budget
from tinyml.search.space import Space
from tinyml.search.state import SearchState
from tinyml.search.tasks import Dataset

AXES = (("sram_bytes", "SRAM (model RAM + stack), bytes", "ram_bytes"),
        ("flash_bytes", "flash (firmware), bytes", "flash_bytes"),
        ("instructions", "instructions per inference", "instructions"))


def write_report(out: Path, settings, space: Space, ds: Dataset, state: SearchState, budget: Budget) -> dict:
    steps = state.data["steps"]
    delivered = steps.get("delivered")
    report = {
        "settings": state.data["settings"], "task": ds.describe(), "space": space.describe(),
        "budget": budget.describe(), "family": steps.get("family"), "supernet": steps.get("supernet"),
        "operators": steps.get("operators"),
        "predictor": {"samples": len(steps.get("samples", {}).get("pairs", [])),
                      "rmse_points_held_out": steps.get("evolution", {}).get("predictor_rmse_held_out")},
        "evolution": {k: v for k, v in steps.get("evolution", {}).items() if k != "population"},
        "finalists": steps.get("finalists"), "delivered": delivered,
        "layers": layer_table(out / "model.tflite", settings.board) if delivered else None,
        "random_search": steps.get("random_search"), "baselines": steps.get("baselines"),
        "files": {"model": "model.tflite", "inputs": "validation_inputs.npy", "pareto": "pareto.png",
                  "state": "search_state.json"},
    }
    pareto_png(out / "pareto.png", steps, budget)
    write_text_atomic(out / "report.json", json.dumps(report, indent=1, default=_plain) + "\n")
    return report


def layer_table(tflite: Path, board: str) -> list[dict]:
    """Per layer of the delivered model: op, output shape, MACs, weight bytes, instructions (exact-mode estimate)."""
    from tinyml.cost import estimate
    from tinyml.pipeline import load_graph, read_model_bytes

    g = load_graph(read_model_bytes(tflite))
    c = estimate(g, board, mode="exact", patches="off")
    return [{"layer": x.index, "op": x.op, "name": x.name, "output": list(g[g.nodes[x.index].outputs[0]].shape),
             "macs": x.macs, "weight_bytes": x.weight_bytes, "instructions_estimate": x.instructions}
            for x in c.layers]


def pareto_front(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The points no other point beats on both cost (lower) and accuracy (higher), by cost."""
    front, best = [], float("-inf")
    for cost, acc in sorted(points, key=lambda p: (p[0], -p[1])):
        if acc > best:
            front.append((cost, acc))
            best = acc
    return front


def pareto_png(path: Path, steps: dict, budget: Budget) -> Path | None:
    pop = steps.get("evolution", {}).get("population")
    if not pop:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    limits = {"sram_bytes": budget.sram_bytes, "flash_bytes": budget.flash_bytes, "instructions": budget.instructions}
    for ax, (key, label, measured) in zip(axes, AXES):
        pts = [(p["cost"][key], p["predicted"]) for p in pop]
        ax.scatter(*zip(*pts), s=10, color="tab:blue", alpha=0.5, label="population (predicted acc., fast cost)")
        front = pareto_front(pts)
        ax.step(*zip(*front), where="post", color="tab:blue", linewidth=1)
        fin = steps.get("finalists") or []
        if fin:
            ax.scatter([f["cost_exact"][key] for f in fin], [f["val_accuracy"] for f in fin], marker="s", s=30,
                       color="tab:orange", label="finalists (val. acc., exact cost)")
        d = steps.get("delivered")
        if d and d["validation"].get(measured) is not None:
            ax.scatter([d["validation"][measured]], [d["int8_test_accuracy"]], marker="*", s=160, color="tab:red",
                       label="delivered (int8 test acc., measured in QEMU)")
        if limits[key]:
            ax.axvline(limits[key], color="red", linestyle="--", linewidth=1, label="budget")
        ax.set_xlabel(label)
        ax.set_ylabel("top-1 accuracy (%)")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=90)
    plt.close(fig)
    tmp.replace(path)
    return path


def _plain(o):
    if hasattr(o, "tolist"):
        return o.tolist()
    raise TypeError(type(o).__name__)
