"""A bounds-checked reader for FlatBuffers tables, written for untrusted files.

Why not the `flatbuffers` package: its accessors trust every offset and length,
so a hostile .tflite can make them read past the buffer, loop over a vector
"of four billion elements" or allocate gigabytes. Here every offset, vtable,
vector length and string is checked against the buffer before it is used,
and any violation raises `BadModel` naming the object that was being read.

Two further limits keep a hostile file cheap to reject:
- a vector must fit in the bytes that follow it, so its length is bounded by
  the file size;
- a work budget proportional to the file size is charged for every table and
  vector element read. In a well-formed file each object is stored once, so
  the budget is never reached; a file whose offsets all point at the same big
  vector (quadratic work through sharing) runs out of budget instead of time.

Offsets to tables, vectors and strings are unsigned and point forward, so the
object graph cannot contain cycles; reading is driven by the schema, never by
the data, so recursion depth is fixed by the schema.
"""
from __future__ import annotations

import struct
from collections.abc import Iterator

import numpy as np

from tinyml.errors import BadModel

_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
_I32 = struct.Struct("<i")

# Work units per byte of file (plus a constant for tiny files).
BUDGET_PER_BYTE = 4
BUDGET_BASE = 1 << 16
TABLE_COST = 8


class FlatBuffer:
    """The whole file plus the shared work budget of everything read from it."""

    def __init__(self, data: bytes):
        self.data = data
        self.size = len(data)
        self.budget = BUDGET_PER_BYTE * self.size + BUDGET_BASE

    def fail(self, what: str, problem: str) -> BadModel:
        return BadModel(f"malformed model: {what}: {problem}")

    def past_end(self, what: str, problem: str) -> BadModel:
        return self.fail(what, f"{problem} (truncated or corrupted file?)")

    def charge(self, units: int, what: str) -> None:
        self.budget -= units
        if self.budget < 0:
            raise self.fail(what, "the file references far more data than it holds (shared or looping offsets)")

    def u16(self, pos: int, what: str) -> int:
        self._need(pos, 2, what)
        return _U16.unpack_from(self.data, pos)[0]

    def u32(self, pos: int, what: str) -> int:
        self._need(pos, 4, what)
        return _U32.unpack_from(self.data, pos)[0]

    def i32(self, pos: int, what: str) -> int:
        self._need(pos, 4, what)
        return _I32.unpack_from(self.data, pos)[0]

    def _need(self, pos: int, n: int, what: str) -> None:
        if pos < 0 or pos + n > self.size:
            raise self.past_end(what, f"{n} bytes at offset {pos} lie outside the {self.size}-byte file")

    def root(self, what: str) -> "Table":
        if self.size < 8:
            raise BadModel(f"malformed model: the file is {self.size} bytes, too short for a flatbuffer")
        return self.table_at(self.u32(0, "root offset"), what)

    def table_at(self, pos: int, what: str) -> "Table":
        """The table whose start is `pos`, with its vtable validated."""
        self.charge(TABLE_COST, what)
        vt = pos - self.i32(pos, what)
        vt_size = self.u16(vt, f"{what} vtable")
        if vt_size < 4 or vt_size % 2:
            raise self.fail(what, f"vtable size {vt_size} is invalid")
        self._need(vt, vt_size, f"{what} vtable")
        inline_size = self.u16(vt + 2, f"{what} vtable")
        if inline_size < 4:
            raise self.fail(what, f"table size {inline_size} is invalid")
        self._need(pos, inline_size, what)
        return Table(self, pos, vt, vt_size, inline_size, what)


