"""`tinyml flash FIRMWARE --port PORT`: write firmware through the STM32 ROM bootloader over UART (AN3155)."""
from __future__ import annotations

import argparse
import sys

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn

from tinyml.commands._common import add_json_arg, write_json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("flash", help="flash firmware over the STM32 UART bootloader",
                       description="Write FIRMWARE (ELF, Intel HEX or raw .bin) to an STM32 through its ROM "
                                   "bootloader on a serial port (set BOOT0 high and reset the board first). "
                                   "Erases only the pages the image needs, reads every block back, then starts "
                                   "the program. Exit 2 with one line on any failure; success means the flash "
                                   "reads back identical to the image.")
    p.add_argument("firmware", help="firmware.elf, .hex or .bin")
    p.add_argument("--port", required=True,
                   help="serial device (/dev/ttyUSB0, /dev/ttyACM0, COM3) or a pyserial URL (socket://host:port)")
    p.add_argument("--baud", type=int, default=115200, help="baud rate (default 115200)")
    p.add_argument("--board", metavar="B", help="check the chip and flash size against board B "
                                                "(default: the board whose chip ID the device reports)")
    p.add_argument("--base", type=lambda s: int(s, 0), metavar="ADDR",
                   help="load address of a .bin file (default: the board's flash origin)")
    p.add_argument("--no-go", dest="go", action="store_false", help="do not start the program after flashing")
    p.add_argument("--timeout", type=float, default=0.5, metavar="S",
                   help="seconds to wait for a reply (default 0.5; erase waits 12x per page)")
    p.add_argument("--retries", type=int, default=5, help="retries of a failed exchange before giving up (default 5)")
    add_json_arg(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from tinyml.sim.bootloader import flash_firmware

    console = Console(stderr=True)
    with Progress(TextColumn("{task.description:<7}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                  console=console, transient=True, disable=not console.is_terminal) as bar:
        tasks: dict[str, TaskID] = {}

        def progress(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=total)
            bar.update(tasks[stage], completed=done, total=total)

        report = flash_firmware(args.firmware, args.port, args.board, args.baud, args.base, args.go,
                                args.timeout, max(args.retries, 0), progress)
    if args.json != "-":
        retried = f", {report['recoveries']} retried exchanges" if report["recoveries"] else ""
        print(f"flashed {report['bytes']:,} bytes to {report['board']} (chip {report['chip_id']}) at "
              f"{report['start']}, {len(report['pages_erased'])} pages erased, verified{retried}"
              + (f"; started at {report['go']}" if report["go"] else ""), file=sys.stdout)
    write_json(args.json, report)
    return 0
