"""Fit tinyml/cost/coefficients.json to QEMU instruction counts of our own kernels.

Two steps, both in this script:
  measure: every zoo model (all groups), compiled layer by layer (`--patch off`) and as `tinyml generate`
           does (`--patch auto`), built for the board twice: plain (whole-network instructions, stack,
           flash) and profiled (instructions of every layer). Raw figures go to
           benchmarks/results/cost_measurements.json (resumable: models already measured are kept,
           unless their generated C changed since: each row keeps a digest of it).
  fit:     for every shape class (Op.cost_terms), least squares of the per-layer counts on the class's
           terms; a per-network constant (entry, marks) from plain minus profiled-layer sums; the code size
           beyond the weights per class from the model library's flash. Writes tinyml/cost/coefficients.json.

  holdout: leave one MLPerf Tiny / arch network out of the fit, predict it (a figure that is not in-sample).

Usage: python benchmarks/fit_cost_model.py [measure|fit|all|holdout [--zoo]] [--board stm32f405] [MODEL ...]
A benchmark script, not a test: it prints tables and writes JSON.
"""
from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

from tinyml import zoo
from tinyml.board import load_board
from tinyml.errors import DoesNotFit
from tinyml.ir import Graph
from tinyml.pipeline import Compiled, compile_model
from tinyml.report import weights_bytes
from tinyml.schedule.patches import PatchOptions

ROOT = Path(__file__).resolve().parent
MEASUREMENTS = ROOT / "results" / "cost_measurements.json"
SCHEDULES = ("off", "auto")
# Same core with 4 MiB of RAM and flash: models too big for the fitted board are measured there
# (the instruction counts of a core do not depend on the board's memory map).
ROOMY = {"cortex-m4": "mps2-an386", "cortex-m7": "mps2-an500"}


def codegen_digest(c: Compiled, board: str) -> str:
    """A hash of the C library emitted for the compiled model and board's target: a measured row whose
    digest no longer matches was measured on other kernels (stale)."""
    from tinyml.codegen.emit import emit_model

    texts = emit_model(c.graph, c.plan, load_board(board).target()).texts
    # the graph is named after the cached file, whose name holds the zoo cache key: not a kernel change
    text = "".join(f"{k}\0{texts[k]}\0" for k in sorted(texts)).replace(c.graph.name, "")
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def current_digest(name: str, board: str, schedule: str) -> str:
    return codegen_digest(compile_model(zoo.path(name), PatchOptions.parse(schedule)), board)


def measure_one(name: str, board: str, schedule: str) -> dict:
    """Plain and profiled firmware of one zoo model under one patch mode, run on one input in QEMU."""
    from tinyml.codegen.firmware import build_firmware
    from tinyml.sim.qemu import QemuRunner
    from tinyml.validation import load_inputs

    c = compile_model(zoo.path(name), PatchOptions.parse(schedule))
    digest = codegen_digest(c, board)
    if schedule != "off" and c.patches.chosen is None:  # layer by layer won
        return {"model": name, "schedule": schedule, "board": board, "same_as": "off", "codegen": digest}
    b = load_board(board)
    inputs = load_inputs(c.graph, 1, 0)
    with tempfile.TemporaryDirectory(prefix="tinyml-cost-fit-") as tmp:
        try:
            fw = build_firmware(c.graph, c.plan, b, Path(tmp) / "fw")
        except DoesNotFit:
            b = load_board(ROOMY[b.core])
            fw = build_firmware(c.graph, c.plan, b, Path(tmp) / "fw")
        plain = QemuRunner(fw).run(inputs)
        pfw = build_firmware(c.graph, c.plan, b, Path(tmp) / "prof", per_layer=True)
        prof = QemuRunner(pfw).run(inputs)
    image = fw.qemu_image
    model_flash = sum(v.get("model", 0) for s, v in image.contributions.items() if s not in (".bss",))
    return {"model": name, "schedule": schedule, "board": board, "codegen": digest, "measured_on": b.name,
            "core": b.core, "layers": len(c.graph.nodes),
            "ops": [n.op for n in c.graph.nodes], "instructions": plain.instructions,
            "per_layer": prof.per_layer, "stack_bytes": plain.stack_bytes, "arena_bytes": c.plan.arena_bytes,
            "weights_bytes": weights_bytes(c.graph), "emitted_const_bytes": fw.weights_bytes,
            "model_flash_bytes": model_flash, "flash_bytes": plain.extra.get("flash_bytes"),
            "ram_bytes": plain.extra.get("ram_bytes")}


