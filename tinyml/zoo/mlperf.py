"""The MLPerf Tiny benchmark networks, layer for layer as published.

Sources of the architectures: the MLPerf Tiny training scripts
(image_classification resnet_v1_eembc, visual_wake_words mobilenet_v1,
keyword_spotting ds_cnn, anomaly_detection dense autoencoder) and the TFLite
Micro person_detection model (TF-slim MobileNetV1-0.25, ReLU6, 1x1-conv
logits). Weights are random: these models exist to check arithmetic,
memory plans and cost, not accuracy. Inputs and outputs are int8 as in the
benchmark's reference submissions.
"""
from __future__ import annotations

from typing import Any

from tinyml.zoo.registry import add


def resnet8(tf: Any) -> Any:
    """Image classification: ResNet-8 on 32x32x3, 10 classes (12.5 M MACs)."""
    L = tf.keras.layers

    def conv(x: Any, filters: int, kernel: int, stride: int) -> Any:
        return L.Conv2D(filters, kernel, strides=stride, padding="same",
                        kernel_initializer="he_normal")(x)

    inputs = tf.keras.Input((32, 32, 3), batch_size=1)
    x = L.ReLU()(L.BatchNormalization()(conv(inputs, 16, 3, 1)))
    for filters, stride in ((16, 1), (32, 2), (64, 2)):
        y = L.ReLU()(L.BatchNormalization()(conv(x, filters, 3, stride)))
        y = L.BatchNormalization()(conv(y, filters, 3, 1))
        if stride != 1:
            x = conv(x, filters, 1, stride)  # projection shortcut, no batch norm
        x = L.ReLU()(L.Add()([x, y]))
    x = L.AveragePooling2D(pool_size=8)(x)
    x = L.Flatten()(x)
    outputs = L.Dense(10, activation="softmax", kernel_initializer="he_normal")(x)
    return tf.keras.Model(inputs, outputs, name="resnet8")


# (depthwise stride, pointwise filters) of MobileNetV1-0.25 after the stem.
_MOBILENET_V1_025 = ((1, 16), (2, 32), (1, 32), (2, 64), (1, 64), (2, 128),
                     (1, 128), (1, 128), (1, 128), (1, 128), (1, 128), (2, 256), (1, 256))


def mobilenet_v1_025(tf: Any, channels: int, activation: str, conv_logits: bool) -> Any:
    """MobileNetV1 with width 0.25 on 96x96 (VWW: ReLU, dense head; TFLM
    person detection: ReLU6, 1x1-conv logits squeezed to a vector)."""
    L = tf.keras.layers

    def act(x: Any) -> Any:
        return L.ReLU(max_value=6.0 if activation == "relu6" else None)(L.BatchNormalization()(x))

    inputs = tf.keras.Input((96, 96, channels), batch_size=1)
    x = act(L.Conv2D(8, 3, strides=2, padding="same", kernel_initializer="he_normal")(inputs))
    for stride, filters in _MOBILENET_V1_025:
        x = act(L.DepthwiseConv2D(3, strides=stride, padding="same")(x))
        x = act(L.Conv2D(filters, 1, padding="same", kernel_initializer="he_normal")(x))
    x = L.AveragePooling2D(pool_size=3)(x)
    if conv_logits:
        x = L.Conv2D(2, 1, padding="same")(x)
        x = L.Reshape((2,))(x)
        outputs = L.Softmax()(x)
    else:
        x = L.Flatten()(x)
        outputs = L.Dense(2, activation="softmax")(x)
    return tf.keras.Model(inputs, outputs)


def ds_cnn(tf: Any) -> Any:
    """Keyword spotting: DS-CNN on 49x10x1 MFCCs, 64 filters, 12 classes (2.66 M MACs)."""
    L = tf.keras.layers
    inputs = tf.keras.Input((49, 10, 1), batch_size=1)
    x = L.Conv2D(64, (10, 4), strides=(2, 2), padding="same")(inputs)
    x = L.Dropout(0.2)(L.ReLU()(L.BatchNormalization()(x)))
    for _ in range(4):
        x = L.ReLU()(L.BatchNormalization()(L.DepthwiseConv2D((3, 3), padding="same")(x)))
        x = L.ReLU()(L.BatchNormalization()(L.Conv2D(64, (1, 1), padding="same")(x)))
    x = L.Dropout(0.4)(x)
    x = L.AveragePooling2D(pool_size=(24, 5))(x)
    x = L.Flatten()(x)
    outputs = L.Dense(12, activation="softmax")(x)
    return tf.keras.Model(inputs, outputs, name="ds_cnn")


def fc_autoencoder(tf: Any) -> Any:
    """Anomaly detection: 640 -> 4x128 -> 8 -> 4x128 -> 640 dense autoencoder (0.26 M MACs)."""
    L = tf.keras.layers
    inputs = tf.keras.Input((640,), batch_size=1)
    x = inputs
    for units in (128, 128, 128, 128, 8, 128, 128, 128, 128):
        x = L.ReLU()(L.BatchNormalization()(L.Dense(units)(x)))
    outputs = L.Dense(640)(x)
    return tf.keras.Model(inputs, outputs, name="fc_autoencoder")


_CLASSIFIER = {"CONV_2D", "FULLY_CONNECTED", "SOFTMAX"}

add("resnet8", "mlperf", resnet8, _CLASSIFIER | {"ADD", "AVERAGE_POOL_2D"},
    data="image", note="MLPerf Tiny image classification (CIFAR-10)")
add("mobilenet_v1_025_vww", "mlperf", mobilenet_v1_025,
    _CLASSIFIER | {"DEPTHWISE_CONV_2D", "AVERAGE_POOL_2D"},
    channels=3, activation="relu", conv_logits=False, data="image", samples=16,
    note="MLPerf Tiny visual wake words")
add("mobilenet_v1_025_person", "mlperf", mobilenet_v1_025,
    {"CONV_2D", "DEPTHWISE_CONV_2D", "AVERAGE_POOL_2D", "RESHAPE", "SOFTMAX"},
    channels=1, activation="relu6", conv_logits=True, data="image", samples=16,
    note="TFLite Micro person detection (grayscale)")
add("ds_cnn_kws", "mlperf", ds_cnn, _CLASSIFIER | {"DEPTHWISE_CONV_2D", "AVERAGE_POOL_2D"},
    data="spectrogram", note="MLPerf Tiny keyword spotting")
# Per-tensor weights like the published model's converter made for FC layers
# (per-channel FC doubles TFLite Micro's arena here: per-channel multipliers).
add("fc_autoencoder_ad", "mlperf", fc_autoencoder, {"FULLY_CONNECTED"},
    data="signal", per_channel=False, note="MLPerf Tiny anomaly detection (ToyADMOS), per-tensor")
