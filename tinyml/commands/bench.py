"""`tinyml bench`: optimized vs plain-C kernels vs TFLite Micro + CMSIS-NN, measured in QEMU."""
from __future__ import annotations

import argparse

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from tinyml.commands._common import (add_json_arg, add_patch_args, add_report_arg, patch_options, write_json,
                                     write_report)
from tinyml.errors import CheckFailed, TinymlError
from tinyml.fsutil import write_text_atomic

DEFAULT_BOARDS = "stm32f405,mps2-an500"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="instructions, RAM and flash in QEMU: ours (optimized, plain C) vs TFLite Micro",
                       description="Build each model for each board with the optimized kernels and with plain C, "
                                   "run it in QEMU, check it bit for bit against TFLite Micro, and report "
                                   "instructions per inference and per MAC, RAM (arena + stack + other data), "
                                   "flash, TFLite Micro's arena, and the ratio to the TFLite Micro + CMSIS-NN "
                                   "anchor of issue 4. Exit 1 when any run is not bit-exact.")
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
    from tinyml.bench import TARGETS, fmt_int, fmt_ratio, get, ok, paired

    speed = Table(title="Instructions per inference (QEMU, exact)", title_justify="left")
    for col in ("model", "board", "MACs", "optimized", "instr/MAC", "plain C", "instr/MAC", "anchor instr/MAC",
                "opt/anchor", "exact"):
        speed.add_column(col, justify="left" if col in ("model", "board") else "right")
    mem = Table(title="Memory (bytes)", title_justify="left")
    for col in ("model", "board", "RAM", "arena", "lower bound", "arena/bound", "RAM/bound", "stack", "other", "TFLM arena",
                "anchor arena", "RAM/anchor", "flash", "flash (plain)", "weights"):
        mem.add_column(col, justify="left" if col in ("model", "board") else "right")
    for opt, plain in paired(result):
        r = opt if ok(opt) else plain if ok(plain) else None
        if r is None:
            bad = opt or plain
            speed.add_row(bad["model"], bad["board"], "[red]failed (below)[/red]")
            continue
        a = r["anchor"]
        speed.add_row(r["model"], r["board"], f"{r['macs']:,}", fmt_int(get(opt, "instructions")),
                      fmt_ratio(get(opt, "instructions_per_mac")), fmt_int(get(plain, "instructions")),
                      fmt_ratio(get(plain, "instructions_per_mac")),
                      fmt_ratio(a["instructions"] / a["macs"] if a else None),
                      _times(get(opt, "instructions_vs_anchor"), TARGETS["instructions_vs_anchor"]),
                      _exact(opt, plain))
        mem.add_row(r["model"], r["board"], fmt_int(r["ram_bytes"]), fmt_int(r["arena_bytes"]),
                    fmt_int(r["arena_lower_bound"]), fmt_ratio3(r["arena_vs_lower_bound"]),
                    _times(r["ram_vs_lower_bound"], TARGETS["ram_vs_lower_bound"], 3),
                    fmt_int(r["stack_bytes"]), fmt_int(r["other_ram_bytes"]), fmt_int(r["tflm_arena_bytes"]),
                    fmt_int(a["arena_bytes"] if a else None),
                    _times(r["ram_vs_anchor_arena"], TARGETS["ram_vs_anchor_arena"]),
                    fmt_int(get(opt, "flash_bytes")), fmt_int(get(plain, "flash_bytes")), fmt_int(r["weights_bytes"]))
    con.print(speed)
    con.print(mem)
    con.print(f"[dim]anchor: {result['anchor_source']}; TFLM arena measured on the host (64-bit)[/dim]")
    if result["per_layer"]:
        for opt, plain in paired(result):
            print_layers(con, opt, plain)
    for r in result["runs"]:
        if r.get("error"):
            con.print(f"[red]{r['model']} on {r['board']} ({r['kernels']}): {r['error']}[/red]")
        elif not r["bit_exact"]:
            where = (f"the numpy reference already parts from TFLite Micro at {r['first_divergence']}"
                     if r["first_divergence"] else "the numpy reference agrees with TFLite Micro, the C does not")
            con.print(f"[red]{r['model']} on {r['board']} ({r['kernels']}): {r['mismatched_outputs']} outputs "
                      f"differ over {r['inputs']} inputs; {where}[/red]")


def print_layers(con: Console, opt: dict | None, plain: dict | None) -> None:
    """Each layer's measured instructions, optimized beside plain, so the slow layer stands out."""
    from tinyml.bench import fmt_ratio, get

    rows = [r for r in (opt, plain) if get(r, "per_layer")]
    if not rows:
        return
    first = rows[0]
    t = Table(title=f"{first['model']} on {first['board']}: per layer (profiled build)", title_justify="left")
    for col in ("#", "op", "output", "MACs"):
        t.add_column(col, justify="left" if col in ("op", "output") else "right")
    for r in rows:
        t.add_column(f"{r['kernels']} instr", justify="right")
        t.add_column("instr/MAC", justify="right")
        t.add_column("share", justify="right")
    for i, layer in enumerate(first["per_layer"]):
        cells = [str(layer["index"]), layer["op"], "x".join(map(str, layer["output"])), f"{layer['macs']:,}"]
        for r in rows:
            lr = r["per_layer"][i]
            share = lr["instructions"] / r["per_layer_total"] if r["per_layer_total"] else 0.0
            cells += [f"{lr['instructions']:,}", fmt_ratio(lr["instructions_per_mac"]),
                      f"[bold]{share:.0%}[/bold]" if share >= 0.15 else f"{share:.0%}"]
        t.add_row(*cells)
    con.print(t)
    for r in rows:
        con.print(f"  {r['kernels']}: layers sum to {r['per_layer_total']:,} of {r['profiled_instructions']:,} "
                  f"instructions in the profiled build ({r['instructions']:,} unprofiled)")


def _times(v: float | None, target: float, digits: int = 2) -> str:
    """A ratio, green when it meets issue 4's target."""
    if v is None:
        return "-"
    return f"[green]{v:.{digits}f}x[/green]" if v <= target else f"{v:.{digits}f}x"


def fmt_ratio3(v: float | None) -> str:
    return "-" if v is None else f"{v:.3f}x"


def _exact(*rows: dict | None) -> str:
    from tinyml.bench import exact_verdict

    v = exact_verdict(*rows)
    return {"yes": "[green]yes[/green]", "NO": "[red]NO[/red]"}.get(v, v)
