"""`tinyml boards`: the boards the kit can build for, from boards/*.toml."""
from __future__ import annotations

import argparse

from rich.console import Console
from rich.table import Table

from tinyml.board import all_boards
from tinyml.commands._common import add_json_arg, write_json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("boards", help="list the supported boards",
                       description="List every board file: core, FPU, memory, UART, simulator and flashing.")
    add_json_arg(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    boards = all_boards()
    if args.json != "-":
        t = Table(title="boards (one file each in boards/)", title_justify="left")
        for col in ("board", "core", "FPU", "RAM", "flash", "clock", "UART", "QEMU", "flashing"):
            t.add_column(col, justify="right" if col in ("RAM", "flash", "clock") else "left")
        for b in boards:
            qemu = b.qemu.machine.name + ("" if b.qemu.same_firmware else " (relinked)")
            flashing = b.flashing.method + (f" pid 0x{b.flashing.pid:03x}" if b.flashing.pid is not None else "")
            ram = f"{b.ram.size // 1024} KiB" + (f" (of {b.total_ram_bytes // 1024})" if b.total_ram_bytes != b.ram.size
                                                  else "")
            t.add_row(b.name, b.core, b.fpu, ram, f"{b.flash.size // 1024} KiB",
                      f"{b.clock_hz // 1_000_000} MHz", f"{b.uart.instance}", qemu, flashing)
        Console().print(t)
    write_json(args.json, {"boards": [b.summary() for b in boards]})
    return 0
