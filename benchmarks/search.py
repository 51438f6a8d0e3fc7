"""`tinyml search` against hand-designed baselines and random search, per task and budget.

For each (task, budget) it runs the CLI as a user would (`tinyml search ... --random-search
--baselines`), into results/search/TASK-SRAM-FLASH/ (resumable: rerun to continue a run that was
cut short), and reads the report. Printed: the delivered network's int8 test accuracy and its
QEMU-measured SRAM/flash/instructions, the random search's best validation accuracy with as many
measured candidates, and each baseline's int8 test accuracy and built flash. Also the cost-query
throughput (fast mode on Ray, candidates per minute). A benchmark, not a test: it prints tables and
writes JSON; nothing is asserted.

The JSON is rewritten after every run (a long benchmark shows its results as they come), and runs
already in it with the same settings that succeeded are kept, not rerun: several invocations (e.g. one per task, in
parallel) can share one JSON file only if they do not write at the same moment, so give each its own.

Usage: python benchmarks/search.py [--tasks fashion,kws] [--budgets 64K/256K,16K/128K] [--minutes 20]
                                   [--out DIR] [--json FILE] [--no-throughput]
"""
from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from tinyml.cli import main as tinyml
from tinyml.commands.search import byte_size

HERE = Path(__file__).parent


def cost_throughput(n: int = 3000) -> dict:
    """Fast-mode cost queries per minute on a local Ray (mcunet space, random subnets, 64K/256K)."""
    from tinyml.search.costs import Budget, CostService
    from tinyml.search.lower import Task
    from tinyml.search.space import load_space

    space = load_space("mcunet")
    rng = random.Random(0)
    archs = list(dict.fromkeys(space.sample(rng) for _ in range(n)))
    svc = CostService(space, Task(1, 10), "stm32f405", Budget(64 * 1024, 256 * 1024))
    svc.costs(archs[:64])  # workers up
    t = time.monotonic()
    svc.costs(archs[64:])
    dt = time.monotonic() - t
    return {"queries": len(archs) - 64, "seconds": dt, "per_minute": (len(archs) - 64) / dt * 60}


def run_one(task: str, sram: str, flash: str, minutes: float, out: Path) -> dict:
    d = out / f"{task}-{sram}-{flash}"
    report = out / f"{task}-{sram}-{flash}.json"
    code = tinyml(["search", "--task", task, "--board", "stm32f405", "--sram-budget", sram, "--flash-budget", flash,
                   "--time-budget", str(minutes), "--random-search", "--baselines", "-o", str(d),
                   "--json", str(report)])
    if code != 0:
        return {"task": task, "sram": sram, "flash": flash, "sram_budget": byte_size(sram),
                "flash_budget": byte_size(flash), "exit": code}
    r = json.loads(report.read_text())
    dv, v = r["delivered"], r["delivered"]["validation"]
    return {"task": task, "sram_budget": byte_size(sram), "flash_budget": byte_size(flash), "exit": 0,
            "family": [r["family"]["resolution"], r["family"]["width"]], "arch": dv["label"],
            "int8_test": dv["int8_test_accuracy"], "float_test": dv["float_test_accuracy"],
            "bit_exact": v["bit_exact"], "ram_bytes": v["ram_bytes"], "flash_bytes": v["flash_bytes"],
            "instructions": v["instructions"], "searched_val": r["finalists"][0]["val_accuracy"],
            "random_val": r["random_search"]["val_accuracy"], "random_candidates": r["random_search"]["candidates"],
            "predictor_samples": r["predictor"]["samples"], "predictor_rmse": r["predictor"]["rmse_points_held_out"],
            "supernet": r["supernet"],
            "baselines": [{"name": b["name"], "int8_test": b["int8_test_accuracy"], "float_test": b["float_test_accuracy"],
                           "flash_bytes": b["built"]["flash_bytes"], "model_ram_bytes": b["built"]["model_ram_bytes"],
                           "train_seconds_budget": b.get("train_seconds_budget"), "fits": b["fits_built"]}
                          for b in r["baselines"] or []]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", default="fashion,kws")
    ap.add_argument("--budgets", default="64K/256K,16K/128K", help="SRAM/FLASH pairs")
    ap.add_argument("--minutes", type=float, default=20.0, help="--time-budget of each search")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "search")
    ap.add_argument("--json", type=Path, default=HERE / "results" / "search.json")
    ap.add_argument("--no-throughput", action="store_true", help="skip the cost-query throughput measurement")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    result = json.loads(args.json.read_text()) if args.json.exists() else {}
    if result.get("minutes") != args.minutes:
        result = {"minutes": args.minutes, "runs": []}
    rows = result["runs"]
    for t in args.tasks.split(","):
        for b in args.budgets.split(","):
            sram, flash = b.split("/")
            key = (t, byte_size(sram), byte_size(flash))
            if not any(_key(r) == key and r["exit"] == 0 for r in rows):  # a failed run is retried (it resumes)
                rows[:] = [r for r in rows if _key(r) != key] + [run_one(t, sram, flash, args.minutes, args.out)]
                write_json(args.json, result)
    if not args.no_throughput:
        result["cost_queries"] = cost_throughput()
        write_json(args.json, result)
    con = Console()
    t = Table(title="tinyml search (delivered: int8 test accuracy, QEMU-measured)")
    for c in ("task", "budget SRAM/flash", "searched int8", "SRAM", "flash", "instructions", "best baseline int8",
              "search val", "random val (n)"):
        t.add_column(c)
    for r in rows:
        if r["exit"]:
            t.add_row(r["task"], f"{r['sram']}/{r['flash']}", f"exit {r['exit']}", *[""] * 6)
            continue
        fitting = [b for b in r["baselines"] if b["fits"]]
        best = max(fitting, key=lambda b: b["int8_test"]) if fitting else None
        t.add_row(r["task"], f"{r['sram_budget'] // 1024}K/{r['flash_budget'] // 1024}K", f"{r['int8_test']:.2f}",
                  f"{r['ram_bytes']:,}", f"{r['flash_bytes']:,}", f"{r['instructions']:,}",
                  f"{best['int8_test']:.2f} ({best['name']})" if best else "-", f"{r['searched_val']:.2f}",
                  f"{r['random_val']:.2f} ({r['random_candidates']})")
    con.print(t)
    q = result.get("cost_queries")
    if q:
        con.print(f"cost queries: {q['queries']} in {q['seconds']:.1f} s = {q['per_minute']:,.0f} per minute")


def _key(row: dict) -> tuple:
    return row["task"], row["sram_budget"], row["flash_budget"]


def write_json(path: Path, result: dict) -> None:
    from tinyml.fsutil import write_text_atomic

    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
