"""Write outputs to a temporary place and move them into place only when complete."""
from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def _usual_mode(full: int) -> int:
    """`full` less the process umask: what open()/mkdir() would have given (mkstemp/mkdtemp give 0600/0700)."""
    mask = os.umask(0)
    os.umask(mask)
    return full & ~mask


@contextmanager
def atomic_directory(dest: str | Path) -> Iterator[Path]:
    """Yield a fresh temp dir beside `dest`; on success it replaces `dest`.

    On an exception the temp dir is removed and `dest` is left untouched, so a
    half-written library or firmware never sits where a build expects it.
    """
    dest = Path(dest).resolve()
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.tmp", dir=dest.parent))
    os.chmod(tmp, _usual_mode(0o777))
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    if dest.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{dest.name}.old", dir=dest.parent))
        os.replace(dest, old / "d")
    os.replace(tmp, dest)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def write_bytes_atomic(dest: str | Path, data: bytes) -> Path:
    """Write a file through a temp file in the same folder, then rename it into place."""
    path = Path(dest)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, _usual_mode(0o666))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_text_atomic(dest: str | Path, text: str) -> Path:
    """write_bytes_atomic for text (UTF-8)."""
    return write_bytes_atomic(dest, text.encode())
