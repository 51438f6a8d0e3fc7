"""Renode: the .resc/.robot (and .repl) generated for every board, checked without Renode."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tinyml.board import all_boards, board_names, load_board
from tinyml.codegen.renode import write_renode_files

ROBOT_SECTIONS = ["*** Settings ***", "*** Variables ***", "*** Test Cases ***"]


def robot_tables(text: str) -> dict[str, list[list[str]]]:
    """Robot's plain-text format: sections, rows split on two or more spaces."""
    tables: dict[str, list[list[str]]] = {}
    current = None
    for line in text.splitlines():
        if line.startswith("***"):
            current = line.strip()
            tables[current] = []
        elif line.strip() and current:
            cells = re.split(r" {2,}", line.rstrip())
            tables[current].append(cells)
    return tables


@pytest.mark.parametrize("name", board_names())
def test_every_board_gets_a_resc_and_a_robot_test(name: str, tmp_path: Path) -> None:
    board = load_board(name)
    files = write_renode_files(board, tmp_path, selftest_crc=0x0BADF00D)
    resc = files["resc"].read_text().splitlines()
    assert "mach create $name" in resc and "sysbus LoadELF $elf" in resc
    platform = [ln for ln in resc if ln.startswith("machine LoadPlatformDescription @")]
    assert len(platform) == 1
    if board.renode.platform == "generated":
        assert platform[0].endswith(f"@{name}.repl") and files["repl"].exists()
    else:
        assert platform[0].endswith("@" + board.renode.platform) and "repl" not in files

    tables = robot_tables(files["robot"].read_text())
    assert list(tables) == ROBOT_SECTIONS
    settings = {row[0]: row[1:] for row in tables["*** Settings ***"]}
    assert settings["Resource"] == ["${RENODEKEYWORDS}"] and "Suite Setup" in settings
    variables = {row[0]: row[1] for row in tables["*** Variables ***"]}
    assert variables["${UART}"] == board.renode.uart and variables["${RESC}"].endswith(f"/{name}.resc")
    case = tables["*** Test Cases ***"]
    assert len(case[0]) == 1  # the test's name, then its indented steps
    steps = [row[1:] for row in case[1:]]
    assert ["Create Terminal Tester", "${UART}", "timeout=60"] in steps
    assert ["Start Emulation"] in steps
    assert steps[-2:] == [["Wait For Line On Uart", f"tinyml {name} ready"],
                          ["Wait For Line On Uart", "tinyml selftest PASS crc=0badf00d"]]


@pytest.mark.parametrize("board", [b for b in all_boards() if b.renode.platform == "generated"],
                         ids=lambda b: b.name)
def test_generated_platforms_describe_the_board_memory_and_uart(board, tmp_path: Path) -> None:  # noqa: ANN001
    text = write_renode_files(board, tmp_path, None)["repl"].read_text()
    cpu = re.search(r'cpuType: "([\w-]+)"', text).group(1)
    assert cpu.startswith(board.core)
    memories = dict(re.findall(r"Memory\.MappedMemory @ sysbus (0x[0-9A-F]+)\n\s+size: (0x[0-9A-F]+)", text))
    assert {int(a, 16): int(s, 16) for a, s in memories.items()} == {board.flash.origin: board.flash.size,
                                                                    board.ram.origin: board.ram.size}
    uart = board.renode.uart.split(".")[1]
    assert re.search(rf"^{uart}: {re.escape(board.renode.uart_model)} @ sysbus 0x{board.uart.base:08X}$", text, re.M)


def test_without_a_selftest_the_robot_test_waits_for_the_banner_only(tmp_path: Path) -> None:
    files = write_renode_files(load_board("stm32f405"), tmp_path, None)
    waits = [ln for ln in files["robot"].read_text().splitlines() if "Wait For Line On Uart" in ln]
    assert len(waits) == 1 and waits[0].endswith("tinyml stm32f405 ready")


def test_sim_renode_without_renode_says_so_in_one_line(zoo_path, tmp_path: Path) -> None:
    env = {**os.environ, "PATH": str(Path(sys.executable).parent) + os.pathsep + "/usr/bin:/bin"}
    if shutil.which("renode", path=env["PATH"]):
        pytest.skip("Renode is installed here")
    proc = subprocess.run([sys.executable, "-m", "tinyml.cli", "validate", str(zoo_path("op_fc")), "--board",
                           "stm32f405", "--sim", "renode", "--inputs", "2"], capture_output=True, text=True,
                          env=env, cwd=tmp_path, timeout=300)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Renode is not installed" in lines[0] and "renode.io" in lines[0]
