"""Host side of the firmware's UART protocol (QEMU, Renode and real boards alike).

Every message is one frame; all integers are little-endian:

    offset  size  field
    0       2     sync: A5 5A
    2       1     type
    3       1     seq: set by the host in a request, echoed in the reply (0 when unsolicited)
    4       4     N, payload length (u32)
    8       N     payload
    8+N     4     CRC-32 of bytes 2..8+N-1 (type, seq, length, payload); IEEE 802.3, as zlib.crc32

Anything between frames is plain text (the firmware prints "tinyml <board> ready" at boot,
and "tinyml selftest PASS|FAIL crc=..." when built with a self-test); the decoder keeps it
for diagnostics. A frame whose CRC fails is dropped and the decoder resynchronises on the
next sync bytes.

Host -> device
    0x01 HELLO_REQ  empty                          reply: HELLO
    0x02 INFER      the bytes of every input that  reply: RESULT (or ERROR); with streamed inputs
                    is not streamed, in order      READ requests come first and READ_END after RESULT
    0x03 QUIT       u8 mode, u8 code               mode 0: semihosting exit with status `code`
                                                   (simulators), mode 1: system reset (boards)
    0x04 DATA       the bytes a READ asked for     (version 2) seq: the INFER's
Device -> host
    0x81 HELLO      sent at boot and on HELLO_REQ:
                    u8 version (2; 1 = no streamed inputs), u8 counter kind,
                    u8 flags (bit0 per-layer, bit1 self-test),
                    u8 inputs, u8 outputs, u8 streamed-input mask (bit i: input i is read on demand), u16 layers,
                    u32 model id (CRC-32 of the generated library), u32 arena bytes,
                    u32 stack bytes available, u32 stack bottom address,
                    u32 calibration reads c0, c1 (two back-to-back counter reads),
                    u32 core clock Hz, u32 bytes of each input, u32 bytes of each output,
                    u8 n + n bytes board name
    0x82 RESULT     u32 inference number since boot, i32 status of tinyml_run(),
                    u32 counter before, u32 counter after, u32 stack bytes tinyml_run() used (the free
                    stack is repainted before each run),
                    [u32 begin, u32 end] per layer when built per-layer, then the outputs' bytes
    0x83 READ       (version 2) while tinyml_run() reads a streamed input: seq of the INFER,
                    u8 input, u8 0, u16 rows, u32 offset, u32 length, u32 stride,
                    u32 counter at the read's start, u32 counter at the previous read's end (0 for
                    the first): the host answers DATA = for r < rows, input bytes
                    [offset + r * stride, + length), back to back. The firmware receives them
                    straight into the model's window tensor, so no whole input is ever stored.
    0x84 READ_END   (version 2) after the RESULT of an INFER with streamed inputs:
                    u32 counter at the last read's end, u32 reads, u8 status (0 ok; bit0 a DATA
                    frame failed its CRC, bit1 a DATA frame had the wrong length, bit2 other frames
                    arrived during a read and were skipped)
    0xE0 ERROR      u8 code (1 length, 2 CRC, 3 type), ASCII text
    0xEF FAULT      u32 exception number, CFSR, HFSR, MMFAR, BFAR, stacked PC, stacked LR,
                    SP at the fault, EXC_RETURN, stack bottom; then only QUIT is served

Counter kinds: 1 DWT cycles (real cores), 2 TIM2 (QEMU netduinoplus2: one count per instruction
under -icount shift=0), 3 marks (the counter value is the number of the tm_now() call; a QEMU
plugin records the instruction count at each call and the runner maps one to the other).
A cost is (after - before) - (c1 - c0): the counter's own overhead is taken out. The time a
streamed read spends on the link (between the counter values a READ and the next READ or READ_END
carry) is not the model's: runners leave those spans out (Result.io_spans, sim/measure.py).
"""
from __future__ import annotations

import itertools
import struct
import time
import zlib
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Protocol

from tinyml.errors import CheckFailed