def measure(models: list[str], board: str) -> list[dict]:
    """Measure the models' runs not yet measured. First, rows of these models whose generated C changed
    since (codegen digest) are deleted: they are measured again. A row from before digests were kept
    is taken as current and stamped with today's digest."""
    rows = json.loads(MEASUREMENTS.read_text())["runs"] if MEASUREMENTS.exists() else []
    rows = [r for r in rows if not r.get("error")]  # failed runs are tried again
    wanted = set(models)
    kept = []
    for r in rows:
        if r["board"] == board and r["model"] in wanted:
            digest = current_digest(r["model"], board, r["schedule"])
            if r.setdefault("codegen", digest) != digest:
                print(f"{r['model']:36s} {r['schedule']:4s} generated C changed: measured again", flush=True)
                continue
        kept.append(r)
    rows = kept
    _write(MEASUREMENTS, {"measured_utc": _now(), "runs": rows})
    done = {(r["model"], r["schedule"], r["board"]) for r in rows}
    for name in models:
        for schedule in SCHEDULES:
            if (name, schedule, board) in done:
                continue
            try:
                row = measure_one(name, board, schedule)
            except Exception as e:  # noqa: BLE001 - one model that does not build must not end the run
                row = {"model": name, "schedule": schedule, "board": board, "error": f"{type(e).__name__}: {e}"}
            rows.append(row)
            print(f"{name:36s} {schedule:4s} {row.get('instructions') or row.get('same_as') or row.get('error')}", flush=True)
            _write(MEASUREMENTS, {"measured_utc": _now(), "runs": rows})
    return rows


def compiled_runs(board: str) -> list[tuple[dict, Graph]]:
    """Each measured run with the graph it ran (compiled again; runs whose graph changed are left out)."""
    runs = [r for r in json.loads(MEASUREMENTS.read_text())["runs"] if r["board"] == board and "instructions" in r]
    out = []
    for r in runs:
        c = compile_model(zoo.path(r["model"]), PatchOptions.parse(r["schedule"]))
        if [n.op for n in c.graph.nodes] != r["ops"]:
            print(f"{r['model']} {r['schedule']}: the graph changed since it was measured; skipped", file=sys.stderr)
            continue
        out.append((r, c.graph))
    return out


def fit_runs(runs: list[tuple[dict, Graph]]) -> dict:
    """Coefficients (tinyml.cost.model.fit_classes) and the network constant from measured runs.

    The profiled build's marks between layers change how the compiler inlines and allocates
    registers, so its layer counts do not add up to the plain build's (-3,000 .. +250 on the zoo,
    up to 30 % of a one-layer model): each run's layer counts are scaled to the plain total less
    the network constant (what a model whose layers run nothing counts), the figure a prediction
    is compared with.
    """
    from tinyml.cost.model import fit_classes, flash_features, layer_terms

    samples: dict[str, list[tuple[dict, float, float]]] = {}
    flash_rows = []
    # tinyml_run's own instructions (entry, return): the whole count of a model where no layer runs
    empty = [r["instructions"] for r, _ in runs if sum(r["per_layer"]) == 0]
    overhead = float(np.median(empty)) if empty else 0.0
    for r, g in runs:
        terms = layer_terms(g)
        profiled = sum(r["per_layer"])
        scale = (r["instructions"] - overhead) / profiled if profiled > 0 else 1.0
        # weight 1 / sqrt(layer x network instructions): between the layer's relative error (every
        # layer alike: the many small patch layers of a MobileNet outvote a one-layer network) and its
        # error relative to its network (what the per-network target measures: small layers of big
        # networks would not count at all)
        for (cls, t), n in zip(terms, r["per_layer"]):
            samples.setdefault(cls, []).append((t, n * scale, 1.0 / np.sqrt(max(n * scale, 1) * r["instructions"])))
        flash_rows.append((flash_features(g, terms), r["model_flash_bytes"] - r["weights_bytes"],
                           1.0 / r["model_flash_bytes"]))
    return {"network_overhead": overhead, **fit_classes(samples, flash_rows)}


