"""Run built firmware on a board behind a serial port: the validate loop on real hardware.

The port is a pyserial name or URL: /dev/ttyACM0 for a board on a USB-UART, or
socket://127.0.0.1:PORT for a simulator's UART (QEMU `-serial tcp:...,server=on,wait=on`),
which is how CI covers this runner. The board is flashed first through the ROM
bootloader (sim/bootloader.py; the bootloader may sit on another UART, `flash_port`),
then the firmware's framed protocol (sim/protocol.py) carries inputs, outputs and
cost exactly as in the simulator: the cost is DWT cycles on a real core and
instructions under QEMU (TIM2 with -icount), whichever counter the firmware reports.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from tinyml.codegen.firmware import Firmware, FirmwareImage
from tinyml.errors import CheckFailed, TinymlError
from tinyml.sim.bootloader import flash_firmware, open_port
from tinyml.sim.host import pack_inputs
from tinyml.sim.measure import check_hello, leaving_out_io, run_result
from tinyml.sim.protocol import Counter, Hello, Link, LinkError, Result, SerialTransport, counter_delta
from tinyml.sim.runner import RunResult


class SerialRunner:
    """Runner (sim/runner.py) for the board image on a board reached through a serial port."""

    def __init__(self, firmware: Firmware, port: str, *, flash: bool = True, flash_port: str | None = None,
                 timeout_s: float = 120.0, boot_timeout_s: float = 3.0):
        board = firmware.board
        if flash and flash_port is None and board.flashing.vcp_reaches_bootloader is False:
            raise TinymlError(f"{board.name}: the ROM bootloader does not listen on the firmware's UART "
                              f"({board.uart.via}); pass --flash-port (bootloader UARTs: "
                              f"{', '.join(board.flashing.bootloader_uarts)}) or --no-flash")
        self.fw = firmware
        self.image: FirmwareImage = firmware.images["board"]
        self.port, self.flash_port, self.flash = port, flash_port or port, flash
        self.timeout_s, self.boot_timeout_s = timeout_s, boot_timeout_s
        self.target = f"serial:{port}"
        self.flash_report: dict | None = None

    def run(self, inputs: list[list[np.ndarray]]) -> RunResult:
        if self.flash:
            self.flash_report = flash_firmware(str(self.fw.elf(self.image)), self.flash_port, self.fw.board)
        payloads = [pack_inputs(self.fw.inputs, [sample]) for sample in inputs]
        baud = self.fw.board.uart.baud
        with open_port(self.port, baud, timeout=1.0, even_parity=False) as ser:  # the firmware's UART is 8N1
            link = Link(SerialTransport(ser), self.timeout_s)
            try:
                hello = link.handshake(self.boot_timeout_s)  # missed the boot HELLO: it asks with HELLO_REQ
                check_hello(self.fw, hello)
                results = [link.infer(p) for p in payloads]
            except LinkError as e:
                raise LinkError(f"{self.target}: {e}") from None
        return measured(self.fw, self.image, hello, results, len(inputs), self.target)


def measured(fw: Firmware, image: FirmwareImage, hello: Hello, results: list[Result], samples: int,
             target: str) -> RunResult:
    """A serial port reads hardware counters only: DWT on a board, TIM2 under QEMU -icount."""
    if hello.counter not in (Counter.DWT, Counter.TIM2):
        raise CheckFailed(f"{target}: the firmware counts with {hello.counter.name}, which a serial port cannot "
                          "measure (DWT on a board, TIM2 under QEMU -icount)")
    return run_result(fw, image, hello, results, samples, target, leaving_out_io(counter_delta, results))


def serial_board_runner(board: str, compiled, work_dir: Path, port: str, *, flash: bool = True,  # noqa: ANN001
                        flash_port: str | None = None) -> SerialRunner:
    """Build `compiled` (a tinyml.pipeline.Compiled) for `board` and return its serial runner:
    what `tinyml validate --board B --port PORT` uses."""
    from tinyml.board import load_board
    from tinyml.codegen.firmware import build_firmware

    fw = build_firmware(compiled.graph, compiled.plan, load_board(board), work_dir / "firmware")
    return SerialRunner(fw, port, flash=flash, flash_port=flash_port)