SYNC = b"\xa5\x5a"
HEADER = struct.Struct("<BBI")  # type, seq, length
MAX_PAYLOAD = 64 << 20
PROTOCOL_VERSION = 2
VERSIONS = (1, 2)  # a version-1 firmware has no streamed inputs; the rest is the same
READ_REQUEST = struct.Struct("<BBHIIIII")  # input, 0, rows, offset, length, stride, start, previous end
READ_END = struct.Struct("<IIB")  # last end, reads, status


class Msg(IntEnum):
    HELLO_REQ = 0x01
    INFER = 0x02
    QUIT = 0x03
    DATA = 0x04
    HELLO = 0x81
    RESULT = 0x82
    READ = 0x83
    READ_END = 0x84
    ERROR = 0xE0
    FAULT = 0xEF


class Counter(IntEnum):
    NONE = 0
    DWT = 1
    TIM2 = 2
    MARKS = 3


class LinkError(CheckFailed):
    """The device did not answer as the protocol says (timeout, garbage, error reply)."""


class FirmwareFault(CheckFailed):
    """The firmware took a fault (HardFault, MemManage...) and reported it."""

    def __init__(self, fault: "Fault"):
        self.fault = fault
        super().__init__(f"firmware fault: {fault.describe()}")


def encode(kind: int, seq: int, payload: bytes = b"") -> bytes:
    body = HEADER.pack(kind, seq & 0xFF, len(payload)) + payload
    return SYNC + body + struct.pack("<I", zlib.crc32(body))


@dataclass
class Frame:
    type: int
    seq: int
    payload: bytes


class FrameDecoder:
    """Incremental decoder: feed bytes, get whole frames; text between frames is kept."""

    def __init__(self, max_payload: int = MAX_PAYLOAD):
        self.buf = bytearray()
        self.text = bytearray()
        self.max_payload = max_payload
        self.dropped = 0  # frames dropped for a bad CRC or length

    def feed(self, data: bytes) -> list[Frame]:
        self.buf += data
        frames = []
        while True:
            i = self.buf.find(SYNC)
            if i < 0:
                keep = 1 if self.buf.endswith(SYNC[:1]) else 0
                self.text += self.buf[:len(self.buf) - keep]
                del self.buf[:len(self.buf) - keep]
                return frames
            self.text += self.buf[:i]
            del self.buf[:i]
            if len(self.buf) < 2 + HEADER.size:
                return frames
            kind, seq, n = HEADER.unpack_from(self.buf, 2)
            if n > self.max_payload:
                self._skip()
                continue
            total = 2 + HEADER.size + n + 4
            if len(self.buf) < total:
                return frames
            body = bytes(self.buf[2:total - 4])
            (crc,) = struct.unpack_from("<I", self.buf, total - 4)
            if zlib.crc32(body) != crc:
                self._skip()
                continue
            frames.append(Frame(kind, seq, body[HEADER.size:]))
            del self.buf[:total]

    def _skip(self) -> None:
        """Not a frame after all: treat the sync bytes as text and search again."""
        self.dropped += 1
        self.text += self.buf[:1]
        del self.buf[:1]

    def take_text(self) -> str:
        s = self.text.decode("ascii", errors="replace")
        self.text.clear()
        return s


# -- messages -------------------------------------------------------------------


@dataclass
class Hello:
    version: int
    counter: Counter
    per_layer: bool
    selftest: bool
    num_layers: int
    model_id: int
    arena_bytes: int
    stack_size: int
    stack_bottom: int
    calib: tuple[int, int]
    clock_hz: int
    input_bytes: list[int]
    output_bytes: list[int]
    board: str
    streamed: list[bool] = field(default_factory=list)  # per input: read window by window (READ)

    @classmethod
    def parse(cls, p: bytes) -> "Hello":
        try:
            version, counter, flags, n_in, n_out, mask, layers = struct.unpack_from("<BBBBBBH", p, 0)
            if version not in VERSIONS:
                raise LinkError(f"device speaks protocol version {version}, this host {', '.join(map(str, VERSIONS))}")
            model_id, arena, stack_size, stack_bottom, c0, c1, clock = struct.unpack_from("<7I", p, 8)
            sizes = struct.unpack_from(f"<{n_in + n_out}I", p, 36)
            pos = 36 + 4 * (n_in + n_out)
            name = p[pos + 1:pos + 1 + p[pos]].decode("ascii", errors="replace")
        except (struct.error, IndexError, ValueError):
            raise LinkError(f"malformed HELLO ({len(p)} bytes)") from None
        return cls(version, Counter(counter), bool(flags & 1), bool(flags & 2), layers, model_id, arena, stack_size,
                   stack_bottom, (c0, c1), clock, list(sizes[:n_in]), list(sizes[n_in:]), name,
                   [bool(mask >> i & 1) if version >= 2 else False for i in range(n_in)])


