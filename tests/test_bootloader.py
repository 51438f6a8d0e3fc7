"""AN3155 bytes on the wire, image loading, flash planning, and the host client against the emulator."""
from __future__ import annotations

import json
import random
import shutil
import socket
import subprocess
from pathlib import Path

import pytest
import serial

from tinyml.errors import DoesNotFit
from tinyml.sim.bootloader import Bootloader, FlashError, FlashLayout, Timeouts, plan, program
from tinyml.sim.bootloader_emulator import Chip, EmulatedBootloader, serve_pty, serve_tcp
from tinyml.sim.image import BadImage, from_segments, load_image, parse_ihex

F4 = FlashLayout.from_runs(0x08000000, [[4, 16384], [1, 65536], [7, 131072]])


# -- the emulator, byte by byte, against AN3155 as written (expected bytes typed from the note) --------
class Wire:
    def __init__(self, port: int):
        self.s = socket.create_connection(("127.0.0.1", port))
        self.s.settimeout(0.3)

    def talk(self, data: bytes, n: int) -> bytes:
        """Send `data`, return what comes back (n bytes expected; fewer if the device stays silent)."""
        self.s.sendall(data)
        got = b""
        try:
            while len(got) < n:
                chunk = self.s.recv(n - len(got))
                if not chunk:
                    break
                got += chunk
        except socket.timeout:
            pass
        return got


@pytest.fixture
def wire():
    emu = EmulatedBootloader()
    with serve_tcp(emu) as port:
        w = Wire(port)
        assert w.talk(b"\x7f", 1) == b"\x79"  # autobaud sync
        w.emu = emu
        yield w
        w.s.close()


def test_get_lists_version_and_v31_commands(wire):
    assert wire.talk(b"\x00\xff", 15) == bytes.fromhex("79 0b 31 00 01 02 11 21 31 44 63 73 82 92 79")


def test_get_version_and_get_id(wire):
    assert wire.talk(b"\x01\xfe", 5) == bytes.fromhex("79 31 00 00 79")
    assert wire.talk(b"\x02\xfd", 5) == bytes.fromhex("79 01 04 13 79")


def test_bad_complement_unknown_command_and_sync_after_sync_are_nacked(wire):
    assert wire.talk(b"\x02\x02", 1) == b"\x1f"
    assert wire.talk(b"\x55\xaa", 1) == b"\x1f"
    assert wire.talk(b"\x7f", 1) == b""  # a synced device takes 0x7F as a command byte...
    assert wire.talk(b"\x7f", 1) == b"\x1f"  # ...whose complement is wrong


def test_write_then_read_memory_with_checksums(wire):
    # WRITE 8 bytes at 0x08000000: address 08 00 00 00 + XOR 08; N-1 = 07, data, XOR of 07 and data
    data = bytes.fromhex("0011223344556677")
    cs = 0x07
    for b in data:
        cs ^= b
    assert wire.talk(b"\x31\xce", 1) == b"\x79"
    assert wire.talk(bytes.fromhex("08 00 00 00 08"), 1) == b"\x79"
    assert wire.talk(b"\x07" + data + bytes([cs]), 1) == b"\x79"
    # READ 8 bytes back: N-1 = 07 and its complement F8
    assert wire.talk(b"\x11\xee", 1) == b"\x79"
    assert wire.talk(bytes.fromhex("08 00 00 00 08"), 1) == b"\x79"
    assert wire.talk(b"\x07\xf8", 9) == b"\x79" + data


def test_write_rejects_bad_checksum_unaligned_length_and_leaves_flash_erased(wire):
    assert wire.talk(b"\x31\xce", 1) + wire.talk(bytes.fromhex("08 00 00 00 08"), 1) == b"\x79\x79"
    assert wire.talk(bytes.fromhex("03 de ad be ef 00"), 1) == b"\x1f"  # checksum should be 03^de^ad^be^ef = 0x23
    assert wire.talk(b"\x31\xce", 1) + wire.talk(bytes.fromhex("08 00 00 00 08"), 1) == b"\x79\x79"
    assert wire.talk(bytes.fromhex("02 01 02 03 02"), 1) == b"\x1f"  # 3 bytes: not a multiple of 4
    assert wire.talk(b"\x31\xce", 1) + wire.talk(bytes.fromhex("08 00 00 01 09"), 1) == b"\x79\x1f"  # unaligned
    assert bytes(wire.emu.flash[:4]) == b"\xff" * 4


