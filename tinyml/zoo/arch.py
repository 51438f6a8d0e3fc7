"""Other published edge architectures: MobileNetV2-0.35 and TFLM micro_speech."""
from __future__ import annotations

from typing import Any

from tinyml.zoo.registry import add


def mobilenet_v2(tf: Any, size: int, alpha: float, classes: int) -> Any:
    """keras.applications' MobileNetV2 (no pretrained weights: nothing downloads),
    wrapped with a batch-1 input so shapes are static."""
    base = tf.keras.applications.MobileNetV2(
        input_shape=(size, size, 3), alpha=alpha, weights=None, classes=classes)
    inputs = tf.keras.Input((size, size, 3), batch_size=1)
    return tf.keras.Model(inputs, base(inputs))


def micro_speech(tf: Any) -> Any:
    """TFLite Micro micro_speech ("tiny_conv"): 49x40 spectrogram, 8 filters
    of 10x8 stride 2, then a 4-way classifier."""
    L = tf.keras.layers
    inputs = tf.keras.Input((49 * 40,), batch_size=1)
    x = L.Reshape((49, 40, 1))(inputs)
    x = L.Conv2D(8, (10, 8), strides=(2, 2), padding="same", activation="relu")(x)
    x = L.Dropout(0.5)(x)
    x = L.Flatten()(x)
    outputs = L.Dense(4, activation="softmax")(x)
    return tf.keras.Model(inputs, outputs, name="micro_speech")


# Keras 3's MobileNetV2 pads stride-2 depthwise layers with SAME, so no PAD op.
_MOBILENET_V2_OPS = {"CONV_2D", "DEPTHWISE_CONV_2D", "ADD", "MEAN",
                     "FULLY_CONNECTED", "SOFTMAX"}
for _size in (96, 144):
    add(f"mobilenet_v2_035_{_size}", "arch", mobilenet_v2, _MOBILENET_V2_OPS,
        size=_size, alpha=0.35, classes=10, data="image", samples=16,
        note="keras.applications MobileNetV2, width 0.35")
add("micro_speech", "arch", micro_speech,
    {"RESHAPE", "CONV_2D", "FULLY_CONNECTED", "SOFTMAX"}, data="spectrogram",
    note="TFLite Micro micro_speech tiny_conv")
