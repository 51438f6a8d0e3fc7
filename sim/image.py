"""Firmware images (ELF, Intel HEX, raw binary) as address -> bytes segments.

A flasher needs the bytes as they must sit in flash, so ELF files are read by
their loadable segments at the *load* (physical) address: `.data` is linked to
run from SRAM but stored in flash right after `.rodata`. Malformed files raise
BadImage, which the CLI turns into one line and exit 2.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

from tinyml.errors import TinymlError

ELF_MAGIC = b"\x7fELF"
PT_LOAD = 1


class BadImage(TinymlError):
    """The firmware file is malformed or its segments contradict each other."""


@dataclass(frozen=True)
class Segment:
    address: int
    data: bytes

    @property
    def end(self) -> int:
        return self.address + len(self.data)


@dataclass(frozen=True)
class FlashImage:
    """Sorted, non-overlapping, coalesced segments; `entry` if the file names one."""

    segments: tuple[Segment, ...]
    entry: int | None = None

    @property
    def size(self) -> int:
        return sum(len(s.data) for s in self.segments)

    @property
    def start(self) -> int:
        return self.segments[0].address

    @property
    def end(self) -> int:
        return self.segments[-1].end


def load_image(path: str | Path, base: int | None = None) -> FlashImage:
    """Read an ELF, .hex or .bin file; a .bin is placed at `base` (required for .bin)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise BadImage(f"cannot read {path}: {e.strerror or e}") from None
    if data.startswith(ELF_MAGIC):
        return parse_elf(data, str(path))
    if path.suffix.lower() in (".hex", ".ihex", ".ihx") or _looks_like_hex(data):
        return parse_ihex(data, str(path))
    if base is None:
        raise BadImage(f"{path}: a raw binary needs a base address")
    return from_segments([(base, data)], None, str(path))


def from_segments(parts: list[tuple[int, bytes]], entry: int | None, name: str) -> FlashImage:
    """Sort, reject overlaps, merge touching pieces; an empty image is an error."""
    parts = sorted(((a, bytes(d)) for a, d in parts if d), key=lambda p: p[0])
    if not parts:
        raise BadImage(f"{name}: no loadable bytes")
    merged: list[list] = []
    for addr, data in parts:
        if addr < 0 or addr + len(data) > 1 << 32:
            raise BadImage(f"{name}: segment at 0x{addr:x} lies outside the 32-bit address space")
        if merged and addr < merged[-1][0] + len(merged[-1][1]):
            raise BadImage(f"{name}: segments overlap at 0x{addr:08x}")
        if merged and addr == merged[-1][0] + len(merged[-1][1]):
            merged[-1][1] += data
        else:
            merged.append([addr, bytearray(data)])
    return FlashImage(tuple(Segment(a, bytes(d)) for a, d in merged), entry)


def parse_elf(data: bytes, name: str = "ELF file") -> FlashImage:
    """Loadable segments with file bytes, at their physical (load) address."""
    if len(data) < 52 or data[4] not in (1, 2) or data[5] not in (1, 2):
        raise BadImage(f"{name}: truncated or unknown ELF header")
    is64, order = data[4] == 2, "<" if data[5] == 1 else ">"
    try:
        if is64:
            entry, phoff = struct.unpack_from(order + "QQ", data, 24)
            phentsize, phnum = struct.unpack_from(order + "HH", data, 54)
            ph_fmt = order + "IIQQQQQQ"  # type flags offset vaddr paddr filesz memsz align
        else:
            entry, phoff = struct.unpack_from(order + "II", data, 24)
            phentsize, phnum = struct.unpack_from(order + "HH", data, 42)
            ph_fmt = order + "IIIIIIII"  # type offset vaddr paddr filesz memsz flags align
        if phentsize < struct.calcsize(ph_fmt) or phoff + phnum * phentsize > len(data):
            raise BadImage(f"{name}: program headers run past the end of the file")
        parts = []
        for i in range(phnum):
            f = struct.unpack_from(ph_fmt, data, phoff + i * phentsize)
            p_type, offset, paddr, filesz = (f[0], f[2], f[4], f[5]) if is64 else (f[0], f[1], f[3], f[4])
            if p_type != PT_LOAD or filesz == 0:
                continue
            if offset + filesz > len(data):
                raise BadImage(f"{name}: segment {i} runs past the end of the file")
            parts.append((paddr, data[offset:offset + filesz]))
    except struct.error:
        raise BadImage(f"{name}: truncated ELF file") from None
    return from_segments(parts, entry, name)


def _looks_like_hex(data: bytes) -> bool:
    head = data[:512].lstrip()
    return head.startswith(b":") and all(32 <= c < 127 or c in b"\r\n\t" for c in head)


def parse_ihex(data: bytes, name: str = "HEX file") -> FlashImage:
    """Intel HEX records 00-05 with checksums; stops at the end-of-file record."""
    try:
        lines = data.decode("ascii").splitlines()
    except UnicodeDecodeError:
        raise BadImage(f"{name}: not an ASCII Intel HEX file") from None
    upper, entry, parts, ended = 0, None, [], False
    for no, line in enumerate(lines, 1):
        line = line.strip()
        if not line:
            continue
        if not line.startswith(":") or len(line) < 11 or len(line) % 2 == 0:
            raise BadImage(f"{name}:{no}: not an Intel HEX record")
        try:
            rec = bytes.fromhex(line[1:])
        except ValueError:
            raise BadImage(f"{name}:{no}: bad hex digits") from None
        count, offset, rtype, payload = rec[0], (rec[1] << 8) | rec[2], rec[3], rec[4:-1]
        if len(payload) != count:
            raise BadImage(f"{name}:{no}: record length {count} does not match its data")
        if sum(rec) & 0xFF:
            raise BadImage(f"{name}:{no}: checksum mismatch")
        if rtype == 0:
            parts.append((upper + offset, payload))
        elif rtype == 1:
            ended = True
            break
        elif rtype in (2, 4) and count == 2:
            value = (payload[0] << 8) | payload[1]
            upper = value << 4 if rtype == 2 else value << 16
        elif rtype in (3, 5) and count == 4:
            hi, lo = (payload[0] << 8) | payload[1], (payload[2] << 8) | payload[3]
            entry = (hi << 4) + lo if rtype == 3 else (hi << 16) | lo
        else:
            raise BadImage(f"{name}:{no}: unknown or malformed record type {rtype:02x}")
    if not ended:
        raise BadImage(f"{name}: no end-of-file record (truncated?)")
    return from_segments(parts, entry, name)