def test_addresses_outside_memory_and_bad_address_checksum_are_nacked(wire):
    assert wire.talk(b"\x11\xee", 1) + wire.talk(bytes.fromhex("08 00 00 00 09"), 1) == b"\x79\x1f"
    assert wire.talk(b"\x11\xee", 1) + wire.talk(bytes.fromhex("09 00 00 00 09"), 1) == b"\x79\x1f"
    # the ROM bootloader's own SRAM (below 0x20003000 on an F405) cannot be written
    assert wire.talk(b"\x31\xce", 1) + wire.talk(bytes.fromhex("20 00 10 00 30"), 1) == b"\x79\x1f"


def test_extended_erase_pages_and_mass_erase(wire):
    wire.emu.flash[:] = b"\x00" * len(wire.emu.flash)
    # erase sectors 1 and 5: N-1 = 0001, pages 0001 0005, checksum 00^01^00^01^00^05 = 05
    assert wire.talk(b"\x44\xbb", 1) + wire.talk(bytes.fromhex("00 01 00 01 00 05 05"), 1) == b"\x79\x79"
    assert wire.emu.erased == [1, 5]
    assert wire.emu.flash[0x4000:0x8000] == b"\xff" * 0x4000 and wire.emu.flash[0x3fff] == 0
    assert wire.emu.flash[0x20000:0x40000] == b"\xff" * 0x20000 and wire.emu.flash[0x40000] == 0
    assert wire.talk(b"\x44\xbb", 1) + wire.talk(bytes.fromhex("00 00 00 0c 0d"), 1) == b"\x79\x1f"  # no sector 12
    assert wire.talk(b"\x44\xbb", 1) + wire.talk(bytes.fromhex("ff ff 00"), 1) == b"\x79\x79"  # mass erase
    assert wire.emu.flash == b"\xff" * len(wire.emu.flash)


def test_legacy_erase_on_a_v22_bootloader():
    chip = Chip(pid=0x410, version=0x22, flash=FlashLayout.from_runs(0x08000000, [[128, 1024]]), ram_size=20480,
                ram_reserved=0x200, extended_erase=False)
    emu = EmulatedBootloader(chip)
    emu.flash[:] = b"\x00" * len(emu.flash)
    with serve_tcp(emu) as port:
        w = Wire(port)
        w.talk(b"\x7f", 1)
        assert w.talk(b"\x00\xff", 15) == bytes.fromhex("79 0b 22 00 01 02 11 21 31 43 63 73 82 92 79")
        assert w.talk(b"\x43\xbc", 1) + w.talk(bytes.fromhex("01 02 07 04"), 1) == b"\x79\x79"  # pages 2, 7
        assert emu.erased == [2, 7]
        assert w.talk(b"\x43\xbc", 1) + w.talk(bytes.fromhex("ff 00"), 1) == b"\x79\x79"  # global erase
        assert emu.flash == b"\xff" * len(emu.flash)


def test_readout_protection_blocks_reads_until_unprotect_mass_erases(wire):
    wire.emu.flash[:4] = b"\x12\x34\x56\x78"
    assert wire.talk(b"\x82\x7d", 2) == b"\x79\x79"  # protect, then the device resets
    assert wire.talk(b"\x7f", 1) == b"\x79"  # so it needs a new sync
    assert wire.talk(b"\x11\xee", 1) == b"\x1f"
    assert wire.talk(b"\x92\x6d", 2) == b"\x79\x79"
    assert wire.talk(b"\x7f", 1) == b"\x79"
    assert wire.talk(b"\x11\xee", 1) == b"\x79"
    assert wire.talk(bytes.fromhex("08 00 00 00 08"), 1) + wire.talk(b"\x03\xfc", 5) == b"\x79\x79" + b"\xff" * 4


