"""Models aimed at the edges of optimized kernels' fast paths.

Channel counts that are not a multiple of 4 (SIMD loops handle 2 or 4
channels at a time), 1-pixel feature maps (all padding, no interior),
stride 2 on odd and even sizes (asymmetric SAME padding), kernels larger
than the image, single input or output channels, FC with several rows.
"""
from __future__ import annotations

from typing import Any

from tinyml.zoo.int16 import build_16x8
from tinyml.zoo.ops import conv2d, dense, depthwise
from tinyml.zoo.registry import add


def shrink_to_one_pixel(tf: Any, shape: tuple[int, ...]) -> Any:
    """Stride-2 convolutions down to a 1x1 map, then 3x3 kernels on that single pixel."""
    L = tf.keras.layers
    x = tf.keras.Input(shape, batch_size=1)
    y = L.Conv2D(6, 3, strides=2, padding="same", activation="relu")(x)
    while y.shape[1] > 1 or y.shape[2] > 1:
        y = L.Conv2D(6, 3, strides=2, padding="same", activation="relu")(y)
    y = L.DepthwiseConv2D(3, padding="same", depth_multiplier=2, activation="relu6")(y)
    y = L.Conv2D(9, 3, padding="same")(y)
    y = L.Flatten()(y)
    return tf.keras.Model(x, L.Dense(3)(y))


def layer_stack(tf: Any, shape: tuple[int, ...], layers: tuple[tuple, ...]) -> Any:
    """Layers in sequence, each with ReLU: ("conv", filters, kernel, strides, padding, dilation),
    ("dw", kernel, strides, padding, multiplier) or ("dense", units). Many shapes of one kernel in
    one model: per-layer counts to fit the kernel's cost terms on (tinyml/cost)."""
    L = tf.keras.layers
    x = tf.keras.Input(shape, batch_size=1)
    y = x
    for kind, *a in layers:
        if kind == "conv":
            y = L.Conv2D(a[0], a[1], strides=a[2], padding=a[3], dilation_rate=a[4], activation="relu")(y)
        elif kind == "dw":
            y = L.DepthwiseConv2D(a[0], strides=a[1], padding=a[2], depth_multiplier=a[3], activation="relu")(y)
        else:
            y = L.Dense(a[0], activation="relu")(y)
    return tf.keras.Model(x, y)


_DW, _CONV = {"DEPTHWISE_CONV_2D"}, {"CONV_2D"}
add("edge_dw3x3_c7_s2_odd", "edge", depthwise, _DW,
    shape=(15, 15, 7), kernel=3, strides=2, activation="relu6")
add("edge_dw3x3_c6_s1", "edge", depthwise, _DW, shape=(10, 10, 6), kernel=3)
add("edge_dw3x3_c3_s2_even", "edge", depthwise, _DW, shape=(8, 8, 3), kernel=3, strides=2)
add("edge_dw5x5_c13_s1", "edge", depthwise, _DW, shape=(9, 9, 13), kernel=5)
add("edge_dw5x5_c10_s2_valid", "edge", depthwise, _DW,
    shape=(12, 11, 10), kernel=5, strides=2, padding="valid")
add("edge_dw3x3_c5_1px", "edge", depthwise, _DW, shape=(1, 1, 5), kernel=3)
add("edge_conv_cin1", "edge", conv2d, _CONV, shape=(12, 12, 1), filters=3, kernel=3)
add("edge_conv_cin2_s2_odd", "edge", conv2d, _CONV,
    shape=(9, 9, 2), filters=5, kernel=3, strides=2, padding="valid")
add("edge_conv_s2_even_same", "edge", conv2d, _CONV,
    shape=(8, 8, 4), filters=4, kernel=3, strides=2)
