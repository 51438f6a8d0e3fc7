"""MLPerf Tiny zoo on a Cortex-M4 and a Cortex-M7 board in QEMU, against TFLite Micro + CMSIS-NN.

Runs `tinyml bench --group mlperf --per-layer` and keeps everything it writes
(JSON, Markdown table, plot, the printed tables) in one folder named after the
UTC time and the git commit, so measurements taken while the kernels change can
be compared later. Exit status is the bench's (1 when any run is not bit-exact).
Usage: python benchmarks/mlperf_bench.py [--out benchmarks/results] [--boards B,B] [extra bench args...]
"""
from __future__ import annotations

import argparse
import contextlib
import datetime
import io
import subprocess
import sys
from pathlib import Path

from tinyml.cli import main as tinyml_main


def commit() -> str:
    proc = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                          cwd=Path(__file__).parent)
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                           text=True, cwd=Path(__file__).parent).stdout.strip()
    return (proc.stdout.strip() or "nogit") + ("-dirty" if dirty else "")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results"), help="parent folder of the run")
    ap.add_argument("--boards", default="stm32f405,mps2-an500")
    args, extra = ap.parse_known_args()
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%MZ")
    out = Path(args.out) / f"mlperf-{stamp}-{commit()}"
    out.mkdir(parents=True, exist_ok=True)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        rc = tinyml_main(["bench", "--group", "mlperf", "--boards", args.boards, "--per-layer",
                          "--json", str(out / "bench.json"), "--markdown", str(out / "bench.md"),
                          "--plot", str(out / "bench.png"), *extra])
    (out / "bench.txt").write_text(printed.getvalue())
    sys.stdout.write(printed.getvalue())
    print(f"results in {out}")
    return rc


if __name__ == "__main__":
    sys.exit(main())
