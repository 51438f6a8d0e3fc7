"""Errors the CLI turns into one-line messages and exit codes.

Exit codes: 0 ok, 1 a check failed (outputs differ), 2 bad input (malformed or
unsupported model, does not fit the board, bad arguments).
"""
from __future__ import annotations


class TinymlError(Exception):
    """Base class; `exit_code` is what the CLI returns."""

    exit_code = 2


class BadModel(TinymlError):
    """The model file is malformed, truncated or inconsistent."""


class UnsupportedOps(TinymlError):
    """The model uses ops we do not implement; lists each one with its node."""

    def __init__(self, items: list[tuple[str, str]]):
        self.items = items
        lines = [f"unsupported op {op} at node {node}" for op, node in items]
        super().__init__("; ".join(lines))


class DoesNotFit(TinymlError):
    """The model needs more memory than the board has."""

    def __init__(self, what: str, needed: int, available: int, detail: str = ""):
        self.what, self.needed, self.available = what, needed, available
        extra = f" ({detail})" if detail else ""
        super().__init__(
            f"does not fit: {what} needs {needed:,} bytes, board has {available:,} bytes{extra}"
        )


class ToolMissing(TinymlError):
    """A required external tool (compiler, simulator) is not installed."""


class CheckFailed(TinymlError):
    """A validation check failed (e.g. outputs differ from the oracle)."""

    exit_code = 1
