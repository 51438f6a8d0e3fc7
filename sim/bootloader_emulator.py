"""An emulated STM32 system-memory bootloader (ST AN3155, USART) for tests without a board.

It follows the device side of AN3155 byte for byte: autobaud sync on 0x7F, then
command + complement, ACK 0x79 / NACK 0x1F at every step, XOR checksums, and no
timeouts (after a lost byte it waits for the rest of the frame, as the ROM does).
Flash behaves like NOR flash: erase sets a page to 0xFF, programming can only
clear bits. It is served on a pty (stm32flash and pyserial open /dev/pts/N) or a
TCP socket (pyserial `socket://`). Like a real board it keeps its state when the
host closes a pty; after GO it runs "the application" and answers nothing until
reset() (the reset button, BOOT0 high). A new TCP connection is a fresh power-up.
Faults (NACKs, lost and flipped bytes, a silent device, stuck flash bits, any chip
ID) are injected from a seeded generator and counted, so a test can show they
really happened.

    python -m tinyml.sim.bootloader_emulator --pty          # prints /dev/pts/N; SIGUSR1 resets
    python -m tinyml.sim.bootloader_emulator --tcp 4444     # socket://127.0.0.1:4444
"""
from __future__ import annotations

import argparse
import os
import pty
import random
import select
import signal
import socket
import threading
import tty
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator, Protocol

from tinyml.sim.bootloader import (
    ACK, BLOCK, ERASE, EXTENDED_ERASE, GET, GET_ID, GET_VERSION, GO, NACK, READ_MEMORY, READOUT_PROTECT,
    READOUT_UNPROTECT, SYNC, WRITE_MEMORY, WRITE_PROTECT, WRITE_UNPROTECT, FlashLayout, checksum,
)

POLL_S = 0.05  # how often a blocked read looks at the stop flag


@dataclass(frozen=True)
class Chip:
    """What the emulated part reports and stores; defaults are an STM32F405 (1 MB, 0x413, bootloader v3.1)."""

    pid: int = 0x413
    version: int = 0x31
    flash: FlashLayout = FlashLayout.from_runs(0x08000000, [[4, 16384], [1, 65536], [7, 131072]])
    ram_origin: int = 0x20000000
    ram_size: int = 128 * 1024
    ram_reserved: int = 0x3000  # SRAM the ROM bootloader uses itself; writes below it are refused (AN2606)
    extended_erase: bool = True  # 0x44 (bootloader v3.x) or the 1-byte-page ERASE 0x43 (v2.x)

    @property
    def commands(self) -> bytes:
        erase = EXTENDED_ERASE if self.extended_erase else ERASE
        return bytes([GET, GET_VERSION, GET_ID, READ_MEMORY, GO, WRITE_MEMORY, erase,
                      WRITE_PROTECT, WRITE_UNPROTECT, READOUT_PROTECT, READOUT_UNPROTECT])


@dataclass(frozen=True)
class Faults:
    """Per-byte (or per-ACK) probabilities of each fault, from a seeded generator.

    `limit` caps how many faults are injected in all, so a flasher that recovers can finish.
    `stuck` maps flash addresses to bits that cannot be programmed to 0 (a worn cell).
    """

    seed: int = 0
    nack: float = 0.0  # an ACK the device would send becomes NACK (and the command is not done)
    drop_rx: float = 0.0  # a byte from the host is lost
    drop_tx: float = 0.0  # a byte to the host is lost
    flip_rx: float = 0.0  # one bit flipped in a byte from the host
    flip_tx: float = 0.0  # one bit flipped in a byte to the host
    limit: int | None = None
    silent: bool = False  # never answers (a board that is not in bootloader mode)
    stuck: dict[int, int] = field(default_factory=dict)


class Closed(Exception):
    """The connection is gone (or the server is stopping)."""


class _Refused(Exception):
    """Answer NACK and go back to waiting for a command."""


class _Restart(Exception):
    """The device resets (reset button, or an option change): back to waiting for the sync byte."""


class Link(Protocol):
    def recv(self) -> bytes: ...  # waits up to POLL_S: b"" if nothing came; raises Closed
    def send(self, data: bytes) -> None: ...


