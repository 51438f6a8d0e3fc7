"""Firmware builds: real memory maps, size reports that agree with binutils, and models that do not fit."""
from __future__ import annotations

import json
import re
import struct
import subprocess
from pathlib import Path

import pytest

from firmware_graphs import resized_board, resized_board_text, tiny_graph
from tinyml.board import board_names, load_board
from tinyml.cli import main
from tinyml.codegen.firmware import build_firmware, load_firmware
from tinyml.errors import DoesNotFit
from tinyml.schedule.memory import plan_memory

FLASH_SECTIONS = (".isr_vector", ".text", ".rodata", ".ARM.extab", ".ARM.exidx", ".init_array", ".fini_array", ".data")


def size_a(elf: Path) -> dict[str, tuple[int, int]]:
    """section -> (size, address) as arm-none-eabi-size -A prints them."""
    out = subprocess.run(["arm-none-eabi-size", "-A", str(elf)], capture_output=True, text=True, check=True).stdout
    rows = [ln.split() for ln in out.splitlines()[2:]]
    unloaded = (".debug", ".comment", ".ARM.attributes")
    return {r[0]: (int(r[1]), int(r[2])) for r in rows
            if len(r) == 3 and r[0].startswith(".") and not r[0].startswith(unloaded) and int(r[1])}


def map_memory(map_file: Path) -> dict[str, tuple[int, int]]:
    """The linker map's "Memory Configuration" table: region -> (origin, length)."""
    text = map_file.read_text()
    table = text.split("Memory Configuration", 1)[1].split("Linker script and memory map", 1)[0]
    return {m[0]: (int(m[1], 16), int(m[2], 16)) for m in re.findall(r"^(\w+)\s+0x([0-9a-f]+)\s+0x([0-9a-f]+)", table, re.M)}


def build(board, tmp_path: Path, name: str = "fw", **kw):  # noqa: ANN001, ANN201
    g = kw.pop("graph", None) or tiny_graph()
    return build_firmware(g, plan_memory(g), board, tmp_path / name, **kw)


@pytest.mark.parametrize("name", board_names())
def test_every_board_links_at_its_real_addresses_and_sizes_agree_with_binutils(name: str, tmp_path: Path) -> None:
    board = load_board(name)
    fw = build(board, tmp_path)
    for variant, image in fw.images.items():
        elf = fw.path / image.elf
        sizes = size_a(elf)
        ours = {s.name: (s.size, s.vma) for s in image.sections if s.size}
        assert ours == sizes
        assert image.flash_bytes == sum(sizes.get(s, (0, 0))[0] for s in FLASH_SECTIONS)
        assert image.static_ram_bytes == sizes.get(".data", (0, 0))[0] + sizes[".bss"][0]

        regions = map_memory(fw.path / image.map)
        flash_origin = board.flash.origin if variant == "board" else board.qemu.machine.flash.origin
        ram_origin = board.ram.origin if variant == "board" else board.qemu.machine.ram.origin
        assert regions["FLASH"] == (flash_origin, board.flash.size)
        assert regions["RAM"] == (ram_origin, board.ram.size)
        assert image.regions["RAM"]["used"] <= board.ram.size

        words = struct.unpack("<2I", elf.with_suffix(".bin").read_bytes()[:8]) if variant == "board" else None
        if words:  # the vector table: initial SP at the top of the real RAM, Thumb reset vector in flash
            assert words[0] == board.ram.origin + board.ram.size
            assert words[1] & 1 and board.flash.origin <= words[1] < board.flash.origin + board.flash.size

    attrs = subprocess.run(["arm-none-eabi-readelf", "-A", str(fw.path / "obj/lib/tinyml_model.o")],
                           capture_output=True, text=True, check=True).stdout
    assert "Tag_CPU_arch: v7E-M" in attrs  # Cortex-M4 and M7 both have the DSP extension
    fp_arch = {"fpv4-sp-d16": "VFPv4-D16", "fpv5-sp-d16": "FPv5/FP-D16 for ARMv8", "fpv5-d16": "FPv5/FP-D16 for ARMv8"}
    assert f"Tag_FP_arch: {fp_arch[board.fpu]}" in attrs
    assert ("Tag_ABI_VFP_args: VFP registers" in attrs) == (board.fpu != "none")
    assert ("qemu" in fw.images) == (not board.qemu.same_firmware)


def test_weights_go_to_flash_and_the_arena_to_ram(tmp_path: Path) -> None:
    g = tiny_graph(const_elems=3000)
    fw = build("nucleo-f411re", tmp_path, graph=g)
    image = fw.images["board"]
    assert fw.weights_bytes >= 3000
    assert image.contributions[".rodata"]["model"] >= fw.weights_bytes
    assert image.contributions[".bss"]["model"] >= plan_memory(g).arena_bytes >= 2 * 3000
    assert json.loads((fw.path / "firmware.json").read_text())["images"]["board"]["flash_bytes"] == image.flash_bytes