@dataclass
class Result:
    index: int
    status: int
    t0: int
    t1: int
    stack_bytes: int
    layer_ticks: list[tuple[int, int]] | None
    outputs: list[bytes]
    io_spans: list[tuple[int, int]] = field(default_factory=list)  # counter spans spent fetching streamed input

    @classmethod
    def parse(cls, p: bytes, hello: Hello) -> "Result":
        layers = hello.num_layers if hello.per_layer else 0
        want = 20 + 8 * layers + sum(hello.output_bytes)
        if len(p) != want:
            raise LinkError(f"RESULT has {len(p)} bytes, expected {want}")
        index, status, t0, t1, stack = struct.unpack_from("<IiIII", p, 0)
        ticks = None
        if layers:
            flat = struct.unpack_from(f"<{2 * layers}I", p, 20)
            ticks = list(zip(flat[0::2], flat[1::2]))
        pos, outs = 20 + 8 * layers, []
        for n in hello.output_bytes:
            outs.append(p[pos:pos + n])
            pos += n
        return cls(index, status, t0, t1, stack, ticks, outs)


_CFSR_BITS = {
    0: "instruction access violation (MPU)", 1: "data access violation (MPU)",
    3: "MemManage fault on exception return", 4: "MemManage fault on exception entry (stacking)",
    5: "MemManage fault during lazy FP state preservation",
    8: "instruction bus error", 9: "precise data bus error", 10: "imprecise data bus error",
    11: "bus fault on exception return", 12: "bus fault on exception entry (stacking)",
    13: "bus fault during lazy FP state preservation",
    16: "undefined instruction", 17: "invalid state (Thumb bit)", 18: "invalid PC on exception return",
    19: "no coprocessor (FPU disabled?)", 24: "unaligned access", 25: "divide by zero",
}
_EXCEPTIONS = {2: "NMI", 3: "HardFault", 4: "MemManage", 5: "BusFault", 6: "UsageFault", 11: "SVCall",
               12: "DebugMonitor", 14: "PendSV", 15: "SysTick"}


@dataclass
class Fault:
    exception: int
    cfsr: int
    hfsr: int
    mmfar: int
    bfar: int
    pc: int
    lr: int
    sp: int
    exc_return: int
    stack_bottom: int

    @classmethod
    def parse(cls, p: bytes) -> "Fault":
        if len(p) != 40:
            raise LinkError(f"malformed FAULT ({len(p)} bytes)")
        return cls(*struct.unpack("<10I", p))

    @property
    def stack_overflow(self) -> bool:
        """The fault hit the MPU guard under the stack, or the stack pointer was already there."""
        guard = range(self.stack_bottom - 32, self.stack_bottom)
        mm_addr_valid = bool(self.cfsr & (1 << 7))
        return (mm_addr_valid and self.mmfar in guard) or self.sp < self.stack_bottom + 32 \
            or bool(self.cfsr & ((1 << 4) | (1 << 12)))

    def describe(self) -> str:
        kind = _EXCEPTIONS.get(self.exception, f"exception {self.exception}")
        causes = [text for bit, text in _CFSR_BITS.items() if self.cfsr & (1 << bit)]
        if self.hfsr & (1 << 31):
            causes.append("breakpoint without a debugger")
        parts = [kind + (": " + ", ".join(causes) if causes else "")]
        if self.stack_overflow:
            parts.append("stack overflow (hit the guard below the stack; raise min_stack_bytes or shrink the model)")
        if self.cfsr & (1 << 7):
            parts.append(f"address 0x{self.mmfar:08x}")
        elif self.cfsr & (1 << 15):
            parts.append(f"address 0x{self.bfar:08x}")
        if self.pc != 0xFFFFFFFF:
            parts.append(f"pc 0x{self.pc:08x} lr 0x{self.lr:08x}")
        parts.append(f"CFSR 0x{self.cfsr:08x} HFSR 0x{self.hfsr:08x}")
        return "; ".join(parts)


