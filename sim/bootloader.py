"""Host side of the STM32 system-memory bootloader over UART (ST AN3155).

Every exchange is: command byte + its complement, the device ACKs (0x79) or
NACKs (0x1F); addresses and payloads carry an XOR checksum. The device has no
timeouts of its own, so after a lost byte it keeps waiting for the rest of a
frame: recovery therefore pushes filler bytes until the device has a complete
(bad) frame, NACKs it and is back at "waiting for a command". On top of that,
`program()` erases only the pages the image touches, writes 256-byte blocks,
reads every block back and repairs what differs: it returns only when the
flash reads back identical to the image, otherwise it raises FlashError.
"""
from __future__ import annotations

import bisect
import itertools
import time
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Callable, Protocol, TypeVar

from tinyml.errors import DoesNotFit, TinymlError
from tinyml.sim.image import FlashImage

SYNC, ACK, NACK = 0x7F, 0x79, 0x1F
GET, GET_VERSION, GET_ID = 0x00, 0x01, 0x02
READ_MEMORY, GO, WRITE_MEMORY = 0x11, 0x21, 0x31
ERASE, EXTENDED_ERASE = 0x43, 0x44
WRITE_PROTECT, WRITE_UNPROTECT, READOUT_PROTECT, READOUT_UNPROTECT = 0x63, 0x73, 0x82, 0x92
BLOCK = 256  # largest READ/WRITE payload AN3155 allows
ERASED = b"\xff" * BLOCK
FILLER = BLOCK + 4  # more bytes than the longest frame a device can be waiting on (N + 256 data + checksum)

T = TypeVar("T")


class FlashError(TinymlError):
    """Flashing failed: no answer, refused commands, or flash that does not read back as written."""


class LinkError(Exception):
    """One exchange went wrong; the caller recovers and retries."""


class Nacked(LinkError):
    pass


class NoReply(LinkError):
    pass


class Garbled(LinkError):
    pass


class Port(Protocol):
    """The part of a pyserial Serial object the client uses."""

    timeout: float | None

    def read(self, size: int) -> bytes: ...
    def write(self, data: bytes) -> int | None: ...
    def reset_input_buffer(self) -> None: ...


def checksum(data: bytes | bytearray) -> int:
    """AN3155 checksum: XOR of all bytes (a lone command or length byte is checked by its complement instead)."""
    x = 0
    for b in data:
        x ^= b
    return x


def address_frame(address: int) -> bytes:
    a = address.to_bytes(4, "big")
    return a + bytes([checksum(a)])


@dataclass(frozen=True)
class FlashLayout:
    """Flash origin and the size of each erase unit (page or sector) in bootloader numbering."""

    origin: int
    pages: tuple[int, ...]

    def __post_init__(self) -> None:
        if not self.pages or any(p <= 0 or p % BLOCK for p in self.pages):
            raise ValueError("flash pages must be non-empty multiples of 256 bytes")

    @classmethod
    def from_runs(cls, origin: int, runs: list[list[int]] | list[tuple[int, int]]) -> "FlashLayout":
        """[[count, bytes], ...] as board files write it, e.g. [[4, 16384], [1, 65536], [7, 131072]]."""
        return cls(origin, tuple(size for count, size in runs for _ in range(count)))

    @cached_property
    def starts(self) -> list[int]:
        return [self.origin + off for off in itertools.accumulate(self.pages, initial=0)][:-1]

    @property
    def size(self) -> int:
        return sum(self.pages)

    @property
    def end(self) -> int:
        return self.origin + self.size

    def page_of(self, address: int) -> int:
        return bisect.bisect_right(self.starts, address) - 1

    def pages_for(self, start: int, end: int) -> range:
        """Pages holding any byte of [start, end)."""
        return range(self.page_of(start), self.page_of(end - 1) + 1)


@dataclass
class Timeouts:
    """Seconds to wait for a reply; erase and write replies come after the flash operation."""

    byte: float = 0.5
    write: float = 1.0
    erase: float = 6.0  # per page: an STM32F4 128 KB sector takes up to 4 s

    @classmethod
    def scaled(cls, byte: float) -> "Timeouts":
        """Write and erase waits in proportion to the byte timeout (the defaults at 0.5 s)."""
        return cls(byte, 2 * byte, 12 * byte)


