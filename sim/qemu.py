"""Run built firmware in QEMU and measure it: the simulator in the loop.

One QEMU process serves every input set of a run: the host talks to the
firmware's UART through QEMU's stdio (the same framed protocol a real board
speaks over USB-UART, see sim/protocol.py), so nothing waits on a TCP port or
a pty. Cost is counted exactly, as guest instructions (not cycles):

- netduinoplus2 (STM32F405): TIM2 runs at 1 GHz of virtual time and
  `-icount shift=0` makes one instruction one nanosecond, so the firmware's
  own counter reads instructions;
- any other machine (mps2-an386/an500): the firmware's tm_now() is a mark and
  a small TCG plugin (insn_marks.c, built once into the user's cache) records
  the instruction count each time it runs.

On both, the plugin also records each inference's instruction mix, which
sim/cycles.py turns into an estimated cycle count and milliseconds at the
board's clock (labelled as estimates; QEMU models no pipeline).

Both are deterministic: the same firmware and inputs give the same counts on
every run. Every run has a time limit; a fault (reported by the firmware's
fault handler) or a hang becomes a one-line TinymlError and QEMU is killed.
"""
from __future__ import annotations

import hashlib
import os
import select
import shutil
import subprocess
import tempfile
import threading
import time
from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from tinyml.codegen.firmware import Firmware, FirmwareImage
from tinyml.errors import CheckFailed, ToolMissing
from tinyml.sim.cycles import estimate, inference_mixes
from tinyml.sim.host import pack_inputs
from tinyml.sim.measure import check_hello, leaving_out_io, run_result
from tinyml.sim.protocol import Counter, Hello, Link, LinkError, Result, counter_delta
from tinyml.sim.runner import RunResult

if TYPE_CHECKING:
    from tinyml.pipeline import Compiled
    from tinyml.sim.renode import RenodeRunner

QEMU = "qemu-system-arm"


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "tinyml"


def plugin_path() -> Path:
    """Build the instruction-mark plugin once per source version; returns the .so."""
    src = (files("tinyml.sim") / "insn_marks.c").read_bytes()
    out = cache_dir() / "qemu-plugins" / f"insn_marks-{hashlib.sha1(src).hexdigest()[:12]}.so"
    if out.exists():
        return out
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if not cc:
        raise ToolMissing("no host C compiler to build the QEMU instruction-count plugin (install gcc)")
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        c_file, so = Path(tmp) / "insn_marks.c", Path(tmp) / "insn_marks.so"
        c_file.write_bytes(src)
        proc = subprocess.run([cc, "-O2", "-Wall", "-Wextra", "-Werror", "-shared", "-fPIC", "-o", str(so),
                               str(c_file)], capture_output=True, text=True)
        if proc.returncode != 0:
            raise ToolMissing(f"cannot build the QEMU plugin: {proc.stderr.strip()[:300]}")
        os.replace(so, out)
    return out


class PipeTransport:
    """QEMU's stdio serial port as a Transport; a thread drains stdout and stderr."""

    def __init__(self, proc: subprocess.Popen):
        self.proc = proc
        self.buf = bytearray()
        self.eof = False
        self.stderr = bytearray()
        self.cond = threading.Condition()
        os.set_blocking(proc.stdin.fileno(), False)
        threading.Thread(target=self._pump_stdout, daemon=True).start()
        threading.Thread(target=self._pump_stderr, daemon=True).start()

    def _pump_stdout(self) -> None:
        fd = self.proc.stdout.fileno()
        while True:
            data = os.read(fd, 1 << 16)
            with self.cond:
                if not data:
                    self.eof = True
                else:
                    self.buf += data
                self.cond.notify_all()
            if not data:
                return

    def _pump_stderr(self) -> None:
        fd = self.proc.stderr.fileno()
        while data := os.read(fd, 1 << 16):
            self.stderr += data
            del self.stderr[:-8192]

    def read(self, n: int, timeout: float) -> bytes:
        deadline = time.monotonic() + timeout
        with self.cond:
            while not self.buf and not self.eof:
                left = deadline - time.monotonic()
                if left <= 0:
                    return b""
                self.cond.wait(left)
            if not self.buf:
                raise LinkError(f"QEMU exited (status {self.proc.wait()}) before the firmware answered"
                                + self.stderr_hint())
            out = bytes(self.buf[:n])
            del self.buf[:n]
            return out

    def write(self, data: bytes, timeout: float) -> None:
        fd, view = self.proc.stdin.fileno(), memoryview(data)
        deadline = time.monotonic() + timeout
        while view:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([], [fd], [], left)[1]:
                raise LinkError(f"the firmware stopped reading its UART ({len(view)} bytes not taken)")
            try:
                view = view[os.write(fd, view):]
            except BlockingIOError:
                continue
            except BrokenPipeError:
                raise LinkError(f"QEMU exited (status {self.proc.wait()})" + self.stderr_hint()) from None

    def stderr_hint(self) -> str:
        text = self.stderr.decode(errors="replace").strip()
        return f": {text.splitlines()[-1][:200]}" if text else ""


