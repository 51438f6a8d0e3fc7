"""A ViT on Fashion-MNIST inside a Cortex-M4's 64 KB SRAM / 256 KB flash (issue 15 part 5, without the
search: the architecture is fixed). Trains the zoo's ViT builder (28x28, 4x4 patches: 49 + 1 tokens,
dim 32, 4 heads, 2 blocks) with Keras on a subset of the training set, converts it to int8 with
TensorFlow, and reports held-out top-1 of the float model, the int8 file (numpy reference, bit-exact
with TFLite Micro) and its --integer-only rewrite; then builds both for mps2-an386 (Cortex-M4) with
attention in row blocks and with layer-by-layer attention, runs them in QEMU on test images, and
reports bit-exactness, measured arena + stack, flash and instructions against the budget.

A benchmark, not a test: prints a table, writes JSON.
Usage: nice -n 5 python benchmarks/vit_fashion.py [--train 12000] [--test 2000] [--epochs 8] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from tinyml.oracle import model_oracle
from tinyml.pipeline import compile_model, load_graph
from tinyml.quantize.evaluate import quantize_input
from tinyml.reference import reference_outputs
from tinyml.search.tasks import load_task
from tinyml.validation import compare
from tinyml.zoo.default_model import _tensorflow, tf_int8
from tinyml.zoo.transformer import batched, tiny_vit

SRAM_BUDGET, FLASH_BUDGET = 64 * 1024, 256 * 1024
ARCH = {"image": 28, "patch": 4, "dim": 32, "heads": 4, "depth": 2, "classes": 10}


def train(args: argparse.Namespace, console: Console) -> tuple[bytes, float, np.ndarray, np.ndarray]:
    tf = _tensorflow()
    tf.keras.utils.set_random_seed(5)
    ds = load_task("fashion", limit=args.train)
    x, y = ds.x_train.astype(np.float32), ds.y_train
    xt, yt = ds.x_test[:args.test].astype(np.float32), ds.y_test[:args.test]
    model = tiny_vit(batched(tf), **ARCH)
    model.compile(optimizer=tf.keras.optimizers.Adam(2e-3),
                  loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    console.print(f"training on {len(y)} images, {args.epochs} epochs...")
    model.fit(x, y, batch_size=64, epochs=args.epochs, verbose=0)
    float_acc = 100.0 * float(np.mean(np.argmax(model.predict(xt, verbose=0), -1) == yt))
    single = tiny_vit(tf, **ARCH)
    single.set_weights(model.get_weights())
    return bytes(tf_int8(tf, single, x[:200])), float_acc, xt, yt


def int8_accuracy(data: bytes, xt: np.ndarray, yt: np.ndarray, integer_only: bool) -> float:
    g = load_graph(data, {} if integer_only else None)
    out = np.stack([reference_outputs(g, [c[None]])[0].reshape(-1) for c in quantize_input(g, xt)])
    return 100.0 * float(np.mean(np.argmax(out, -1) == yt))


def on_board(path: Path, xt: np.ndarray, integer_only: bool, block: int, work: Path) -> dict:
    from tinyml.sim.qemu import board_runner

    c = compile_model(path, integer_only=integer_only, attention_block=block)
    inputs = [[c_[None]] for c_ in quantize_input(c.graph, xt[:3])]
    runner = board_runner("mps2-an386", "qemu", c, work)
    result = runner.run(inputs)
    want = model_oracle(c.model_bytes, integer_only).run_batch(inputs)
    ram = c.plan.arena_bytes + (result.stack_bytes or 0)
    flash = result.extra.get("flash_bytes")
    return {"integer_only": integer_only, "attention_block": block, "bit_exact": compare(want, result.outputs).bit_exact,
            "arena_bytes": c.plan.arena_bytes, "stack_bytes": result.stack_bytes, "sram_bytes": ram,
            "flash_bytes": flash, "instructions": result.instructions,
            "fits": ram <= SRAM_BUDGET and flash is not None and flash <= FLASH_BUDGET}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train", type=int, default=12000, help="training images (of 51,000)")
    ap.add_argument("--test", type=int, default=2000, help="held-out test images (of 10,000)")
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args()
    console = Console()
    data, float_acc, xt, yt = train(args, console)
    acc = {"float": float_acc, "int8": int8_accuracy(data, xt, yt, False),
           "integer_only": int8_accuracy(data, xt, yt, True)}
    console.print(f"held-out top-1 on {len(yt)} images: float {acc['float']:.2f} %, int8 {acc['int8']:.2f} %, "
                  f"integer-only {acc['integer_only']:.2f} %")
    rows = []
    with tempfile.TemporaryDirectory(prefix="vit-fashion-") as tmp:
        path = Path(tmp) / "vit_fashion.tflite"
        path.write_bytes(data)
        for k, (io, block) in enumerate(((False, 0), (False, 8), (True, 8))):
            rows.append(on_board(path, xt, io, block, Path(tmp) / str(k)))
    t = Table(title=f"ViT on Fashion-MNIST, mps2-an386 (Cortex-M4) in QEMU; budget {SRAM_BUDGET // 1024} KB SRAM, "
                    f"{FLASH_BUDGET // 1024} KB flash")
    for col in ("ops", "attention", "bit-exact", "arena", "stack", "SRAM", "flash", "instructions", "fits"):
        t.add_column(col)
    for r in rows:
        t.add_row("integer-only" if r["integer_only"] else "int8", f"blocks of {r['attention_block']}"
                  if r["attention_block"] else "layer by layer", str(r["bit_exact"]), f"{r['arena_bytes']:,}",
                  f"{r['stack_bytes']:,}", f"{r['sram_bytes']:,}", f"{r['flash_bytes']:,}", f"{r['instructions']:,}",
                  str(r["fits"]))
    console.print(t)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"arch": ARCH, "train": args.train, "test": len(yt), "epochs": args.epochs, "accuracy": acc,
                       "board": rows}, f, indent=1)


if __name__ == "__main__":
    main()
