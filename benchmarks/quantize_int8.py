"""int8 post-training quantization: tinyml's own pass vs TensorFlow's converter, on real data.

For each task a Keras model is trained offline, then quantized to a fully int8
.tflite (int8 input and output) twice from the same calibration inputs:
by TensorFlow's TFLiteConverter (representative dataset, TFLITE_BUILTINS_INT8)
and by `tinyml quantize`'s pass (Keras file -> float .tflite -> IR -> PTQ) with
each calibration method. Accuracy of every int8 model is measured on the same
held-out set with the same engine (tinyml's numpy reference, checked bit for
bit against TFLite Micro on the first inputs of each of our models here).

Tasks: `digits` = the demo's default CNN on scikit-learn's digits (the zoo's
only model trained on real data); `fashion_cnn` and `fashion_dscnn` = a plain
CNN and a depthwise-separable CNN with batch norm, a residual ADD and global
average pooling on Fashion-MNIST (Debian package dataset-fashion-mnist).

A benchmark, not a test: it prints a table and writes JSON.
Usage: python benchmarks/quantize_int8.py [--json out.json] [--tasks digits,fashion_cnn,...]
"""
from __future__ import annotations

import argparse
import gzip
import json
import tempfile
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from tinyml.frontend.float_model import load_float_model
from tinyml.oracle import TflmOracle
from tinyml.pipeline import load_graph
from tinyml.quantize import QuantPolicy, quantize_float_graph
from tinyml.quantize.evaluate import accuracy, quantize_input, run_int8
from tinyml.zoo.default_model import EPOCHS as DIGITS_EPOCHS
from tinyml.zoo.default_model import _build as build_digits
from tinyml.zoo.default_model import _tensorflow, digits, tf_int8

FASHION = Path("/usr/share/datasets/fashion-mnist")
VARIANTS = (("minmax", True), ("percentile", True), ("mse", True), ("minmax", False))
BITEXACT_INPUTS = 50


def idx(path: Path) -> np.ndarray:
    """An IDX file (the MNIST format): big-endian dims after a magic with the rank in its last byte."""
    data = gzip.decompress(path.read_bytes())
    rank = data[3]
    dims = np.frombuffer(data[4:4 + 4 * rank], ">u4").astype(int)
    return np.frombuffer(data[4 + 4 * rank:], np.uint8).reshape(dims)


def fashion() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    if not FASHION.exists():
        raise SystemExit(f"{FASHION} missing: apt-get install dataset-fashion-mnist")
    x = lambda name: (idx(FASHION / name) / 255.0).astype(np.float32)[..., None]  # noqa: E731
    y = lambda name: idx(FASHION / name).astype(np.int64)  # noqa: E731
    return (x("train-images-idx3-ubyte.gz"), y("train-labels-idx1-ubyte.gz"),
            x("t10k-images-idx3-ubyte.gz"), y("t10k-labels-idx1-ubyte.gz"))


def fashion_cnn(tf):
    L = tf.keras.layers
    return tf.keras.Sequential([
        tf.keras.Input((28, 28, 1)),
        L.Conv2D(16, 3, padding="same", activation="relu"), L.MaxPooling2D(2),
        L.Conv2D(32, 3, padding="same", activation="relu"), L.MaxPooling2D(2),
        L.Conv2D(64, 3, padding="same", activation="relu"), L.MaxPooling2D(2),
        L.Flatten(), L.Dense(64, activation="relu"), L.Dense(10, activation="softmax"),
    ])


def fashion_dscnn(tf):
    L = tf.keras.layers
    x = inp = tf.keras.Input((28, 28, 1))
    x = L.ReLU(6.0)(L.BatchNormalization()(L.Conv2D(24, 3, strides=2, padding="same", use_bias=False)(x)))
    for _ in range(2):
        y = L.ReLU(6.0)(L.BatchNormalization()(L.DepthwiseConv2D(3, padding="same", use_bias=False)(x)))
        y = L.BatchNormalization()(L.Conv2D(24, 1, use_bias=False)(y))
        x = L.ReLU()(L.Add()([x, y]))
    x = L.ReLU()(L.BatchNormalization()(L.Conv2D(48, 3, strides=2, padding="same", use_bias=False)(x)))
    x = L.GlobalAveragePooling2D()(x)
    return tf.keras.Model(inp, L.Dense(10, activation="softmax")(x))


