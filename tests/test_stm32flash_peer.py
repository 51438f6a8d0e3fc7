"""Debian's stm32flash (an independent AN3155 host) shows the emulator is faithful; then both tools agree."""
from __future__ import annotations

import random
import shutil
import subprocess
from pathlib import Path

import pytest
import serial

from tinyml.cli import main
from tinyml.sim.bootloader import Bootloader, FlashLayout, Timeouts, program
from tinyml.sim.bootloader_emulator import Chip, EmulatedBootloader, serve_pty
from tinyml.sim.image import load_image

F4 = FlashLayout.from_runs(0x08000000, [[4, 16384], [1, 65536], [7, 131072]])
F1 = FlashLayout.from_runs(0x08000000, [[128, 1024]])  # STM32F103 medium density: bootloader v2.2, ERASE 0x43
F1_CHIP = Chip(pid=0x410, version=0x22, flash=F1, ram_size=20 * 1024, ram_reserved=0x200, extended_erase=False)


def stm32flash(*args: str) -> subprocess.CompletedProcess:
    exe = shutil.which("stm32flash")
    assert exe, "stm32flash is required (apt-get install stm32flash; ./dev.sh installs it)"
    # 8n1: a pty has no parity bits (and some kernels refuse PARENB on one); a real UART uses the default 8e1
    return subprocess.run([exe, "-m", "8n1", "-b", "115200", *args], capture_output=True, text=True, timeout=120)


@pytest.fixture
def image(tmp_path) -> dict:
    """The same firmware as .bin and (made by objcopy, not by us) as Intel HEX at the flash origin."""
    data = random.Random(42).randbytes(70_001)  # not a multiple of 4: stm32flash pads the last block
    bin_ = tmp_path / "fw.bin"
    bin_.write_bytes(data)
    hex_ = tmp_path / "fw.hex"
    subprocess.run(["arm-none-eabi-objcopy", "-I", "binary", "-O", "ihex", "--change-addresses", "0x08000000",
                    str(bin_), str(hex_)], check=True)
    return {"data": data, "bin": bin_, "hex": hex_}


def test_stm32flash_writes_verifies_starts_and_reads_back(image, tmp_path):
    emu = EmulatedBootloader()
    back = tmp_path / "back.bin"
    with serve_pty(emu) as port:
        info = stm32flash(port)
        assert info.returncode == 0 and "Device ID    : 0x0413" in info.stdout and "Version      : 0x31" in info.stdout
        w = stm32flash("-w", str(image["bin"]), "-v", "-g", "0x0", port)
        assert w.returncode == 0, w.stdout + w.stderr
        assert emu.go_addresses == [0x08000000]
        emu.reset()  # the program runs after GO: reset with BOOT0 high to reach the bootloader again
        r = stm32flash("-r", str(back), "-S", f"0x08000000:{len(image['data'])}", port)
        assert r.returncode == 0, r.stdout + r.stderr
    assert back.read_bytes() == image["data"]
    assert bytes(emu.flash[:len(image["data"])]) == image["data"]
    assert emu.erased == [0, 1, 2, 3, 4]  # stm32flash erases only the sectors the 70 KB image covers


def test_stm32flash_and_tinyml_flash_agree_on_the_flash_contents(image, tmp_path, capsys):
    by_stm32flash, by_tinyml = EmulatedBootloader(), EmulatedBootloader()
    with serve_pty(by_stm32flash) as port:
        assert stm32flash("-w", str(image["hex"]), "-v", port).returncode == 0
        with serial.serial_for_url(port, timeout=0.1) as ser:  # tinyml's client reads what stm32flash wrote
            bl = Bootloader(ser, Timeouts.scaled(0.2))
            bl.connect()
            ours = b"".join(bl.read_memory(a, 256) for a in range(0x08000000, 0x08000000 + 70_144, 256))
    assert ours[:len(image["data"])] == image["data"]
    back = tmp_path / "back.bin"
    with serve_pty(by_tinyml) as port:
        assert main(["flash", str(image["bin"]), "--port", port, "--board", "stm32f405", "--timeout", "0.2"]) == 0
        assert by_tinyml.go_addresses == [0x08000000]
        by_tinyml.reset()
        r = stm32flash("-r", str(back), "-S", f"0x08000000:{len(image['data'])}", port)
        assert r.returncode == 0, r.stdout + r.stderr
    assert back.read_bytes() == image["data"]
    assert by_tinyml.flash == by_stm32flash.flash  # every byte of the 1 MB, erased pages included
    assert by_tinyml.erased == by_stm32flash.erased == [0, 1, 2, 3, 4]
    assert "verified" in capsys.readouterr().out


def test_legacy_erase_bootloader_with_both_tools(image, tmp_path):
    data = image["data"][:5000]
    small = tmp_path / "small.bin"
    small.write_bytes(data)
    theirs, ours = EmulatedBootloader(F1_CHIP), EmulatedBootloader(F1_CHIP)
    with serve_pty(theirs) as port:
        w = stm32flash("-w", str(small), "-v", port)
        assert w.returncode == 0, w.stdout + w.stderr
    with serve_pty(ours) as port, serial.serial_for_url(port, timeout=0.1) as ser:
        bl = Bootloader(ser, Timeouts.scaled(0.2))
        bl.connect()
        assert bl.chip_id() == 0x410 and bl.commands[6] == 0x43
        program(bl, load_image(small, base=0x08000000), F1)
    assert theirs.erased == ours.erased == [0, 1, 2, 3, 4]  # 1 KB pages for 5000 bytes
    assert theirs.flash == ours.flash and bytes(ours.flash[:5000]) == data
