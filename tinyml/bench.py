"""Measure generated firmware in the simulator against TFLite Micro + CMSIS-NN.

For every model and board, the firmware is built twice, once with the optimized
kernels (DSP extension where the core has it) and once with plain C forced, run
in QEMU on the same inputs and compared bit for bit with TFLite Micro, the way
`tinyml validate --board` does. What comes out is what the targets (TARGETS) are
stated in: instructions per inference and per MAC (exact guest instruction
counts), RAM during inference (arena + the stack tinyml_run() used + other model .data/.bss),
flash, TFLite Micro's arena for the same model, and the ratios to the
TFLite Micro + CMSIS-NN anchor on the five MLPerf Tiny architectures.

This module measures and tabulates; `tinyml bench` (commands/bench.py) parses
arguments and prints the tables.

Per-layer costs come from a second, profiled build per run (a counter read at
every layer boundary); the headline totals always come from the unprofiled
build, because the layer marks cost instructions of their own.
"""
from __future__ import annotations

import dataclasses
import datetime
import tempfile
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from tinyml import __version__
from tinyml.board import Board, load_board
from tinyml.errors import TinymlError
from tinyml.pipeline import Compiled, compile_model

if TYPE_CHECKING:
    from tinyml.schedule.patches import PatchOptions

KERNELS = ("optimized", "plain")
# The targets, as ratios: instructions to the anchor's, RAM (arena + stack + other data) to the anchor's TFLM
# arena, and RAM to the plan's lower bound (the largest sum of live tensors at any step).
TARGETS = {"instructions_vs_anchor": 0.5, "ram_vs_anchor_arena": 0.6, "ram_vs_lower_bound": 1.05}

ANCHOR_SOURCE = ("TFLite Micro with CMSIS-NN kernels, arm-none-eabi-gcc 12.2 -O2, "
                 "Cortex-M4, QEMU instruction counts per inference, MLPerf Tiny architectures with trained "
                 "weights (instructions as published, to 10 k; MACs exact for each architecture)")


@dataclass(frozen=True)
class Anchor:
    """One row of the anchor table: what TFLite Micro + CMSIS-NN needs on a Cortex-M4."""

    title: str
    macs: int  # the architecture's exact count; the table prints it rounded (12.50 M ...)
    instructions: int  # as the table prints it: rounded to 10,000
    arena_bytes: int

    @property
    def instructions_per_mac(self) -> float:
        return self.instructions / self.macs


# Keyed by the zoo name of the same architecture (tinyml/zoo: group "mlperf").
ANCHORS: dict[str, Anchor] = {
    "resnet8": Anchor("ResNet-8, 32x32x3 (image classification)", 12_501_632, 29_860_000, 54_996),
    "mobilenet_v1_025_vww": Anchor("MobileNetV1-0.25, 96x96x3 (visual wake words)", 7_489_664, 24_100_000,
                                   100_708),
    "mobilenet_v1_025_person": Anchor("MobileNetV1-0.25, 96x96x1 (person detection)", 7_157_888, 22_930_000,
                                      82_308),
    "ds_cnn_kws": Anchor("DS-CNN, 49x10x1 (keyword spotting)", 2_656_768, 7_700_000, 22_820),
    "fc_autoencoder_ad": Anchor("FC autoencoder, 640 (anomaly detection)", 264_192, 580_000, 2_580),
}


@dataclass
class ModelUnderTest:
    """A compiled model with its inputs and TFLite Micro's answers, shared by every board and kernel set."""

    name: str
    path: Path
    compiled: Compiled
    inputs: list[list[np.ndarray]]
    expected: list[list[np.ndarray]]
    tflm_arena_bytes: int | None  # None when the numpy reference is the oracle (sub-byte files)


def resolve_models(names: Sequence[str], group: str | None) -> list[tuple[str, Path]]:
    """Zoo names, zoo groups and .tflite paths -> (name, path); a path's name is its stem."""
    from tinyml import zoo

    out: list[tuple[str, Path]] = []
    for n in (zoo.names(group) if group else []):
        out.append((n, zoo.path(n)))
    known = set(zoo.names())
    for n in names:
        if n in known:
            out.append((n, zoo.path(n)))
        elif n.endswith(".tflite") or "/" in n or Path(n).is_file():
            out.append((Path(n).stem, Path(n)))
        else:
            raise TinymlError(f"{n!r} is neither a zoo model (`python -m tinyml.zoo`) nor a .tflite file")
    if not out:
        raise TinymlError("no models to bench: name zoo models or .tflite files, or give --group")
    return out


