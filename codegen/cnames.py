"""Everything that turns model-provided text or types into C source.

Model files are untrusted: their names reach C only through these functions.
"""
from __future__ import annotations

import re

import numpy as np

_CTYPES = {
    "int4": "int8_t",
    "int8": "int8_t",
    "uint8": "uint8_t",
    "int16": "int16_t",
    "int32": "int32_t",
    "int64": "int64_t",
    "float32": "float",
    "bool": "uint8_t",
}


def ctype(dtype: str) -> str:
    return _CTYPES[dtype]


def c_ident(text: str, limit: int = 32) -> str:
    """A C identifier fragment: [A-Za-z0-9_] only, never starting with a digit."""
    s = re.sub(r"[^A-Za-z0-9_]", "_", text)[:limit].strip("_") or "x"
    return s if not s[0].isdigit() else "_" + s


def c_comment(text: str, limit: int = 80) -> str:
    """Text safe inside /* */ on one line: printable ASCII, no comment delimiters,
    no backslash (a trailing one would splice lines), no trigraph '??'."""
    s = "".join(ch if 32 <= ord(ch) < 127 else "?" for ch in text)
    s = s.replace("\\", "/").replace("*/", "* /").replace("/*", "/ *").replace("??", "?_")
    return s[:limit]


def c_array(values: np.ndarray, per_line: int = 24) -> str:
    """Format a flat array as C initializer lines (floats as exact hex literals)."""
    if values.dtype.kind == "f":
        items = [_c_float(float(v)) for v in values.tolist()]
    else:
        items = [str(v) for v in values.astype(np.int64).tolist()]
        if values.dtype.itemsize == 8:
            items = [f"{v}ll" for v in items]
    if not items:
        return "  0"
    return "\n".join("  " + ", ".join(items[i:i + per_line]) + "," for i in range(0, len(items), per_line))


def _c_float(v: float) -> str:
    if v != v:
        return "__builtin_nanf(\"\")"
    if v in (float("inf"), float("-inf")):
        return "__builtin_inff()" if v > 0 else "(-__builtin_inff())"
    return f"{v.hex()}f"
