"""Transformer zoo models: a tiny Keras-built vision transformer (issue 15).

The ViT and the keyword transformer (KWT-style, spectrogram frames as tokens) share one
encoder written from Keras layers the TFLite converter lowers to builtin
int8 ops: the patch embedding is a strided Conv2D, the class token a learned
constant concatenated in front of the tokens, the position embedding an ADD of
a constant, the class token read back with GATHER, attention two heads of BATCH_MATMUL + SOFTMAX, LayerNormalization
the MEAN / SQUARED_DIFFERENCE / RSQRT / MUL / ADD pattern, the MLP two
FULLY_CONNECTED on 3-D inputs. The MLP uses ReLU, not GELU: TFLite Micro (the
oracle we pin) has no GELU kernel.
"""
from __future__ import annotations

from typing import Any

from tinyml.zoo.registry import add


def encoder(tf: Any, tokens: Any, dim: int, heads: int, depth: int, classes: int) -> Any:
    """Class token and position embedding on [1, tokens, dim], `depth` pre-norm encoder blocks
    (two-head attention, ReLU MLP of 2 x dim), a final LayerNorm and a head on the class token
    (read with GATHER)."""
    L, ops = tf.keras.layers, tf.keras.ops
    count = tokens.shape[1] + 1
    head_dim = dim // heads

    class Tokens(L.Layer):
        """Prepends a learned class token and adds a learned position embedding."""

        def build(self, shape: Any) -> None:
            self.cls = self.add_weight(shape=(1, 1, dim), initializer="random_normal")
            self.pos = self.add_weight(shape=(1, count, dim), initializer="random_normal")

        def call(self, x: Any) -> Any:
            return ops.concatenate([self.cls, x], axis=1) + self.pos

    def split_heads(t: Any) -> Any:  # [1, count, dim] -> [1, heads, count, head_dim]
        return L.Permute((2, 1, 3))(L.Reshape((count, heads, head_dim))(t))

    y = Tokens()(tokens)
    for _ in range(depth):
        h = L.LayerNormalization(epsilon=1e-5)(y)
        q, k, v = (split_heads(L.Dense(dim)(h)) for _ in range(3))
        scores = L.Lambda(lambda a: ops.matmul(a[0], a[1]) * head_dim ** -0.5)([q, L.Permute((1, 3, 2))(k)])
        att = L.Lambda(lambda a: ops.matmul(a[0], a[1]))([L.Softmax(axis=-1)(scores), v])
        att = L.Reshape((count, dim))(L.Permute((2, 1, 3))(att))
        y = L.Add()([y, L.Dense(dim)(att)])
        h = L.LayerNormalization(epsilon=1e-5)(y)
        y = L.Add()([y, L.Dense(dim)(L.Dense(2 * dim, activation="relu")(h))])
    y = L.LayerNormalization(epsilon=1e-5)(y)
    cls = L.Lambda(lambda t: ops.take(t, 0, axis=1))(y)
    return L.Dense(classes)(cls)


def tiny_vit(tf: Any, image: int, patch: int, dim: int, heads: int, depth: int, classes: int) -> Any:
    """A strided Conv2D patch embedding of a 1-channel image, then the encoder."""
    L = tf.keras.layers
    x = tf.keras.Input((image, image, 1), batch_size=1)
    y = L.Conv2D(dim, patch, strides=patch)(x)
    y = L.Reshape(((image // patch) ** 2, dim))(y)
    return tf.keras.Model(x, encoder(tf, y, dim, heads, depth, classes))


def keyword_transformer(tf: Any, frames: int, features: int, dim: int, heads: int, depth: int, classes: int) -> Any:
    """KWT-style: each spectrogram frame a token, embedded by a Dense (FULLY_CONNECTED on 3-D)."""
    x = tf.keras.Input((frames, features), batch_size=1)
    return tf.keras.Model(x, encoder(tf, tf.keras.layers.Dense(dim)(x), dim, heads, depth, classes))


def batched(tf: Any) -> Any:
    """`tf` for these builders (which fix batch 1 for the converter) with any batch size, to train them
    (benchmarks/ivit_ops.py, vit_fashion.py): keras.Input drops batch_size and keras.ops.concatenate
    broadcasts batch-1 constants (the class token). The trained weights then go into the batch-1 build
    that is converted. The zoo's own models are never trained."""
    return _Batched(tf)


class _Batched:
    def __init__(self, tf: Any) -> None:
        self._tf = tf
        self.keras = _BatchedKeras(tf)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._tf, name)


class _BatchedKeras:
    def __init__(self, tf: Any) -> None:
        self._tf = tf
        self.ops = _BatchedOps(tf)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._tf.keras, name)

    def Input(self, shape: Any, batch_size: int | None = None, **kw: Any) -> Any:  # noqa: N802  (keras' name)
        return self._tf.keras.Input(shape, **kw)


class _BatchedOps:
    def __init__(self, tf: Any) -> None:
        self._ops = tf.keras.ops

    def __getattr__(self, name: str) -> Any:
        return getattr(self._ops, name)

    def concatenate(self, xs: list, axis: int = 0) -> Any:
        n = self._ops.shape(xs[-1])[0]
        return self._ops.concatenate([self._ops.broadcast_to(x, (n, *x.shape[1:])) if x.shape[0] == 1 else x
                                      for x in xs], axis=axis)


_ENCODER_OPS = {"CONCATENATION", "ADD", "FULLY_CONNECTED", "BATCH_MATMUL", "SOFTMAX", "MEAN", "SQUARED_DIFFERENCE",
                "RSQRT", "MUL", "TRANSPOSE", "RESHAPE", "GATHER"}
add("vit_tiny_8x8", "transformer", tiny_vit, _ENCODER_OPS | {"CONV_2D"}, image=8, patch=4, dim=16, heads=2, depth=1, classes=10,
    data="image")
add("kwt_tiny", "transformer", keyword_transformer, _ENCODER_OPS, frames=12, features=10, dim=16, heads=2, depth=2,
    classes=12, data="spectrogram")
# Part 3's memory target (issue 15): 64 patch tokens + the class token, four heads, so layer by layer the
# 4 x 65 x 65 score matrix (16.9 KB) dominates the arena; schedule/attention.py computes it in row blocks.
add("vit_attn_16x16", "transformer", tiny_vit, _ENCODER_OPS | {"CONV_2D"}, image=16, patch=2, dim=32, heads=4, depth=2,
    classes=10, data="image")