def prepare(name: str, path: Path, n_inputs: int, seed: int, patches: "PatchOptions | None" = None) -> ModelUnderTest:
    from tinyml.oracle import model_oracle
    from tinyml.validation import load_inputs

    c = compile_model(path, patches)
    inputs = load_inputs(c.graph, n_inputs, seed)
    oracle = model_oracle(c.model_bytes)
    return ModelUnderTest(name, path, c, inputs, oracle.run_batch(inputs), oracle.arena_bytes())


def kernel_board(board: Board, kernels: str) -> Board:
    """The board as the emitter should see it: plain C is the same core with the DSP extension hidden,
    so the kernels take their portable path (Target.dsp False) while -mcpu stays the board's."""
    if kernels not in KERNELS:
        raise ValueError(f"kernels must be one of {KERNELS}")
    return dataclasses.replace(board, dsp=False) if kernels == "plain" else board


def measure(m: ModelUnderTest, board: Board, kernels: str, per_layer: bool, work: Path,
            step: Callable[[str], None] = lambda _: None) -> dict:
    """Build, run and compare one model on one board with one kernel set: one row of the bench JSON."""
    from tinyml.codegen.firmware import build_firmware
    from tinyml.sim.qemu import QemuRunner
    from tinyml.validation import validation_report

    b = kernel_board(board, kernels)
    c = m.compiled
    fw = build_firmware(c.graph, c.plan, b, work / f"{kernels}-fw")
    runner = QemuRunner(fw)
    result = runner.run(m.inputs)
    rep = validation_report(c, m.inputs, result, m.expected, runner.target, board.name)
    step("run")
    row = run_row(m, board, kernels, rep, result.extra)
    if per_layer:
        pfw = build_firmware(c.graph, c.plan, b, work / f"{kernels}-profiled", per_layer=True)
        presult = QemuRunner(pfw).run(m.inputs[:1])
        row["profiled_instructions"] = presult.instructions
        row["per_layer"] = layer_costs(c, presult.per_layer or [])
        row["per_layer_total"] = sum(r["instructions"] for r in row["per_layer"])
        step("profiled run")
    return row


def run_row(m: ModelUnderTest, board: Board, kernels: str, rep: dict, extra: dict) -> dict:
    """The figures of one run, with its ratios to TFLite Micro's arena and to the anchor."""
    anchor = ANCHORS.get(m.name)
    instr, macs, ram = rep["instructions"], rep["macs"], rep["ram_bytes"]
    model_ram = extra.get("model_ram_bytes")
    row = {
        "model": m.name,
        "board": board.name,
        "core": board.core,
        "kernels": kernels,
        "dsp": kernel_board(board, kernels).dsp,
        "target": rep["target"],
        "inputs": rep["inputs"],
        "bit_exact": rep["bit_exact"],
        "mismatched_outputs": rep["mismatched_outputs"],
        "first_divergence": rep["first_divergence"],
        "instructions": instr,
        "instructions_per_input": extra.get("instructions_per_input"),
        "macs": macs,
        "instructions_per_mac": instr / macs if macs and instr is not None else None,
        # estimated from the instruction mix at the board's clock (sim/cycles.py), never measured
        "cycles_estimated": rep.get("cycles_estimated"),
        "ms_estimated": rep.get("ms_estimated"),
        "arena_bytes": rep["arena_bytes"],
        "arena_lower_bound": m.compiled.plan.lower_bound,
        "stack_bytes": rep["stack_bytes"],
        "other_ram_bytes": model_ram - rep["arena_bytes"] if model_ram is not None else None,
        "ram_bytes": ram,
        "flash_bytes": rep["flash_bytes"],
        "weights_bytes": rep["weights_bytes"],
        "tflm_arena_bytes": m.tflm_arena_bytes,
        "ram_vs_tflm_arena": ram / m.tflm_arena_bytes if ram is not None and m.tflm_arena_bytes else None,
        "anchor": dataclasses.asdict(anchor) if anchor else None,
        "instructions_vs_anchor": instr / anchor.instructions if anchor and instr is not None else None,
        "ram_vs_anchor_arena": ram / anchor.arena_bytes if anchor and ram is not None else None,
        "arena_vs_lower_bound": rep["arena_bytes"] / m.compiled.plan.lower_bound
        if m.compiled.plan.lower_bound else None,
        "ram_vs_lower_bound": ram / m.compiled.plan.lower_bound
        if m.compiled.plan.lower_bound and ram is not None else None,
        "error": None,
    }
    row["targets_met"] = {k: row[k] <= limit if row[k] is not None else None for k, limit in TARGETS.items()}
    return row