def test_write_protected_sector_refuses_erase_until_unprotected(wire):
    assert wire.talk(b"\x63\x9c", 1) + wire.talk(bytes.fromhex("00 02 02"), 1) == b"\x79\x79"  # protect sector 2
    assert wire.talk(b"\x7f", 1) == b"\x79"
    assert wire.talk(b"\x44\xbb", 1) + wire.talk(bytes.fromhex("00 00 00 02 02"), 1) == b"\x79\x1f"
    assert wire.talk(b"\x73\x8c", 2) == b"\x79\x79"
    assert wire.talk(b"\x7f", 1) == b"\x79"
    assert wire.talk(b"\x44\xbb", 1) + wire.talk(bytes.fromhex("00 00 00 02 02"), 1) == b"\x79\x79"


def test_go_hands_over_and_the_bootloader_goes_quiet(wire):
    assert wire.talk(b"\x21\xde", 1) + wire.talk(bytes.fromhex("08 00 00 00 08"), 1) == b"\x79\x79"
    assert wire.emu.go_addresses == [0x08000000]
    assert wire.talk(b"\x7f\x7f\x02\xfd", 1) == b""


# -- images ---------------------------------------------------------------------------------------
LINKER = """
MEMORY { FLASH (rx) : ORIGIN = 0x08000000, LENGTH = 1024K
         RAM (rwx) : ORIGIN = 0x20000000, LENGTH = 128K }
SECTIONS {
  .text : { KEEP(*(.vectors)) *(.text*) *(.rodata*) } > FLASH
  .data : { *(.data*) } > RAM AT > FLASH
  .bss (NOLOAD) : { *(.bss*) } > RAM
}
"""
SOURCE = """
__attribute__((section(".vectors"))) const unsigned vectors[2] = {0x20001000u, 0x08000009u};
volatile unsigned counter = 0x11223344u;            /* .data: runs from RAM, stored in flash */
unsigned zeros[64];                                 /* .bss: not in the image */
const char text[] = "tinyml image loader test";
int main(void) { zeros[3] = counter + text[1]; return (int)zeros[3]; }
"""


@pytest.fixture(scope="module")
def arm_firmware(tmp_path_factory) -> dict[str, Path]:
    """An ELF whose .data has a flash load address distinct from its RAM address, plus objcopy's .bin and .hex."""
    gcc = shutil.which("arm-none-eabi-gcc")
    assert gcc, "arm-none-eabi-gcc is required (installed by ./dev.sh)"
    d = tmp_path_factory.mktemp("fw")
    (d / "t.c").write_text(SOURCE)
    (d / "t.ld").write_text(LINKER)
    elf = d / "t.elf"
    subprocess.run([gcc, "-mcpu=cortex-m4", "-mthumb", "-O1", "-nostdlib", "-T", str(d / "t.ld"), str(d / "t.c"),
                    "-o", str(elf)], check=True)
    for fmt, ext in (("binary", "bin"), ("ihex", "hex")):
        subprocess.run(["arm-none-eabi-objcopy", "-O", fmt, str(elf), str(d / f"t.{ext}")], check=True)
    return {"elf": elf, "bin": d / "t.bin", "hex": d / "t.hex"}


def test_elf_hex_and_bin_give_the_same_flash_bytes_as_objcopy(arm_firmware):
    elf = load_image(arm_firmware["elf"])
    hexed = load_image(arm_firmware["hex"])
    flat = load_image(arm_firmware["bin"], base=0x08000000)
    raw = arm_firmware["bin"].read_bytes()
    assert elf.segments == hexed.segments == flat.segments
    assert elf.start == 0x08000000 and elf.end == 0x08000000 + len(raw)
    assert raw.find(bytes.fromhex("44332211")) > 0  # .data's initial value is stored in flash
    assert elf.entry is not None


