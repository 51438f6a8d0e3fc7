"""Board files: the shipped boards carry their datasheet figures, and broken files are refused."""
from __future__ import annotations

import json
import re
from importlib.resources import files

import pytest

from tinyml.board import BadBoard, all_boards, board_names, load_board, parse_board
from tinyml.cli import main

KIB = 1024

# Figures from the reference manuals / datasheets / AN2606 (written out here, not read from the files).
DATASHEET = {
    #  name: (core, main SRAM, flash, bootloader PID, QEMU machine)
    "stm32f746g-disco": ("cortex-m7", 320 * KIB, 1024 * KIB, 0x449, "mps2-an500"),
    "nucleo-f411re": ("cortex-m4", 128 * KIB, 512 * KIB, 0x431, "netduinoplus2"),
    "stm32f405": ("cortex-m4", 128 * KIB, 1024 * KIB, 0x413, "netduinoplus2"),
    "nucleo-h743zi": ("cortex-m7", 512 * KIB, 2048 * KIB, 0x450, "mps2-an500"),
    "nucleo-l4r5zi": ("cortex-m4", 640 * KIB, 2048 * KIB, 0x470, "mps2-an386"),
    "mps2-an386": ("cortex-m4", 4096 * KIB, 4096 * KIB, None, "mps2-an386"),
    "mps2-an500": ("cortex-m7", 4096 * KIB, 4096 * KIB, None, "mps2-an500"),
}


def shipped_text(name: str) -> str:
    return (files("tinyml.boards") / f"{name}.toml").read_text()


@pytest.mark.parametrize("name", sorted(DATASHEET))
def test_required_boards_have_their_real_figures(name: str) -> None:
    core, ram, flash, pid, machine = DATASHEET[name]
    b = load_board(name)
    assert (b.core, b.ram.size, b.flash.size, b.flashing.pid, b.qemu.machine.name) == (core, ram, flash, pid, machine)
    assert b.qemu.machine.core == b.core  # the simulator runs the same core


def test_every_shipped_board_loads_and_is_listed() -> None:
    assert set(DATASHEET) <= set(board_names())
    assert [b.name for b in all_boards()] == board_names()


def test_sram_regions_are_itemised_with_real_sizes() -> None:
    f746 = {r.name: r.size for r in load_board("stm32f746g-disco").ram_regions}
    assert (f746["DTCM"], f746["SRAM1"], f746["SRAM2"]) == (64 * KIB, 240 * KIB, 16 * KIB)
    h743 = load_board("nucleo-h743zi")
    assert h743.ram.name == "AXI_SRAM" and h743.ram.origin == 0x24000000
    assert {r.name for r in h743.ram_regions} >= {"DTCM", "AXI_SRAM", "SRAM1", "SRAM2", "SRAM3", "SRAM4"}
    f405 = load_board("stm32f405")
    assert {r.name: r.size for r in f405.ram_regions}["CCM"] == 64 * KIB
    assert f405.ram.origin == 0x20000000 and f405.ram.name == "SRAM1+SRAM2"


def test_stm32_sector_layouts_match_the_reference_manuals() -> None:
    f405 = load_board("stm32f405").sector_layout()
    assert [s for _, s in f405] == [16 * KIB] * 4 + [64 * KIB] + [128 * KIB] * 7
    assert f405[4] == (0x08010000, 64 * KIB) and f405[-1] == (0x080E0000, 128 * KIB)
    assert [s for _, s in load_board("stm32f746g-disco").sector_layout()] == [32 * KIB] * 4 + [128 * KIB] + [256 * KIB] * 3
    for b in all_boards():
        if b.flashing.method == "stm32-uart-bootloader":
            layout = b.sector_layout()
            assert layout[0][0] == b.flash.origin and sum(s for _, s in layout) == b.flash.size