class Bootloader:
    """AN3155 client with retries; raises FlashError when an operation keeps failing."""

    def __init__(self, port: Port, timeouts: Timeouts | None = None, retries: int = 5):
        self.port = port
        self.t = timeouts or Timeouts()
        self.retries = retries
        self.version: int | None = None
        self.commands: bytes = b""
        self.recoveries = 0  # exchanges that failed and were retried
        if port.timeout != self.t.byte:
            port.timeout = self.t.byte

    # -- bytes on the wire ------------------------------------------------------------------
    def _read(self, n: int, timeout: float | None = None) -> bytes:
        """Exactly n bytes within `timeout` (the port's own timeout is set once: changing it reconfigures the tty)."""
        deadline = time.monotonic() + (timeout or self.t.byte)
        data = b""
        while len(data) < n:
            chunk = self.port.read(n - len(data))
            data += chunk
            if not chunk and time.monotonic() >= deadline:
                raise NoReply(f"expected {n} bytes, got {len(data)}")
        return data

    def _ack(self, what: str, timeout: float | None = None) -> None:
        b = self._read(1, timeout)[0]
        if b == NACK:
            raise Nacked(f"{what} refused (NACK)")
        if b != ACK:
            raise Garbled(f"{what}: got 0x{b:02x} instead of ACK")

    def _send(self, data: bytes, what: str, timeout: float | None = None) -> None:
        self.port.write(data)
        self._ack(what, timeout)

    def _command(self, cmd: int) -> None:
        self._send(bytes([cmd, cmd ^ 0xFF]), f"command 0x{cmd:02x}")

    def _drain(self) -> None:
        """Read until the line has been quiet for one byte timeout."""
        for _ in range(8):
            if not self.port.read(FILLER):
                return
        raise Garbled("the device keeps sending (an application running instead of the bootloader?)")

    def _probe(self) -> None:
        """Send 0x7F until ACK (a fresh sync) or NACK (a synced device took the first 0x7F as a command)."""
        for _ in range(2):
            self.port.write(bytes([SYNC]))
            try:
                reply = self._read(1)[0]
            except NoReply:
                continue
            if reply not in (ACK, NACK):
                raise Garbled(f"got 0x{reply:02x} instead of ACK or NACK to 0x7F")
            self._drain()
            return
        raise NoReply("no answer to 0x7F")

    def _settle(self) -> None:
        """Leave a synced device idle without waiting out a timeout: GET ID answers at once when the
        device is idle; with one byte pending it NACKs, and one more byte completes a second bad pair."""
        self.port.write(bytes([GET_ID, GET_ID ^ 0xFF]))
        first = self._read(1)[0]
        if first == ACK:
            n = self._read(1)[0]
            self._read(n + 2)  # the ID and the closing ACK
        elif first == NACK:
            self.port.write(bytes([SYNC]))
            if self._read(1)[0] != NACK:
                raise Garbled("no NACK for a command split across two frames")
        else:
            raise Garbled(f"got 0x{first:02x} instead of ACK or NACK")

    def _resync(self) -> None:
        """Bring the device back to 'waiting for a command' from whatever it was waiting for.

        FILLER bytes finish any partial frame (the device NACKs it) and then pair up as invalid
        commands, possibly leaving one byte pending; settling clears that. A device that reset
        meanwhile ignores everything but 0x7F, so the sync probe is the fallback.
        """
        self.port.reset_input_buffer()
        self.port.write(bytes([SYNC]) * FILLER)
        self._drain()
        try:
            self._settle()
        except LinkError:
            self._drain()
            self._probe()

    def _recover(self) -> None:
        """After any failed exchange: even a NACK may come from a device one byte out of step."""
        self.recoveries += 1
        try:
            self._resync()
        except LinkError:
            pass  # the next attempt fails and is counted

    def _retry(self, what: str, attempt: Callable[[], T], landed: Callable[[], bool] | None = None) -> T | None:
        """Run `attempt` until it succeeds; `landed` checks whether a failed write took effect anyway."""
        err: LinkError | None = None
        for _ in range(self.retries + 1):
            try:
                return attempt()
            except LinkError as e:
                err = e
                self._recover()
            if landed is not None:
                try:
                    if landed():
                        return None
                except LinkError as e:
                    err = e
                    self._recover()
        raise FlashError(f"{what}: {err} (gave up after {self.retries + 1} attempts)")

    # -- protocol ---------------------------------------------------------------------------
    def connect(self) -> None:
        """Sync, then read the bootloader version and command list (GET)."""
        err: LinkError | None = None
        for attempt in range(3):
            try:
                self._probe() if attempt == 0 else self._resync()
                self._get()
                return
            except LinkError as e:
                err = e
                self.recoveries += 1
        raise FlashError(f"no usable answer from the STM32 bootloader ({err}): BOOT0 high and board reset? "
                         "right port and wiring?")

    def _get(self) -> None:
        self._command(GET)
        n = self._read(1)[0]
        body = self._read(n + 1)
        self._ack("GET")
        self.version, self.commands = body[0], bytes(body[1:])

    def _get_id(self) -> int:
        self._command(GET_ID)
        n = self._read(1)[0]
        pid = int.from_bytes(self._read(n + 1), "big")
        self._ack("GET ID")
        return pid

    def chip_id(self) -> int:
        """The product ID, read until two answers agree (a flipped bit must not look like another chip)."""
        last = None
        for _ in range(self.retries + 2):
            pid = self._retry("GET ID", self._get_id)
            if pid == last:
                return pid
            last = pid
        raise FlashError("GET ID answers keep changing: the line is too noisy")

    def _read_memory(self, address: int, n: int) -> bytes:
        self._command(READ_MEMORY)
        self._send(address_frame(address), f"READ address 0x{address:08x}")
        self._send(bytes([n - 1, (n - 1) ^ 0xFF]), "READ length")
        return self._read(n)

    def read_memory(self, address: int, n: int) -> bytes:
        if not 0 < n <= BLOCK:
            raise ValueError("read 1..256 bytes")
        return self._retry(f"READ MEMORY at 0x{address:08x} (read-protected chip?)",
                           lambda: self._read_memory(address, n))

    def _write_memory(self, address: int, data: bytes) -> None:
        self._command(WRITE_MEMORY)
        self._send(address_frame(address), f"WRITE address 0x{address:08x}")
        frame = bytes([len(data) - 1]) + data
        self._send(frame + bytes([checksum(frame)]), f"WRITE data at 0x{address:08x}", self.t.write)

    def write_memory(self, address: int, data: bytes) -> None:
        """Write one block (4-byte aligned, 4..256 bytes); a lost ACK is detected by reading back."""
        if address % 4 or len(data) % 4 or not 0 < len(data) <= BLOCK:
            raise ValueError("writes are 4-byte aligned blocks of 4..256 bytes")
        self._retry(f"WRITE MEMORY at 0x{address:08x}", lambda: self._write_memory(address, data),
                    landed=lambda: self._read_memory(address, len(data)) == data)

    def _erase(self, pages: list[int]) -> None:
        if EXTENDED_ERASE in self.commands:
            self._command(EXTENDED_ERASE)
            frame = (len(pages) - 1).to_bytes(2, "big") + b"".join(p.to_bytes(2, "big") for p in pages)
        elif ERASE in self.commands and max(pages) < 0xFF and len(pages) <= 0xFF:
            self._command(ERASE)
            frame = bytes([len(pages) - 1, *pages])
        else:
            raise FlashError("the bootloader offers no page erase this tool can use for these pages")
        self._send(frame + bytes([checksum(frame)]), f"erase of pages {pages}", self.t.erase * len(pages))

    def erase(self, pages: list[int]) -> None:
        self._retry(f"erase of pages {pages}", lambda: self._erase(pages))

    def go(self, address: int) -> None:
        """Start the program whose vector table is at `address`; only a NACK (device still idle) is retried."""
        def attempt() -> None:
            self._command(GO)
            self._send(address_frame(address), f"GO address 0x{address:08x}")

        for _ in range(self.retries + 1):
            try:
                return attempt()
            except Nacked:
                self._recover()
            except LinkError as e:
                raise FlashError(f"flash written and verified, but GO 0x{address:08x} got no answer ({e}); "
                                 "reset the board to start it") from None
        raise FlashError(f"flash written and verified, but GO 0x{address:08x} was refused")