def test_malformed_elf_is_a_bad_image(arm_firmware, tmp_path):
    data = arm_firmware["elf"].read_bytes()
    for cut, message in ((40, "truncated"), (0x34, "past the end")):  # inside the header; before the program headers
        bad = tmp_path / f"cut{cut}.elf"
        bad.write_bytes(data[:cut])
        with pytest.raises(BadImage, match=message):
            load_image(bad)


@pytest.mark.parametrize("text, message", [
    (":0400000001020304F2\n", "end-of-file"),  # no EOF record
    (":0400000001020304F0\n:00000001FF\n", "checksum"),
    (":0500000001020304F2\n:00000001FF\n", "length"),
    (":04000000010203ZZF2\n:00000001FF\n", "hex digits"),
    (":0400000001020304F2\n:0400020001020304F0\n:00000001FF\n", "overlap"),
])
def test_malformed_hex_names_the_problem(text, message):
    with pytest.raises(BadImage, match=message):
        parse_ihex(text.encode())


def test_hex_extended_linear_address_and_start_address():
    text = ":020000040800F2\n:0400100001020304E2\n:04000005080001C925\n:00000001FF\n"
    img = parse_ihex(text.encode())
    assert [(s.address, s.data) for s in img.segments] == [(0x08000010, b"\x01\x02\x03\x04")]
    assert img.entry == 0x080001C9


def test_bin_needs_a_base_and_missing_file_is_one_line(tmp_path):
    (tmp_path / "a.bin").write_bytes(b"\x00" * 8)
    with pytest.raises(BadImage, match="base address"):
        load_image(tmp_path / "a.bin")
    with pytest.raises(BadImage, match="cannot read"):
        load_image(tmp_path / "missing.elf")


# -- planning: only the pages the image needs ------------------------------------------------------
def test_layout_page_numbers_follow_f4_sectors():
    assert F4.size == 1 << 20
    assert [F4.page_of(a) for a in (0x08000000, 0x08003fff, 0x08004000, 0x08010000, 0x08020000, 0x080fffff)] == \
        [0, 0, 1, 4, 5, 11]
    assert list(F4.pages_for(0x08003f00, 0x08010001)) == [0, 1, 2, 3, 4]


def test_plan_erases_only_touched_pages_and_pads_blocks_with_erased_bytes():
    img = from_segments([(0x08000004, b"\x01" * 8), (0x08020100, b"\x02" * 300)], None, "t")
    p = plan(img, F4)
    assert p.pages == [0, 5]
    assert sorted(p.blocks) == [0x08000000, 0x08020100, 0x08020200]
    assert p.blocks[0x08000000] == b"\xff" * 4 + b"\x01" * 8 + b"\xff" * 244
    assert p.blocks[0x08020200] == b"\x02" * 44 + b"\xff" * 212


def test_plan_refuses_oversized_and_misplaced_images():
    with pytest.raises(DoesNotFit, match="1,048,577 bytes"):
        plan(from_segments([(0x08000000, b"\x00" * ((1 << 20) + 1))], None, "big"), F4)
    with pytest.raises(FlashError, match="outside"):
        plan(from_segments([(0x20000000, b"\x00" * 16)], None, "ram"), F4)


# -- the host client against the emulator ----------------------------------------------------------
def random_image(rng: random.Random) -> object:
    return from_segments([(0x08000000, rng.randbytes(40_000)), (0x08020000 + 12, rng.randbytes(1_001))], None, "r")


