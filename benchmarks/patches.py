"""Patch-based inference measured in QEMU: peak SRAM and instructions, layer by layer vs patches.

For each model: build the firmware twice (--patch off, --patch auto), run both
in QEMU on the same random inputs, check both bit for bit against TFLite
Micro, and report the measured peak SRAM (activation arena + stack high-water
mark), the instructions per inference and the schedule `auto` chose.

A benchmark, not a test: it prints a table and writes JSON.
Usage: python benchmarks/patches.py [--board B] [--inputs N] [--json out.json] [MODEL ...]
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

from tinyml import zoo
from tinyml.oracle import TflmOracle, random_inputs
from tinyml.pipeline import Compiled, compile_model
from tinyml.schedule.patches import PatchOptions
from tinyml.sim.qemu import board_runner
from tinyml.validation import compare

DEFAULT = ["mobilenet_v2_035_144", "mobilenet_v1_025_vww", "mobilenet_v2_035_96", "mobilenet_v1_025_person",
           "resnet8", "ds_cnn_kws", "micro_speech", "fc_autoencoder_ad"]


def measure(c: Compiled, board: str, inputs: list, expected: list) -> dict:
    """Run `c` in QEMU on `board`; the measured and planned figures."""
    with tempfile.TemporaryDirectory(prefix="tinyml-patch-bench-") as tmp:
        runner = board_runner(board, "qemu", c, Path(tmp))
        result = runner.run(inputs)
    cmp = compare(expected, result.outputs)
    arena = c.plan.arena_bytes
    return {
        "bit_exact": cmp.bit_exact,
        "instructions": result.instructions,
        "arena_bytes": arena,
        "stack_bytes": result.stack_bytes,
        "peak_sram_bytes": arena + (result.stack_bytes or 0),
        "ram_bytes": result.extra.get("ram_bytes"),
        "flash_bytes": result.extra.get("flash_bytes"),
        "layers": len(c.graph.nodes),
    }


def bench(name: str, board: str, n: int, max_overhead: float | None) -> dict:
    path = zoo.path(name)
    off = compile_model(path, PatchOptions("off"))
    auto = compile_model(path, PatchOptions("auto", max_overhead=max_overhead))
    inputs = random_inputs(off.graph, n, seed=2024)
    expected = TflmOracle(off.model_bytes).run_batch(inputs)
    row = {"model": name, "board": board, "inputs": n, "search": auto.patches.describe()}
    row["layer_by_layer"] = measure(off, board, inputs, expected)
    ps = auto.patches.chosen
    row["schedule"] = ps.label if ps else None
    # Without a schedule `auto` compiles exactly the layer-by-layer graph: nothing new to measure.
    row["patches"] = measure(auto, board, inputs, expected) if ps else dict(row["layer_by_layer"])
    lbl, pat = row["layer_by_layer"], row["patches"]
    row["peak_reduction"] = lbl["peak_sram_bytes"] / pat["peak_sram_bytes"]
    row["instruction_overhead"] = pat["instructions"] / lbl["instructions"] - 1
    row["mac_overhead"] = ps.overhead if ps else 0.0
    return row


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="*", default=DEFAULT)
    ap.add_argument("--board", default="stm32f746g-disco", help="board whose QEMU machine runs the firmware")
    ap.add_argument("--inputs", type=int, default=2, help="random inputs per model (default 2)")
    ap.add_argument("--max-overhead", type=float, default=None, help="MAC bound for --patch auto (default 20%%)")
    ap.add_argument("--json", help="write the rows here")
    args = ap.parse_args()
    rows = []
    head = (f"{'model':<24}{'schedule':>10}{'peak LbL B':>12}{'peak patch B':>14}{'less':>7}"
            f"{'instr LbL':>13}{'instr patch':>13}{'instr +':>9}{'MACs +':>8}  exact")
    print(head)
    for name in args.models:
        r = bench(name, args.board, args.inputs, args.max_overhead)
        rows.append(r)
        lbl, pat = r["layer_by_layer"], r["patches"]
        print(f"{name:<24}{r['schedule'] or 'none':>10}{lbl['peak_sram_bytes']:>12,}{pat['peak_sram_bytes']:>14,}"
              f"{r['peak_reduction']:>6.2f}x{lbl['instructions']:>13,}{pat['instructions']:>13,}"
              f"{100 * r['instruction_overhead']:>8.1f}%{100 * r['mac_overhead']:>7.1f}%  "
              f"{'yes' if lbl['bit_exact'] and pat['bit_exact'] else 'NO'}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2, default=_plain) + "\n")
    return 0 if all(r["layer_by_layer"]["bit_exact"] and r["patches"]["bit_exact"] for r in rows) else 1


def _plain(o: object) -> object:
    if isinstance(o, np.generic):
        return o.item()
    raise TypeError(type(o).__name__)


if __name__ == "__main__":
    sys.exit(main())
