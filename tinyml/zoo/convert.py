"""Keras model -> full-int8 .tflite, and small edits of converted flatbuffers.

Everything here imports TensorFlow lazily: only building a model needs it.
Weights come from Keras' initializers under a fixed seed, then biases and
batch-norm statistics are randomized so folded biases are non-zero, as they
are in trained models. The representative data imitates each model's input
domain so calibration yields the kind of scales a real model has.
"""
from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Callable
from typing import Any

import numpy as np

from tinyml.errors import TinymlError
from tinyml.oracle import captured_fd
from tinyml.zoo.registry import ZooModel


def _tensorflow() -> Any:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    try:
        with captured_fd(2):  # start-up chatter that TF_CPP_MIN_LOG_LEVEL misses
            import tensorflow as tf
    except ImportError as e:
        from tinyml.errors import ToolMissing

        raise ToolMissing("building zoo models needs TensorFlow (pip install 'tinyml[zoo]')") from e
    return tf


def _schema() -> Any:
    _tensorflow()
    from tensorflow.lite.python import schema_py_generated

    return schema_py_generated


def sample(kind: str, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """One representative input of `shape` (batch included) from a named distribution."""
    if kind == "image":
        # Smooth structure (a coarse grid upsampled) plus pixel noise, in [0, 1].
        h, w = shape[1], shape[2]
        coarse = rng.uniform(0.0, 1.0, size=(shape[0], max(h // 8, 1) + 1, max(w // 8, 1) + 1, shape[3]))
        ys = np.minimum(np.arange(h) * coarse.shape[1] // h, coarse.shape[1] - 1)
        xs = np.minimum(np.arange(w) * coarse.shape[2] // w, coarse.shape[2] - 1)
        img = coarse[:, ys][:, :, xs] + rng.normal(0.0, 0.08, size=shape)
        return np.clip(img, 0.0, 1.0).astype(np.float32)
    if kind == "spectrogram":
        # Log-mel-like features: slowly varying energy per frequency band, >= 0.
        base = np.linspace(20.0, 5.0, shape[-2] if len(shape) > 2 else shape[-1])
        x = rng.gamma(2.0, 1.0, size=shape) * 2.0
        if len(shape) > 2:
            x = x + base.reshape((1,) * (len(shape) - 2) + (-1, 1))
        return np.clip(x, 0.0, 26.0).astype(np.float32)
    if kind == "signal":
        # Anomaly-detection frames: log-mel energies around a per-bin mean.
        mean = np.linspace(-40.0, -10.0, shape[-1])
        return (mean + rng.normal(0.0, 6.0, size=shape)).astype(np.float32)
    if kind == "normal":
        return rng.normal(0.0, 1.0, size=shape).astype(np.float32)
    raise ValueError(f"unknown representative data kind {kind!r}")


def _realistic_weights(model: Any, rng: np.random.Generator) -> None:
    """Non-zero biases and non-trivial batch-norm statistics, like a trained model."""
    for layer in model.layers:
        if hasattr(layer, "layers"):  # nested model (keras.applications)
            _realistic_weights(layer, rng)
            continue
        cls = type(layer).__name__
        weights = layer.get_weights()
        if cls == "BatchNormalization":
            gamma, beta, mean, var = weights
            layer.set_weights([
                rng.uniform(0.5, 1.5, gamma.shape).astype(np.float32),
                rng.normal(0.0, 0.2, beta.shape).astype(np.float32),
                rng.normal(0.0, 0.2, mean.shape).astype(np.float32),
                rng.uniform(0.5, 1.5, var.shape).astype(np.float32),
            ])
        elif weights and getattr(layer, "use_bias", False):
            kernel_std = float(np.std(weights[0])) or 0.1
            weights[-1] = rng.normal(0.0, kernel_std, weights[-1].shape).astype(np.float32)
            layer.set_weights(weights)


def _input_shapes(model: Any) -> list[tuple[int, ...]]:
    return [tuple(1 if d is None else int(d) for d in t.shape) for t in model.inputs]


def build_tflite(spec: ZooModel) -> bytes:
    """Build, calibrate and convert one zoo model to a full-integer flatbuffer."""
    tf = _tensorflow()
    tf.keras.utils.set_random_seed(spec.seed)
    rng = np.random.default_rng(spec.seed)
    model = spec.build(tf, **spec.params)
    _realistic_weights(model, rng)
    shapes = _input_shapes(model)
    scales = spec.scales or (1.0,) * len(shapes)

    def representative() -> Any:
        data_rng = np.random.default_rng(spec.seed + 1)
        for _ in range(spec.samples):
            yield [sample(spec.data, s, data_rng) * k for s, k in zip(shapes, scales)]

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    io_type = {"int8": tf.int8, "uint8": tf.uint8, "float32": tf.float32}[spec.io]
    converter.inference_input_type = io_type
    converter.inference_output_type = io_type
    if not spec.per_channel:
        converter._experimental_disable_per_channel = True
    with captured_fd(2) as log, contextlib.redirect_stdout(io.StringIO()):
        try:
            data = converter.convert()
        except Exception as e:  # the converter raises many types; report one line
            err: Exception | None = e
        else:
            err = None
    if err is not None:
        tail = [ln for ln in log if "error" in ln.lower()][-1:] or [str(err).splitlines()[0]]
        raise TinymlError(f"zoo model {spec.name}: conversion failed: {tail[0]}")
    data = bytes(data)
    return spec.postprocess(data) if spec.postprocess else data


# -- edits of converted flatbuffers (the schema's object API) ---------------

def read_model(data: bytes) -> Any:
    schema = _schema()
    return schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(data, 0))


def write_model(model: Any) -> bytes:
    import flatbuffers

    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def op_name(model: Any, op: Any) -> str:
    schema = _schema()
    code = model.operatorCodes[op.opcodeIndex]
    number = max(code.builtinCode, code.deprecatedBuiltinCode)
    return next(k for k, v in vars(schema.BuiltinOperator).items() if v == number)


def op_names(data: bytes) -> list[str]:
    """The builtin op names of subgraph 0, in execution order."""
    m = read_model(data)
    return [op_name(m, op) for op in m.subgraphs[0].operators]


def rename_tensors(data: bytes, rename: Callable[[int, str], str]) -> bytes:
    """Give every tensor of subgraph 0 the name rename(index, old_name)."""
    m = read_model(data)
    for i, t in enumerate(m.subgraphs[0].tensors):
        old = t.name.decode() if isinstance(t.name, bytes) else (t.name or "")
        t.name = rename(i, old).encode()
    return write_model(m)


def _squeezed_axes(src: list[int], dst: list[int]) -> list[int]:
    """Axes of `src` whose removal gives `dst` (all size 1), or [] if none do."""
    axes, j = [], 0
    for i, d in enumerate(src):
        if j < len(dst) and d == dst[j]:
            j += 1
        elif d == 1:
            axes.append(i)
        else:
            return []
    return axes if j == len(dst) else []


def reshapes_to_squeeze(data: bytes) -> bytes:
    """Turn every RESHAPE that only drops size-1 axes into the equivalent SQUEEZE.

    Current converters lower tf.squeeze to RESHAPE, but older ones and other
    exporters emit SQUEEZE, so the zoo needs one.
    """
    schema = _schema()
    m = read_model(data)
    sg = m.subgraphs[0]
    code = schema.OperatorCodeT()
    code.builtinCode = code.deprecatedBuiltinCode = schema.BuiltinOperator.SQUEEZE
    code.version = 1
    m.operatorCodes.append(code)
    for op in sg.operators:
        if op_name(m, op) != "RESHAPE":
            continue
        src = [int(d) for d in sg.tensors[op.inputs[0]].shape]
        dst = [int(d) for d in sg.tensors[op.outputs[0]].shape]
        squeeze_dims = _squeezed_axes(src, dst)
        if not squeeze_dims:
            continue
        options = schema.SqueezeOptionsT()
        options.squeezeDims = squeeze_dims
        op.opcodeIndex = len(m.operatorCodes) - 1
        op.inputs = [op.inputs[0]]
        op.builtinOptionsType = schema.BuiltinOptions.SqueezeOptions
        op.builtinOptions = options
    return write_model(m)
