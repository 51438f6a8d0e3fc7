"""`tinyml flash` against a misbehaving bootloader: every fault ends in a verified flash or exit 2, never a false success."""
from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from tinyml.cli import main
from tinyml.sim.bootloader import FlashLayout
from tinyml.sim.bootloader_emulator import Chip, EmulatedBootloader, Faults, serve_pty, serve_tcp

F4 = FlashLayout.from_runs(0x08000000, [[4, 16384], [1, 65536], [7, 131072]])


@pytest.fixture
def firmware(tmp_path) -> tuple[Path, bytes]:
    data = random.Random(3).randbytes(20_000)
    path = tmp_path / "fw.bin"
    path.write_bytes(data)
    return path, data


def flash(emu: EmulatedBootloader, fw: Path, tmp_path: Path, capsys, *extra: str, pty: bool = False):
    """Run the CLI against `emu`; returns (exit code, stdout, stderr, JSON report or None)."""
    report = tmp_path / "report.json"
    server = serve_pty(emu) if pty else serve_tcp(emu)
    with server as where:
        port = where if pty else f"socket://127.0.0.1:{where}"
        code = main(["flash", str(fw), "--port", port, "--board", "stm32f405", "--timeout", "0.1",
                     "--json", str(report), *extra])
    out, err = capsys.readouterr()
    return code, out, err, json.loads(report.read_text()) if report.exists() else None


def flash_holds(emu: EmulatedBootloader, data: bytes) -> bool:
    return bytes(emu.flash[:len(data)]) == data


@pytest.mark.parametrize("kind, rate", [
    ("nack", 0.05),     # refused commands, addresses and data blocks
    ("drop_rx", 0.002), # the device misses a byte and waits for the rest of a frame
    ("drop_tx", 0.002), # a reply or a read-back byte is lost
    ("flip_rx", 0.002), # the device receives a corrupted byte (checksums catch it)
    ("flip_tx", 0.002), # the host receives a corrupted byte (ACKs garbled, read-back data wrong)
])
def test_transient_faults_are_retried_and_the_flash_verifies(kind, rate, firmware, tmp_path, capsys):
    fw, data = firmware
    emu = EmulatedBootloader(faults=Faults(seed=11, limit=4, **{kind: rate}))
    code, out, err, rep = flash(emu, fw, tmp_path, capsys)
    assert code == 0, err
    assert emu.injected[kind] == 4  # the faults really happened...
    assert flash_holds(emu, data)  # ...and the flash still holds exactly the image
    assert rep["verified"] is True and rep["recoveries"] >= 1
    assert "verified" in out and emu.go_addresses == [0x08000000]


def test_mixed_faults_over_a_pty(firmware, tmp_path, capsys):
    fw, data = firmware
    emu = EmulatedBootloader(faults=Faults(seed=5, limit=12, nack=0.01, drop_rx=0.0005, drop_tx=0.0005,
                                           flip_rx=0.0005, flip_tx=0.0005))
    code, out, err, rep = flash(emu, fw, tmp_path, capsys, pty=True)
    assert code == 0, err
    assert sum(emu.injected.values()) == 12 and flash_holds(emu, data)


@pytest.mark.parametrize("retries", ["5", "0"])
@pytest.mark.parametrize("seed", range(3))
def test_no_false_success_under_unbounded_noise(seed, retries, tmp_path, capsys):
    """With faults that never stop, either the flash reads back identical or the exit code is 2."""
    data = random.Random(seed).randbytes(2000)
    fw = tmp_path / "small.bin"
    fw.write_bytes(data)
    emu = EmulatedBootloader(faults=Faults(seed=seed, nack=0.01, drop_rx=0.0005, drop_tx=0.0005, flip_rx=0.0005,
                                           flip_tx=0.0005))
    code, out, err, rep = flash(emu, fw, tmp_path, capsys, "--retries", retries, "--no-go")
    assert sum(emu.injected.values()) > 0
    if code == 0:
        assert flash_holds(emu, data) and rep["verified"] is True
    else:
        assert code == 2 and rep is None and out == ""
        assert len(err.strip().splitlines()) == 1


def test_stuck_flash_bit_fails_verification_after_repairs(firmware, tmp_path, capsys):
    fw, data = firmware
    addr = 0x08000000 + 5000
    bit = next(1 << b for b in range(8) if not data[5000] & (1 << b))  # a bit the image needs at 0
    emu = EmulatedBootloader(faults=Faults(stuck={addr: bit}))
    code, out, err, rep = flash(emu, fw, tmp_path, capsys, "--retries", "2")
    assert code == 2 and rep is None and out == ""
    assert err.count("\n") == 1 and "verify failed" in err and f"0x{addr:08x}" in err
    assert emu.erased.count(0) == 3  # first erase plus two repairs of the page that holds the cell
    assert emu.go_addresses == []  # a bad image is never started


def test_silent_device_is_a_one_line_error(firmware, tmp_path, capsys):
    fw, _ = firmware
    emu = EmulatedBootloader(faults=Faults(silent=True))
    code, out, err, rep = flash(emu, fw, tmp_path, capsys)
    assert code == 2 and rep is None and out == ""
    assert err.count("\n") == 1 and "no usable answer from the STM32 bootloader (no answer to 0x7F)" in err


def test_wrong_chip_is_refused_before_anything_is_erased(firmware, tmp_path, capsys):
    fw, _ = firmware
    emu = EmulatedBootloader(Chip(pid=0x431))
    code, out, err, rep = flash(emu, fw, tmp_path, capsys)
    assert code == 2 and out == "" and err.count("\n") == 1
    assert "chip ID 0x431" in err and "0x413" in err
    assert emu.erased == [] and emu.flash == b"\xff" * len(emu.flash)


def test_oversized_image_is_refused_before_the_port_is_used(tmp_path, capsys):
    fw = tmp_path / "big.bin"
    fw.write_bytes(b"\x00" * (F4.size + 4))
    emu = EmulatedBootloader()
    code, out, err, rep = flash(emu, fw, tmp_path, capsys)
    assert code == 2 and out == "" and err.count("\n") == 1
    assert "does not fit" in err and "1,048,580" in err and "1,048,576" in err
    assert emu.erased == []


def test_write_protected_flash_is_refused_and_reported(firmware, tmp_path, capsys):
    fw, _ = firmware
    emu = EmulatedBootloader()
    emu.write_protected = {1}
    code, out, err, rep = flash(emu, fw, tmp_path, capsys, "--retries", "2")
    assert code == 2 and out == "" and err.count("\n") == 1
    assert "erase of pages [1]" in err and "NACK" in err and "gave up after 3 attempts" in err