@dataclass
class FlashPlan:
    """What to do: pages to erase and 256-byte blocks (erased-state 0xFF around the image's bytes)."""

    pages: list[int]
    blocks: dict[int, bytes]


def plan(image: FlashImage, layout: FlashLayout, what: str = "flash") -> FlashPlan:
    """Check the image lies in flash and list only the pages and blocks it touches."""
    for seg in image.segments:
        if seg.address < layout.origin or seg.address >= layout.end:
            raise FlashError(f"image has bytes at 0x{seg.address:08x}, outside {what} "
                             f"0x{layout.origin:08x}-0x{layout.end - 1:08x} (linked for another board or RAM?)")
        if seg.end > layout.end:
            raise DoesNotFit("firmware image", image.end - layout.origin, layout.size, what)
    blocks: dict[int, bytearray] = {}
    pages: set[int] = set()
    for seg in image.segments:
        pages.update(layout.pages_for(seg.address, seg.end))
        pos = seg.address
        while pos < seg.end:
            base = pos - (pos - layout.origin) % BLOCK
            n = min(seg.end, base + BLOCK) - pos
            blk = blocks.setdefault(base, bytearray(b"\xff" * BLOCK))
            blk[pos - base:pos - base + n] = seg.data[pos - seg.address:pos - seg.address + n]
            pos += n
    return FlashPlan(sorted(pages), {a: bytes(b) for a, b in sorted(blocks.items())})


