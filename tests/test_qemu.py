"""The simulator in the loop: framing, exact instruction counts, faults and hangs, the whole zoo on M4 and M7."""
from __future__ import annotations

import json
import struct
import subprocess
import time
import zlib
from pathlib import Path

import numpy as np
import pytest

from firmware_graphs import random_samples, resized_board, tiny_graph
from tinyml import zoo
from tinyml.cli import main
from tinyml.codegen.firmware import Selftest, build_firmware
from tinyml.errors import DoesNotFit
from tinyml.oracle import TflmOracle, random_inputs
from tinyml.pipeline import compile_model
from tinyml.reference import run_reference
from tinyml.schedule.memory import plan_memory
from tinyml.schedule.patches import PatchOptions
from tinyml.sim.protocol import Fault, FirmwareFault, FrameDecoder, Hello, Link, LinkError, Msg, encode
from tinyml.sim.qemu import PipeTransport, QemuRunner, board_runner
from tinyml.validation import compare

M4_BOARD, M7_BOARD = "stm32f405", "stm32f746g-disco"  # netduinoplus2 (TIM2), mps2-an500 (plugin)


# -- the framing, host side (no simulator) -------------------------------------------


def test_frame_layout_is_sync_header_payload_crc() -> None:
    frame = encode(Msg.QUIT, 7, b"\x00\x03")
    body = bytes([0x03, 7]) + struct.pack("<I", 2) + b"\x00\x03"
    assert frame == b"\xa5\x5a" + body + struct.pack("<I", zlib.crc32(body))


def test_decoder_keeps_text_resyncs_after_corruption_and_takes_bytes_one_at_a_time() -> None:
    good = encode(Msg.RESULT, 1, b"payload")
    bad = bytearray(encode(Msg.RESULT, 2, b"garbled"))
    bad[-6] ^= 0x40  # a payload bit flips on the wire
    huge = b"\xa5\x5a\x82\x03" + struct.pack("<I", 1 << 30)  # a length no device sends
    stream = b"tinyml board ready\r\n" + bytes(bad) + huge + good
    d = FrameDecoder()
    frames = [f for byte in stream for f in d.feed(bytes([byte]))]
    assert [(f.type, f.seq, f.payload) for f in frames] == [(Msg.RESULT, 1, b"payload")]
    assert d.dropped == 2 and d.take_text().startswith("tinyml board ready")


def test_fault_report_names_a_stack_overflow() -> None:
    # CFSR 0x92: MMARVALID | MSTKERR | DACCVIOL, MMFAR inside the 32-byte guard under the stack
    f = Fault(exception=3, cfsr=0x92, hfsr=0x40000000, mmfar=0x2000023C, bfar=0, pc=0xFFFFFFFF, lr=0xFFFFFFFF,
              sp=0x20000230, exc_return=0xFFFFFFF9, stack_bottom=0x20000240)
    text = f.describe()
    assert f.stack_overflow and "stack overflow" in text and "0x2000023c" in text and "HardFault" in text
    assert not Fault(3, 1 << 25, 0, 0, 0, 0x08000100, 0, 0x2001F000, 0, 0x20000240).stack_overflow


def test_malformed_hello_is_a_protocol_error() -> None:
    with pytest.raises(LinkError, match="malformed HELLO"):
        Hello.parse(b"\x01\x02")
    with pytest.raises(LinkError, match="protocol version 9"):
        Hello.parse(bytes([9]) + bytes(60))


# -- firmware in QEMU ---------------------------------------------------------------


def build(board, tmp_path: Path, name: str = "fw", graph=None, **kw):  # noqa: ANN001, ANN201
    g = graph or tiny_graph()
    return g, build_firmware(g, plan_memory(g), board, tmp_path / name, **kw)


def reference(g, samples: list[list[np.ndarray]]) -> list[list[np.ndarray]]:  # noqa: ANN001
    return [[run_reference(g, s)[t] for t in g.outputs] for s in samples]


@pytest.mark.slow
@pytest.mark.parametrize("board", [M4_BOARD, M7_BOARD, "mps2-an386"])
def test_outputs_match_and_instruction_counts_repeat_exactly(board: str, tmp_path: Path) -> None:
    g, fw = build(board, tmp_path)
    samples = random_samples(g, 4)
    first, second = QemuRunner(fw).run(samples), QemuRunner(fw).run(samples)
    assert compare(reference(g, samples), first.outputs).bit_exact
    assert first.extra["instructions_per_input"] == second.extra["instructions_per_input"]
    assert first.instructions == max(first.extra["instructions_per_input"]) > 1000
    assert 0 < first.stack_bytes == second.stack_bytes < first.extra["stack_available_bytes"]
    assert first.extra["firmware_ram_bytes"] == fw.qemu_image.static_ram_bytes + first.stack_bytes
    # the harness's UART and counter state is not the model's: only the library's .bss (the arena) counts
    assert first.extra["ram_bytes"] == fw.qemu_image.model_ram_bytes + first.stack_bytes
    assert fw.qemu_image.model_ram_bytes < fw.qemu_image.static_ram_bytes