TASKS = {
    # name: (data, builder, epochs, train samples, calibration samples)
    "digits": (digits, build_digits, DIGITS_EPOCHS, None, 100),
    "fashion_cnn": (fashion, fashion_cnn, 4, 30000, 200),
    "fashion_dscnn": (fashion, fashion_dscnn, 4, 30000, 200),
}


def bit_exact(data: bytes, graph, x: np.ndarray) -> bool:
    """Our numpy reference (the accuracy engine) equals TFLite Micro on the first inputs."""
    codes = quantize_input(graph, x[:BITEXACT_INPUTS])
    ours = run_int8(graph, x[:BITEXACT_INPUTS])
    tflm = TflmOracle(data).run_batch([[c[None]] for c in codes])
    return all(np.array_equal(o.reshape(-1), t[0].reshape(-1)) for o, t in zip(ours, tflm))


def run_task(name: str, tf, work: Path) -> dict:
    data, build, epochs, train_n, calib_n = TASKS[name]
    x_train, y_train, x_test, y_test = data()
    if train_n:
        x_train, y_train = x_train[:train_n], y_train[:train_n]
    tf.keras.utils.set_random_seed(20240611)
    model = build(tf)
    model.compile(optimizer=tf.keras.optimizers.Adam(2e-3), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    model.fit(x_train, y_train, epochs=epochs, batch_size=64 if train_n else 32, verbose=0)
    float_acc = accuracy(model.predict(x_test, verbose=0, batch_size=512), y_test)
    calib = x_train[np.linspace(0, len(x_train) - 1, calib_n).astype(int)]
    tf_bytes = tf_int8(tf, model, calib)
    tf_graph = load_graph(tf_bytes)
    row = {"task": name, "float": float_acc, "test_samples": int(len(y_test)), "calibration_samples": calib_n,
           "tf_converter": accuracy(run_int8(tf_graph, x_test), y_test),
           "tf_converter_bit_exact": bit_exact(tf_bytes, tf_graph, x_test), "ours": {}}
    path = work / f"{name}.keras"
    model.save(path)
    for method, correction in VARIANTS:
        g, _ = load_float_model(path)
        q = quantize_float_graph(g, calib, QuantPolicy(calibration=method, bias_correction=correction))
        key = method + ("" if correction else "_no_bias_correction")
        row["ours"][key] = {"accuracy": accuracy(run_int8(q.int8_graph, x_test), y_test),
                            "bit_exact_vs_tflm": bit_exact(q.tflite, q.int8_graph, x_test),
                            "tflite_bytes": len(q.tflite)}
    row["tf_tflite_bytes"] = len(tf_bytes)
    return row


def print_table(rows: list[dict]) -> None:
    cols = list(rows[0]["ours"])
    t = Table(title="top-1 accuracy (%), int8 models run by tinyml's reference (bit-exact with TFLite Micro)")
    for c in ["task", "float", "TF converter", *[f"ours {c.replace('_', ' ')}" for c in cols], "max |ours - TF|"]:
        t.add_column(c, justify="left" if c == "task" else "right")
    for r in rows:
        ours = [r["ours"][c]["accuracy"] for c in cols]
        t.add_row(r["task"], f"{r['float']:.2f}", f"{r['tf_converter']:.2f}", *[f"{a:.2f}" for a in ours],
                  f"{max(abs(a - r['tf_converter']) for a in ours):.2f}")
    Console(width=160).print(t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", default=",".join(TASKS), help="comma-separated: " + ", ".join(TASKS))
    ap.add_argument("--json", default="quantize_int8.json", help="where to write the results")
    args = ap.parse_args()
    tf = _tensorflow()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.tasks.split(","):
            rows.append(run_task(name, tf, Path(tmp)))
            Console(stderr=True).print(f"{name}: done")
    print_table(rows)
    exact = all(v["bit_exact_vs_tflm"] for r in rows for v in r["ours"].values())
    Console().print(f"our int8 models bit-exact with TFLite Micro on {BITEXACT_INPUTS} test inputs each: {exact}")
    Path(args.json).write_text(json.dumps({"tasks": rows, "all_bit_exact": exact}, indent=2) + "\n")


if __name__ == "__main__":
    main()
