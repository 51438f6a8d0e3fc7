"""tinyml.cost predicted vs measured on every zoo model, fast and exact mode.

Measured: the QEMU figures benchmarks/fit_cost_model.py recorded (benchmarks/results/
cost_measurements.json; `--measure` refreshes them first) for each model compiled as
`tinyml generate` does (--patch auto): whole-network instructions, the planned arena the
firmware was linked with, the model library's flash. Predicted: tinyml.cost.estimate in
both modes on the graph the pipeline loads. Also times fast mode on the MobileNet-size graphs.

Usage: python benchmarks/cost_accuracy.py [--board stm32f405] [--json out.json] [--measure]
A benchmark, not a test: it prints a table and writes JSON.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from tinyml import zoo
from tinyml.cost import estimate
from tinyml.cost.model import load_coefficients
from tinyml.pipeline import prepared_graph, read_model_bytes

ROOT = Path(__file__).resolve().parent
MEASUREMENTS = ROOT / "results" / "cost_measurements.json"
TARGETS = {"fast": 0.10, "exact": 0.05}
SPEED_MODELS = ("mobilenet_v2_035_96", "mobilenet_v2_035_144", "mobilenet_v1_025_vww")


def measured_rows(board: str) -> dict[str, dict]:
    """Per model: the run `tinyml generate` builds (auto, or off when auto kept layer by layer)."""
    runs = [r for r in json.loads(MEASUREMENTS.read_text())["runs"] if r["board"] == board]
    by = {(r["model"], r["schedule"]): r for r in runs}
    out = {}
    for (name, schedule), r in by.items():
        if schedule == "auto":
            r = by.get((name, "off")) if r.get("same_as") else r
            if r is not None and "instructions" in r:
                out[name] = r
    return out


def compare(name: str, m: dict, board: str) -> dict:
    g, _ = prepared_graph(read_model_bytes(zoo.path(name)), name)
    row = {"model": name, "layers": len(g.nodes), "measured": {k: m[k] for k in (
        "instructions", "arena_bytes", "model_flash_bytes", "stack_bytes", "weights_bytes")}}
    for mode in ("fast", "exact"):
        c = estimate(g, board, mode)
        row[mode] = {"instructions": c.instructions_estimate, "arena_bytes": c.arena_bytes,
                     "flash_bytes": c.flash_bytes, "patches": c.patches,
                     "instructions_error": c.instructions_estimate / m["instructions"] - 1,
                     "arena_error": c.arena_bytes / m["arena_bytes"] - 1,
                     "flash_error": c.flash_bytes / m["model_flash_bytes"] - 1}
        row[mode]["within_target"] = abs(row[mode]["instructions_error"]) <= TARGETS[mode]
    return row


def speed(board: str, seconds: float = 3.0) -> dict[str, dict[str, float]]:
    """Fast-mode calls per second on one core: per CPU second of this process (what the target is
    about; other jobs on a shared machine do not lower it) and per wall second. Printed, never asserted."""
    out = {}
    for name in SPEED_MODELS:
        g, _ = prepared_graph(read_model_bytes(zoo.path(name)), name)
        estimate(g, board)  # warm caches (coefficients)
        calls, cpu, wall = 0, time.process_time(), time.perf_counter()
        while time.process_time() - cpu < seconds:
            estimate(g, board)
            calls += 1
        out[name] = {"cpu": calls / (time.process_time() - cpu), "wall": calls / (time.perf_counter() - wall),
                     "layers": len(g.nodes)}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--board", default=None, help="board whose measurements to compare (default: the fitted one)")
    ap.add_argument("--json", default=str(ROOT / "results" / "cost_accuracy.json"))
    ap.add_argument("--measure", action="store_true", help="measure the zoo in QEMU first (slow)")
    a = ap.parse_args(argv)
    board = a.board or load_coefficients()["board"]
    if a.measure:
        sys.path.insert(0, str(ROOT))
        from fit_cost_model import measure

        measure(zoo.names(), board)
    rows = [compare(name, m, board) for name, m in measured_rows(board).items()]
    t = Table(title=f"tinyml.cost vs QEMU on {board} (instructions, arena, flash: error of the estimate)")
    for col in ("model", "layers", "instr measured", "fast", "exact", "arena", "fast", "exact", "flash", "fast",
                "exact", "fast patches", "exact patches"):
        t.add_column(col, justify="left" if "model" in col or "patches" in col else "right")

    def pct(v: float) -> str:
        return f"{100 * v:+.1f}%"

    for r in rows:
        m, f, e = r["measured"], r["fast"], r["exact"]
        t.add_row(r["model"], str(r["layers"]), f"{m['instructions']:,}", pct(f["instructions_error"]),
                  pct(e["instructions_error"]), f"{m['arena_bytes']:,}", pct(f["arena_error"]), pct(e["arena_error"]),
                  f"{m['model_flash_bytes']:,}", pct(f["flash_error"]), pct(e["flash_error"]),
                  f["patches"] or "-", e["patches"] or "-")
    con = Console()
    con.print(t)
    summary = {}
    for mode in ("fast", "exact"):
        errs = [abs(r[mode]["instructions_error"]) for r in rows]
        summary[mode] = {"max_abs_instructions_error": max(errs), "networks": len(errs),
                         "within_target": sum(r[mode]["within_target"] for r in rows),
                         "arena_exact": sum(r[mode]["arena_error"] == 0 for r in rows),
                         "max_abs_flash_error": max(abs(r[mode]["flash_error"]) for r in rows)}
        con.print(f"{mode}: instructions within {100 * TARGETS[mode]:g}% on {summary[mode]['within_target']}/"
                  f"{len(rows)} networks (worst {100 * summary[mode]['max_abs_instructions_error']:.1f}%), arena exact "
                  f"on {summary[mode]['arena_exact']}/{len(rows)}, flash worst "
                  f"{100 * summary[mode]['max_abs_flash_error']:.1f}%")
    calls = speed(board)
    for name, v in calls.items():
        con.print(f"fast mode on {name} ({v['layers']} layers): {v['cpu']:,.0f} calls per CPU second "
                  f"(one core), {v['wall']:,.0f} per wall second")
    Path(a.json).parent.mkdir(parents=True, exist_ok=True)
    Path(a.json).write_text(json.dumps({"board": board, "targets": TARGETS, "summary": summary,
                                        "fast_calls_per_second": calls, "models": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
