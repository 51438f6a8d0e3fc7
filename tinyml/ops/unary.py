"""ABS on int8, a function of one code: emitted as a lookup table (activations.LutOp).

TFLite Micro's quantized ABS: |x - input zero point|, requantized by input/output
scale (in double) only when the two float32 scales differ, + output zero point,
saturated. Every code is checked against TFLite Micro (tests/test_ops_elementwise.py).
"""
from __future__ import annotations

import numpy as np

from tinyml.fixedpoint import multiply_by_quantized_multiplier, quantize_multiplier, wrap_int32
from tinyml.ir import Graph, Node
from tinyml.ops.activations import LutOp
from tinyml.ops.base import register


@register
class Abs(LutOp):
    name = "ABS"

    def values(self, g: Graph, n: Node, x: np.ndarray) -> np.ndarray:
        xi, yo = g[n.inputs[0]], g[n.outputs[0]]
        sx, sy = np.float32(xi.quant.scale[0]), np.float32(yo.quant.scale[0])
        v = np.abs(x - xi.quant.zp)
        if sx != sy:
            q, shift = quantize_multiplier(float(sx) / float(sy))
            v = multiply_by_quantized_multiplier(v, q, shift)
        return np.clip(wrap_int32(v + yo.quant.zp), -128, 127)
