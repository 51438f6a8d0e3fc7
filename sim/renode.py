"""Renode: run a board image with the .resc/.robot files its build wrote (codegen/renode.py).

`--sim renode` runs the Robot test (renode-test) and then the same framed
protocol as QEMU over a Renode server-socket terminal. Renode is not packaged
for Debian or PyPI; when `renode` is not on PATH the caller gets one line
saying so and where to get it.
"""
from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

import numpy as np

from tinyml.codegen.firmware import Firmware
from tinyml.codegen.renode import RENODE_DIR, renode_paths
from tinyml.errors import CheckFailed, ToolMissing
from tinyml.sim.host import pack_inputs
from tinyml.sim.measure import check_hello, leaving_out_io, run_result
from tinyml.sim.protocol import Link, LinkError, SerialTransport, counter_delta
from tinyml.sim.runner import RunResult

GET_RENODE = "https://renode.io/#downloads (or https://github.com/renode/renode/releases)"


def require_renode() -> str:
    path = shutil.which("renode")
    if not path:
        raise ToolMissing(f"Renode is not installed (no `renode` on PATH); get it from {GET_RENODE}, "
                          "or use --sim qemu")
    return path


def renode_files(fw: Firmware) -> dict[str, Path]:
    """The Renode files `build_firmware` wrote into a firmware directory."""
    return {k: p for k, p in renode_paths(fw.path / RENODE_DIR, fw.board).items() if p.exists()}


def run_robot(robot: Path, timeout_s: float = 300.0) -> None:
    """Run the generated Robot test with renode-test; CheckFailed when it fails."""
    require_renode()
    runner = shutil.which("renode-test")
    if not runner:
        raise ToolMissing(f"renode-test (Renode's Robot runner) is not on PATH; it ships with Renode: {GET_RENODE}")
    try:
        proc = subprocess.run([runner, str(robot)], cwd=robot.parent, capture_output=True, text=True,
                              timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise CheckFailed(f"renode-test {robot.name} timed out after {timeout_s:.0f} s") from None
    if proc.returncode != 0:
        tail = (proc.stdout + proc.stderr).strip().splitlines()[-3:]
        raise CheckFailed(f"Renode test {robot.name} failed: {' | '.join(tail)}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RenodeRunner:
    """Runner for the board image in Renode, over a server-socket terminal on the board's UART."""

    def __init__(self, firmware: Firmware, files: dict[str, Path], timeout_s: float = 300.0):
        self.renode = require_renode()
        self.fw, self.files, self.timeout_s = firmware, files, timeout_s
        board = firmware.board
        self.target = f"renode:{board.renode.platform if board.renode.platform != 'generated' else board.name}"

    def run(self, inputs: list[list[np.ndarray]]) -> RunResult:
        import serial  # pyserial: the same transport a real board uses

        run_robot(self.files["robot"], self.timeout_s)
        port = _free_port()
        board = self.fw.board
        script = (f"$elf=@{self.fw.elf(self.fw.images['board'])}; include @{self.files['resc']}; "
                  f'emulation CreateServerSocketTerminal {port} "tinyml" false; '
                  f"connector Connect {board.renode.uart} tinyml; start")
        proc = subprocess.Popen([self.renode, "--disable-xwt", "--console", "--plain", "-e", script],
                                cwd=self.files["resc"].parent, stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            link = Link(SerialTransport(self._connect(serial, port)), self.timeout_s)
            hello = link.handshake(self.timeout_s)
            check_hello(self.fw, hello)
            results = [link.infer(pack_inputs(self.fw.inputs, [s])) for s in inputs]
        finally:
            proc.kill()
            proc.wait()
        return run_result(self.fw, self.fw.images["board"], hello, results, len(inputs), self.target,
                          leaving_out_io(counter_delta, results))

    def _connect(self, serial, port: int):  # noqa: ANN001, ANN202 - pyserial module and port
        deadline = time.monotonic() + 60
        while True:
            try:
                return serial.serial_for_url(f"socket://127.0.0.1:{port}", timeout=1)
            except serial.SerialException:
                if time.monotonic() > deadline:
                    raise LinkError("Renode did not open its UART socket within 60 s") from None
                time.sleep(0.2)