class EmulatedBootloader:
    """Device state (flash, SRAM, protection) plus the AN3155 command loop."""

    def __init__(self, chip: Chip | None = None, faults: Faults | None = None):
        self.chip = chip or Chip()
        self.faults = faults or Faults()
        self.flash = bytearray(b"\xff" * self.chip.flash.size)
        self.ram = bytearray(self.chip.ram_size)
        self.read_protected = False
        self.write_protected: set[int] = set()
        self.erased: list[int] = []  # every page erase, in order (mass erase logs every page)
        self.go_addresses: list[int] = []
        self.injected: Counter[str] = Counter()
        self._rng = random.Random(self.faults.seed)
        self._buf = bytearray()
        self._link: Link | None = None
        self._lock = threading.Lock()
        self._reset_asked, self._reset_done = threading.Event(), threading.Event()

    def reset(self) -> None:
        """Press reset with BOOT0 high: pending input is lost and the bootloader waits for 0x7F again."""
        with self._lock:
            if self._link is None:
                return  # not serving: the next session starts at reset anyway
            self._reset_done.clear()
            self._reset_asked.set()
        if not self._reset_done.wait(5):
            raise RuntimeError("the emulator thread did not take the reset")

    # -- faulty byte I/O --------------------------------------------------------------------
    def _fault(self, kind: str) -> bool:
        rate = getattr(self.faults, kind)
        if not rate or (self.faults.limit is not None and sum(self.injected.values()) >= self.faults.limit):
            return False
        if self._rng.random() < rate:
            self.injected[kind] += 1
            return True
        return False

    def _get(self) -> int:
        while True:
            while not self._buf:
                if self._reset_asked.is_set():
                    self._reset_asked.clear()
                    self._reset_done.set()
                    raise _Restart
                self._buf += self._link.recv()
            b = self._buf.pop(0)
            if self._fault("drop_rx"):
                continue
            if self._fault("flip_rx"):
                b ^= 1 << self._rng.randrange(8)
            return b

    def _take(self, n: int) -> bytes:
        return bytes(self._get() for _ in range(n))

    def _put(self, data: bytes) -> None:
        if self.faults.silent:
            return
        out = bytearray()
        for b in data:
            if self._fault("drop_tx"):
                continue
            if self._fault("flip_tx"):
                b ^= 1 << self._rng.randrange(8)
            out.append(b)
        self._link.send(bytes(out))

    def _ack(self) -> None:
        """An ACK the device would send; fault injection may turn it into a refusal."""
        if self._fault("nack"):
            raise _Refused
        self._put(bytes([ACK]))

    # -- session ----------------------------------------------------------------------------
    def serve(self, link: Link) -> None:
        """Run the bootloader from reset on one connection until it closes."""
        with self._lock:
            self._link, self._buf = link, bytearray()
        try:
            while True:
                try:
                    self._bootloader()
                except _Restart:
                    self._buf.clear()
        except Closed:
            pass
        finally:
            with self._lock:
                self._link = None
                if self._reset_asked.is_set():
                    self._reset_asked.clear()
                    self._reset_done.set()

    def _bootloader(self) -> None:
        while self._get() != SYNC:  # autobaud: anything before 0x7F is ignored
            pass
        self._put(bytes([ACK]))
        handlers = {GET: self._cmd_get, GET_VERSION: self._cmd_get_version, GET_ID: self._cmd_get_id,
                    READ_MEMORY: self._cmd_read, GO: self._cmd_go, WRITE_MEMORY: self._cmd_write,
                    WRITE_PROTECT: self._cmd_write_protect, WRITE_UNPROTECT: self._cmd_write_unprotect,
                    READOUT_PROTECT: self._cmd_readout_protect, READOUT_UNPROTECT: self._cmd_readout_unprotect}
        handlers[EXTENDED_ERASE if self.chip.extended_erase else ERASE] = (
            self._cmd_extended_erase if self.chip.extended_erase else self._cmd_erase)
        while True:
            cmd, complement = self._get(), self._get()
            handler = handlers.get(cmd)
            try:
                if cmd ^ complement != 0xFF or handler is None:
                    raise _Refused
                if handler():  # True: the program started, the bootloader is gone until reset
                    while True:
                        self._get()
            except _Refused:
                self._put(bytes([NACK]))

    # -- memory map -------------------------------------------------------------------------
    def _region(self, address: int, n: int, write: bool) -> tuple[bytearray, int, bool]:
        """(backing store, offset, is_flash) for [address, address+n) or refuse."""
        f = self.chip.flash
        if f.origin <= address and address + n <= f.end:
            return self.flash, address - f.origin, True
        low = self.chip.ram_origin + (self.chip.ram_reserved if write else 0)
        if low <= address and address + n <= self.chip.ram_origin + self.chip.ram_size:
            return self.ram, address - self.chip.ram_origin, False
        raise _Refused

    def _address(self) -> int:
        frame = self._take(5)
        if checksum(frame[:4]) != frame[4]:
            raise _Refused
        return int.from_bytes(frame[:4], "big")

    def _erase_pages(self, pages: list[int]) -> None:
        layout = self.chip.flash
        if any(p >= len(layout.pages) or p in self.write_protected for p in pages):
            raise _Refused
        for p in pages:
            off = layout.starts[p] - layout.origin
            self.flash[off:off + layout.pages[p]] = b"\xff" * layout.pages[p]
            self.erased.append(p)

    # -- commands (return True when control passes to the application) ---------------------
    def _cmd_get(self) -> None:
        self._ack()
        self._put(bytes([len(self.chip.commands), self.chip.version]) + self.chip.commands + bytes([ACK]))

    def _cmd_get_version(self) -> None:
        self._ack()
        self._put(bytes([self.chip.version, 0, 0, ACK]))  # two option bytes, 0 for compatibility

    def _cmd_get_id(self) -> None:
        self._ack()
        self._put(bytes([1]) + self.chip.pid.to_bytes(2, "big") + bytes([ACK]))

    def _cmd_read(self) -> None:
        if self.read_protected:
            raise _Refused
        self._ack()
        address = self._address()
        self._region(address, 1, write=False)
        self._ack()
        n, complement = self._get(), self._get()
        if n ^ complement != 0xFF:
            raise _Refused
        store, off, _ = self._region(address, n + 1, write=False)
        self._ack()
        self._put(bytes(store[off:off + n + 1]))

    def _cmd_go(self) -> bool:
        if self.read_protected:
            raise _Refused
        self._ack()
        address = self._address()
        self._region(address, 4, write=False)
        if self._fault("nack"):
            raise _Refused
        self.go_addresses.append(address)  # before the ACK, so whoever sees the ACK sees the jump
        self._put(bytes([ACK]))
        return True

    def _cmd_write(self) -> None:
        if self.read_protected:
            raise _Refused
        self._ack()
        address = self._address()
        self._region(address, 1, write=True)
        if address % 4:
            raise _Refused
        self._ack()
        n = self._get()
        data = self._take(n + 1)
        if checksum(bytes([n]) + data) != self._get() or (n + 1) % 4:
            raise _Refused
        store, off, is_flash = self._region(address, n + 1, write=True)
        layout = self.chip.flash
        if is_flash and {layout.page_of(address), layout.page_of(address + n)} & self.write_protected:
            raise _Refused
        if self._fault("nack"):  # e.g. a programming error: nothing written
            raise _Refused
        for i, b in enumerate(data):
            if is_flash:
                b = store[off + i] & (b | self.faults.stuck.get(address + i, 0))  # bits only go 1 -> 0
            store[off + i] = b
        self._put(bytes([ACK]))

    def _cmd_extended_erase(self) -> None:
        if self.read_protected:
            raise _Refused
        self._ack()
        head = self._take(2)
        code = int.from_bytes(head, "big")
        if code >= 0xFFF0:  # special erase: 0xFFFF mass erase; bank erases (0xFFFE/0xFFFD) need a dual-bank part
            if self._get() != checksum(head) or code != 0xFFFF:
                raise _Refused
            pages = list(range(len(self.chip.flash.pages)))
        else:
            body = self._take(2 * (code + 1))
            if self._get() != checksum(head + body):
                raise _Refused
            pages = [int.from_bytes(body[i:i + 2], "big") for i in range(0, len(body), 2)]
        self._erase_pages(pages)
        self._ack()

    def _cmd_erase(self) -> None:
        if self.read_protected:
            raise _Refused
        self._ack()
        n = self._get()
        if n == 0xFF:  # global erase: 0xFF followed by 0x00
            if self._get() != 0x00:
                raise _Refused
            pages = list(range(len(self.chip.flash.pages)))
        else:
            body = self._take(n + 1)
            if self._get() != checksum(bytes([n]) + body):
                raise _Refused
            pages = list(body)
        self._erase_pages(pages)
        self._ack()

    def _cmd_write_protect(self) -> None:
        if self.read_protected:
            raise _Refused
        self._ack()
        n = self._get()
        body = self._take(n + 1)
        if self._get() != checksum(bytes([n]) + body) or max(body) >= len(self.chip.flash.pages):
            raise _Refused
        self.write_protected |= set(body)
        self._ack()
        raise _Restart

    def _cmd_write_unprotect(self) -> None:
        if self.read_protected:
            raise _Refused
        self._ack()
        self.write_protected.clear()
        self._ack()
        raise _Restart

    def _cmd_readout_protect(self) -> None:
        if self.read_protected:
            raise _Refused
        self._ack()
        self.read_protected = True
        self._ack()
        raise _Restart

    def _cmd_readout_unprotect(self) -> None:
        self._ack()
        self.write_protected.clear()
        self._erase_pages(list(range(len(self.chip.flash.pages))))  # removing protection mass-erases
        self.read_protected = False
        self._ack()
        raise _Restart


