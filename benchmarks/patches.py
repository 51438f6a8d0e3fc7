"""Patch-based inference measured in QEMU: peak SRAM and instructions, layer by layer vs patches.

For each model: build the firmware three times (--patch off; --patch auto with
the input held in the arena; --patch auto --input streamed, where the firmware
fetches input rows from the host while the model runs and holds no whole
input), run each in QEMU on the same random inputs, check them bit for bit
against TFLite Micro, and report the measured RAM (everything the firmware
occupies: arena, stack high-water mark, all other .data/.bss), the peak SRAM
(arena + stack), the instructions per inference and the schedule `auto` chose.
Where no schedule helps, `auto` compiles the layer-by-layer graph: same figures.

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
from tinyml.errors import DoesNotFit
from tinyml.oracle import TflmOracle, random_inputs
from tinyml.pipeline import Compiled, compile_model
from tinyml.schedule.patches import BudgetExceeded, PatchOptions
from tinyml.sim.qemu import board_runner
from tinyml.validation import compare

# (JSON key, --input streamed, --sram-budget for a third of layer by layer's RAM)
VARIANTS = (("patches", False, False), ("patches_streamed", True, False), ("streamed_3x", True, True))
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
        "peak_sram_bytes": arena + (result.stack_bytes or 0),  # arena + stack
        "ram_bytes": result.extra.get("firmware_ram_bytes"),  # everything: arena, stack, all .data/.bss
        "model_ram_bytes": result.extra.get("ram_bytes"),  # the library's .data/.bss + stack (validate's ram_bytes)
        "flash_bytes": result.extra.get("flash_bytes"),
        "layers": len(c.graph.nodes),
    }


def bench_on_a_board(name: str, boards: list[str], n: int, max_overhead: float | None) -> dict:
    """bench() on the first board all three builds fit (a patch schedule's kernels take flash)."""
    for board in boards[:-1]:
        try:
            return bench(name, board, n, max_overhead)
        except DoesNotFit as e:
            print(f"{name}: {e}; measuring on {boards[boards.index(board) + 1]}", flush=True)
    return bench(name, boards[-1], n, max_overhead)


def bench(name: str, board: str, n: int, max_overhead: float | None) -> dict:
    path = zoo.path(name)
    off = compile_model(path, PatchOptions("off"))
    inputs = random_inputs(off.graph, n, seed=2024)
    expected = TflmOracle(off.model_bytes).run_batch(inputs)
    lbl = measure(off, board, inputs, expected)
    row = {"model": name, "board": board, "inputs": n, "layer_by_layer": lbl}
    # The cheapest streamed schedule whose RAM is a third of layer by layer's: an arena budget of a
    # third of that RAM less what layer by layer needs besides its arena (stack, firmware data).
    third = lbl["ram_bytes"] // 3 - (lbl["ram_bytes"] - lbl["arena_bytes"])
    for key, stream, budget in VARIANTS:
        try:
            c = compile_model(path, PatchOptions("auto", max_overhead=max_overhead, stream=stream,
                                                 sram_budget=third if budget else None))
        except BudgetExceeded as e:
            row[key] = {"schedule": None, "unreachable": str(e)}
            continue
        ps = c.patches.chosen
        # Without a schedule `auto` compiles exactly the layer-by-layer graph: nothing new to measure.
        m = measure(c, board, inputs, expected) if ps else dict(lbl)
        m.update(schedule=ps.label if ps else None, search=c.patches.describe(),
                 peak_reduction=lbl["peak_sram_bytes"] / m["peak_sram_bytes"],
                 ram_reduction=lbl["ram_bytes"] / m["ram_bytes"],
                 instruction_overhead=m["instructions"] / lbl["instructions"] - 1,
                 mac_overhead=ps.overhead if ps else 0.0,
                 streamed_input_bytes=sum(c.graph[t].nbytes for t in ps.streamed) if ps else 0)
        row[key] = m
    return row


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="*", default=DEFAULT)
    ap.add_argument("--board", default="stm32f746g-disco",
                    help="board whose QEMU machine runs the firmware (default stm32f746g-disco: Cortex-M7, "
                         "320 KB RAM, 1 MB flash)")
    ap.add_argument("--fallback-board", default="nucleo-h743zi",
                    help="where a model that does not fit --board is measured (default nucleo-h743zi: M7, 2 MB flash)")
    ap.add_argument("--inputs", type=int, default=2, help="random inputs per model (default 2)")
    ap.add_argument("--max-overhead", type=float, default=None, help="MAC bound for --patch auto (default 20%%)")
    ap.add_argument("--json", help="write the rows here")
    args = ap.parse_args()
    rows = []
    print("RAM = arena + stack + all other .data/.bss, measured in QEMU (bytes); peak = arena + stack; "
          "instructions per inference; arena: input held in the arena, streamed: input rows fetched on demand "
          "(lowest arena within the 20% bound), 3x: the cheapest streamed schedule with a third of the RAM")
    print(f"{'model':<24}{'board':<18}{'RAM LbL':>9}{'peak LbL':>9}{'instr LbL':>12} | {'arena sched.':>13}{'RAM':>8}{'peak':>8}"
          f"{'less':>7}{'instr +':>8} | {'streamed sched.':>16}{'RAM':>8}{'peak':>8}{'less':>7}{'instr +':>8} | "
          f"{'3x sched.':>13}{'RAM':>8}{'less':>7}{'instr +':>8} | exact")
    for name in args.models:
        r = bench_on_a_board(name, [args.board, args.fallback_board], args.inputs, args.max_overhead)
        rows.append(r)
        lbl, cells = r["layer_by_layer"], []
        for key, width in (("patches", 13), ("patches_streamed", 16)):
            m = r[key]
            cells.append(f"{m['schedule'] or 'none':>{width}}{m['ram_bytes']:>8,}{m['peak_sram_bytes']:>8,}"
                         f"{m['ram_reduction']:>6.2f}x{100 * m['instruction_overhead']:>7.1f}%")
        m = r["streamed_3x"]
        cells.append(f"{'unreachable':>13}{'':>23}" if "unreachable" in m else
                     f"{m['schedule'] or 'none':>13}{m['ram_bytes']:>8,}{m['ram_reduction']:>6.2f}x"
                     f"{100 * m['instruction_overhead']:>7.1f}%")
        exact = all(r[k].get("bit_exact", True) for k, _, _ in VARIANTS) and lbl["bit_exact"]
        print(f"{name:<24}{r['board']:<18}{lbl['ram_bytes']:>9,}{lbl['peak_sram_bytes']:>9,}{lbl['instructions']:>12,} | "
              f"{cells[0]} | {cells[1]} | {cells[2]} | {'yes' if exact else 'NO'}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2, default=_plain) + "\n")
    return 0 if all(r[k].get("bit_exact", True) for r in rows for k in ("layer_by_layer", *(v[0] for v in VARIANTS))) \
        else 1


def _plain(o: object) -> object:
    if isinstance(o, np.generic):
        return o.item()
    raise TypeError(type(o).__name__)


if __name__ == "__main__":
    sys.exit(main())
