"""Errors the CLI turns into one-line messages and exit codes.

Exit codes: 0 ok, 1 a check failed (outputs differ), 2 bad input (malformed or
unsupported model, does not fit the board, bad arguments).

`show` makes a model-provided name safe for a message, and op code runs under
`op_guard`, so a hostile file gives one line, never a traceback.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import TYPE_CHECKING, Iterator

if TYPE_CHECKING:
    from tinyml.ir import Node


class TinymlError(Exception):
    """Base class; `exit_code` is what the CLI returns."""

    exit_code = 2


class BadModel(TinymlError):
    """The model file is malformed, truncated or inconsistent."""


class OpCrashed(BadModel):
    """An op module raised on this model instead of rejecting it.

    That is a bug in tinyml (the op's check() should have named the problem),
    but the user still gets one line and exit 2; tests look for this class.
    """


class UnsupportedOps(TinymlError):
    """The model uses ops we do not implement; lists each one with its node."""

    def __init__(self, items: list[tuple[str, str]], hint: str = ""):
        self.items = items
        lines = [f"unsupported op {op} at node {node}" for op, node in items]
        super().__init__("; ".join(lines + ([hint] if hint else [])))


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


def show(text: str, limit: int = 80) -> str:
    """A model-provided name made safe for a one-line message."""
    s = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
    return s if len(s) <= limit else s[:limit - 3] + "..."


@contextmanager
def op_guard(n: "Node", what: str) -> Iterator[None]:
    """Re-raise anything but a TinymlError from op code as OpCrashed for node `n`.

    Op modules are written by several people and see untrusted attrs and shapes;
    this is the boundary between them and the model.
    """
    try:
        yield
    except TinymlError:
        raise
    except Exception as e:  # noqa: BLE001 - the boundary between untrusted models and op code
        raise OpCrashed(f"node {show(n.name)} ({n.op}): {what} failed: {type(e).__name__}: {show(str(e))}") from None
