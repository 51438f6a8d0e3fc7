"""One small model per op, on shapes chosen to break careless kernels.

Odd channel counts, odd spatial sizes under stride 2 with SAME padding
(asymmetric padding), 1xN/Nx1 kernels, dilation, depth multipliers and
broadcasting. Each model is the op alone where the converter allows it, so a
failure points at one kernel.
"""
from __future__ import annotations

from typing import Any

from tinyml.zoo.convert import reshapes_to_squeeze
from tinyml.zoo.registry import add


def _input(tf: Any, shape: tuple[int, ...]) -> Any:
    return tf.keras.Input(shape, batch_size=1)


def conv2d(tf: Any, shape: tuple[int, ...], filters: int, kernel: Any, strides: Any = 1,
           padding: str = "same", dilation: int = 1, activation: str | None = None) -> Any:
    x = _input(tf, shape)
    y = tf.keras.layers.Conv2D(filters, kernel, strides=strides, padding=padding,
                               dilation_rate=dilation, activation=activation)(x)
    return tf.keras.Model(x, y)


def depthwise(tf: Any, shape: tuple[int, ...], kernel: int, strides: int = 1, padding: str = "same",
              multiplier: int = 1, activation: str | None = None) -> Any:
    x = _input(tf, shape)
    y = tf.keras.layers.DepthwiseConv2D(kernel, strides=strides, padding=padding,
                                        depth_multiplier=multiplier, activation=activation)(x)
    return tf.keras.Model(x, y)


def dense(tf: Any, shape: tuple[int, ...], units: int, use_bias: bool = True,
          activation: str | None = None) -> Any:
    x = _input(tf, shape)
    return tf.keras.Model(x, tf.keras.layers.Dense(units, use_bias=use_bias, activation=activation)(x))


def binary(tf: Any, op: str, a: tuple[int, ...], b: tuple[int, ...], const_b: bool = False) -> Any:
    """a (op) b with broadcasting; b is a second model input or a constant."""
    fn = {"add": tf.add, "sub": tf.subtract, "mul": tf.multiply}[op]
    x = _input(tf, a)
    if const_b:
        values = tf.constant(tf.random.stateless_uniform((1,) + b, seed=(1, 2), minval=-2.0, maxval=2.0))
        return tf.keras.Model(x, tf.keras.layers.Lambda(lambda v: fn(v, values))(x))
    y = _input(tf, b)
    return tf.keras.Model([x, y], tf.keras.layers.Lambda(lambda t: fn(t[0], t[1]))([x, y]))


def pool(tf: Any, kind: str, shape: tuple[int, ...], size: int, strides: int, padding: str) -> Any:
    layer = {"avg": tf.keras.layers.AveragePooling2D, "max": tf.keras.layers.MaxPooling2D}[kind]
    x = _input(tf, shape)
    return tf.keras.Model(x, layer(size, strides=strides, padding=padding)(x))


def unary(tf: Any, layer: str, shape: tuple[int, ...], arg: Any = None) -> Any:
    """One Keras layer (or TF function) applied to the input."""
    L = tf.keras.layers
    make = {
        "mean": lambda: L.GlobalAveragePooling2D(),
        "softmax": lambda: L.Softmax(),
        "logistic": lambda: L.Activation("sigmoid"),
        "tanh": lambda: L.Activation("tanh"),
        "hard_swish": lambda: L.Activation("hard_swish"),
        "relu": lambda: L.ReLU(),
        "relu6": lambda: L.ReLU(max_value=6.0),
        "leaky_relu": lambda: L.LeakyReLU(negative_slope=arg),
        "reshape": lambda: L.Reshape(arg),
        "squeeze": lambda: L.Lambda(lambda v: tf.squeeze(v, axis=arg)),
        "pad": lambda: L.ZeroPadding2D(arg),
        "transpose": lambda: L.Permute(arg),
        "strided_slice": lambda: L.Lambda(lambda v: v[arg]),
    }[layer]
    x = _input(tf, shape)
    return tf.keras.Model(x, make()(x))


def concat(tf: Any, shapes: list[tuple[int, ...]], axis: int) -> Any:
    xs = [_input(tf, s) for s in shapes]
    return tf.keras.Model(xs, tf.keras.layers.Concatenate(axis=axis)(xs))


# Conv: odd channels, stride 2 SAME on odd sizes, 1xN / Nx1, dilation, even kernel SAME.
add("op_conv_3to5_s2_same", "ops", conv2d, {"CONV_2D"},
    shape=(9, 11, 3), filters=5, kernel=3, strides=2, padding="same")
add("op_conv_7to13_relu6", "ops", conv2d, {"CONV_2D"},
    shape=(10, 9, 7), filters=13, kernel=3, padding="valid", activation="relu6")
add("op_conv_1x5", "ops", conv2d, {"CONV_2D"}, shape=(8, 12, 4), filters=6, kernel=(1, 5))
add("op_conv_5x1_s2", "ops", conv2d, {"CONV_2D"},
    shape=(11, 6, 4), filters=6, kernel=(5, 1), strides=(2, 1), padding="valid", activation="relu")
add("op_conv_dilation2", "ops", conv2d, {"CONV_2D"},
    shape=(11, 11, 3), filters=8, kernel=3, dilation=2)
add("op_conv_2x2_s2_same", "ops", conv2d, {"CONV_2D"},
    shape=(7, 7, 5), filters=4, kernel=2, strides=2)

# Depthwise: depth multiplier 2 and 3, stride 2, 5x5.
add("op_dw_dm2", "ops", depthwise, {"DEPTHWISE_CONV_2D"}, shape=(8, 8, 3), kernel=3, multiplier=2)
add("op_dw_dm3_s2", "ops", depthwise, {"DEPTHWISE_CONV_2D"},
    shape=(9, 9, 5), kernel=3, strides=2, multiplier=3)