class Table:
    """One table: typed accessors by schema field id, each bounds-checked."""

    __slots__ = ("fb", "pos", "vt", "vt_size", "inline_size", "what")

    def __init__(self, fb: FlatBuffer, pos: int, vt: int, vt_size: int, inline_size: int, what: str):
        self.fb, self.pos, self.vt, self.vt_size, self.inline_size, self.what = (
            fb, pos, vt, vt_size, inline_size, what)

    def _field(self, fid: int, width: int, name: str) -> int:
        """Absolute position of field `fid` (0 when absent, i.e. the default applies)."""
        slot = 4 + 2 * fid
        if slot + 2 > self.vt_size:
            return 0
        off = _U16.unpack_from(self.fb.data, self.vt + slot)[0]
        if off == 0:
            return 0
        if off + width > self.inline_size:
            raise self.fb.fail(f"{self.what}.{name}", f"field at {off} lies outside its {self.inline_size}-byte table")
        return self.pos + off

    def has(self, fid: int) -> bool:
        return self._field(fid, 1, f"field {fid}") != 0

    def scalar(self, fid: int, fmt: str, default: int | float | bool, name: str):
        """A scalar field: fmt is a struct code ('b', 'B', 'i', 'I', 'Q', 'f', '?')."""
        s = struct.Struct("<" + fmt)
        pos = self._field(fid, s.size, name)
        if not pos:
            return default
        value = s.unpack_from(self.fb.data, pos)[0]
        return bool(value) if fmt == "?" else value

    def _target(self, fid: int, name: str) -> int:
        """Follow the uoffset stored in field `fid`; 0 when the field is absent."""
        pos = self._field(fid, 4, name)
        if not pos:
            return 0
        target = pos + _U32.unpack_from(self.fb.data, pos)[0]
        if target >= self.fb.size:
            raise self.fb.past_end(f"{self.what}.{name}", f"offset {target} points past the end of the file")
        return target

    def table(self, fid: int, name: str) -> "Table | None":
        target = self._target(fid, name)
        return self.fb.table_at(target, f"{self.what}.{name}") if target else None

    def _vector(self, fid: int, elem_size: int, name: str) -> tuple[int, int] | None:
        """(start of elements, count) of a vector field, checked to fit in the file."""
        target = self._target(fid, name)
        if not target:
            return None
        what = f"{self.what}.{name}"
        count = self.fb.u32(target, what)
        start = target + 4
        if count * elem_size > self.fb.size - start:
            raise self.fb.past_end(what, f"vector of {count} elements runs past the end of the file")
        self.fb.charge(count * elem_size, what)
        return start, count

    def numbers(self, fid: int, dtype: str, name: str) -> np.ndarray | None:
        """A vector of scalars as a fresh little-endian-decoded numpy array (None if absent)."""
        dt = np.dtype(dtype).newbyteorder("<")
        v = self._vector(fid, dt.itemsize, name)
        if v is None:
            return None
        start, count = v
        return np.frombuffer(self.fb.data, dtype=dt, count=count, offset=start).astype(dt.newbyteorder("="))

    def raw_bytes(self, fid: int, name: str) -> memoryview | None:
        """A [ubyte] vector as a zero-copy view into the file."""
        v = self._vector(fid, 1, name)
        if v is None:
            return None
        start, count = v
        return memoryview(self.fb.data)[start:start + count]

    def string(self, fid: int, name: str) -> str | None:
        """A string field; invalid UTF-8 is replaced (names are only ever displayed or sanitized)."""
        v = self._vector(fid, 1, name)
        if v is None:
            return None
        start, count = v
        if start + count >= self.fb.size or self.fb.data[start + count] != 0:
            raise self.fb.fail(f"{self.what}.{name}", "string is not NUL-terminated inside the file")
        return self.fb.data[start:start + count].decode("utf-8", errors="replace")

    def tables(self, fid: int, name: str) -> "TableVector":
        """A vector of tables (empty if absent); elements are validated when accessed."""
        v = self._vector(fid, 4, name)
        start, count = v if v is not None else (0, 0)
        return TableVector(self.fb, start, count, f"{self.what}.{name}")


class TableVector:
    """A lazily read vector of tables, so a corrupt element stops the reading
    before the elements after it cost anything."""

    __slots__ = ("fb", "start", "count", "what")

    def __init__(self, fb: FlatBuffer, start: int, count: int, what: str):
        self.fb, self.start, self.count, self.what = fb, start, count, what

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, i: int) -> Table:
        if not 0 <= i < self.count:
            raise IndexError(i)
        pos = self.start + 4 * i
        target = pos + _U32.unpack_from(self.fb.data, pos)[0]
        if target >= self.fb.size:
            raise self.fb.past_end(f"{self.what}[{i}]", f"offset {target} points past the end of the file")
        return self.fb.table_at(target, f"{self.what}[{i}]")

    def __iter__(self) -> Iterator[Table]:
        return (self[i] for i in range(self.count))
