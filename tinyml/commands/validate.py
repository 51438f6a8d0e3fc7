"""`tinyml validate MODEL`: run the generated code and compare it with TFLite Micro, bit for bit."""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
from rich.console import Console

from tinyml.commands._common import (add_json_arg, add_patch_args, add_report_arg, add_transformer_args,
                                     integer_only_summary, patch_options, patch_summary,
                                     write_json, write_report)
from tinyml.errors import CheckFailed, TinymlError
from tinyml.pipeline import Compiled, compile_model
from tinyml.sim.runner import Runner
from tinyml.validation import load_inputs, validation_report


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("validate", help="run the generated code and compare with TFLite Micro",
                       description="Compile and run MODEL on a target (the host, a simulated board or a board "
                                   "on a serial port), compare every output with TFLite Micro, report cost. "
                                   "Exit 1 when any output differs.")
    p.add_argument("model", help=".tflite file")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--target", choices=["host"], help="compile for this PC with the host C compiler")
    where.add_argument("--board", metavar="B", help="build firmware for board B and run it (see `tinyml boards`)")
    p.add_argument("--sim", choices=["qemu", "renode"], default="qemu",
                   help="simulator that runs the --board firmware (default qemu)")
    p.add_argument("--port", metavar="PORT",
                   help="run on board B itself on this serial port (/dev/ttyACM0, socket://host:port) instead of "
                        "a simulator; the firmware is flashed first over the STM32 UART bootloader")
    p.add_argument("--no-flash", dest="flash", action="store_false",
                   help="with --port: the board already runs this build")
    p.add_argument("--flash-port", metavar="PORT", help="with --port: the bootloader's UART, if it is not PORT")
    p.add_argument("--inputs", default="20", metavar="N|FILE",
                   help="number of random inputs (default 20) or a .npy/.npz file of inputs; a model "
                        "that keeps state runs them in order as one stream, from its initial state")
    p.add_argument("--seed", type=int, default=0, help="seed for random inputs")
    p.add_argument("--sanitize", action="store_true", help="host: build with ASan and UBSan")
    add_patch_args(p)
    add_transformer_args(p)
    add_json_arg(p)
    add_report_arg(p)
    p.set_defaults(func=run)


def make_runner(args: argparse.Namespace, c: Compiled, work: Path) -> tuple[Runner, str | None]:
    """Build what the target needs and return its runner and board name."""
    if args.board and args.port:
        from tinyml.sim.serial_runner import serial_board_runner

        runner = serial_board_runner(args.board, c, work, args.port, flash=args.flash, flash_port=args.flash_port)
        return runner, runner.fw.board.name
    if args.port:
        raise TinymlError("--port needs --board: the firmware is built for that board")
    if args.board:
        from tinyml.sim.qemu import board_runner

        runner = board_runner(args.board, args.sim, c, work)
        return runner, runner.fw.board.name
    from tinyml.codegen.emit import generate
    from tinyml.sim.host import HostRunner

    lib = generate(c.graph, c.plan, work / "lib")
    return HostRunner(lib, sanitize=args.sanitize), None


def run(args: argparse.Namespace) -> int:
    from tinyml.oracle import model_oracle

    c = compile_model(args.model, patch_options(args), args.integer_only, args.attention_block)
    inputs = load_inputs(c.graph, args.inputs, args.seed)
    oracle = model_oracle(c.model_bytes, args.integer_only)
    expected = oracle.run_batch(inputs)
    with tempfile.TemporaryDirectory(prefix="tinyml-validate-") as tmp:
        runner, board = make_runner(args, c, Path(tmp))
        result = runner.run(inputs)
    report = validation_report(c, inputs, result, expected, runner.target, board)
    report["patches"] = c.patches.describe() if c.patches else None
    report["tflm_arena_bytes"] = oracle.arena_bytes()
    report["oracle"] = oracle.name
    report["integer_only"] = c.integer_only
    if c.integer_only is not None:
        report["integer_only_vs_tflm"] = drift_from_tflm(c, inputs, expected)
    if args.json != "-":
        print_report(report)
        if patch_summary(c.patches):
            print(patch_summary(c.patches))
        if c.integer_only is not None and (d := report["integer_only_vs_tflm"]) is None:
            print(f"{integer_only_summary(c.integer_only)}; TFLite Micro cannot run the original file")
        elif c.integer_only is not None:
            print(f"{integer_only_summary(c.integer_only)}; vs TFLite Micro on the original file: top-1 agrees on "
                  f"{d['top1_agreement']:.1%} of inputs, outputs differ by {d['mean_abs_code_diff']:.2f} codes on "
                  f"average (max {d['max_abs_code_diff']})")
    write_json(args.json, report)
    write_report(args, "validate", report, c)
    if not report["within_float_tolerance"]:
        raise CheckFailed(f"{report['mismatched_outputs']} of {report['inputs']} output sets differ from TFLite Micro"
                          + (f"; first divergent layer: {report['first_divergence']}"
                             if report["first_divergence"] else ""))
    return 0


def drift_from_tflm(c: Compiled, inputs: list, expected: list) -> dict | None:
    """How far the integer-only graph's outputs (`expected`: its numpy reference, which the run
    matched or the verdict says otherwise) moved from TFLite Micro's on the original file; None
    when TFLite Micro cannot run that file (GELU: the pinned one has no kernel)."""
    from tinyml.errors import BadModel
    from tinyml.oracle import TflmOracle

    try:
        theirs = TflmOracle(c.model_bytes).run_batch(inputs)
    except BadModel:
        return None
    diffs = [np.abs(np.asarray(a, np.float64).reshape(-1) - np.asarray(b, np.float64).reshape(-1))
             for e, t in zip(expected, theirs) for a, b in zip(e, t)]
    top1 = [int(np.argmax(e[0])) == int(np.argmax(t[0])) for e, t in zip(expected, theirs)]
    return {"top1_agreement": float(np.mean(top1)), "mean_abs_code_diff": float(np.mean(np.concatenate(diffs))),
            "max_abs_code_diff": float(np.max(np.concatenate(diffs)))}


def print_report(r: dict) -> None:
    con = Console()
    verdict = "[green]bit-exact[/green]" if r["bit_exact"] else (
        f"[yellow]within the stated float tolerance[/yellow] (max |diff| {r['max_abs_diff']:.3g}, docs/ops.md)"
        if r["within_float_tolerance"] else "[red]MISMATCH[/red]")
    con.print(f"{r['target']}{' (' + r['board'] + ')' if r['board'] else ''}: {r['inputs']} inputs, {verdict}")
    if r.get("oracle", "TFLite Micro") != "TFLite Micro":
        con.print(f"  oracle: {r['oracle']}")
    for key in ("instructions", "cycles", "cycles_estimated", "arena_bytes", "state_bytes", "stack_bytes", "ram_bytes",
                "firmware_ram_bytes", "flash_bytes", "weights_bytes", "macs"):
        if r.get(key) is not None and (r[key] or key != "state_bytes"):
            con.print(f"  {key:<18} {r[key]:>12,}")
        if key == "cycles_estimated" and r.get("ms_estimated") is not None:
            con.print(f"  {'ms_estimated':<18} {r['ms_estimated']:>12.3f}  (at {r['estimate_clock_hz'] / 1e6:g} MHz; "
                      "estimated from the instruction mix, not measured)")
    for line in r["mismatch_details"]:
        con.print(f"  [red]{line}[/red]")