class QemuRunner:
    """Runner (sim/runner.py) for a built firmware on its QEMU machine."""

    def __init__(self, firmware: Firmware, timeout_s: float = 120.0, boot_timeout_s: float = 20.0):
        if not shutil.which(QEMU):
            raise ToolMissing(f"{QEMU} not found; install it with: apt-get install qemu-system-arm")
        self.fw = firmware
        self.image: FirmwareImage = firmware.qemu_image
        if not self.image.machine:
            raise CheckFailed(f"{firmware.board.name}: no image for a QEMU machine in {firmware.path}")
        self.target = f"qemu:{self.image.machine}"
        self.timeout_s, self.boot_timeout_s = timeout_s, boot_timeout_s
        self.plugin = plugin_path()
        self.last_exit_status: int | None = None
        self.uart_text = ""

    def command(self, marks_file: Path | None) -> list[str]:
        ports = ["-serial", "null"] * self.image.serial_index + ["-serial", "stdio"]
        cmd = [QEMU, "-M", self.image.machine, "-display", "none", "-monitor", "none", *ports,
               "-semihosting-config", "enable=on,target=native"]
        if self.image.counter == "tim2":
            cmd += ["-icount", "shift=0"]
        if self.plugin is not None and marks_file is not None:
            if "," in str(marks_file) or "," in str(self.plugin):
                raise CheckFailed("QEMU plugin paths may not contain ','; set XDG_CACHE_HOME/TMPDIR elsewhere")
            args = [f"mark=0x{self.image.symbols['tm_now']:x}", f"out={marks_file}"]
            if "tinyml_run" in self.image.symbols:
                args.append(f"run=0x{self.image.symbols['tinyml_run']:x}")
            b = self.fw.board
            if b.flash_wait_states:
                args.append(f"flash=0x{b.flash.origin:x}:0x{b.flash.size:x}:{b.flash_line_bytes}")
            cmd += ["-plugin", ",".join([str(self.plugin), *args])]
        return cmd + ["-kernel", str(self.fw.elf(self.image))]

    def run(self, inputs: list[list[np.ndarray]]) -> RunResult:
        payloads = [pack_inputs(self.fw.inputs, [sample]) for sample in inputs]
        with tempfile.TemporaryDirectory(prefix="tinyml-qemu-") as tmp:
            marks_file = Path(tmp) / "marks.txt"
            proc = subprocess.Popen(self.command(marks_file), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE)
            try:
                hello, results = self._converse(proc, payloads)
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
                self.last_exit_status = proc.returncode
            marks_text = _read_marks_text(marks_file)
        return self._result(hello, results, marks_text, len(inputs))

    def _converse(self, proc: subprocess.Popen, payloads: list[bytes]) -> tuple[Hello, list[Result]]:
        transport = PipeTransport(proc)
        link = Link(transport, self.timeout_s)
        try:
            hello = link.handshake(self.boot_timeout_s)
            check_hello(self.fw, hello, (Counter.TIM2, Counter.MARKS))
            results = [link.infer(p) for p in payloads]
            link.quit(0, 0)
            try:
                status = proc.wait(timeout=self.boot_timeout_s)
            except subprocess.TimeoutExpired:
                raise LinkError("the firmware did not leave QEMU after QUIT") from None
            if status != 0:
                raise LinkError(f"QEMU exited with status {status}" + transport.stderr_hint())
            return hello, results
        except LinkError as e:
            raise LinkError(f"{self.target}: {e}") from None
        finally:
            self.uart_text = "".join(link.text_log)

    def _result(self, hello: Hello, results: list[Result], marks_text: str, samples: int) -> RunResult:
        marks = [int(x) for x in marks_text.splitlines() if x.isdigit()]

        def ticks(before: int, after: int) -> int:
            if hello.counter != Counter.MARKS:
                return counter_delta(before, after)
            if max(before, after) > len(marks) or min(before, after) < 1:
                raise LinkError(f"{self.target}: the instruction-count plugin recorded no such mark")
            return marks[after - 1] - marks[before - 1]

        result = run_result(self.fw, self.image, hello, results, samples, self.target,
                            leaving_out_io(ticks, results), {"machine": self.image.machine})
        result.extra.update(self._cycle_estimate(marks_text, result))
        return result

    def _cycle_estimate(self, marks_text: str, result: RunResult) -> dict[str, object]:
        """The slowest inference's estimated cycles and ms at the board's clock (sim/cycles.py)."""
        mixes = inference_mixes(marks_text)
        counts = result.extra.get("instructions_per_input")
        if result.instructions is None or not mixes or not isinstance(counts, list) or len(mixes) < len(counts):
            return {}
        b = self.fw.board
        mix = mixes[len(mixes) - len(counts):][counts.index(result.instructions)]
        est = estimate(mix, result.instructions, b.core, b.clock_hz, b.flash_wait_states)
        return {**est.report(), "estimate_clock_hz": b.clock_hz} if est else {}


def _read_marks_text(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        raise LinkError("the QEMU instruction-count plugin wrote no results") from None


def board_runner(board: str, sim: str, compiled: Compiled, work_dir: Path,
                 per_layer: bool = False) -> QemuRunner | RenodeRunner:
    """Build `compiled` for `board` in work_dir and return the runner for simulator `sim`
    ("qemu" or "renode"): what `tinyml validate --board` uses."""
    from tinyml.board import load_board
    from tinyml.codegen.firmware import Selftest, build_firmware

    b = load_board(board)
    if sim == "renode":
        from tinyml.oracle import model_oracle, random_inputs
        from tinyml.sim.renode import RenodeRunner, renode_files, require_renode

        require_renode()
        sample = random_inputs(compiled.graph, 1, 12345)[0]
        selftest = Selftest.from_arrays(sample, model_oracle(compiled.model_bytes).run(sample))
        fw = build_firmware(compiled.graph, compiled.plan, b, work_dir / "firmware", per_layer=per_layer,
                            selftest=selftest)
        return RenodeRunner(fw, renode_files(fw))
    fw = build_firmware(compiled.graph, compiled.plan, b, work_dir / "firmware", per_layer=per_layer)
    return QemuRunner(fw)
