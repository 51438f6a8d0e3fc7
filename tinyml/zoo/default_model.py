"""The demo's default model: a small CNN trained offline on scikit-learn's digits, int8.

scikit-learn ships the 8x8 handwritten digits (1,797 images) inside the
package, so nothing is downloaded. The CNN (three 3x3 convolutions, two max
pools, one dense layer) trains in well under a minute on a laptop CPU, is
converted to a fully int8 .tflite with TensorFlow's converter, and is cached
with its held-out test digits (already quantized to the model's input) so
the next run starts at once. The cache key covers this file's source and the
TensorFlow version.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.metadata
import inspect
import io
import json
import os
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tinyml.errors import ToolMissing
from tinyml.oracle import captured_fd

EPOCHS = 60
SEED = 20240611
Progress = Callable[[int, int], None]  # (epochs done, epochs in all)


@dataclass
class DefaultModel:
    path: Path  # the int8 .tflite
    test_inputs: np.ndarray  # int8, (N, 8, 8, 1): held-out digits, quantized like the model's input
    test_labels: np.ndarray  # (N,) digit classes
    float_accuracy: float  # the Keras model on the held-out digits, before quantization
    epochs: int


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "tinyml" / "default-model"


def _key() -> str:
    try:
        tf_version = importlib.metadata.version("tensorflow-cpu")
    except importlib.metadata.PackageNotFoundError:
        try:
            tf_version = importlib.metadata.version("tensorflow")
        except importlib.metadata.PackageNotFoundError:
            tf_version = "none"
    src = inspect.getsource(sys.modules[__name__])
    return hashlib.sha256(f"{src}\0{tf_version}".encode()).hexdigest()[:12]


def default_model(progress: Progress | None = None) -> DefaultModel:
    """The cached default model, trained and converted first if needed."""
    stem = cache_dir() / f"digits-cnn-{_key()}"
    tflite, meta = stem.with_suffix(".tflite"), stem.with_suffix(".json")
    if not (tflite.exists() and meta.exists()):
        stem.parent.mkdir(parents=True, exist_ok=True)
        with open(stem.parent / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not (tflite.exists() and meta.exists()):
                _train_and_store(stem, progress)
    info = json.loads(meta.read_text())
    data = np.load(stem.with_suffix(".npz"))
    return DefaultModel(tflite, data["inputs"], data["labels"], info["float_accuracy"], info["epochs"])


def _tensorflow() -> Any:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    try:
        with captured_fd(2):  # TensorFlow's start-up chatter on the C-level stderr
            import tensorflow as tf
    except ImportError as e:
        raise ToolMissing("training the default model needs TensorFlow (pip install 'tinyml[zoo]')") from e
    return tf


def digits() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """scikit-learn's digits as float images in [0, 1], split 80/20 with a fixed seed."""
    try:
        from sklearn.datasets import load_digits
    except ImportError as e:
        raise ToolMissing("the default model's data set comes with scikit-learn (pip install scikit-learn)") from e
    d = load_digits()
    x = (d.images / 16.0).astype(np.float32)[..., None]
    y = d.target.astype(np.int64)
    order = np.random.default_rng(SEED).permutation(len(x))
    cut = int(0.8 * len(x))
    return x[order[:cut]], y[order[:cut]], x[order[cut:]], y[order[cut:]]


def _build(tf: Any) -> Any:
    L = tf.keras.layers
    return tf.keras.Sequential([
        tf.keras.Input((8, 8, 1)),
        L.Conv2D(16, 3, padding="same", activation="relu"),
        L.Conv2D(32, 3, padding="same", activation="relu"),
        L.MaxPooling2D(2),
        L.Conv2D(32, 3, padding="same", activation="relu"),
        L.MaxPooling2D(2),
        L.Flatten(),
        L.Dense(10, activation="softmax"),
    ])


def tf_int8(tf: Any, model: Any, samples: np.ndarray) -> bytes:
    """TensorFlow's converter, fully int8 (int8 input and output), calibrated on `samples` one at a time."""
    def representative() -> Any:
        for i in range(len(samples)):
            yield [samples[i:i + 1]]

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    with captured_fd(2), contextlib.redirect_stdout(io.StringIO()):
        return converter.convert()


def _train_and_store(stem: Path, progress: Progress | None) -> None:
    tf = _tensorflow()
    tf.keras.utils.set_random_seed(SEED)
    x_train, y_train, x_test, y_test = digits()
    model = _build(tf)
    model.compile(optimizer=tf.keras.optimizers.Adam(2e-3), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])

    class Report(tf.keras.callbacks.Callback):
        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            if progress:
                progress(epoch + 1, EPOCHS)

    model.fit(x_train, y_train, epochs=EPOCHS, batch_size=32, verbose=0, callbacks=[Report()])
    float_acc = float(np.mean(np.argmax(model.predict(x_test, verbose=0), axis=1) == y_test))

    data = tf_int8(tf, model, x_train[0:400:4])
    from tinyml.frontend.tflite import load_tflite

    graph = load_tflite(data)
    quant = graph[graph.inputs[0]].quant
    scale, zero_point = quant.s, quant.zp
    q_test = np.clip(np.round(x_test / scale) + zero_point, -128, 127).astype(np.int8)

    def publish(suffix: str, write: Callable[[Path], None]) -> None:
        fd, tmp = tempfile.mkstemp(dir=stem.parent, prefix=f".{stem.name}", suffix=suffix)
        os.close(fd)
        try:
            write(Path(tmp))
            os.replace(tmp, stem.with_suffix(suffix))
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def write_npz(p: Path) -> None:
        with open(p, "wb") as f:
            np.savez(f, inputs=q_test, labels=y_test)

    publish(".npz", write_npz)
    publish(".tflite", lambda p: p.write_bytes(data))
    publish(".json", lambda p: p.write_text(json.dumps({"float_accuracy": float_acc, "epochs": EPOCHS,
                                                         "train_samples": len(x_train),
                                                         "test_samples": len(x_test)}) + "\n"))