def layer_costs(c: Compiled, measured: list[int]) -> list[dict]:
    """Measured instructions beside each layer's op, output shape and MACs (alias layers cost 0)."""
    from tinyml.report import layer_rows

    rows = layer_rows(c.graph, c.plan)
    if len(measured) != len(rows):
        raise TinymlError(f"the profiled firmware reported {len(measured)} layers, the model has {len(rows)}")
    return [{"index": r.index, "op": r.op, "name": r.name, "output": r.output, "macs": r.macs,
             "instructions": n, "instructions_per_mac": n / r.macs if r.macs else None}
            for r, n in zip(rows, measured)]


def failed_row(name: str, board: Board, kernels: str, error: Exception) -> dict:
    return {"model": name, "board": board.name, "core": board.core, "kernels": kernels,
            "dsp": kernel_board(board, kernels).dsp, "bit_exact": None, "error": describe(error),
            "error_class": type(error).__name__, "exit_code": getattr(error, "exit_code", 1)}


def describe(error: Exception) -> str:
    """A one-line message; for a bug (not a TinymlError) also where it was raised, since the run goes on."""
    if isinstance(error, TinymlError):
        return str(error)
    tb = traceback.extract_tb(error.__traceback__)
    where = f" at {Path(tb[-1].filename).name}:{tb[-1].lineno}" if tb else ""
    return f"internal error {type(error).__name__}{where}: {error}"


def run_bench(models: Sequence[tuple[str, Path]], boards: Sequence[str], kernels: Sequence[str] = KERNELS,
              per_layer: bool = False, n_inputs: int = 3, seed: int = 0,
              step: Callable[[str], None] = lambda _: None, patches: "PatchOptions | None" = None) -> dict:
    """Every model x board x kernel set; a model or run that fails (even by a bug) is recorded and the rest
    go on, so one broken kernel does not cost the measurements of every other model.

    `step(description)` is called once per unit of work (see `work_units`), for a progress display.
    """
    board_objs = [load_board(b) for b in boards]
    started = datetime.datetime.now(datetime.timezone.utc)
    runs: list[dict] = []
    model_rows: list[dict] = []
    for name, path in models:
        step(f"{name}: compile + TFLite Micro")
        try:
            m = prepare(name, path, n_inputs, seed, patches)
        except Exception as e:  # noqa: BLE001 - one broken model must not end a long bench; recorded
            model_rows.append({"model": name, "path": str(path), "error": describe(e)})
            for b in board_objs:
                for k in kernels:
                    runs.append(failed_row(name, b, k, e))
                    for _ in range(work_per_run(per_layer)):
                        step(f"{name}: skipped")
            continue
        model_rows.append(model_row(m))
        for b in board_objs:
            for k in kernels:
                label = f"{name} on {b.name}, {k}"
                done = []

                def run_step(what: str, label: str = label, done: list = done) -> None:
                    done.append(what)
                    step(f"{label}: {what}")

                with tempfile.TemporaryDirectory(prefix="tinyml-bench-") as tmp:
                    try:
                        runs.append(measure(m, b, k, per_layer, Path(tmp), run_step))
                    except Exception as e:  # noqa: BLE001 - recorded in the run's row, fails the verdict
                        runs.append(failed_row(name, b, k, e))
                        for _ in range(work_per_run(per_layer) - len(done)):
                            step(f"{label}: failed")
    return {
        "tinyml_version": __version__,
        "started_utc": started.isoformat(timespec="seconds"),
        "finished_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "boards": [{"name": b.name, "core": b.core, "dsp": b.dsp, "qemu_machine": b.qemu.machine.name}
                   for b in board_objs],
        "kernels": list(kernels),
        "inputs_per_run": n_inputs,
        "seed": seed,
        "per_layer": per_layer,
        "anchor_source": ANCHOR_SOURCE,
        "targets": TARGETS,
        "models": model_rows,
        "runs": runs,
        "bit_exact": all(r["bit_exact"] is True for r in runs),
    }


