"""How long `analyze` and `generate` take per zoo model (no TensorFlow on that path).

Prints a table and writes JSON; a benchmark, not a test (wall-clock varies by machine).
Usage: python benchmarks/generate_speed.py [--json out.json] [MODEL ...]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time

from tinyml import zoo

DEFAULT = ["mobilenet_v2_035_144", "mobilenet_v2_035_96", "mobilenet_v1_025_vww", "resnet8", "ds_cnn_kws",
           "fc_autoencoder_ad"]


def timed(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("models", nargs="*", default=DEFAULT)
    ap.add_argument("--json", help="write results here")
    args = ap.parse_args()
    rows = []
    print(f"{'model':<26}{'size KB':>9}{'analyze s':>11}{'generate s':>12}")
    for name in args.models:
        path = zoo.path(name)
        with tempfile.TemporaryDirectory() as out:
            tinyml = [sys.executable, "-m", "tinyml.cli"]
            a = timed(tinyml + ["analyze", str(path), "--no-tflm"])
            g = timed(tinyml + ["generate", str(path), "-o", out])
        rows.append({"model": name, "bytes": path.stat().st_size, "analyze_s": round(a, 3), "generate_s": round(g, 3)})
        print(f"{name:<26}{path.stat().st_size / 1024:>9.1f}{a:>11.2f}{g:>12.2f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