def test_an_arena_bigger_than_the_board_fails_before_compiling(tmp_path: Path) -> None:
    g = tiny_graph(shape=(1, 128, 128, 4))  # 64 KiB tensors, two of them live at once
    arena = plan_memory(g).arena_bytes
    with pytest.raises(DoesNotFit) as e:
        build("nucleo-f411re", tmp_path, graph=g)
    assert e.value.available == 128 * 1024 and e.value.needed >= arena + 4096 > 128 * 1024
    assert f"{e.value.needed:,} bytes" in str(e.value) and "131,072 bytes" in str(e.value)
    assert not (tmp_path / "fw").exists()


def test_ram_overflow_is_caught_at_link_time_with_the_numbers(tmp_path: Path) -> None:
    g = tiny_graph()
    arena = plan_memory(g).arena_bytes
    ram = arena + 32 + 1024 + 8  # passes the arena-only check, not the firmware's own .bss
    board = resized_board("mps2-an386", ram=ram)
    with pytest.raises(DoesNotFit) as e:
        build(board, tmp_path, min_stack=1024)
    assert e.value.available == ram and ram < e.value.needed < ram + 1024
    assert "RAM" in e.value.what


def test_flash_overflow_is_caught_before_or_at_link_time(tmp_path: Path) -> None:
    board = resized_board("mps2-an386", flash=16 * 1024)
    g = tiny_graph(const_elems=20_000)
    with pytest.raises(DoesNotFit, match="weights alone") as early:
        build(board, tmp_path, graph=g)
    with pytest.raises(DoesNotFit) as late:
        build(board, tmp_path, graph=g, check_fit=False)
    assert early.value.available == late.value.available == 16 * 1024
    assert late.value.needed > early.value.needed >= 20_000  # the linker counts the code too


def test_a_failed_build_leaves_the_previous_output_in_place(tmp_path: Path) -> None:
    fw = build("nucleo-f411re", tmp_path)
    before = (fw.path / "firmware.elf").read_bytes()
    with pytest.raises(DoesNotFit):
        build("nucleo-f411re", tmp_path, graph=tiny_graph(shape=(1, 128, 128, 4)))
    assert (fw.path / "firmware.elf").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fw"]


def test_the_makefile_rebuilds_the_same_images(tmp_path: Path) -> None:
    fw = build("stm32f746g-disco", tmp_path)
    expected = {v: size_a(fw.path / im.elf) for v, im in fw.images.items()}
    subprocess.run(["make", "-s", "clean"], cwd=fw.path, check=True, capture_output=True)
    assert not (fw.path / "firmware.elf").exists()
    subprocess.run(["make", "-s"], cwd=fw.path, check=True, capture_output=True)
    subprocess.run(["make", "-s", "qemu"], cwd=fw.path, check=True, capture_output=True)
    assert {v: size_a(fw.path / im.elf) for v, im in fw.images.items()} == expected
    assert (fw.path / "firmware.hex").exists() and (fw.path / "firmware.bin").exists()


def test_size_optimisation_and_per_layer_profiling_are_build_options(tmp_path: Path) -> None:
    o2 = build("stm32f405", tmp_path, "o2")
    os_ = build("stm32f405", tmp_path, "os", optimize="Os", per_layer=True)
    assert "-Os" in (os_.path / "Makefile").read_text() and "-O2" in (o2.path / "Makefile").read_text()
    text = {fw.optimize: next(s.size for s in fw.images["board"].sections if s.name == ".text") for fw in (o2, os_)}
    assert text["Os"] < text["O2"]
    nm = subprocess.run(["arm-none-eabi-nm", str(os_.path / "firmware.elf")], capture_output=True, text=True).stdout
    assert " tm_layer_mark" in nm and "#define TM_PER_LAYER 1" in (os_.path / "board" / "tm_config.h").read_text()
    assert load_firmware(os_.path).per_layer and not load_firmware(o2.path).per_layer


def test_build_command_reports_sizes_and_refuses_a_model_that_does_not_fit(zoo_path, tmp_path: Path,
                                                                            capsys) -> None:
    model = str(zoo_path("op_fc"))
    assert main(["build", model, "--board", "nucleo-f411re", "-o", str(tmp_path / "fw"), "--json", "-"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["board"] == "nucleo-f411re"
    assert report["images"]["board"]["flash_bytes"] == load_firmware(tmp_path / "fw").images["board"].flash_bytes
    assert (tmp_path / "fw" / "renode" / "nucleo-f411re.robot").exists()

    tiny = tmp_path / "tiny-ram.toml"
    tiny.write_text(resized_board_text("nucleo-f411re", ram=4096))
    assert main(["build", model, "--board", str(tiny), "-o", str(tmp_path / "fw2")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "does not fit" in err[0] and "4,096 bytes" in err[0]