@pytest.mark.slow
def test_tim2_and_the_plugin_count_the_same_instructions(tmp_path: Path) -> None:
    """Two independent counters (the F4 timer under -icount, the TCG plugin) on the same M4 code."""
    g, tim2 = build(M4_BOARD, tmp_path, "tim2")
    _, plugin = build("mps2-an386", tmp_path, "plugin")
    samples = random_samples(g, 3)
    a, b = QemuRunner(tim2).run(samples), QemuRunner(plugin).run(samples)
    assert (a.extra["counter"], b.extra["counter"]) == ("tim2", "marks")
    assert a.extra["instructions_per_input"] == b.extra["instructions_per_input"]


@pytest.mark.slow
def test_per_layer_counts_cover_every_layer(tmp_path: Path) -> None:
    g, fw = build("mps2-an500", tmp_path, per_layer=True)
    res = QemuRunner(fw).run(random_samples(g, 2))
    assert len(res.per_layer) == len(g.nodes) and all(n > 0 for n in res.per_layer)
    assert sum(res.per_layer) < res.instructions


@pytest.mark.slow
def test_a_stack_overflow_is_reported_as_a_fault_not_a_hang(tmp_path: Path) -> None:
    g, roomy = build("mps2-an386", tmp_path, "roomy")
    static = -(-roomy.qemu_image.static_ram_bytes // 32) * 32  # .data + .bss, then the guard's alignment
    board = resized_board("mps2-an386", ram=static + 32 + 48)  # 48 bytes of stack: too little
    _, fw = build(board, tmp_path, graph=g, min_stack=32)
    assert fw.qemu_image.stack_available_bytes == 48
    runner = QemuRunner(fw, timeout_s=10, boot_timeout_s=5)
    start = time.monotonic()
    with pytest.raises(FirmwareFault, match="stack overflow") as e:
        runner.run(random_samples(g, 1))
    assert time.monotonic() - start < 10
    assert e.value.fault.stack_bottom == fw.qemu_image.symbols["_stack_bottom"]
    assert runner.last_exit_status is not None  # QEMU is gone


@pytest.mark.slow
def test_a_silent_firmware_times_out_with_a_clear_error(tmp_path: Path) -> None:
    g, fw = build(M4_BOARD, tmp_path)
    fw.images["board"].serial_index = 1  # QEMU listens on USART2, the firmware talks on USART1
    runner = QemuRunner(fw, timeout_s=3, boot_timeout_s=2)
    start = time.monotonic()
    with pytest.raises(LinkError, match="no reply from the firmware within"):
        runner.run(random_samples(g, 1))
    assert time.monotonic() - start < 15


@pytest.mark.slow
def test_corrupted_and_wrong_length_requests_get_error_replies(tmp_path: Path) -> None:
    g, fw = build(M4_BOARD, tmp_path)
    runner = QemuRunner(fw)
    proc = subprocess.Popen(runner.command(None), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    try:
        link = Link(PipeTransport(proc), timeout_s=10)
        hello = link.handshake()
        assert hello.board == M4_BOARD and hello.input_bytes == [g["x"].nbytes]
        sample = random_samples(g, 1)[0][0].tobytes()
        frame = bytearray(encode(Msg.INFER, 9, sample))
        frame[20] ^= 1
        link.t.write(bytes(frame), 5)
        with pytest.raises(LinkError, match="CRC mismatch"):
            link.expect(Msg.RESULT, 9)
        with pytest.raises(LinkError, match="input size"):
            link.infer(sample[:-1])
        res = link.infer(sample)  # the link is still good
        expected = run_reference(g, [np.frombuffer(sample, np.int8).reshape(g["x"].shape)])["y"]
        assert res.outputs[0] == expected.tobytes()
        link.quit(0, 5)
        assert proc.wait(timeout=10) == 5  # semihosting exit carries the code
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.slow
def test_selftest_prints_the_line_the_renode_test_waits_for(tmp_path: Path) -> None:
    g = tiny_graph()
    sample = random_samples(g, 1)[0]
    selftest = Selftest.from_arrays(sample, reference(g, [sample])[0])
    _, fw = build(M7_BOARD, tmp_path, graph=g, selftest=selftest)
    robot = (fw.path / "renode" / f"{M7_BOARD}.robot").read_text()
    waits = [ln.split("Wait For Line On Uart", 1)[1].strip() for ln in robot.splitlines() if "Wait For Line" in ln]
    runner = QemuRunner(fw)
    runner.run([sample])
    printed = runner.uart_text.splitlines()
    assert len(waits) == 2 and all(w in printed for w in waits)
    assert f"crc={selftest.crc:08x}" in waits[1]


@pytest.mark.slow
def test_validate_board_reports_the_design_fields(zoo_path, tmp_path: Path, capsys) -> None:
    model = str(zoo_path("ds_cnn_kws"))
    reports = []
    for _ in range(2):
        assert main(["validate", model, "--board", M4_BOARD, "--inputs", "3", "--json", "-"]) == 0
        reports.append(json.loads(capsys.readouterr().out))
    r = reports[0]
    assert (r["board"], r["target"], r["inputs"], r["bit_exact"], r["mismatched_outputs"]) == \
        (M4_BOARD, "qemu:netduinoplus2", 3, True, 0)
    assert r["instructions"] == reports[1]["instructions"] > r["macs"] > 0
    assert r["ram_bytes"] == reports[1]["ram_bytes"]
    # the same image, built by hand: flash and static RAM as the linker placed them
    assert main(["build", model, "--board", M4_BOARD, "-o", str(tmp_path / "fw"), "--json", "-"]) == 0
    image = json.loads(capsys.readouterr().out)["images"]["board"]
    sections = {s["name"]: s["size"] for s in image["sections"]}
    assert r["flash_bytes"] == sum(sections.get(s, 0) for s in (".isr_vector", ".text", ".rodata", ".ARM.exidx",
                                                               ".data"))
    assert r["firmware_ram_bytes"] == sections.get(".data", 0) + sections[".bss"] + r["stack_bytes"]
    assert r["arena_bytes"] + r["stack_bytes"] <= r["ram_bytes"] < r["firmware_ram_bytes"]
    assert r["arena_bytes"] <= sections[".bss"]


# -- the whole zoo on an M4 and an M7 board -----------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("board", [M4_BOARD, M7_BOARD])
@pytest.mark.parametrize("name", zoo.names())
def test_zoo_model_is_bit_exact_on_the_simulated_board(name: str, board: str, tmp_path: Path) -> None:
    c = compile_model(zoo.path(name))
    inputs = random_inputs(c.graph, 3, seed=11)
    expected = TflmOracle(c.model_bytes).run_batch(inputs)
    try:
        runner = board_runner(board, "qemu", c, tmp_path)
    except DoesNotFit as e:  # only a model that really is too big may be refused
        assert e.needed > e.available
        return
    got = runner.run(inputs)
    cmp = compare(expected, got.outputs)
    assert cmp.bit_exact, f"{name} on {board}: {cmp.details}"
    assert got.instructions is not None and got.stack_bytes is not None


@pytest.mark.slow
@pytest.mark.parametrize("name", zoo.names())
def test_zoo_patch_schedules_are_bit_exact_on_the_simulated_board(name: str, tmp_path: Path) -> None:
    """Every zoo model that `--patch auto` (the CLI default) runs patch by patch, on the M4 board."""
    c = compile_model(zoo.path(name), PatchOptions("auto"))
    if c.patches.chosen is None:  # layer by layer: the test above covers it; the plan must be unchanged
        assert c.plan.arena_bytes == c.patches.baseline.arena_bytes
        return
    inputs = random_inputs(c.graph, 2, seed=13)
    expected = TflmOracle(c.model_bytes).run_batch(inputs)
    try:
        runner = board_runner(M4_BOARD, "qemu", c, tmp_path)
    except DoesNotFit as e:
        assert e.needed > e.available
        return
    cmp = compare(expected, runner.run(inputs).outputs)
    assert cmp.bit_exact, f"{name} patch-based ({c.patches.describe().get('schedule')}) on {M4_BOARD}: {cmp.details}"


@pytest.mark.slow
def test_demo_runs_the_default_model_bit_exact_and_accurate(capsys, tmp_path) -> None:
    assert main(["demo", "--inputs", "60", "--json", "-", "--report", str(tmp_path / "demo.html")]) == 0
    r = json.loads(capsys.readouterr().out)
    assert Path(r["report_html"]) == (tmp_path / "demo.html").resolve() and '"device_accuracy"' in (tmp_path / "demo.html").read_text()
    assert (r["board"], r["target"], r["inputs"], r["bit_exact"]) == ("stm32f405", "qemu:netduinoplus2", 60, True)
    assert r["device_accuracy"] >= 0.9 and r["float_accuracy"] >= 0.9
    assert 0 < r["ram_bytes"] <= r["ram_size"] and 0 < r["flash_bytes"] <= r["flash_size"]