ProgressFn = Callable[[str, int, int], None]  # (stage, done, total)


@dataclass
class FlashReport:
    pages_erased: list[int]
    bytes_written: int
    blocks_written: int
    blocks_verified: int
    repaired_pages: list[int] = field(default_factory=list)
    recoveries: int = 0
    go_address: int | None = None
    seconds: float = 0.0


def program(bl: Bootloader, image: FlashImage, layout: FlashLayout, go: int | None = None,
            progress: ProgressFn | None = None, what: str = "flash") -> FlashReport:
    """Erase, write, verify (and repair) `image` on a connected, identified device.

    Returns only when every block reads back identical; GO (if asked) comes after that.
    """
    started = time.monotonic()
    p = plan(image, layout, what)
    report = progress or (lambda stage, done, total: None)
    _erase(bl, p.pages, report)
    to_write = {a: d for a, d in p.blocks.items() if d != ERASED}  # erased flash already holds those
    for i, (addr, data) in enumerate(to_write.items()):
        bl.write_memory(addr, data)
        report("write", i + 1, len(to_write))
    bad = _verify(bl, p.blocks, report)
    repaired: list[int] = []
    for _ in range(bl.retries):
        if not bad:
            break
        pages = sorted({layout.page_of(a) for a in bad})
        repaired += pages
        _erase(bl, pages, report)
        again = {a: d for a, d in p.blocks.items() if layout.page_of(a) in pages}
        for addr, data in again.items():
            if data != ERASED:
                bl.write_memory(addr, data)
        bad = _verify(bl, again, report)
    if bad:
        addr = min(bad)
        got, want = bad[addr], p.blocks[addr]
        k = next(i for i in range(BLOCK) if got[i] != want[i])
        raise FlashError(f"verify failed: {len(bad)} block(s) differ after {bl.retries} repairs, first at "
                         f"0x{addr + k:08x} (wrote 0x{want[k]:02x}, reads 0x{got[k]:02x})")
    if go is not None:
        bl.go(go)
    return FlashReport(p.pages, image.size, len(to_write), len(p.blocks), repaired, bl.recoveries, go,
                       round(time.monotonic() - started, 3))


def _erase(bl: Bootloader, pages: list[int], report: ProgressFn) -> None:
    for i, page in enumerate(pages):  # one page per command: bounded reply timeout, per-page retries
        bl.erase([page])
        report("erase", i + 1, len(pages))


def _verify(bl: Bootloader, blocks: dict[int, bytes], report: ProgressFn) -> dict[int, bytes]:
    """Blocks that read back different twice in a row (one bad read may be line noise)."""
    bad = {}
    for i, (addr, want) in enumerate(blocks.items()):
        got = bl.read_memory(addr, BLOCK)
        if got != want:
            got = bl.read_memory(addr, BLOCK)
            if got != want:
                bad[addr] = got
        report("verify", i + 1, len(blocks))
    return bad


