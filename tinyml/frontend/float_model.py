"""Open a float model of any supported format as a graph IR the quantizer takes.

.tflite (float32) goes through the ordinary reader, .onnx through
onnx_reader, Keras (.keras/.h5/SavedModel) through TensorFlow's converter to
a float .tflite first. Each import is lazy: only the format used loads its
library.
"""
from __future__ import annotations

from pathlib import Path

from tinyml.errors import BadModel, show
from tinyml.ir import Graph

FORMATS = ".tflite, .onnx, .keras, .h5 or a SavedModel directory"


def model_format(path: Path) -> str:
    from tinyml.frontend.keras_reader import is_keras

    if not path.exists():
        raise BadModel(f"{show(str(path))}: no such file or directory")
    if path.suffix == ".tflite":
        return "tflite"
    if path.suffix == ".onnx":
        return "onnx"
    if is_keras(path):
        return "keras"
    raise BadModel(f"{show(str(path))}: unknown model format (expected {FORMATS})")


def load_float_model(path: str | Path) -> tuple[Graph, str]:
    """(float graph before preparation, format name)."""
    from tinyml.pipeline import read_model_bytes

    p = Path(path)
    fmt = model_format(p)
    if fmt == "onnx":
        from tinyml.frontend.onnx_reader import load_onnx

        g = load_onnx(read_model_bytes(p))
    else:
        from tinyml.frontend.tflite import load_tflite

        if fmt == "keras":
            from tinyml.frontend.keras_reader import keras_to_float_tflite

            g = load_tflite(keras_to_float_tflite(p))
        else:
            g = load_tflite(read_model_bytes(p))
    g.name = p.stem
    return g, fmt