def predict(g: Graph, coef: dict) -> float:
    """Whole-network instructions of a compiled graph (what exact mode adds up)."""
    from tinyml.cost.model import layer_instructions, layer_terms

    return coef["network_overhead"] + sum(round(layer_instructions(c, t, coef)) for c, t in layer_terms(g))


def fit(board: str) -> dict:
    """Least squares per class over every measured layer; returns what was written."""
    from tinyml.cost.model import COEFFICIENTS_PATH

    runs = compiled_runs(board)
    coef = fit_runs(runs)
    b = load_board(board)
    data = {"board": board, "core": b.core, "fitted_utc": _now(),
            "source": "QEMU instruction counts of the zoo (benchmarks/fit_cost_model.py), patch off and auto",
            "stack_bytes": int(max(r["stack_bytes"] or 0 for r, _ in runs)),
            # the harness around the model library (UART, protocol, start-up): what a board's flash holds besides
            "firmware_flash_bytes": int(max(r["flash_bytes"] - r["model_flash_bytes"] for r, _ in runs)),
            **coef}
    _write(COEFFICIENTS_PATH, data)
    n_layers = sum(coef["layers_per_class"].values())
    print(f"wrote {COEFFICIENTS_PATH} ({len(coef['classes'])} classes from {n_layers} layers)")
    return data


def holdout(board: str, groups: tuple[str, ...] = ("mlperf", "arch")) -> list[dict]:
    """Leave one network out: fit without its runs, predict its `tinyml generate` build (exact mode's
    figure), next to the in-sample error. Writes benchmarks/results/cost_holdout.json (with --zoo,
    every group: cost_holdout_zoo.json; a network whose kernel variant nothing else runs is then
    predicted from its family's pooled fit)."""
    runs = compiled_runs(board)
    full = fit_runs(runs)
    rows = []
    for name in [m for grp in groups for m in zoo.names(grp)]:
        mine = {r["schedule"]: (r, g) for r, g in runs if r["model"] == name}
        if not mine:
            continue
        r, g = mine.get("auto") or mine["off"]
        held = fit_runs([x for x in runs if x[0]["model"] != name])
        rows.append({"model": name, "measured": r["instructions"],
                     "in_sample_error": predict(g, full) / r["instructions"] - 1,
                     "held_out_error": predict(g, held) / r["instructions"] - 1})
        print(f"{name:28s} {r['instructions']:>11,d}  in-sample {rows[-1]['in_sample_error']:+7.1%}"
              f"  held out {rows[-1]['held_out_error']:+7.1%}", flush=True)
    for key in ("in_sample_error", "held_out_error"):
        print(f"{key}: within 5 % on {sum(abs(r[key]) <= 0.05 for r in rows)}/{len(rows)}, "
              f"within 10 % on {sum(abs(r[key]) <= 0.10 for r in rows)}/{len(rows)}")
    name = "cost_holdout.json" if groups == ("mlperf", "arch") else "cost_holdout_zoo.json"
    _write(ROOT / "results" / name, {"board": board, "fitted_utc": _now(), "groups": list(groups), "rows": rows})
    return rows


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def _write(path: Path, data: dict) -> None:  # noqa: D103
    from tinyml.fsutil import write_text_atomic

    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, json.dumps(data, indent=1) + "\n")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("step", nargs="?", choices=["measure", "fit", "all", "holdout"], default="all")
    ap.add_argument("--board", default="stm32f405")
    ap.add_argument("--zoo", action="store_true", help="holdout: leave out every zoo network in turn, not only "
                    "the MLPerf Tiny and arch ones")
    ap.add_argument("models", nargs="*", help="zoo models (default: the whole zoo)")
    a = ap.parse_intermixed_args(argv)
    if a.step in ("measure", "all"):
        measure(a.models or zoo.names(), a.board)
    if a.step in ("fit", "all"):
        fit(a.board)
    if a.step == "holdout":
        holdout(a.board, tuple(zoo.GROUPS) if a.zoo else ("mlperf", "arch"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
