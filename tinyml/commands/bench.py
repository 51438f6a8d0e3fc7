"""`tinyml bench`: optimized vs plain-C kernels vs TFLite Micro + CMSIS-NN, measured in QEMU."""
from __future__ import annotations

import argparse

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from tinyml.commands._common import (add_json_arg, add_patch_args, add_report_arg, patch_options, write_json,
                                     write_report)
from tinyml.errors import CheckFailed, TinymlError
from tinyml.fsutil import write_text_atomic

DEFAULT_BOARDS = "stm32f405,mps2-an500"
MARK_STYLES = {"good": "green", "bad": "red", "strong": "bold"}  # bench.Cell.mark -> rich style


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="instructions, RAM and flash in QEMU: ours (optimized, plain C) vs TFLite Micro",
                       description="Build each model for each board with the optimized kernels and with plain C, "
                                   "run it in QEMU, check it bit for bit against TFLite Micro, and report "
                                   "instructions per inference and per MAC, RAM (arena + stack + other data), "
                                   "flash, TFLite Micro's arena, and the ratio to TFLite Micro + CMSIS-NN "
                                   "measured on a Cortex-M4 (the anchor). Exit 1 when any run is not bit-exact.")
    p.add_argument("models", nargs="*", metavar="MODEL", help="zoo model names or .tflite files")
    p.add_argument("--group", choices=zoo_groups(), help="every zoo model of this group")
    p.add_argument("--boards", default=DEFAULT_BOARDS, metavar="B,B",
                   help=f"comma-separated boards (default {DEFAULT_BOARDS}: a Cortex-M4 and a Cortex-M7)")
    p.add_argument("--kernels", choices=["both", "optimized", "plain"], default="both",
                   help="optimized (DSP where the core has it), plain C, or both (default)")
    p.add_argument("--per-layer", action="store_true",
                   help="also run a profiled build and print each layer's measured instructions")
    p.add_argument("--inputs", type=int, default=3, metavar="N", help="random inputs per run (default 3)")
    p.add_argument("--seed", type=int, default=0, help="seed for the random inputs")
    p.add_argument("--plot", metavar="PNG", help="draw instructions/MAC and RAM per model to this PNG")
    p.add_argument("--markdown", metavar="MD", help="write the summary table as Markdown to this file")
    add_patch_args(p)
    add_json_arg(p)
    add_report_arg(p)
    p.set_defaults(func=run)


def zoo_groups() -> list[str]:
    from tinyml.zoo import GROUPS

    return list(GROUPS)


def run(args: argparse.Namespace) -> int:
    from tinyml import bench

    if args.inputs <= 0:
        raise TinymlError("--inputs must be positive")
    if not args.models and not args.group:
        args.group = "mlperf"
    boards = [b.strip() for b in args.boards.split(",") if b.strip()]
    kernels = list(bench.KERNELS) if args.kernels == "both" else [args.kernels]
    models = bench.resolve_models(args.models, args.group)
    quiet = args.json == "-"
    con = Console(stderr=quiet)
    if not con.is_terminal:  # a log file or a pipe: wide enough that no figure is cut off
        con = Console(stderr=quiet, width=200)
    total = bench.work_units(len(models), len(boards), len(kernels), args.per_layer)
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=Console(stderr=True), transient=True) as progress:
        task = progress.add_task("bench", total=total)
        result = bench.run_bench(models, boards, kernels, args.per_layer, args.inputs, args.seed,
                                 lambda what: progress.update(task, advance=1, description=what),
                                 patch_options(args))
    if args.plot:
        result["plot_png"] = str(bench.plot(result, args.plot))
    if args.markdown:
        write_text_atomic(args.markdown, bench.markdown_table(result))
    if not quiet:
        print_result(con, result)
    write_json(args.json, result)
    write_report(args, "bench", result)
    return verdict(result)


def verdict(result: dict) -> int:
    """Exit 1 on any inexact run; otherwise a failed run fails the bench with its own exit code
    (2 for bad input such as a model that does not fit, 1 for a failed check or an internal error)."""
    inexact = [r for r in result["runs"] if r["bit_exact"] is False]
    if inexact:
        first = inexact[0]
        raise CheckFailed(f"{len(inexact)} of {len(result['runs'])} runs differ from TFLite Micro; first: "
                          f"{first['model']} on {first['board']} ({first['kernels']})")
    failed = [r for r in result["runs"] if r.get("error")]
    if failed:
        first = failed[0]
        msg = (f"{len(failed)} of {len(result['runs'])} runs failed; first: {first['model']} on {first['board']} "
               f"({first['kernels']}): {first['error']}")
        raise CheckFailed(msg) if first.get("exit_code", 1) == 1 else TinymlError(msg)
    return 0


def print_result(con: Console, result: dict) -> None:
    from tinyml.bench import problems, tables

    for t in tables(result):
        table = Table(title=t.title, title_justify="left")
        for col in t.columns:
            table.add_column(col, justify="left" if col in t.text_columns else "right")
        for row in t.rows:
            table.add_row(*(Text(c.text, style=MARK_STYLES.get(c.mark, "")) for c in row))
        con.print(table)
        for note in t.notes:
            con.print(Text(note, style="dim"))
    for line in problems(result):
        con.print(Text(line, style="red"))