@pytest.mark.parametrize("transport", ["pty", "tcp"])
def test_program_writes_verifies_and_keeps_untouched_pages(transport):
    rng = random.Random(7)
    img = random_image(rng)
    emu = EmulatedBootloader()
    emu.flash[:] = bytes(len(emu.flash))  # all zero: the old firmware, which must survive outside the image
    server = serve_pty(emu) if transport == "pty" else serve_tcp(emu)
    with server as where:
        url = where if transport == "pty" else f"socket://127.0.0.1:{where}"
        with serial.serial_for_url(url, timeout=0.1) as ser:
            bl = Bootloader(ser, Timeouts.scaled(0.2), retries=3)
            bl.connect()
            assert bl.chip_id() == 0x413 and bl.version == 0x31
            rep = program(bl, img, F4, go=0x08000000)
    assert rep.pages_erased == [0, 1, 2, 5] and emu.erased == [0, 1, 2, 5]
    for seg in img.segments:
        assert bytes(emu.flash[seg.address - F4.origin:seg.end - F4.origin]) == seg.data
    assert emu.flash[0x0C000:0x20000] == bytes(0x14000)  # sectors 3 and 4 were never erased
    assert emu.flash[0x40000:] == bytes(len(emu.flash) - 0x40000)
    assert emu.go_addresses == [0x08000000] and rep.recoveries == 0


# -- `tinyml flash` and the board files --------------------------------------------------------------
def cli_flash(emu: EmulatedBootloader, fw: Path, *extra: str) -> int:
    from tinyml.cli import main

    with serve_tcp(emu) as port:
        return main(["flash", str(fw), "--port", f"socket://127.0.0.1:{port}", "--timeout", "0.1", *extra])


def test_without_board_the_chip_id_picks_the_board_and_its_layout(tmp_path, capsys):
    fw = tmp_path / "fw.bin"
    fw.write_bytes(random.Random(1).randbytes(10_000))
    l4 = Chip(pid=0x470, version=0x31, flash=FlashLayout.from_runs(0x08000000, [[512, 4096]]), ram_size=640 * 1024)
    emu = EmulatedBootloader(l4)
    assert cli_flash(emu, fw, "--json", "-") == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["board"] == "nucleo-l4r5zi" and rep["chip_id"] == "0x470" and rep["bootloader_version"] == "3.1"
    assert rep["pages_erased"] == [0, 1, 2] == emu.erased  # 4 KB pages on the L4R5 (RM0432)
    assert rep["verified"] is True and rep["go"] == "0x08000000"
    assert bytes(emu.flash[:10_000]) == fw.read_bytes()


def test_unknown_chip_and_boards_without_a_uart_bootloader_are_refused(tmp_path, capsys):
    fw = tmp_path / "fw.bin"
    fw.write_bytes(b"\x00" * 64)
    assert cli_flash(EmulatedBootloader(Chip(pid=0x4FF)), fw) == 2
    assert "chip ID 0x4ff matches no board file: pass --board" in capsys.readouterr().err
    assert cli_flash(EmulatedBootloader(), fw, "--board", "mps2-an386") == 2
    assert "not flashed over the STM32 UART bootloader" in capsys.readouterr().err
    assert cli_flash(EmulatedBootloader(), fw, "--board", "no-such-board") == 2
    assert "unknown board" in capsys.readouterr().err


def test_elf_is_flashed_at_its_load_addresses(arm_firmware, capsys):
    emu = EmulatedBootloader()
    assert cli_flash(emu, arm_firmware["elf"], "--board", "stm32f405", "--no-go") == 0
    raw = arm_firmware["bin"].read_bytes()
    assert bytes(emu.flash[:len(raw)]) == raw and emu.go_addresses == [] and emu.erased == [0]
    assert "verified" in capsys.readouterr().out


def test_emulator_command_line_serves_tcp(tmp_path, capsys):
    import sys

    fw = tmp_path / "fw.bin"
    fw.write_bytes(random.Random(2).randbytes(1000))
    proc = subprocess.Popen([sys.executable, "-m", "tinyml.sim.bootloader_emulator", "--tcp", "0", "--pid", "0x431"],
                            stdout=subprocess.PIPE, text=True)
    try:
        url = proc.stdout.readline().strip()
        assert url.startswith("socket://127.0.0.1:")
        from tinyml.cli import main

        assert main(["flash", str(fw), "--port", url, "--timeout", "0.2", "--json", "-"]) == 0
        assert json.loads(capsys.readouterr().out)["board"] == "nucleo-f411re"
    finally:
        proc.terminate()
        proc.wait(10)
