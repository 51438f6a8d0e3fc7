"""Mixed precision vs uniform int8/int4/int2 on real offline data (issue 12 parts 3 and 7).

Per task a float CNN is trained in PyTorch, exported to ONNX and quantized by
tinyml's PTQ pass at each configuration: uniform W8A8, W4A8, W2A8, and the
Hessian/ILP allocation at <= 55 % of int8's weight flash and at int4's weight
flash (the "equal flash" comparison). The ILP's costs are measured loss increases
(--sensitivity measured, the default) or HAWQ-V3's trace x perturbation.
kws_small is the net where uniform int4 loses ~3 points to int8: mixed precision can only
beat int4 at int4's flash by as much as int4 loses, so the wide nets (int4 within ~1 point of
int8) cannot show +2 points whatever the allocator. Accuracy: the numpy integer reference on
the test set. Each deployable configuration is written as .tflite, built as
firmware for the board and run in QEMU: measured instructions per inference,
flash, RAM (arena + stack + other data), bit-exact against its oracle (TFLite
Micro, or the numpy reference for files TFLite cannot express), 4-bit
activations included.

Usage: python benchmarks/quantize_mixed.py [--tasks digits,fashion,kws,kws_small,...] [--board stm32f405]
           [--test N] [--sensitivity measured|hessian] [--finetune EPOCHS] [--no-qemu] [--json FILE]
Default JSON: benchmarks/results/quantize_mixed.json
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from tinyml.frontend.float_model import load_float_model
from tinyml.fsutil import write_text_atomic
from tinyml.quantize import QuantPolicy, write_quantized
from tinyml.quantize.allocate import Budgets
from tinyml.quantize.evaluate import accuracy, float_outputs, run_int8
from tinyml.quantize.prepare import prepare_float
from tinyml.train.mixed import Sensitivity, finetuned
from tinyml.train.tasks import SmallCNN, export_onnx, load, train

RESULTS = Path(__file__).parent / "results" / "quantize_mixed.json"
# name -> (task, conv channels, hidden units, epochs, training images). kws_small is the net where uniform
# int4 really loses accuracy (-3 points), so mixed precision at int4's flash has room to win; the others are
# within ~1 point of int8 at int4 already (so were digits (4, 8) and Fashion-MNIST (4, 8, 8) + FC 16).
MODELS = {"digits": ("digits", (8, 16), 0, 30, None), "fashion": ("fashion", (8, 16, 32), 32, 3, 15000),
          "kws": ("kws", (8, 16, 32), 32, 8, None), "kws_small": ("kws", (8, 8, 16), 16, 8, None)}
CALIB = 500


def float_model(name: str, task, work: Path) -> tuple:
    _, channels, hidden, epochs, _ = MODELS[name]
    torch.manual_seed(0)
    net = SmallCNN(channels, 10, task.x_train.shape[2], hidden)
    train(net, task, epochs)
    path = export_onnx(net, task.x_train, work / f"{name}.onnx")
    g, _ = load_float_model(path)
    prepare_float(g)
    return g, path


def qemu(path: Path, board: str, work: Path) -> dict:
    from tinyml.bench import measure, prepare
    from tinyml.board import load_board

    m = prepare(path.stem, path, 3, 0)
    r = measure(m, load_board(board), "optimized", False, work / path.stem)
    return {k: r[k] for k in ("instructions", "flash_bytes", "weights_bytes", "ram_bytes", "arena_bytes",
                              "bit_exact", "inputs")}


def run_task(name: str, args: argparse.Namespace, work: Path, con: Console) -> dict:
    t0 = time.time()
    task = load(MODELS[name][0], MODELS[name][4])
    g, _ = float_model(name, task, work)
    x_test, y_test = task.x_test[:args.test], task.y_test[:args.test]
    calib = task.x_train[-CALIB:]
    s = Sensitivity.measure(g, calib, QuantPolicy(), (8, 4, 2), (8, 4), labels=task.y_train[-CALIB:],
                            probes=args.probes, method=args.sensitivity)
    int8, int4 = s.uniform(8, 8), s.uniform(4, 8)
    # the ILP's weight-only allocations (activations at 8 bits: deployable)
    s8 = replace(s, a_bits=(8,))
    configs = [("W8A8 (int8)", s, int8, True), ("W4A8 (int4)", s, int4, True), ("W2A8", s, s.uniform(2, 8), True)]
    for label, budget in (("mixed <= 55% int8 flash", int(0.55 * int8.weight_bytes)),
                          ("mixed = int4 flash", int4.weight_bytes),
                          ("mixed = 75% int4 flash", int(0.75 * int4.weight_bytes))):
        configs.append((label, s8, s8.solve(Budgets(flash=budget))[0], True))
    configs.append(("W4A4", s, s.uniform(4, 4), True))
    # the SRAM model's live bytes (int8 plan lifetimes) can exceed the planner's W4A4 arena (in-place reuse)
    arena44 = max(s.arena(s.quantize(s.uniform(4, 4))), s.limits()["sram"])
    configs.append(("mixed W+A = W4A4 flash and arena", s,
                    s.solve(Budgets(flash=int4.weight_bytes, sram=arena44))[0], True))
    rows = [{"config": "float", "accuracy": accuracy(float_outputs(g, x_test), y_test),
             "weight_bytes": sum(t.nbytes for t in g.tensors.values() if t.is_const)}]
    for label, sens, alloc, deploy in configs:
        rows.append(_row(label, sens, alloc, deploy, x_test, y_test, args, work))
        if args.finetune and deploy and label.startswith("mixed"):
            tuned = finetuned(sens, alloc, args.finetune)
            rows.append(_row(f"{label} + QAT {args.finetune} ep.", tuned, alloc, deploy, x_test, y_test, args, work))
        con.print(f"  {name}: {rows[-1]['config']}: {rows[-1]['accuracy']:.2f}%")
    return {"task": name, "test_samples": int(len(y_test)), "calibration_samples": CALIB,
            "model": {"task": MODELS[name][0], "conv_channels": MODELS[name][1], "hidden": MODELS[name][2],
                      "epochs": MODELS[name][3], "sensitivity": args.sensitivity,
                      "train_images": int(len(task.y_train))},
            "rows": rows, "seconds": round(time.time() - t0, 1)}


def _row(label: str, s: Sensitivity, alloc, deploy: bool, x, y, args, work: Path) -> dict:
    q = s.quantize(alloc)
    row = {"config": label, "accuracy": accuracy(run_int8(q, x), y),
           "weight_bits": {c.node: alloc.weights[c.node] for c in s.weights},
           "activation_bits": sorted(set(alloc.activations.values())),
           "weight_bytes": sum(t.nbytes for t in q.tensors.values() if t.is_const), "arena_bytes": s.arena(q),
           "instructions_estimate": alloc.instructions, "deployed": deploy, "qemu": None}
    if deploy and not args.no_qemu:
        result = write_quantized(s.g, q, s.calibration(alloc), s.policy(alloc))
        path = work / f"{abs(hash(label)) % 10**8}.tflite"
        path.write_bytes(result.tflite)
        row["tflite_bytes"] = len(result.tflite)
        row["qemu"] = qemu(path, args.board, work)
    return row


def print_task(con: Console, r: dict) -> None:
    t = Table(title=f"{r['task']}: {r['test_samples']} test images (accuracy: integer reference; "
                    f"instructions, flash, RAM: measured in QEMU)")
    for col in ("configuration", "acc. %", "weight B", "% of int8", "flash B", "RAM B", "instructions", "bit-exact"):
        t.add_column(col, justify="left" if col == "configuration" else "right")
    int8 = next(x for x in r["rows"] if x["config"].startswith("W8A8"))["weight_bytes"]
    for x in r["rows"]:
        m = x.get("qemu") or {}
        t.add_row(x["config"], f"{x['accuracy']:.2f}", f"{x['weight_bytes']:,}",
                  f"{100 * x['weight_bytes'] / int8:.1f}" if x["config"] != "float" else "-",
                  f"{m['flash_bytes']:,}" if m else "-", f"{m['ram_bytes']:,}" if m else "-",
                  f"{m['instructions']:,}" if m else "-", str(m["bit_exact"]) if m else "-")
    con.print(t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", default="digits,kws_small,kws,fashion")
    ap.add_argument("--board", default="stm32f405")
    ap.add_argument("--test", type=int, default=10000, help="test images per task (at most)")
    ap.add_argument("--probes", type=int, default=32)
    ap.add_argument("--sensitivity", choices=("measured", "hessian"), default="measured",
                    help="the ILP's costs: measured loss increases (default) or HAWQ-V3's trace x perturbation")
    ap.add_argument("--finetune", type=int, default=0, help="QAT epochs on the calibration set for mixed rows")
    ap.add_argument("--no-qemu", action="store_true")
    ap.add_argument("--json", default=str(RESULTS))
    args = ap.parse_args()
    torch.set_num_threads(1)
    con = Console(width=150)
    out = {"board": args.board, "date": time.strftime("%Y-%m-%d"), "tasks": []}
    with tempfile.TemporaryDirectory(prefix="tinyml-mixed-") as tmp:
        for name in args.tasks.split(","):
            r = run_task(name, args, Path(tmp), con)
            out["tasks"].append(r)
            print_task(con, r)
            write_text_atomic(args.json, json.dumps(out, indent=2, default=_plain) + "\n")


def _plain(o):
    if isinstance(o, (np.integer, np.floating)):
        return o.item()
    return str(o)


if __name__ == "__main__":
    main()