def model_row(m: ModelUnderTest) -> dict:
    from tinyml.report import weights_bytes
    from tinyml.ops import get_op

    g, plan = m.compiled.graph, m.compiled.plan
    anchor = ANCHORS.get(m.name)
    return {"model": m.name, "path": str(m.path), "layers": len(g.nodes),
            "macs": sum(get_op(n.op).macs(g, n) for n in g.nodes), "weights_bytes": weights_bytes(g),
            "arena_bytes": plan.arena_bytes, "arena_lower_bound": plan.lower_bound,
            "tflm_arena_bytes": m.tflm_arena_bytes, "anchor": dataclasses.asdict(anchor) if anchor else None,
            "error": None}


def work_per_run(per_layer: bool) -> int:
    return 2 if per_layer else 1


def work_units(n_models: int, n_boards: int, n_kernels: int, per_layer: bool) -> int:
    """How many times run_bench calls `step`: one per model, one per run, one more per profiled run."""
    return n_models * (1 + n_boards * n_kernels * work_per_run(per_layer))


# -- outputs: tables (the console colours them, Markdown prints them plain) and a plot ----------------


@dataclass(frozen=True)
class Cell:
    text: str
    mark: str = ""  # "good" (meets its target), "bad" (failed, not bit-exact), "strong" (a large share)