# -- from a port name and a firmware file to a verified flash ------------------------------------
@dataclass(frozen=True)
class FlashTarget:
    """A board's bootloader chip ID, flash erase layout and program address, from its board file."""

    board: str
    chip_id: int
    layout: FlashLayout
    address: int  # where the image (its vector table) starts: a .bin's base and the GO address

    @classmethod
    def of(cls, board) -> "FlashTarget":
        """From a tinyml.board.Board; boards flashed some other way are refused."""
        if board.flashing.method != "stm32-uart-bootloader" or not board.flash_sectors:
            raise FlashError(f"board {board.name} is not flashed over the STM32 UART bootloader "
                             f"(its method: {board.flashing.method})")
        return cls(board.name, board.flashing.pid, FlashLayout.from_runs(board.flash.origin, board.flash_sectors),
                   board.flashing.address)


def flash_targets() -> dict[str, FlashTarget]:
    """Every shipped board that is flashed over the UART bootloader."""
    from tinyml.board import all_boards

    return {b.name: FlashTarget.of(b) for b in all_boards() if b.flashing.method == "stm32-uart-bootloader"}


def open_port(url: str, baud: int, timeout: float, even_parity: bool):
    """A pyserial port for a device path or URL (socket://host:port); a pty carries no parity bits."""
    import os
    import stat

    import serial

    is_pty = "://" not in url and os.path.exists(url) and stat.S_ISCHR(os.stat(url).st_mode) \
        and 136 <= os.major(os.stat(url).st_rdev) <= 143  # Unix98 pty slaves
    parity = serial.PARITY_EVEN if even_parity and not is_pty else serial.PARITY_NONE
    try:
        port = serial.serial_for_url(url, baudrate=baud, parity=parity, timeout=timeout)
    except (serial.SerialException, ValueError, OSError) as e:
        raise FlashError(f"cannot open {url}: {e}") from None
    sock = getattr(port, "_socket", None)  # socket:// ports: send each small frame at once, not after Nagle's wait
    if sock is not None:
        import socket

        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return port


def flash_firmware(firmware: str, port: str, board=None, baud: int = 115200, base: int | None = None,  # noqa: ANN001
                   go: bool = True, timeout: float = 0.5, retries: int = 5,
                   progress: ProgressFn | None = None) -> dict:
    """Flash a firmware file through the ROM bootloader on `port`; returns the report as a dict.

    `board` is a board name or file, a tinyml.board.Board, or None (chosen by the chip's ID)."""
    from tinyml.board import load_board
    from tinyml.sim.image import load_image

    target = None
    if board is not None:
        target = FlashTarget.of(load_board(board) if isinstance(board, (str, Path)) else board)
        plan(load_image(firmware, base if base is not None else target.address), target.layout,
             f"flash of {target.board}")  # a bad or oversized image fails before the port is touched
    with open_port(port, baud, timeout, even_parity=True) as ser:  # AN3155: 8 data bits, even parity, 1 stop
        bl = Bootloader(ser, Timeouts.scaled(timeout), retries)
        bl.connect()
        chip = bl.chip_id()
        if target is None:
            matches = [t for t in flash_targets().values() if t.chip_id == chip]
            if len({(t.layout, t.address) for t in matches}) != 1:
                raise FlashError(f"chip ID 0x{chip:03x} matches "
                                 f"{'boards ' + ', '.join(t.board for t in matches) if matches else 'no board file'}"
                                 ": pass --board")
            target = matches[0]
        elif chip != target.chip_id:
            raise FlashError(f"chip ID 0x{chip:03x} is not {target.board}'s 0x{target.chip_id:03x}: "
                             "wrong board connected, or pass the right --board")
        image = load_image(firmware, base if base is not None else target.address)
        rep = program(bl, image, target.layout, go=target.address if go else None, progress=progress,
                      what=f"flash of {target.board}")
    return {"port": port, "board": target.board, "chip_id": f"0x{chip:03x}",
            "bootloader_version": f"{(bl.version or 0) >> 4}.{(bl.version or 0) & 0xF}",
            "firmware": str(firmware), "bytes": rep.bytes_written, "start": f"0x{image.start:08x}",
            "end": f"0x{image.end:08x}", "pages_erased": rep.pages_erased, "blocks_written": rep.blocks_written,
            "blocks_verified": rep.blocks_verified, "verified": True, "repaired_pages": rep.repaired_pages,
            "recoveries": rep.recoveries, "go": f"0x{rep.go_address:08x}" if rep.go_address is not None else None,
            "seconds": rep.seconds}