def test_uart_divisors_follow_the_boot_clock() -> None:
    assert load_board("nucleo-f411re").uart.divisor == 139       # 16 MHz / 115200 = 138.9
    assert load_board("nucleo-h743zi").uart.divisor == 556       # 64 MHz / 115200 = 555.6
    assert load_board("nucleo-l4r5zi").uart.divisor == 8889      # 256 * 4 MHz / 115200 (LPUART)


def test_target_and_compiler_flags_come_from_the_core() -> None:
    b = load_board("stm32f746g-disco")
    t = b.target()
    assert (t.name, t.dsp, t.fpu) == ("cortex-m7", True, True)
    assert b.cpu_flags() == ["-mcpu=cortex-m7", "-mthumb", "-mfpu=fpv5-sp-d16", "-mfloat-abi=hard"]
    assert "-mfpu=fpv5-d16" in load_board("nucleo-h743zi").cpu_flags()


def test_adding_a_board_is_adding_a_file(tmp_path) -> None:
    text = shipped_text("nucleo-f411re").replace('name = "nucleo-f411re"', 'name = "my-f411"')
    path = tmp_path / "my-f411.toml"
    path.write_text(text)
    b = load_board(str(path))
    assert b.name == "my-f411" and b.ram.size == 128 * KIB


BREAKAGES = [
    ("unknown key", lambda t: t.replace("dsp = true", "dsp = true\ndps = true"), "unknown key"),
    ("not toml", lambda t: t + "\n[[[", "not valid TOML"),
    ("missing core", lambda t: re.sub(r'^core = .*$', "", t, flags=re.M), "missing key 'core'"),
    ("wrong type", lambda t: t.replace("clock_hz = 100_000_000", 'clock_hz = "fast"'), "must be int"),
    ("fpu of another core", lambda t: t.replace('fpu = "fpv4-sp-d16"', 'fpu = "fpv5-d16"'), "does not exist"),
    ("sectors do not add up", lambda t: t.replace("[3, 0x20000]", "[2, 0x20000]"), "do not add up"),
    ("qemu core differs", lambda t: t.replace('machine = "netduinoplus2"', 'machine = "mps2-an500"'), "has a cortex-m7"),
    ("unknown machine", lambda t: t.replace('machine = "netduinoplus2"', 'machine = "virt"'), "unknown QEMU machine"),
    ("unreachable baud", lambda t: t.replace("baud = 115200", "baud = 4000000"), "out of reach"),
    ("no pid", lambda t: re.sub(r"^pid = .*$", "", t, flags=re.M), "needs the chip's pid"),
    ("overlap", lambda t: t + '\n[[memory.ram]]\nname = "X"\norigin = 0x20001000\nsize = 0x100\n', "overlap"),
]


@pytest.mark.parametrize("what,edit,words", BREAKAGES, ids=[b[0] for b in BREAKAGES])
def test_broken_board_files_are_refused_with_the_reason(what: str, edit, words: str) -> None:
    text = shipped_text("nucleo-f411re")
    parse_board(text)  # the unedited file is fine
    with pytest.raises(BadBoard, match=re.escape(words)):
        parse_board(edit(text), "edited.toml")


def test_main_ram_regions_must_be_contiguous() -> None:
    text = shipped_text("stm32f405").replace("origin = 0x2001C000", "origin = 0x2001D000")
    with pytest.raises(BadBoard, match="not contiguous"):
        parse_board(text)


def test_unknown_board_names_list_the_known_ones() -> None:
    with pytest.raises(BadBoard, match="known boards: .*stm32f405"):
        load_board("stm32f999")
    with pytest.raises(BadBoard):
        load_board("../../etc/passwd")


def test_boards_command_lists_every_board_as_json(capsys) -> None:
    assert main(["boards", "--json", "-"]) == 0
    data = json.loads(capsys.readouterr().out)
    rows = {b["name"]: b for b in data["boards"]}
    assert set(rows) == set(board_names())
    assert rows["stm32f746g-disco"]["ram"]["size"] == 320 * KIB
    assert rows["nucleo-l4r5zi"]["flashing"]["pid"] == 0x470
    assert rows["stm32f405"]["qemu"]["machine"] == "netduinoplus2"
