"""An instruction estimate the patch search bounds and ranks schedules by (an estimate, not a measure).

Recomputed overlap is not spread evenly: it falls on the first layers, whose
kernels spend the most instructions per MAC (few input channels, depthwise
planes). Bounding MACs alone let instructions grow well past the bound, so
the search also bounds an instruction estimate: per layer, a cost per input
and per output pixel (each op's `pixel_cost`, tinyml/ops/), fitted to the
generated kernels' QEMU counts on the zoo MobileNets (Cortex-M7 with DSP;
within ~25% per layer, which is enough to rank where the overlap lands).
"""
from __future__ import annotations

from tinyml.ir import Graph
from tinyml.ops import get_op

CALL_COST = 60  # instructions per kernel call (arguments, loop set-up)


def graph_cost(g: Graph) -> float:
    """Estimated instructions of one inference (see Op.pixel_cost)."""
    total = 0.0
    for n in g.nodes:
        a_in, a_out = get_op(n.op).pixel_cost(g, n)
        x = g[n.inputs[0]] if n.inputs and n.inputs[0] is not None else None
        y = g[n.outputs[0]]
        px_in = x.shape[1] * x.shape[2] if x is not None and len(x.shape) == 4 else 0
        px_out = y.shape[1] * y.shape[2] if len(y.shape) == 4 else max(1, y.size // (y.shape[-1] if y.shape else 1))
        total += CALL_COST + a_in * px_in + a_out * px_out
    return total
