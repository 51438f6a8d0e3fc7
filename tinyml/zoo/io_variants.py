"""Models that differ in how they talk to the world rather than in their ops.

Float or uint8 I/O (QUANTIZE/DEQUANTIZE at the boundaries), per-tensor
weights (older converters), a PyTorch-exported layout, Keras Flatten with a
dynamic batch (shape arithmetic in the graph), several outputs, and tensor
names that are hostile to anything that pastes them into C.
"""
from __future__ import annotations

from typing import Any

from tinyml.zoo.convert import rename_tensors
from tinyml.zoo.registry import add


def small_cnn(tf: Any, shape: tuple[int, ...] = (12, 12, 3), classes: int = 5,
              softmax: bool = True) -> Any:
    """conv -> depthwise -> pointwise -> global pool -> dense: the common ops in miniature."""
    L = tf.keras.layers
    x = tf.keras.Input(shape, batch_size=1)
    y = L.Conv2D(8, 3, strides=2, padding="same", activation="relu")(x)
    y = L.DepthwiseConv2D(3, padding="same", activation="relu6")(y)
    y = L.Conv2D(12, 1, activation="relu")(y)
    y = L.GlobalAveragePooling2D()(y)
    y = L.Dense(classes, activation="softmax" if softmax else None)(y)
    return tf.keras.Model(x, y)


def pytorch_style(tf: Any, shape: tuple[int, ...] = (3, 16, 16)) -> Any:
    """As PyTorch exporters emit it: NCHW in and out, TRANSPOSE at the
    boundaries, explicit zero PAD before VALID convolutions. On even sizes
    PyTorch's symmetric padding of 1 under stride 2 is not TFLite's SAME
    (which pads bottom/right only), so the converter cannot fold the PADs."""
    L = tf.keras.layers
    x = tf.keras.Input(shape, batch_size=1)
    y = L.Permute((2, 3, 1))(x)
    y = L.ZeroPadding2D(1)(y)
    y = L.Conv2D(8, 3, strides=2, padding="valid", activation="relu")(y)
    y = L.ZeroPadding2D(((1, 1), (1, 1)))(y)
    y = L.DepthwiseConv2D(3, strides=2, padding="valid", activation="relu")(y)
    y = L.Conv2D(6, 1)(y)
    return tf.keras.Model(x, L.Permute((3, 1, 2))(y))


def flatten_dynamic_batch(tf: Any, shape: tuple[int, ...] = (8, 8, 3)) -> Any:
    """Keras Flatten on an unknown batch: SHAPE/STRIDED_SLICE/PACK feed the RESHAPE."""
    L = tf.keras.layers
    x = tf.keras.Input(shape)
    y = L.Conv2D(4, 3, activation="relu")(x)
    y = L.Flatten()(y)
    return tf.keras.Model(x, L.Dense(6)(y))


def two_heads(tf: Any, shape: tuple[int, ...] = (10, 10, 4)) -> Any:
    """One trunk, two outputs of different shapes (a class vector and a map)."""
    L = tf.keras.layers
    x = tf.keras.Input(shape, batch_size=1)
    trunk = L.Conv2D(8, 3, strides=2, padding="same", activation="relu")(x)
    scores = L.Dense(3, activation="softmax")(L.GlobalAveragePooling2D()(trunk))
    boxes = L.Conv2D(4, 1)(trunk)
    return tf.keras.Model(x, [scores, boxes])


def hostile_names(data: bytes) -> bytes:
    """Tensor names that break naive C emission: quotes, backslashes, newlines,
    comment terminators, trigraphs, format specifiers, NUL and non-ASCII."""
    pieces = ['in"put', "back\\slash", "new\nline", "end */ x /* y", "tri??/graph ??=",
              "fmt %s %n", "caf\u00e9 \u2713", "'single'", "tab\tcr\r", "a\x00b", "#define X 1", "\\"]
    return rename_tensors(data, lambda i, old: f"{pieces[i % len(pieces)]}{i}")


_SMALL = {"CONV_2D", "DEPTHWISE_CONV_2D", "MEAN", "FULLY_CONNECTED"}
add("io_float32", "io", small_cnn, _SMALL | {"QUANTIZE", "DEQUANTIZE"}, io="float32",
    data="image", softmax=False)
add("io_uint8", "io", small_cnn, _SMALL | {"QUANTIZE", "SOFTMAX"}, io="uint8", data="image")
add("io_per_tensor", "io", small_cnn, _SMALL | {"SOFTMAX"}, per_channel=False, data="image")
add("io_pytorch_nchw", "io", pytorch_style,
    {"TRANSPOSE", "PAD", "CONV_2D", "DEPTHWISE_CONV_2D"}, data="normal")
add("io_flatten_dynamic", "io", flatten_dynamic_batch,
    {"CONV_2D", "SHAPE", "STRIDED_SLICE", "PACK", "RESHAPE", "FULLY_CONNECTED"}, data="image")
add("io_two_outputs", "io", two_heads, {"CONV_2D", "MEAN", "FULLY_CONNECTED", "SOFTMAX"})
add("io_hostile_names", "io", small_cnn, _SMALL | {"SOFTMAX"}, data="image",
    postprocess=hostile_names)
