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

from tinyml.codegen.firmware import Firmware, Image
from tinyml.errors import CheckFailed, TinymlError
from tinyml.sim.bootloader import flash_firmware, open_port
from tinyml.sim.host import pack_inputs, unpack_outputs
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
        self.image: Image = firmware.images["board"]
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


def check_hello(fw: Firmware, h: Hello) -> None:
    """The device runs this build: same model and the same input/output sizes."""
    if h.model_id != fw.model_id:
        raise LinkError(f"the device runs model 0x{h.model_id:08x}, this build is 0x{fw.model_id:08x} "
                        "(flash it, or drop --no-flash)")
    if h.input_bytes != [i.nbytes for i in fw.inputs] or h.output_bytes != [o.nbytes for o in fw.outputs]:
        raise LinkError("the device's input/output sizes differ from the build's")


def measured(fw: Firmware, image: Image, hello: Hello, results: list[Result], samples: int, target: str) -> RunResult:
    """Outputs and cost from the replies: counter ticks minus the counter's own overhead."""
    if hello.counter not in (Counter.DWT, Counter.TIM2):
        raise CheckFailed(f"{target}: the firmware counts with {hello.counter.name}, which a serial port cannot "
                          "measure (DWT on a board, TIM2 under QEMU -icount)")
    bad = [r.index for r in results if r.status != 0]
    if bad:
        raise CheckFailed(f"{target}: tinyml_run() returned an error on inference {bad[0]}")
    overhead = counter_delta(*hello.calib)
    counts = [counter_delta(r.t0, r.t1) - overhead for r in results]
    per_layer = None
    if hello.per_layer and results:  # the layers of the slowest inference, the one reported
        slowest = results[counts.index(max(counts))]
        per_layer = [counter_delta(b, e) - overhead if (b, e) != (0, 0) else 0 for b, e in slowest.layer_ticks]
    outputs = unpack_outputs(fw.outputs, b"".join(b"".join(r.outputs) for r in results), samples)
    stack = max(r.stack_bytes for r in results) if results else None
    worst = max(counts) if counts else None
    cycles = hello.counter == Counter.DWT
    unit = "cycles" if cycles else "instructions"
    extra: dict[str, object] = {
        f"{unit}_per_input": counts,
        "flash_bytes": image.flash_bytes,
        "static_ram_bytes": image.static_ram_bytes,
        "ram_bytes": image.static_ram_bytes + stack if stack is not None else None,
        "stack_available_bytes": hello.stack_size,
        "clock_hz": hello.clock_hz,
        "counter": hello.counter.name.lower(),
    }
    return RunResult(outputs, None if cycles else worst, worst if cycles else None, stack, per_layer, extra)


def serial_board_runner(board: str, compiled, work_dir: Path, port: str, *, flash: bool = True,  # noqa: ANN001
                        flash_port: str | None = None) -> SerialRunner:
    """Build `compiled` (a tinyml.pipeline.Compiled) for `board` and return its serial runner:
    what `tinyml validate --board B --port PORT` uses."""
    from tinyml.board import load_board
    from tinyml.codegen.firmware import build_firmware

    fw = build_firmware(compiled.graph, compiled.plan, load_board(board), work_dir / "firmware")
    return SerialRunner(fw, port, flash=flash, flash_port=flash_port)