# -- transports -------------------------------------------------------------------------------
class _PtyLink:
    """The master side of a pty; EIO on read means nobody has the slave open right now."""

    def __init__(self, fd: int, stop: threading.Event):
        self.fd, self.stop = fd, stop

    def recv(self) -> bytes:
        if self.stop.is_set():
            raise Closed
        if not select.select([self.fd], [], [], POLL_S)[0]:
            return b""
        try:
            return os.read(self.fd, 4096)
        except OSError:  # no host has the port open: the board waits (it does not notice)
            self.stop.wait(POLL_S)
            return b""

    def send(self, data: bytes) -> None:
        try:
            os.write(self.fd, data)
        except OSError:
            pass  # nobody listening: the bytes are lost on the wire


class _SocketLink:
    def __init__(self, conn: socket.socket, stop: threading.Event):
        self.conn, self.stop = conn, stop
        conn.settimeout(POLL_S)
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # one-byte ACKs must not wait for Nagle

    def recv(self) -> bytes:
        if self.stop.is_set():
            raise Closed
        try:
            data = self.conn.recv(4096)
        except socket.timeout:
            return b""
        except OSError:
            raise Closed from None
        if not data:
            raise Closed
        return data

    def send(self, data: bytes) -> None:
        try:
            self.conn.sendall(data)
        except OSError:
            raise Closed from None


