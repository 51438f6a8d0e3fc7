"""Host runner: compile a generated library with the PC's C compiler and run it.

The harness streams input sets through stdin and outputs through stdout, so
one process runs any number of inferences. The same flags as the CI checks
(C99, -Wall -Wextra -Werror) apply, and sanitizers are one switch away.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from importlib.resources import files
from pathlib import Path

import numpy as np

from tinyml.codegen.emit import IOInfo, Library
from tinyml.errors import CheckFailed, ToolMissing
from tinyml.ir import DTYPES
from tinyml.sim.runner import RunResult

CFLAGS = ["-std=c99", "-O2", "-Wall", "-Wextra", "-Werror"]
SANITIZE = ["-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-fno-omit-frame-pointer", "-g"]


def compiler() -> str:
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if not cc:
        raise ToolMissing("no host C compiler found (install gcc or set CC)")
    return cc


def compile_library(lib: Library, sanitize: bool = False, build_dir: Path | None = None) -> Path:
    """Build the harness + library into an executable; returns its path."""
    harness = files("tinyml.firmware_templates") / "host" / "host_main.c"
    sources = sorted(lib.path.glob("*.c"))
    flags = CFLAGS + (SANITIZE if sanitize else [])
    digest = hashlib.sha1(" ".join(flags).encode())
    for p in sources + sorted(lib.path.glob("*.h")):
        digest.update(p.read_bytes())
    build_dir = build_dir or lib.path / ".host-build"
    build_dir.mkdir(parents=True, exist_ok=True)
    exe = build_dir / f"model-{digest.hexdigest()[:12]}"
    if exe.exists():
        return exe
    cmd = [compiler(), *flags, f"-I{lib.path}", str(harness), *map(str, sources), "-lm", "-o", str(exe) + ".tmp"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise CheckFailed(f"host compile failed: {proc.stderr.strip().splitlines()[:5]}")
    os.replace(str(exe) + ".tmp", exe)
    return exe


def pack_inputs(infos: list[IOInfo], inputs: list[list[np.ndarray]]) -> bytes:
    chunks = []
    for sample in inputs:
        for info, x in zip(infos, sample, strict=True):
            arr = np.ascontiguousarray(np.asarray(x, dtype=DTYPES[info.dtype][0]))
            if arr.nbytes != info.nbytes:
                raise CheckFailed(f"input {info.name}: {arr.nbytes} bytes, model expects {info.nbytes}")
            chunks.append(arr.tobytes())
    return b"".join(chunks)


def unpack_outputs(infos: list[IOInfo], data: bytes, samples: int) -> list[list[np.ndarray]]:
    per_sample = sum(i.nbytes for i in infos)
    if len(data) != per_sample * samples:
        raise CheckFailed(f"expected {per_sample * samples} output bytes, got {len(data)}")
    out, pos = [], 0
    for _ in range(samples):
        row = []
        for info in infos:
            arr = np.frombuffer(data[pos:pos + info.nbytes], dtype=DTYPES[info.dtype][0]).reshape(info.shape)
            row.append(arr.copy())
            pos += info.nbytes
        out.append(row)
    return out


class HostRunner:
    """Runs a generated library natively (optionally under ASan/UBSan)."""

    def __init__(self, lib: Library, sanitize: bool = False, timeout_s: float = 120.0):
        self.lib, self.sanitize, self.timeout_s = lib, sanitize, timeout_s
        self.target = "host+sanitizers" if sanitize else "host"
        self.exe = compile_library(lib, sanitize)

    def run(self, inputs: list[list[np.ndarray]]) -> RunResult:
        data = pack_inputs(self.lib.inputs, inputs)
        with tempfile.TemporaryFile() as err:
            try:
                proc = subprocess.run([str(self.exe)], input=data, stdout=subprocess.PIPE, stderr=err,
                                      timeout=self.timeout_s)
            except subprocess.TimeoutExpired:
                raise CheckFailed(f"host run timed out after {self.timeout_s:.0f} s") from None
            err.seek(0)
            stderr = err.read().decode(errors="replace")
        if proc.returncode != 0 or stderr.strip():
            first = stderr.strip().splitlines()[:3]
            raise CheckFailed(f"host run failed (exit {proc.returncode}): {' | '.join(first)}")
        return RunResult(unpack_outputs(self.lib.outputs, proc.stdout, len(inputs)))