@dataclass
class Table:
    title: str
    columns: list[str]
    text_columns: tuple[str, ...]  # left-aligned; the rest are figures
    rows: list[list[Cell]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # lines printed under the table


def paired(result: dict) -> list[tuple[dict | None, dict | None]]:
    """(optimized, plain) rows per model and board, in run order."""
    by_key: dict[tuple[str, str], dict[str, dict]] = {}
    for r in result["runs"]:
        by_key.setdefault((r["model"], r["board"]), {})[r["kernels"]] = r
    return [(v.get("optimized"), v.get("plain")) for v in by_key.values()]


def tables(result: dict) -> list[Table]:
    """Instructions, memory and (with per_layer) one table per model and board."""
    out = [speed_table(result), memory_table(result)]
    if result.get("per_layer"):
        out += [t for opt, plain in paired(result) if (t := layer_table(opt, plain)) is not None]
    return out


def speed_table(result: dict) -> Table:
    t = Table("Instructions per inference (QEMU, exact)",
              ["model", "board", "MACs", "optimized", "instr/MAC", "cycles (est.)", "ms (est.)", "plain C",
               "instr/MAC", "anchor instr/MAC", "opt/anchor", "exact"], ("model", "board"))
    for opt, plain in paired(result):
        r = measured_row(opt, plain)
        if r is None:
            bad = opt or plain
            t.rows.append(_cells(bad["model"], bad["board"]) + [Cell(f"error: {bad['error']}", "bad")]
                          + _cells(*[""] * (len(t.columns) - 3)))
            continue
        a = r["anchor"]
        t.rows.append(_cells(r["model"], r["board"], fmt_int(r["macs"]), fmt_int(get(opt, "instructions")),
                             fmt_ratio(get(opt, "instructions_per_mac")), fmt_int(get(opt, "cycles_estimated")),
                             fmt_ratio(get(opt, "ms_estimated"), 2, ""), fmt_int(get(plain, "instructions")),
                             fmt_ratio(get(plain, "instructions_per_mac")),
                             fmt_ratio(a["instructions"] / a["macs"] if a else None))
                      + [vs_target(get(opt, "instructions_vs_anchor"), "instructions_vs_anchor"),
                         exact_cell(opt, plain)])
    t.notes.append("cycles (est.) and ms (est.): estimated from the executed instruction mix with the core's "
                   "timing table at the board's clock and flash wait states (sim/cycles.py), not measured")
    return t


def memory_table(result: dict) -> Table:
    t = Table("Memory (bytes)", ["model", "board", "RAM", "arena", "lower bound", "arena/bound", "RAM/bound", "stack",
                                 "other", "TFLM arena", "anchor arena", "RAM/anchor", "flash", "flash (plain)",
                                 "weights"], ("model", "board"))
    for opt, plain in paired(result):
        r = measured_row(opt, plain)
        if r is None:
            continue  # listed as failed in the instructions table
        a = r["anchor"]
        t.rows.append(_cells(r["model"], r["board"], fmt_int(r["ram_bytes"]), fmt_int(r["arena_bytes"]),
                             fmt_int(r["arena_lower_bound"]), fmt_ratio(r["arena_vs_lower_bound"], 3, "x"))
                      + [vs_target(r["ram_vs_lower_bound"], "ram_vs_lower_bound", 3)]
                      + _cells(fmt_int(r["stack_bytes"]), fmt_int(r["other_ram_bytes"]),
                               fmt_int(r["tflm_arena_bytes"]), fmt_int(a["arena_bytes"] if a else None))
                      + [vs_target(r["ram_vs_anchor_arena"], "ram_vs_anchor_arena")]
                      + _cells(fmt_int(get(opt, "flash_bytes")), fmt_int(get(plain, "flash_bytes")),
                               fmt_int(r["weights_bytes"])))
    t.notes.append(f"anchor: {ANCHOR_SOURCE}; TFLM arena measured on the host (64-bit)")
    return t


def layer_table(opt: dict | None, plain: dict | None) -> Table | None:
    """Each layer's measured instructions (profiled build), optimized beside plain, so the slow layer stands out."""
    rows = [r for r in (opt, plain) if get(r, "per_layer")]
    if not rows:
        return None
    first = rows[0]
    t = Table(f"{first['model']} on {first['board']}: per layer (profiled build)",
              ["#", "op", "output", "MACs"] + [c for r in rows for c in (f"{r['kernels']} instr", "instr/MAC", "share")],
              ("op", "output"))
    for i, layer in enumerate(first["per_layer"]):
        cells = _cells(str(layer["index"]), layer["op"], "x".join(map(str, layer["output"])), fmt_int(layer["macs"]))
        for r in rows:
            lr = r["per_layer"][i]
            share = lr["instructions"] / r["per_layer_total"] if r["per_layer_total"] else 0.0
            cells += _cells(fmt_int(lr["instructions"]), fmt_ratio(lr["instructions_per_mac"]))
            cells.append(Cell(f"{share:.0%}", "strong" if share >= 0.15 else ""))
        t.rows.append(cells)
    t.notes += [f"{r['kernels']}: layers sum to {r['per_layer_total']:,} of {r['profiled_instructions']:,} "
                f"instructions in the profiled build ({r['instructions']:,} unprofiled)" for r in rows]
    return t


def problems(result: dict) -> list[str]:
    """One line per failed or inexact run."""
    out = []
    for r in result["runs"]:
        what = f"{r['model']} on {r['board']} ({r['kernels']})"
        if r.get("error"):
            out.append(f"{what}: {r['error']}")
        elif not r["bit_exact"]:
            where = (f"the numpy reference already parts from TFLite Micro at {r['first_divergence']}"
                     if r["first_divergence"] else "the numpy reference agrees with TFLite Micro, the C does not")
            out.append(f"{what}: {r['mismatched_outputs']} outputs differ over {r['inputs']} inputs; {where}")
    return out


def markdown_table(result: dict) -> str:
    """The tables as Markdown, for reports."""
    blocks = []
    for t in tables(result):
        lines = [f"### {t.title}", "| " + " | ".join(t.columns) + " |", "|" + "---|" * len(t.columns)]
        lines += ["| " + " | ".join(c.text for c in row) + " |" for row in t.rows]
        blocks.append("\n".join(lines))
        if t.notes:
            blocks.append("\n".join(t.notes))
    if problems(result):
        blocks.append("\n".join(f"- {p}" for p in problems(result)))
    return "\n\n".join(blocks) + "\n"


def ok(row: dict | None) -> bool:
    """A run that produced measurements (it may still be inexact)."""
    return row is not None and not row.get("error")


def get(row: dict | None, key: str) -> object:
    return row[key] if ok(row) else None


def measured_row(opt: dict | None, plain: dict | None) -> dict | None:
    """The run whose model-wide figures (MACs, memory) a table shows: optimized unless it failed."""
    return opt if ok(opt) else plain if ok(plain) else None


def exact_cell(*rows: dict | None) -> Cell:
    """"yes" when every run is bit-exact, "NO" when any differs, "-" when none ran."""
    vals = [r.get("bit_exact") for r in rows if r is not None]
    if vals and all(v is True for v in vals):
        return Cell("yes", "good")
    return Cell("NO", "bad") if any(v is False for v in vals) else Cell("-")


def vs_target(v: float | None, target: str, digits: int = 2) -> Cell:
    """A ratio, marked good when it meets TARGETS[target]."""
    return Cell(fmt_ratio(v, digits, "x"), "good" if v is not None and v <= TARGETS[target] else "")


def fmt_int(v: int | None) -> str:
    return "-" if v is None else f"{v:,}"


def fmt_ratio(v: float | None, digits: int = 2, unit: str = "") -> str:
    return "-" if v is None else f"{v:.{digits}f}{unit}"


def _cells(*texts: str) -> list[Cell]:
    return [Cell(t) for t in texts]


def plot(result: dict, path: str | Path) -> Path:
    """Per board: instructions per MAC (optimized, plain, anchor) and RAM (ours, TFLite Micro) per model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    boards = [b["name"] for b in result["boards"]]
    fig, axes = plt.subplots(len(boards), 2, figsize=(17, 4.2 * len(boards)), squeeze=False)
    for row, board in zip(axes, boards):
        pairs = [(o, p) for o, p in paired(result) if (o or p)["board"] == board]
        models = [(o or p)["model"] for o, p in pairs]
        x = np.arange(len(models))

        def val(r: dict | None, key: str) -> float:
            v = get(r, key)
            return np.nan if v is None else float(v)

        anchors = [ANCHORS.get(m) for m in models]
        per_mac = [a.instructions_per_mac if a else np.nan for a in anchors]
        arena = [float(a.arena_bytes) if a else np.nan for a in anchors]
        _bars(row[0], x, models, {
            "optimized": [val(o, "instructions_per_mac") for o, _ in pairs],
            "plain C": [val(p, "instructions_per_mac") for _, p in pairs],
            "TFLM + CMSIS-NN (M4 anchor)": per_mac,
        }, f"{board}: instructions per MAC", "instructions / MAC")
        limit = TARGETS["instructions_vs_anchor"]
        _targets(row[0], x, [limit * v for v in per_mac], f"target: {limit}x anchor")
        mem = [o if ok(o) else p for o, p in pairs]
        _bars(row[1], x, models, {
            "our RAM (arena+stack+other)": [val(r, "ram_bytes") for r in mem],
            "our arena": [val(r, "arena_bytes") for r in mem],
            "TFLM arena (host)": [val(r, "tflm_arena_bytes") for r in mem],
            "TFLM arena (M4 anchor)": arena,
        }, f"{board}: RAM during inference", "bytes")
        limit = TARGETS["ram_vs_anchor_arena"]
        _targets(row[1], x, [limit * v for v in arena], f"target: {limit}x anchor arena")
        ram = [v for v in (val(r, "ram_bytes") for r in mem) if v == v and v > 0]
        if ram and max(ram) > 20 * min(ram):  # small and large models on one axis
            row[1].set_yscale("log")
        for ax in row:
            for k, r in enumerate(mem):
                if not ok(r):
                    ax.annotate("failed", (x[k], 0), xytext=(0, 4), textcoords="offset points", ha="center",
                                color="red", fontsize=8)
    fig.suptitle(f"tinyml {result['tinyml_version']} bench, {result['finished_utc']}", fontsize=10)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.stem}.", suffix=".png", delete=False) as f:
        tmp = Path(f.name)
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)
    return path


def _targets(ax, x: np.ndarray, values: list[float], label: str) -> None:  # noqa: ANN001
    """A short black line across each model's group of bars at its target."""
    if all(v != v for v in values):
        return
    ax.hlines(values, x - 0.42, x + 0.42, colors="black", linestyles="dashed", linewidth=1.2, label=label)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))


def _bars(ax, x: np.ndarray, labels: list[str], series: dict[str, list[float]], title: str,  # noqa: ANN001
          ylabel: str) -> None:
    width = 0.8 / max(len(series), 1)
    for k, (name, values) in enumerate(series.items()):
        ax.bar(x + (k - (len(series) - 1) / 2) * width, values, width, label=name)
    ax.set_xticks(x, labels, rotation=20, ha="right", fontsize=8)
    ax.set_title(title, fontsize=10)
    ax.set_ylabel(ylabel)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