@contextmanager
def serve_pty(emu: EmulatedBootloader) -> Iterator[str]:
    """Serve `emu` on a new pty; yields the /dev/pts/N path a host opens."""
    master, slave = pty.openpty()
    tty.setraw(slave)  # no echo or line editing, whoever opens it first
    path = os.ttyname(slave)
    os.close(slave)
    stop = threading.Event()
    link = _PtyLink(master, stop)

    thread = threading.Thread(target=emu.serve, args=(link,), name="bootloader-pty", daemon=True)
    thread.start()
    try:
        yield path
    finally:
        stop.set()
        thread.join()
        os.close(master)


@contextmanager
def serve_tcp(emu: EmulatedBootloader, host: str = "127.0.0.1", port: int = 0) -> Iterator[int]:
    """Serve `emu` on a TCP port (one connection at a time); yields the port number."""
    server = socket.create_server((host, port))
    server.settimeout(POLL_S)
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except socket.timeout:
                continue
            with conn:
                emu.serve(_SocketLink(conn, stop))

    thread = threading.Thread(target=loop, name="bootloader-tcp", daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        stop.set()
        thread.join()
        server.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Emulated STM32 UART bootloader (AN3155) for trying flashers.")
    where = ap.add_mutually_exclusive_group(required=True)
    where.add_argument("--pty", action="store_true", help="serve on a new pty and print its path")
    where.add_argument("--tcp", type=int, metavar="PORT", help="serve on 127.0.0.1:PORT (0: any free port)")
    ap.add_argument("--pid", type=lambda s: int(s, 0), default=Chip.pid, help="chip ID to report (default 0x413)")
    args = ap.parse_args(argv)
    emu = EmulatedBootloader(Chip(pid=args.pid))
    server = serve_pty(emu) if args.pty else serve_tcp(emu, port=args.tcp)
    if args.pty:
        signal.signal(signal.SIGUSR1, lambda *_: emu.reset())
    with server as where_:
        print(where_ if args.pty else f"socket://127.0.0.1:{where_}", flush=True)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
