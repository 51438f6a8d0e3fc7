"""Models aimed at the edges of optimized kernels' fast paths.

Channel counts that are not a multiple of 4 (SIMD loops handle 2 or 4
channels at a time), 1-pixel feature maps (all padding, no interior),
stride 2 on odd and even sizes (asymmetric SAME padding), kernels larger
than the image, single input or output channels, FC with several rows.
"""
from __future__ import annotations

from typing import Any

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
