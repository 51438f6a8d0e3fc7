"""Rewrites into the op whose kernels fit the computation better (exact by construction).

- DEPTHWISE_CONV_2D with one input channel and depth multiplier M (a keyword
  spotting front end: 1 channel, M = 8, 10x8 kernel) is a CONV_2D with M
  output channels: output channel m sums x * w[ky, kx, m] over the same
  window in both ops, TFLite Micro derives both ops' per-channel multipliers
  from the same scales (PopulateConvolutionQuantizationParams) and
  requantizes with the same MultiplyByQuantizedMultiplier. The 1HWC filter
  becomes OHWI (M, kh, kw, 1) with its per-channel axis moved from 3 to 0;
  the convolution's DSP GEMM then runs it instead of the generic depthwise loop.
"""
from __future__ import annotations

import numpy as np

from tinyml.ir import Graph, Quant, Tensor

_CONV_ATTRS = ("padding", "stride_h", "stride_w", "dilation_h_factor", "dilation_w_factor",
               "fused_activation_function", "explicit_padding")


def depthwise_as_conv(g: Graph) -> None:
    for n in g.nodes:
        if n.op != "DEPTHWISE_CONV_2D" or len(n.inputs) < 2 or n.inputs[1] is None:
            continue
        x, wt = g[n.inputs[0]], g[n.inputs[1]]
        if (len(x.shape) != 4 or x.shape[3] != 1 or x.dtype != "int8" or not wt.is_const or len(wt.shape) != 4
                or wt.shape[0] != 1 or wt.shape[3] < 2 or wt.dtype != "int8" or wt.bits != 8 or wt.quant is None
                or n.attrs.get("dilation_h_factor", 1) != 1 or n.attrs.get("dilation_w_factor", 1) != 1):
            continue
        q = wt.quant
        ohwi = np.ascontiguousarray(wt.data.transpose(3, 1, 2, 0))
        conv_w = g.add_tensor(Tensor(f"{wt.name}_ohwi", ohwi.shape, "int8",
                                     Quant(q.scale, q.zero_point, 0 if q.per_channel else q.axis), ohwi))
        n.op = "CONV_2D"
        n.inputs[1] = conv_w.name
        n.attrs = {k: v for k, v in n.attrs.items() if k in _CONV_ATTRS}
    g.remove_unused_tensors()
