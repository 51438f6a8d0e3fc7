"""Pictures people would rather look at than read: the arena over time, accuracy against flash."""
from __future__ import annotations

from pathlib import Path

from tinyml.ir import Graph
from tinyml.schedule.memory import MemoryPlan


def memory_timeline(g: Graph, plan: MemoryPlan, path: str | Path, title: str = "",
                    stages: list[tuple[tuple[int, int], str]] | None = None,
                    baseline_arena: int | None = None) -> Path:
    """Draw each buffer as a rectangle: x = the layers it is live, y = its arena bytes.

    `stages` ((first, last step), label) shades patch-based stages;
    `baseline_arena` draws the layer-by-layer arena for comparison.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    steps = len(g.nodes) + 1
    fig, ax = plt.subplots(figsize=(max(6.0, min(18.0, 0.25 * steps + 4)), 5))
    cmap = plt.get_cmap("tab20")
    for k, b in enumerate(sorted(plan.buffers, key=lambda b: b.first)):
        scratch = b.key.startswith("@scratch")
        ax.add_patch(Rectangle((b.first - 0.45, b.offset), b.last - b.first + 0.9, b.size,
                               facecolor="lightgrey" if scratch else cmap(k % 20),
                               edgecolor="black", linewidth=0.4, hatch="//" if scratch else None))
        # a segment of a group (b.base set) holds no tensor of its own: its head carries the label
        label = "scratch" if scratch else _short(b.tensors[0]) if b.tensors else None
        if label and b.size >= plan.arena_bytes * 0.08 and b.last - b.first >= 2:
            ax.text((b.first + b.last) / 2, b.offset + b.size / 2, label, ha="center", va="center", fontsize=6)
    live = [plan.live_bytes(s) for s in range(steps)]
    ax.step(range(steps), live, where="mid", color="black", linewidth=1, label="live bytes (lower bound)")
    ax.axhline(plan.arena_bytes, color="red", linestyle="--", linewidth=1, label=f"arena {plan.arena_bytes:,} B")
    for k, ((first, last), label) in enumerate(stages or []):
        ax.axvspan(first - 0.5, last + 0.5, color=("tab:blue", "tab:green", "tab:orange")[k % 3], alpha=0.08,
                   zorder=0, label=label)
    if baseline_arena is not None:
        ax.axhline(baseline_arena, color="grey", linestyle=":", linewidth=1,
                   label=f"layer by layer {baseline_arena:,} B")
    ax.set_xlim(-1, steps)
    ax.set_ylim(0, max(plan.arena_bytes, baseline_arena or 0, 1) * 1.08)
    ax.set_xlabel("layer (execution step)")
    ax.set_ylabel("arena offset (bytes)")
    ax.set_title(title or f"{g.name}: memory timeline")
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _short(name: str) -> str:
    """Converters build long hierarchical names; the last component says enough."""
    parts = [p for p in name.replace(";", "/").split("/") if p]
    return (parts[-1] if parts else name)[:18]


def pareto(configs: list[dict], path: str | Path, title: str = "") -> Path:
    """Accuracy (or, without --eval, the ILP's objective) against weight flash: uniform widths as
    points, the ILP's allocations at increasing budgets as a line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scored = all(c["accuracy"] is not None for c in configs)
    key, label = ("accuracy", "top-1 accuracy (%)") if scored else ("objective", "sum of trace x perturbation")
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ilp = sorted((c for c in configs if c["label"].startswith("ILP")), key=lambda c: c["weight_bytes"])
    if ilp:
        ax.plot([c["weight_bytes"] for c in ilp], [c[key] for c in ilp], "o-", color="tab:blue",
                label="ILP (Hessian-weighted)")
    for k, c in enumerate(c for c in configs if not c["label"].startswith("ILP")):
        ax.scatter([c["weight_bytes"]], [c[key]], marker="s", s=50, color=plt.get_cmap("tab10")(k + 1),
                   label=c["label"], zorder=3)
    ax.set_xlabel("weight flash (bytes, packed)")
    ax.set_ylabel(label)
    if not scored:
        ax.set_yscale("symlog", linthresh=1e-6)
    ax.set_title(title or "mixed precision: accuracy vs flash")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
