"""The `int16` group: one small model per op, converted in TFLite's 16x8 mode.

16x8 mode (int16 activations, int8 weights, int64 biases) is what the converter
gives with `EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8`; the
models take and return int16. The builders are zoo/ops.py's; only the
conversion differs, so it lives here as the models' `converter` (this module's
source is part of their cache key, and no other model's key changes).
"""
from __future__ import annotations

import contextlib
import io
from typing import Any

import numpy as np

from tinyml.errors import TinymlError
from tinyml.oracle import captured_fd
from tinyml.zoo import convert
from tinyml.zoo.ops import binary, concat, conv2d, dense, depthwise, pool, transpose_conv, unary
from tinyml.zoo.registry import ZooModel, add


def build_16x8(spec: ZooModel) -> bytes:
    """Build, calibrate and convert one model with int16 activations and int8 weights."""
    tf = convert._tensorflow()
    tf.keras.utils.set_random_seed(spec.seed)
    rng = np.random.default_rng(spec.seed)
    model = spec.build(tf, **spec.params)
    convert._realistic_weights(model, rng)
    shapes = convert._input_shapes(model)
    scales = spec.scales or (1.0,) * len(shapes)

    def representative() -> Any:
        data_rng = np.random.default_rng(spec.seed + 1)
        for _ in range(spec.samples):
            yield [convert.sample(spec.data, s, data_rng) * k for s, k in zip(shapes, scales)]

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative
    converter.target_spec.supported_ops = [tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]
    converter.inference_input_type = tf.int16
    converter.inference_output_type = tf.int16
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
    return bytes(data)


def _add(name: str, build: Any, exercises: set[str], **options: Any) -> None:
    add(f"i16_{name}", "int16", build, exercises, io="int16", converter=build_16x8, **options)


_add("conv_3to5_s2_same", conv2d, {"CONV_2D"}, shape=(9, 11, 3), filters=5, kernel=3, strides=2, padding="same")
_add("conv_7to13_relu6", conv2d, {"CONV_2D"}, shape=(10, 9, 7), filters=13, kernel=3, padding="valid",
     activation="relu6")
_add("dw_dm2_s2", depthwise, {"DEPTHWISE_CONV_2D"}, shape=(9, 9, 3), kernel=3, strides=2, multiplier=2)
_add("fc", dense, {"FULLY_CONNECTED"}, shape=(37,), units=19)
_add("add_broadcast", binary, {"ADD"}, op="add", a=(6, 5, 3), b=(1, 5, 3))
_add("sub", binary, {"SUB"}, op="sub", a=(4, 5, 3), b=(4, 5, 3))
_add("mul_broadcast", binary, {"MUL"}, op="mul", a=(6, 5, 3), b=(1, 1, 3))
_add("logistic", unary, {"LOGISTIC"}, layer="logistic", shape=(7, 5, 3), scales=(4.0,))
_add("tanh", unary, {"TANH"}, layer="tanh", shape=(7, 5, 3), scales=(4.0,))
_add("reshape", unary, {"RESHAPE"}, layer="reshape", shape=(6, 4, 3), arg=(8, 9))
_add("transpose", unary, {"TRANSPOSE"}, layer="transpose", shape=(4, 5, 6), arg=(3, 1, 2))
_add("concat", concat, {"CONCATENATION"}, shapes=[(4, 5, 3), (4, 5, 2)], axis=-1, scales=(1.0, 3.0))
_add("avgpool_3x3_s2_same", pool, {"AVERAGE_POOL_2D"}, kind="avg", shape=(9, 9, 5), size=3, strides=2,
     padding="same")
_add("maxpool_2x2_valid", pool, {"MAX_POOL_2D"}, kind="max", shape=(7, 9, 6), size=2, strides=2, padding="valid")
_add("mean", unary, {"MEAN"}, layer="mean", shape=(5, 7, 6))
_add("softmax", unary, {"SOFTMAX"}, layer="softmax", shape=(10,), scales=(3.0,))
_add("transpose_conv", transpose_conv, {"TRANSPOSE_CONV"}, shape=(6, 5, 8), filters=6, kernel=3, strides=2)
