"""`tinyml build MODEL --board B -o DIR`: firmware for a board, with its size report."""
from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table

from tinyml.commands._common import (add_json_arg, add_patch_args, add_transformer_args, integer_only_summary,
                                     patch_options, patch_summary, write_json)

if TYPE_CHECKING:
    from tinyml.codegen.firmware import Firmware


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("build", help="build firmware for a board (arm-none-eabi-gcc) and report its size",
                       description="Generate the C library for MODEL, wrap it in firmware for board B (startup, "
                                   "UART protocol, linker script from the board's real memory map), compile with "
                                   "arm-none-eabi-gcc and report every section and memory region. Exit 2 when the "
                                   "model does not fit the board.")
    p.add_argument("model", help=".tflite file")
    p.add_argument("--board", required=True, metavar="B", help="board name (see `tinyml boards`) or a board .toml")
    p.add_argument("-o", "--output", required=True, metavar="DIR", help="output directory (replaced when complete)")
    p.add_argument("-Os", dest="optimize", action="store_const", const="Os", default="O2",
                   help="optimize for size instead of speed (-O2)")
    p.add_argument("--per-layer", action="store_true", help="time every layer (costs a little per layer)")
    p.add_argument("--min-stack", type=int, metavar="BYTES", help="stack to reserve (default: the board's)")
    p.add_argument("--selftest", action="store_true",
                   help="bake one input and TFLite Micro's output CRC into the image: at boot it prints "
                        "'tinyml selftest PASS|FAIL' (what the generated Renode test waits for)")
    add_patch_args(p)
    add_transformer_args(p)
    add_json_arg(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from tinyml.board import load_board
    from tinyml.codegen.firmware import Selftest, build_firmware
    from tinyml.pipeline import compile_model

    board = load_board(args.board)
    c = compile_model(args.model, patch_options(args), args.integer_only, args.attention_block)
    selftest = None
    if args.selftest:
        from tinyml.oracle import model_oracle, random_inputs

        sample = random_inputs(c.graph, 1, 12345)[0]
        selftest = Selftest.from_arrays(sample, model_oracle(c.model_bytes, args.integer_only).run(sample))
    fw = build_firmware(c.graph, c.plan, board, args.output, optimize=args.optimize, per_layer=args.per_layer,
                        min_stack=args.min_stack, selftest=selftest)
    report = {"output": str(fw.path), **fw.to_json(), "patches": c.patches.describe() if c.patches else None}
    if args.json != "-":
        print_report(fw)
        if c.integer_only is not None:
            Console().print(integer_only_summary(c.integer_only))
        if patch_summary(c.patches):
            Console().print(patch_summary(c.patches))
    write_json(args.json, report)
    return 0


def print_report(fw: Firmware) -> None:
    con = Console()
    board = fw.images["board"]
    con.print(f"[bold]{fw.board.name}[/bold] ({fw.board.core}, {fw.board.fpu}), -{fw.optimize}: "
              f"{fw.path / board.elf}")
    t = Table(title="sections", title_justify="left")
    for col in ("section", "bytes", "address", "in", "model", "firmware", "libc"):
        t.add_column(col, justify="left" if col in ("section", "in") else "right")
    for s in board.sections:
        flash = board.regions["FLASH"]
        where = "flash" if flash["origin"] <= s.vma < flash["origin"] + flash["size"] else \
            "RAM" if s.lma == s.vma else "RAM + flash copy"
        parts = board.contributions.get(s.name, {})
        t.add_row(s.name, f"{s.size:,}", f"0x{s.vma:08x}", where,
                  *(f"{parts[k]:,}" if k in parts else "" for k in ("model", "firmware", "libc")))
    con.print(t)
    r = Table(title="memory regions", title_justify="left")
    for col in ("region", "used", "size", "use"):
        r.add_column(col, justify="left" if col == "region" else "right")
    for name, reg in board.regions.items():
        r.add_row(name, f"{reg['used']:,}", f"{reg['size']:,}", f"{100 * reg['used'] / reg['size']:.1f}%")
    con.print(r)
    con.print(f"flash {board.flash_bytes:,} B (weights {fw.weights_bytes:,} B) | RAM static {board.static_ram_bytes:,} B "
              f"(arena {fw.arena_bytes:,} B) + stack up to {board.stack_available_bytes:,} B "
              f"(at least {board.stack_reserved_bytes:,} B reserved)")
    con.print(f"Renode: {fw.path / 'renode'} ({fw.board.name}.resc, {fw.board.name}.robot)")
    if "qemu" in fw.images:
        q = fw.images["qemu"]
        con.print(f"QEMU image for {q.machine}: {fw.path / q.elf} (flash {q.flash_bytes:,} B, "
                  f"RAM static {q.static_ram_bytes:,} B)")