# -- talking to a device ---------------------------------------------------------


class Transport(Protocol):
    """A byte pipe to the device: a QEMU process, a TCP socket, a USB-UART."""

    def read(self, n: int, timeout: float) -> bytes:
        """Up to n bytes; b"" when nothing arrived within `timeout` seconds."""
        ...

    def write(self, data: bytes, timeout: float) -> None:
        ...


class SerialTransport:
    """A pyserial port (serial.Serial or serial.serial_for_url) as a Transport."""

    def __init__(self, port) -> None:  # noqa: ANN001 - any pyserial object
        self.port = port

    def read(self, n: int, timeout: float) -> bytes:
        self.port.timeout = max(0.0, timeout)
        first = self.port.read(1)
        if not first:
            return b""
        waiting = getattr(self.port, "in_waiting", 0)
        return first + (self.port.read(min(n - 1, waiting)) if waiting and n > 1 else b"")

    def write(self, data: bytes, timeout: float) -> None:
        self.port.write_timeout = max(0.1, timeout)
        self.port.write(data)
        self.port.flush()


class Link:
    """One conversation with a tinyml firmware over any Transport."""

    def __init__(self, transport: Transport, timeout_s: float = 30.0):
        self.t = transport
        self.timeout_s = timeout_s
        self.decoder = FrameDecoder()
        self.pending: list[Frame] = []
        self.seq = 0
        self.text_log: list[str] = []
        self.hello: Hello | None = None

    def send(self, kind: Msg, payload: bytes = b"") -> int:
        self.seq = (self.seq % 255) + 1
        self.t.write(encode(kind, self.seq, payload), self.timeout_s)
        return self.seq

    def receive(self, timeout_s: float | None = None) -> Frame:
        """The next frame; a FAULT raises FirmwareFault, silence raises LinkError."""
        deadline = time.monotonic() + (self.timeout_s if timeout_s is None else timeout_s)
        while not self.pending:
            left = deadline - time.monotonic()
            data = self.t.read(1 << 16, left) if left > 0 else b""
            if not data:
                raise LinkError(f"no reply from the firmware within {timeout_s or self.timeout_s:.0f} s"
                                + self._text_hint())
            self.pending += self.decoder.feed(data)
            text = self.decoder.take_text()
            if text:
                self.text_log.append(text)
        frame = self.pending.pop(0)
        if frame.type == Msg.FAULT:
            raise FirmwareFault(Fault.parse(frame.payload))
        return frame

    def _text_hint(self) -> str:
        text = "".join(self.text_log).strip()
        return f" (it printed: {text[-200:]!r})" if text else " (it printed nothing)"

    def expect(self, kind: Msg | tuple[Msg, ...], seq: int | None, timeout_s: float | None = None) -> Frame:
        """Wait for a `kind` reply (or any of several kinds) to request `seq`; ERROR replies raise LinkError."""
        kinds = kind if isinstance(kind, tuple) else (kind,)
        while True:
            f = self.receive(timeout_s)
            if f.type == Msg.ERROR:
                code = f.payload[0] if f.payload else 0
                raise LinkError(f"firmware error {code}: {f.payload[1:].decode('ascii', 'replace')}")
            if f.type in kinds and (seq is None or f.seq in (seq, 0)):
                return f

    def handshake(self, boot_timeout_s: float = 10.0) -> Hello:
        """The boot HELLO, or (a board that booted long ago) the reply to a HELLO_REQ."""
        try:
            f = self.expect(Msg.HELLO, None, boot_timeout_s)
        except LinkError:
            f = self.expect(Msg.HELLO, self.send(Msg.HELLO_REQ))
        self.hello = Hello.parse(f.payload)
        return self.hello

    def infer(self, payload: bytes, timeout_s: float | None = None) -> Result:
        """One inference on `payload` (every input's bytes, in order).

        Inputs the firmware streams are not sent up front: they are served
        read by read while it runs (InputServer), and the spans it spent
        waiting for them come back in Result.io_spans.
        """
        assert self.hello is not None, "handshake first"
        if not any(self.hello.streamed):
            seq = self.send(Msg.INFER, payload)
            return Result.parse(self.expect(Msg.RESULT, seq, timeout_s).payload, self.hello)
        server = InputServer(payload, self.hello.input_bytes, self.hello.streamed)
        seq = self.send(Msg.INFER, server.upfront)
        while True:
            f = self.expect((Msg.READ, Msg.RESULT), seq, timeout_s)
            if f.type == Msg.RESULT:
                break
            self.t.write(encode(Msg.DATA, seq, server.answer(f.payload)), self.timeout_s)
        result = Result.parse(f.payload, self.hello)
        result.io_spans = server.finish(self.expect(Msg.READ_END, seq, timeout_s).payload)
        return result

    def quit(self, mode: int = 0, code: int = 0) -> None:
        self.send(Msg.QUIT, bytes([mode, code]))


