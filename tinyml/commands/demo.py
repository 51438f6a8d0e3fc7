"""`tinyml demo`: the whole path on the default model and board, offline.

Train (once, cached) a small int8 CNN on scikit-learn's digits, build firmware
for the default board, run held-out digits through it in QEMU, compare every
output with TensorFlow Lite Micro bit for bit, and report accuracy, cost and
memory. The default board is the STM32F405: QEMU's netduinoplus2 models that
chip, so the image that runs in the simulator is the one you would flash.
"""
from __future__ import annotations

import argparse
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from tinyml.commands._common import add_json_arg, add_report_arg, write_json, write_report
from tinyml.errors import CheckFailed

if TYPE_CHECKING:
    from tinyml.board import Board

DEFAULT_BOARD = "stm32f405"
DEFAULT_REPORT = "tinyml-demo-report.html"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="train a default model, build it for a board, validate it in QEMU",
                       description="The whole path, offline: a small int8 CNN trained on scikit-learn's digits "
                                   "(cached after the first run), firmware for the board, held-out digits run in "
                                   "QEMU and compared bit for bit with TensorFlow Lite Micro.")
    p.add_argument("--board", default=DEFAULT_BOARD, metavar="B", help=f"board (default {DEFAULT_BOARD})")
    p.add_argument("--inputs", type=int, default=100, metavar="N", help="held-out digits to run (default 100)")
    p.add_argument("-o", "--output", metavar="DIR", help="keep the firmware in DIR (default: a temporary dir)")
    add_json_arg(p)
    add_report_arg(p, default=DEFAULT_REPORT)
    p.set_defaults(func=run)


@contextmanager
def step(progress: Progress, text: str, total: int | None = None) -> Iterator[Callable[[int, int], None]]:
    """One line of the progress display; yields an `advance(done, total)` callback."""
    task = progress.add_task(text, total=total)

    def advance(done: int, all_: int) -> None:
        progress.update(task, completed=done, total=all_)

    yield advance
    progress.update(task, completed=progress.tasks[task].total or 1, total=progress.tasks[task].total or 1)


def run(args: argparse.Namespace) -> int:
    from tinyml.board import load_board
    from tinyml.codegen.firmware import build_firmware
    from tinyml.oracle import TflmOracle
    from tinyml.pipeline import compile_model
    from tinyml.sim.qemu import QemuRunner
    from tinyml.validation import validation_report
    from tinyml.zoo.default_model import EPOCHS, default_model

    board = load_board(args.board)
    quiet = args.json == "-"
    con = Console(stderr=quiet)
    columns = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn())
    with tempfile.TemporaryDirectory(prefix="tinyml-demo-") as tmp, \
            Progress(*columns, console=con, transient=False) as progress:
        with step(progress, "default model: small CNN on scikit-learn digits, int8", EPOCHS) as advance:
            model = default_model(advance)
        with step(progress, "reading and planning the model", 1):
            c = compile_model(model.path)
        n = max(1, min(args.inputs, len(model.test_labels)))
        shape = c.graph[c.graph.inputs[0]].shape
        inputs = [[x.reshape(shape)] for x in model.test_inputs[:n]]
        labels = model.test_labels[:n]
        out = Path(args.output) if args.output else Path(tmp) / "firmware"
        with step(progress, f"building firmware for {board.name} (arm-none-eabi-gcc -O2)", 1):
            fw = build_firmware(c.graph, c.plan, board, out)
        runner = QemuRunner(fw)
        with step(progress, f"running {n} held-out digits in QEMU {runner.image.machine}", 1):
            result = runner.run(inputs)
        with step(progress, "comparing with TensorFlow Lite Micro", 1):
            expected = TflmOracle(c.model_bytes).run_batch(inputs)
            report = validation_report(c, inputs, result, expected, runner.target, board.name)
    predicted = np.array([int(np.argmax(o[0])) for o in result.outputs])
    report.update({
        "model": str(model.path),
        "float_accuracy": model.float_accuracy,
        "device_accuracy": float(np.mean(predicted == labels)),
        "firmware": str(fw.path) if args.output else None,
        "flash_size": board.flash.size,
        "ram_size": board.ram.size,
        "clock_hz": board.clock_hz,
        "report_html": str(Path(args.report).resolve()),
    })
    write_report(args, "demo", report, c, board)
    print_report(Console() if not quiet else con, report, board)
    write_json(args.json, report)
    if not report["bit_exact"]:
        raise CheckFailed(f"{report['mismatched_outputs']} of {n} outputs differ from TensorFlow Lite Micro")
    return 0


def print_report(con: Console, r: dict[str, Any], board: Board) -> None:
    verdict = "[green]bit-exact with TensorFlow Lite Micro[/green]" if r["bit_exact"] else \
        f"[red]{r['mismatched_outputs']} outputs differ from TensorFlow Lite Micro[/red]"
    con.print(f"\n[bold]{board.title}[/bold] simulated by {r['target']}: {r['inputs']} digits, {verdict}")
    t = Table(show_header=False, box=None, padding=(0, 2))
    t.add_row("accuracy", f"{100 * r['device_accuracy']:.1f} % on the simulated board "
                          f"(float Keras model: {100 * r['float_accuracy']:.1f} %)")
    t.add_row("instructions", f"{r['instructions']:,} per inference (exact count in QEMU; "
                              f"~{1000 * r['instructions'] / r['clock_hz']:.2f} ms at {r['clock_hz'] // 10**6} MHz "
                              "if one per cycle)")
    t.add_row("MACs", f"{r['macs']:,}")
    t.add_row("RAM", f"{r['ram_bytes']:,} B of {r['ram_size']:,} B (arena {r['arena_bytes']:,} B, "
                     f"stack used by tinyml_run {r['stack_bytes']:,} B)")
    t.add_row("flash", f"{r['flash_bytes']:,} B of {r['flash_size']:,} B (weights {r['weights_bytes']:,} B)")
    if r["firmware"]:
        t.add_row("firmware", f"{r['firmware']}/firmware.elf (flash it with `tinyml flash`)")
    t.add_row("report", f"{r['report_html']} (open it in a browser: memory timeline, per-layer costs)")
    con.print(t)
