"""The serial runner: the framed protocol over a pyserial port, checked against QEMU's own runner.

CI has no board, so the port is QEMU's UART as a TCP server (`socket://`): the board image of
an STM32F405 runs unchanged on netduinoplus2, so the serial runner must see exactly what the
QEMU runner sees (outputs, instruction counts, stack), and the flash step goes to the
emulated ROM bootloader.
"""
from __future__ import annotations

import json
import socket
import subprocess
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest

from firmware_graphs import random_samples, tiny_graph
from tinyml.cli import main
from tinyml.codegen.firmware import Firmware, build_firmware, load_firmware
from tinyml.errors import CheckFailed, TinymlError
from tinyml.schedule.memory import plan_memory
from tinyml.sim.bootloader_emulator import EmulatedBootloader, serve_tcp
from tinyml.sim.image import load_image
from tinyml.sim.protocol import Counter, Hello, LinkError, Result
from tinyml.sim.qemu import QemuRunner
from tinyml.sim.serial_runner import SerialRunner, check_hello, measured

BOARD = "stm32f405"  # its board image is what QEMU's netduinoplus2 runs


@contextmanager
def qemu_uart_server(fw: Firmware) -> Iterator[str]:
    """QEMU running the board image with exactly the QEMU runner's flags, its UART a TCP server."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = QemuRunner(fw).command(None)
    cmd[cmd.index("stdio")] = f"tcp:127.0.0.1:{port},server=on,wait=on"  # the guest starts when we connect
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)
    try:
        line = proc.stderr.readline()  # "QEMU waiting for connection on: ...": listening now
        assert "waiting for connection" in line, line
        yield f"socket://127.0.0.1:{port}"
    finally:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="module")
def firmware(tmp_path_factory) -> tuple[object, Firmware]:
    g = tiny_graph()
    return g, build_firmware(g, plan_memory(g), BOARD, tmp_path_factory.mktemp("fw") / "fw")


@pytest.mark.slow
def test_serial_runner_over_qemu_socket_matches_the_qemu_runner(firmware):
    g, fw = firmware
    samples = random_samples(g, 3)
    expected = QemuRunner(fw).run(samples)
    with qemu_uart_server(fw) as url:
        got = SerialRunner(fw, url, flash=False).run(samples)
    for a, b in zip(expected.outputs, got.outputs):
        assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert got.extra["counter"] == "tim2" and got.cycles is None
    assert got.extra["instructions_per_input"] == expected.extra["instructions_per_input"]
    assert got.instructions == expected.instructions > 1000
    assert got.stack_bytes == expected.stack_bytes and got.extra["ram_bytes"] == expected.extra["ram_bytes"]


@pytest.mark.slow
def test_flash_through_the_bootloader_then_run(firmware):
    g, fw = firmware
    samples = random_samples(g, 2, seed=5)
    emu = EmulatedBootloader()
    with serve_tcp(emu) as boot_port, qemu_uart_server(fw) as url:
        runner = SerialRunner(fw, url, flash_port=f"socket://127.0.0.1:{boot_port}")
        got = runner.run(samples)
    elf = load_image(fw.elf(fw.images["board"]))
    for seg in elf.segments:  # the bootloader holds the board image, byte for byte
        assert bytes(emu.flash[seg.address - 0x08000000:seg.end - 0x08000000]) == seg.data
    assert emu.go_addresses == [0x08000000] and runner.flash_report["verified"] is True
    assert got.instructions == QemuRunner(fw).run(samples).instructions


@pytest.mark.slow
def test_a_device_running_another_model_is_refused(firmware, tmp_path):
    g, fw = firmware
    other = build_firmware(tiny_graph(seed=9), plan_memory(tiny_graph(seed=9)), BOARD, tmp_path / "other")
    with qemu_uart_server(other) as url:
        with pytest.raises(LinkError, match="runs model .* this build is"):
            SerialRunner(fw, url, flash=False).run(random_samples(g, 1))


def hello(counter: Counter) -> Hello:
    return Hello(1, counter, False, False, 2, 0x1234, 256, 4096, 0x2001F000, (100, 112), 168_000_000, [4], [2],
                 BOARD)


def test_cycles_on_a_real_core_and_unmeasurable_counters(firmware):
    _, fw = firmware
    results = [Result(0, 0, 1000, 1512, 300, None, [b"\x00" * fw.outputs[0].nbytes]),
               Result(1, 0, 0xFFFFFF00, 0x00000200, 310, None, [b"\x01" * fw.outputs[0].nbytes])]  # counter wrapped
    r = measured(fw, fw.images["board"], hello(Counter.DWT), results, 2, "serial:test")
    assert r.cycles == 0x300 - 12 and r.instructions is None  # 768 ticks minus the 12-tick read overhead
    assert r.extra["cycles_per_input"] == [500, 756] and r.stack_bytes == 310
    with pytest.raises(CheckFailed, match="MARKS"):
        measured(fw, fw.images["board"], hello(Counter.MARKS), results, 2, "serial:test")
    bad = [Result(0, -3, 0, 10, 0, None, [b"\x00" * fw.outputs[0].nbytes])]
    with pytest.raises(CheckFailed, match="error on inference 0"):
        measured(fw, fw.images["board"], hello(Counter.DWT), bad, 1, "serial:test")


def test_hello_from_another_build_is_refused(firmware):
    _, fw = firmware
    h = hello(Counter.DWT)
    h.model_id = fw.model_id ^ 1
    with pytest.raises(LinkError, match="flash it"):
        check_hello(fw, h)


@pytest.mark.slow
def test_validate_port_over_qemu_reports_what_the_simulator_reports(zoo_path, tmp_path, capsys):
    model = str(zoo_path("ds_cnn_kws"))
    assert main(["build", model, "--board", BOARD, "-o", str(tmp_path / "fw")]) == 0
    capsys.readouterr()
    fw = load_firmware(tmp_path / "fw")
    with qemu_uart_server(fw) as url:
        assert main(["validate", model, "--board", BOARD, "--port", url, "--no-flash", "--inputs", "3",
                     "--json", "-"]) == 0
        serial = json.loads(capsys.readouterr().out)
    assert main(["validate", model, "--board", BOARD, "--inputs", "3", "--json", "-"]) == 0
    sim = json.loads(capsys.readouterr().out)
    assert serial["target"] == f"serial:{url}" and sim["target"] == "qemu:netduinoplus2"
    assert serial["bit_exact"] is sim["bit_exact"] is True
    for key in ("inputs", "instructions", "stack_bytes", "ram_bytes", "flash_bytes", "arena_bytes", "macs"):
        assert serial[key] == sim[key], key
    assert serial["instructions"] > serial["macs"] > 0


def test_a_board_whose_uart_is_not_the_bootloaders_needs_a_flash_port(tmp_path):
    g = tiny_graph()
    fw = build_firmware(g, plan_memory(g), "nucleo-l4r5zi", tmp_path / "l4")  # firmware on the VCP (LPUART1)
    with pytest.raises(TinymlError, match="pass --flash-port .*USART1 PA9/PA10"):
        SerialRunner(fw, "/dev/ttyACM0")
    assert SerialRunner(fw, "/dev/ttyACM0", flash=False).target == "serial:/dev/ttyACM0"


def test_port_without_board_is_a_usage_error(zoo_path, capsys):
    assert main(["validate", str(zoo_path("op_fc")), "--port", "socket://127.0.0.1:1", "--inputs", "1"]) == 2
    assert "--port needs --board" in capsys.readouterr().err