add("op_dw_5x5_s2", "ops", depthwise, {"DEPTHWISE_CONV_2D"},
    shape=(13, 11, 8), kernel=5, strides=2, activation="relu")

add("op_fc", "ops", dense, {"FULLY_CONNECTED"}, shape=(37,), units=19)
add("op_fc_nobias", "ops", dense, {"FULLY_CONNECTED"}, shape=(20,), units=7, use_bias=False)

# Element-wise with broadcasting (two inputs), and a constant operand.
add("op_add", "ops", binary, {"ADD"}, op="add", a=(5, 5, 8), b=(5, 5, 8))
add("op_add_broadcast", "ops", binary, {"ADD"}, op="add", a=(6, 5, 3), b=(1, 5, 3))
add("op_sub_broadcast", "ops", binary, {"SUB"}, op="sub", a=(4, 5, 3), b=(4, 5, 1))
add("op_mul_broadcast", "ops", binary, {"MUL"}, op="mul", a=(6, 5, 3), b=(1, 1, 3))
add("op_mul_const", "ops", binary, {"MUL"}, op="mul", a=(6, 5, 3), b=(1, 1, 3), const_b=True)

add("op_avgpool_3x3_s2_same", "ops", pool, {"AVERAGE_POOL_2D"},
    kind="avg", shape=(9, 9, 5), size=3, strides=2, padding="same")
add("op_avgpool_2x2_valid", "ops", pool, {"AVERAGE_POOL_2D"},
    kind="avg", shape=(7, 9, 6), size=2, strides=2, padding="valid")
add("op_maxpool_2x2_valid", "ops", pool, {"MAX_POOL_2D"},
    kind="max", shape=(7, 9, 6), size=2, strides=2, padding="valid")
add("op_maxpool_3x3_s2_same", "ops", pool, {"MAX_POOL_2D"},
    kind="max", shape=(9, 9, 5), size=3, strides=2, padding="same")

add("op_mean", "ops", unary, {"MEAN"}, layer="mean", shape=(5, 7, 6))
add("op_softmax", "ops", unary, {"SOFTMAX"}, layer="softmax", shape=(10,), scales=(3.0,))
# Activations: inputs scaled so calibration covers the saturating tails.
for _act, _op in (("logistic", "LOGISTIC"), ("tanh", "TANH"), ("hard_swish", "HARD_SWISH"),
                  ("relu", "RELU"), ("relu6", "RELU6")):
    add(f"op_{_act}", "ops", unary, {_op}, layer=_act, shape=(7, 5, 3), scales=(4.0,))
add("op_leaky_relu", "ops", unary, {"LEAKY_RELU"},
    layer="leaky_relu", shape=(7, 5, 3), arg=0.2, scales=(4.0,))
add("op_reshape", "ops", unary, {"RESHAPE"}, layer="reshape", shape=(6, 4, 3), arg=(8, 9))
add("op_squeeze", "ops", unary, {"SQUEEZE"}, layer="squeeze", shape=(5, 1, 7), arg=2,
    postprocess=reshapes_to_squeeze)
add("op_pad", "ops", unary, {"PAD"}, layer="pad", shape=(5, 5, 3), arg=((1, 2), (0, 3)))
add("op_transpose", "ops", unary, {"TRANSPOSE"}, layer="transpose", shape=(4, 5, 6), arg=(3, 1, 2))
add("op_strided_slice", "ops", unary, {"STRIDED_SLICE"}, layer="strided_slice", shape=(9, 8, 6),
    arg=(slice(None), slice(1, 8, 2), slice(None, None, 3), slice(1, 5)))
# Inputs with different scales, so concatenation must requantize.
add("op_concat_channels", "ops", concat, {"CONCATENATION"},
    shapes=[(4, 4, 3), (4, 4, 5)], axis=-1, scales=(1.0, 4.0))
add("op_concat_rows", "ops", concat, {"CONCATENATION"},
    shapes=[(3, 4, 2), (5, 4, 2)], axis=1, scales=(2.0, 0.5))


def log_softmax(tf: Any, shape: tuple[int, ...]) -> Any:
    """tf.nn.log_softmax over the last axis (the converter fixes the output to 16/256, zero point 127)."""
    x = _input(tf, shape)
    return tf.keras.Model(x, tf.keras.layers.Lambda(lambda v: tf.nn.log_softmax(v, axis=-1))(x))


add("op_log_softmax", "ops", log_softmax, {"LOG_SOFTMAX"}, shape=(3, 10), scales=(3.0,))


def upsample(tf: Any, shape: tuple[int, ...], size: Any, interpolation: str) -> Any:
    """Keras UpSampling2D (the converter emits RESIZE_BILINEAR with half_pixel_centers, or NEAREST)."""
    x = _input(tf, shape)
    return tf.keras.Model(x, tf.keras.layers.UpSampling2D(size, interpolation=interpolation)(x))


add("op_resize_bilinear", "ops", upsample, {"RESIZE_BILINEAR"}, shape=(5, 6, 7), size=(2, 3), interpolation="bilinear")


def transpose_conv(tf: Any, shape: tuple[int, ...], filters: int, kernel: Any, strides: Any) -> Any:
    """Keras Conv2DTranspose, SAME (TRANSPOSE_CONV with per-channel filters and a bias input)."""
    x = _input(tf, shape)
    y = tf.keras.layers.Conv2DTranspose(filters, kernel, strides=strides, padding="same", activation="relu")(x)
    return tf.keras.Model(x, y)


add("op_transpose_conv", "ops", transpose_conv, {"TRANSPOSE_CONV"}, shape=(6, 5, 8), filters=6, kernel=3, strides=2)
