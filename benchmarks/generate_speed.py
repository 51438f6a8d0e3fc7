"""How long `analyze` and `generate` take per model, and the arena each plans (no TensorFlow on that path).

Prints a table and writes JSON; a benchmark, not a test (wall-clock varies by machine). The
searches are bounded by evaluation counts, not time, so the arenas are reproducible and the
column beside the times says whether a faster search kept them. Each verb runs in its own
process on one core (the issue's target: at most 5 s for any model under 1.5 MB at the default
effort). Arguments are zoo names or .tflite paths; the default is the MLPerf Tiny networks,
the MobileNetV2 zoo models and the real models in ../shared/models/wild/ under 1.5 MB.
Usage: python benchmarks/generate_speed.py [--effort E] [--json out.json] [MODEL ...]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tinyml import zoo

ZOO = ["resnet8", "mobilenet_v1_025_vww", "mobilenet_v1_025_person", "ds_cnn_kws", "fc_autoencoder_ad",
       "mobilenet_v2_035_144", "mobilenet_v2_035_96"]
WILD = Path(__file__).resolve().parents[2] / "shared" / "models" / "wild"
LIMIT = 1536 * 1024  # the "any model under 1.5 MB"


def default_models() -> list[str]:
    wild = sorted(str(p) for p in WILD.glob("*.tflite") if p.stat().st_size < LIMIT) if WILD.is_dir() else []
    return ZOO + wild


def timed(cmd: list[str]) -> tuple[float, float, int]:
    """CPU seconds (user + system), wall seconds and exit code of one verb, pinned to one core.

    CPU time is the figure compared with the 5 s target: on a shared machine the wall time
    mostly measures the other jobs.
    """
    pin = ["taskset", "-c", str(min(os.sched_getaffinity(0)))] if hasattr(os, "sched_getaffinity") else []
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    rc = subprocess.run(pin + cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return cpu, wall, rc


def measure(name: str, effort: str) -> dict:
    path = Path(name) if name.endswith(".tflite") else zoo.path(name)
    tinyml = [sys.executable, "-m", "tinyml.cli"]
    with tempfile.TemporaryDirectory() as out:
        report = Path(out) / "analyze.json"
        a, a_wall, rc_a = timed(tinyml + ["analyze", str(path), "--no-tflm", "--effort", effort, "--json", str(report)])
        g, g_wall, rc_g = timed(tinyml + ["generate", str(path), "-o", str(Path(out) / "lib"), "--effort", effort])
        arena = json.loads(report.read_text())["arena_bytes"] if rc_a == 0 else None
    return {"model": Path(name).stem, "bytes": path.stat().st_size, "effort": effort, "analyze_s": round(a, 3),
            "generate_s": round(g, 3), "analyze_wall_s": round(a_wall, 3), "generate_wall_s": round(g_wall, 3), "arena_bytes": arena, "analyze_rc": rc_a, "generate_rc": rc_g}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("models", nargs="*")
    ap.add_argument("--effort", default="default", help="low, default, high or a factor (as the CLI's --effort)")
    ap.add_argument("--json", help="write results here")
    args = ap.parse_args()
    rows = []
    print(f"{'model':<42}{'size KB':>9}{'analyze CPU s':>15}{'generate CPU s':>16}{'arena B':>10}")
    for name in args.models or default_models():
        r = measure(name, args.effort)
        rows.append(r)
        arena = f"{r['arena_bytes']:,}" if r["arena_bytes"] is not None else f"exit {r['analyze_rc']}"
        gen = f"{r['generate_s']:.2f}" if r["generate_rc"] == 0 else f"exit {r['generate_rc']}"
        print(f"{r['model'][:41]:<42}{r['bytes'] / 1024:>9.1f}{r['analyze_s']:>15.2f}{gen:>16}{arena:>10}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
