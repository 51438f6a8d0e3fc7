"""Streamed inputs on a device: the firmware asks the host for input rows while the model runs.

The protocol half is checked against a scripted device (no simulator); the
firmware half is checked for what it must not contain (a whole-input buffer)
and, in QEMU, for bit-exact outputs, the RAM it saves and counts that do not
depend on how fast the host answers.
"""
from __future__ import annotations

import struct
from pathlib import Path

import pytest

from tinyml import zoo
from tinyml.codegen.firmware import build_firmware, read_symbols
from tinyml.oracle import TflmOracle, random_inputs
from tinyml.pipeline import compile_model
from tinyml.schedule.patches import PatchOptions
from tinyml.sim.measure import leaving_out_io
from tinyml.sim.protocol import READ_END, READ_REQUEST, FrameDecoder, Link, LinkError, Msg, counter_delta, encode
from tinyml.validation import compare

# A 4x5 image of 3 channels, read on demand; 2 output bytes.
ROWS, COLS, CH = 4, 5, 3
IMAGE = bytes(range(ROWS * COLS * CH))
ROW_BYTES = COLS * CH


def hello_payload(mask: int) -> bytes:
    head = struct.pack("<BBBBBBH", 2, 2, 0, 1, 1, mask, 3)
    body = struct.pack("<7I", 0xABCD, 1024, 4096, 0x20000000, 10, 14, 25_000_000)
    return head + body + struct.pack("<II", len(IMAGE), 2) + bytes([4]) + b"test"


def read(row: int, col: int, rows: int, cols: int, start: int, prev_end: int, index: int = 0) -> bytes:
    return READ_REQUEST.pack(index, 0, rows, row * ROW_BYTES + col * CH, cols * CH, ROW_BYTES, start, prev_end)


class ScriptedDevice:
    """A Transport that plays a firmware: on INFER it issues `reads` one at a time, then RESULT and READ_END."""

    def __init__(self, reads: list[bytes], last_end: int, status: int = 0):
        self.decoder = FrameDecoder()
        self.out = bytearray(encode(Msg.HELLO, 0, hello_payload(1)))
        self.reads, self.last_end, self.status = list(reads), last_end, status
        self.infer_payloads: list[bytes] = []
        self.answers: list[bytes] = []
        self.seq = 0

    def read(self, n: int, timeout: float) -> bytes:
        data = bytes(self.out[:n])
        del self.out[:n]
        return data

    def write(self, data: bytes, timeout: float) -> None:
        for f in self.decoder.feed(data):
            if f.type == Msg.INFER:
                self.seq = f.seq
                self.infer_payloads.append(f.payload)
            elif f.type == Msg.DATA:
                assert f.seq == self.seq
                self.answers.append(f.payload)
            self._next()

    def _next(self) -> None:
        if self.reads:
            self.out += encode(Msg.READ, self.seq, self.reads.pop(0))
            return
        result = struct.pack("<IiIII", 1, 0, 50, 1000, 128) + b"\x07\x09"
        self.out += encode(Msg.RESULT, self.seq, result)
        self.out += encode(Msg.READ_END, self.seq, READ_END.pack(self.last_end, len(self.answers), self.status))


def test_reads_are_answered_with_the_requested_rows_and_their_link_time_left_out() -> None:
    dev = ScriptedDevice([read(1, 2, 2, 3, start=100, prev_end=0), read(3, 0, 1, 5, start=300, prev_end=150)], 320)
    link = Link(dev, timeout_s=1)
    hello = link.handshake(1)
    assert hello.version == 2 and hello.streamed == [True]
    res = link.infer(IMAGE)
    assert dev.infer_payloads == [b""]  # nothing of a streamed input goes up front
    # rows 1-2, columns 2-4: three pixels of three bytes from each row, back to back
    want_first = IMAGE[15 + 6:15 + 15] + IMAGE[30 + 6:30 + 15]
    assert dev.answers == [want_first, IMAGE[45:60]]
    assert res.outputs == [b"\x07\x09"] and res.io_spans == [(100, 150), (300, 320)]
    # 950 ticks of run, 50 + 20 of them waiting for the host
    assert leaving_out_io(counter_delta, [res])(50, 1000) == 950 - 70
    assert leaving_out_io(counter_delta, [res])(200, 290) == 90  # a span outside the interval stays


@pytest.mark.parametrize("request_, words", [
    (read(3, 0, 2, 5, 1, 0), "leaves input 0"),  # rows 3 and 4 of a 4-row image
    (read(0, 0, 1, 1, 1, 0, index=1), "does not stream"),
    (b"\x00" * 7, "malformed READ"),
])
def test_bad_read_requests_end_the_conversation(request_: bytes, words: str) -> None:
    link = Link(ScriptedDevice([request_], 2), timeout_s=1)
    link.handshake(1)
    with pytest.raises(LinkError, match=words):
        link.infer(IMAGE)


def test_a_failed_transfer_reported_by_the_device_is_an_error() -> None:
    link = Link(ScriptedDevice([read(0, 0, 1, 1, 1, 0)], 2, status=1), timeout_s=1)
    link.handshake(1)
    with pytest.raises(LinkError, match="reads failed"):
        link.infer(IMAGE)


def test_version_1_hello_has_no_streamed_inputs() -> None:
    dev = ScriptedDevice([], 0)
    dev.out = bytearray(encode(Msg.HELLO, 0, bytes([1]) + hello_payload(0)[1:]))
    assert Link(dev, timeout_s=1).handshake(1).streamed == [False]


# -- the firmware -------------------------------------------------------------------------------
BOARD = "stm32f746g-disco"


@pytest.fixture(scope="module")
def streamed_vww():
    return compile_model(zoo.path("mobilenet_v1_025_vww"), PatchOptions("auto", stream=True))


def test_streamed_firmware_holds_no_whole_input(streamed_vww, tmp_path: Path) -> None:
    c = streamed_vww
    x = c.graph.inputs[0]
    assert c.graph[x].streamed, "the search should stream VWW's input"
    fw = build_firmware(c.graph, c.plan, BOARD, tmp_path / "fw")
    img = fw.qemu_image
    assert fw.inputs[0].offset is None
    # Everything in .data/.bss besides the arena is the firmware's own state: far below one input.
    assert img.static_ram_bytes - c.plan.arena_bytes < min(2048, c.graph[x].nbytes)
    assert "tinyml_input0_buffer" not in read_symbols(fw.elf(img), ("tinyml_input0_buffer",))


@pytest.mark.slow
def test_streamed_firmware_is_bit_exact_in_qemu_and_saves_3x(streamed_vww, tmp_path: Path) -> None:
    from tinyml.sim.qemu import QemuRunner

    c = streamed_vww
    fw = build_firmware(c.graph, c.plan, BOARD, tmp_path / "fw")
    sample = random_inputs(c.graph, 2, seed=7)
    inputs = [sample[0], sample[1], sample[0]]
    result = QemuRunner(fw).run(inputs)
    assert compare(TflmOracle(c.model_bytes).run_batch(inputs), result.outputs).bit_exact
    counts = result.extra["instructions_per_input"]
    assert counts[0] == counts[2]  # the host's answer time is not counted
    ram = result.extra["firmware_ram_bytes"]  # arena, stack and every .data/.bss of the image
    assert ram - result.stack_bytes - c.plan.arena_bytes < c.graph[c.graph.inputs[0]].nbytes
    assert 3 * ram <= c.patches.baseline.arena_bytes  # layer by layer needs at least its arena