class InputServer:
    """The host's half of streamed inputs for one INFER: answers READ requests, collects their spans.

    Bounds are checked here: a request outside its input is a firmware bug
    and ends the conversation (LinkError) rather than sending made-up bytes.
    """

    def __init__(self, payload: bytes, sizes: list[int], streamed: list[bool]):
        if len(payload) != sum(sizes):
            raise LinkError(f"{len(payload)} input bytes for inputs of {sum(sizes)} bytes")
        cuts = list(itertools.accumulate(sizes, initial=0))
        self.inputs = [payload[a:b] for a, b in zip(cuts, cuts[1:])]
        self.streams = [i for i, s in enumerate(streamed) if s]
        self.upfront = b"".join(x for i, x in enumerate(self.inputs) if i not in self.streams)
        self.starts: list[int] = []
        self.ends: list[int] = []

    def answer(self, request: bytes) -> bytes:
        """The DATA payload for one READ payload."""
        try:
            index, _, rows, offset, length, stride, start, prev_end = READ_REQUEST.unpack(request)
        except struct.error:
            raise LinkError(f"malformed READ ({len(request)} bytes)") from None
        if index not in self.streams:
            raise LinkError(f"the firmware asked for input {index}, which it does not stream")
        data = self.inputs[index]
        last = offset + (rows - 1) * stride + length if rows else offset
        if last > len(data) or (rows > 1 and stride < length):
            raise LinkError(f"READ of {rows} x {length} bytes at {offset} (stride {stride}) leaves input {index} "
                            f"({len(data)} bytes)")
        if self.starts:
            self.ends.append(prev_end)
        self.starts.append(start)
        return b"".join(data[offset + r * stride:offset + r * stride + length] for r in range(rows))

    def finish(self, read_end: bytes) -> list[tuple[int, int]]:
        """The (start, end) counter spans of every read, from the READ_END payload."""
        try:
            last_end, reads, status = READ_END.unpack(read_end)
        except struct.error:
            raise LinkError(f"malformed READ_END ({len(read_end)} bytes)") from None
        if status:
            raise LinkError(f"streamed input reads failed on the device (status {status:#x})")
        if reads != len(self.starts):
            raise LinkError(f"the firmware counted {reads} reads, the host answered {len(self.starts)}")
        if self.starts:
            self.ends.append(last_end)
        return list(zip(self.starts, self.ends))


def counter_delta(before: int, after: int) -> int:
    """Ticks between two reads of the 32-bit counter (it may wrap once)."""
    return (after - before) & 0xFFFFFFFF
