"""Keras models (.keras, .h5, SavedModel directories) -> float .tflite bytes, via TensorFlow's converter.

Only this path imports TensorFlow. The converter runs without any
optimization, so the result is the float32 graph (batch norms folded,
Flatten and Dense as RESHAPE and FULLY_CONNECTED) that tinyml's own
quantizer then reads like any float .tflite. The batch dimension stays
dynamic in the file; the reader takes it as 1 and folds the shape arithmetic
a dynamic batch leaves behind (Flatten's SHAPE/STRIDED_SLICE/PACK).
"""
from __future__ import annotations

import contextlib
import io
import os
from pathlib import Path
from typing import Any

from tinyml.errors import BadModel, ToolMissing, show


def _tensorflow() -> Any:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from tinyml.oracle import captured_fd

    try:
        with captured_fd(2):
            import tensorflow as tf
    except ImportError as e:
        raise ToolMissing("reading Keras models needs TensorFlow (pip install 'tinyml[zoo]')") from e
    return tf


def is_keras(path: Path) -> bool:
    return path.suffix in (".keras", ".h5", ".hdf5") or (path.is_dir() and (path / "saved_model.pb").exists())


def keras_to_float_tflite(path: Path) -> bytes:
    """Convert a Keras model file or SavedModel directory to float32 .tflite bytes; BadModel if it cannot."""
    tf = _tensorflow()
    from tinyml.oracle import captured_fd

    try:
        with captured_fd(2), contextlib.redirect_stdout(io.StringIO()):
            if path.is_dir():
                converter = tf.lite.TFLiteConverter.from_saved_model(str(path))
            else:
                model = tf.keras.models.load_model(str(path), compile=False)
                if len(model.inputs) != 1:
                    raise BadModel(f"{show(str(path))}: the model has {len(model.inputs)} inputs; "
                                   f"tinyml quantize handles single-input models")
                converter = tf.lite.TFLiteConverter.from_keras_model(model)
            return converter.convert()
    except BadModel:
        raise
    except Exception as e:  # noqa: BLE001 - TensorFlow raises anything on a malformed file
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise BadModel(f"cannot load Keras model {show(str(path))}: {show(first, 160)}") from None