add("edge_conv_kernel_gt_input", "edge", conv2d, _CONV, shape=(5, 5, 2), filters=3, kernel=7)
add("edge_conv_1px_3x3", "edge", conv2d, _CONV, shape=(1, 1, 9), filters=13, kernel=3)
add("edge_pw_5to3", "edge", conv2d, _CONV, shape=(7, 7, 5), filters=3, kernel=1)
add("edge_pw_3to1_s2", "edge", conv2d, _CONV, shape=(9, 9, 3), filters=1, kernel=1, strides=2)
add("edge_pw_c17_to_c6", "edge", conv2d, _CONV, shape=(3, 5, 17), filters=6, kernel=1,
    activation="relu")
add("edge_fc_3to1", "edge", dense, {"FULLY_CONNECTED"}, shape=(3,), units=1)
add("edge_fc_1to5", "edge", dense, {"FULLY_CONNECTED"}, shape=(1,), units=5)
add("edge_fc_rows", "edge", dense, {"FULLY_CONNECTED"}, shape=(3, 5), units=4)
add("edge_shrink_to_1px", "edge", shrink_to_one_pixel,
    {"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"}, shape=(7, 5, 3))
add("edge_dw3x3_small_channels", "edge", layer_stack, _DW | _CONV, shape=(14, 12, 3), layers=(
    ("dw", 3, 1, "same", 1), ("conv", 6, 1, 1, "valid", 1), ("dw", 3, 1, "valid", 1), ("conv", 5, 1, 1, "valid", 1),
    ("dw", 3, 1, "same", 1), ("conv", 8, 1, 1, "valid", 1), ("dw", 3, 1, "valid", 1), ("dw", 3, 2, "same", 1),
    ("conv", 7, 1, 1, "valid", 1), ("dw", 3, 1, "same", 1)))

# 16x8 (int16 activations): shapes of each kernel mac16.c.j2 picks (tinyml/ops/int16.py mac16_variant)
_16x8 = {"io": "int16", "converter": build_16x8}
add("edge16_conv_rows", "int16", layer_stack, _CONV, shape=(12, 12, 4), **_16x8, layers=(
    ("conv", 8, 3, 1, "same", 1), ("conv", 6, 3, 1, "valid", 1), ("conv", 5, 3, 1, "valid", 1),
    ("conv", 8, 1, 1, "valid", 1), ("conv", 4, 5, 2, "same", 1), ("conv", 7, 2, 1, "valid", 1),
    ("conv", 4, 3, 1, "valid", 1)))
add("edge16_conv_rows_odd", "int16", layer_stack, _CONV, shape=(9, 11, 3), **_16x8, layers=(
    ("conv", 8, (3, 5), 1, "valid", 1), ("conv", 12, 3, 2, "same", 1), ("conv", 8, 1, 1, "valid", 1),
    ("conv", 6, (1, 3), 1, "same", 1), ("conv", 9, 3, 1, "valid", 1), ("conv", 5, 2, 1, "valid", 1)))
add("edge16_conv_loop", "int16", layer_stack, _CONV, shape=(10, 10, 3), **_16x8, layers=(
    ("conv", 6, 3, 1, "same", 1), ("conv", 5, 3, 2, "same", 1), ("conv", 8, 3, 1, "same", 2),
    ("conv", 6, 3, 1, "same", 2), ("conv", 7, (3, 1), 1, "same", 1), ("conv", 3, 3, 2, "same", 1),
    ("conv", 5, 3, 1, "same", 1)))
add("edge16_dw", "int16", layer_stack, _DW, shape=(10, 10, 6), **_16x8, layers=(
    ("dw", 3, 1, "same", 1), ("dw", 3, 2, "same", 2), ("dw", 5, 1, "same", 1), ("dw", 3, 1, "valid", 1),
    ("dw", 2, 1, "valid", 1)))
add("edge16_fc", "int16", layer_stack, {"FULLY_CONNECTED"}, shape=(40,), **_16x8, layers=(
    ("dense", 24), ("dense", 13), ("dense", 7), ("dense", 5), ("dense", 3)))
