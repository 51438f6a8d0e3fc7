"""`--integer-only`: replace TFLite's formulations of a transformer's non-linear parts by I-ViT's
integer-only ops (tinyml/ops/shiftmax.py, shift_gelu.py, ilayernorm.py).

Only on request: the result is no longer bit-exact with TFLite Micro on the original file (the
numpy reference of the new ops is the oracle; `validate --integer-only` compares with it and
reports how far the outputs moved from TFLite Micro's). Rewrites:
- SOFTMAX whose output feeds a BATCH_MATMUL (attention probabilities) -> SHIFTMAX;
- GELU (which the pinned TFLite Micro cannot run at all) -> SHIFTGELU;
- Keras' LayerNormalization as the int8 converter writes it (MEAN, DEQUANTIZE/NEG/QUANTIZE of the
  mean, SQUARED_DIFFERENCE, MEAN, ADD epsilon, RSQRT, MUL gamma, two MULs and ADDs) -> ILAYERNORM,
  with gamma, beta and epsilon read back (dequantized) from the pattern's constants.
A candidate whose new op's check() refuses it (scales out of range) is left as it was.
"""
from __future__ import annotations

from collections import Counter

import numpy as np

from tinyml.ir import Graph, Node, Tensor
from tinyml.ops import get_op


def integer_only(g: Graph) -> Counter:
    """Rewrite in place; returns how many of each op it introduced."""
    done: Counter = Counter()
    consumers = g.consumers()
    for n in g.nodes:
        if n.op == "SOFTMAX" and any(c.op == "BATCH_MATMUL" for c in consumers.get(n.outputs[0], [])):
            done["SHIFTMAX"] += _retype(g, n, "SHIFTMAX", {"beta": float(n.attrs.get("beta", 1.0))})
        elif n.op == "GELU":
            done["SHIFTGELU"] += _retype(g, n, "SHIFTGELU", {})
    for i, n in enumerate(list(g.nodes)):
        if n.op == "RSQRT" and (ln := _layernorm(g, n)) is not None:
            last, node = ln
            if get_op("ILAYERNORM").check(g, node) is None:
                g.nodes[g.nodes.index(last)] = node
                done["ILAYERNORM"] += 1
    if done["ILAYERNORM"]:
        from tinyml.passes.cleanup import remove_dead

        remove_dead(g)
    return done


def _retype(g: Graph, n: Node, op: str, attrs: dict) -> int:
    old = (n.op, n.attrs)
    n.op, n.attrs = op, attrs
    if get_op(op).check(g, n) is None:
        return 1
    n.op, n.attrs = old
    return 0


def _real(t: Tensor) -> np.ndarray:
    """A constant's values in real numbers (int8 dequantized, float as is)."""
    if t.quant is None or t.dtype == "float32":
        return np.asarray(t.data, np.float64)
    return (np.asarray(t.data, np.float64) - t.quant.zero_point[0]) * float(t.quant.scale[0])


def _negated_mean(prod: dict, name: str, mean: str) -> bool:
    """Whether `name` is QUANTIZE(NEG(DEQUANTIZE(mean))), the converter's -mean."""
    for op in ("QUANTIZE", "NEG", "DEQUANTIZE"):
        n = prod.get(name)
        if n is None or n.op != op:
            return False
        name = n.inputs[0]
    return name == mean


def _layernorm(g: Graph, rsqrt: Node) -> tuple[Node, Node] | None:
    """(the pattern's final ADD, the ILAYERNORM node to put in its place), or None."""
    prod, cons = g.producers(), g.consumers()

    def const_and_other(n: Node) -> tuple[Tensor | None, str | None]:
        ins = [t for t in n.inputs if t is not None]
        if len(ins) != 2:
            return None, None
        a, b = g[ins[0]], g[ins[1]]
        return (b, ins[0]) if b.is_const and not a.is_const else (a, ins[1]) if a.is_const and not b.is_const \
            else (None, None)

    add_eps = prod.get(rsqrt.inputs[0])
    if add_eps is None or add_eps.op != "ADD":
        return None
    eps_t, var_name = const_and_other(add_eps)
    var = prod.get(var_name) if var_name else None
    if eps_t is None or var is None or var.op != "MEAN":
        return None
    sq = prod.get(var.inputs[0])
    if sq is None or sq.op != "SQUARED_DIFFERENCE":
        return None
    x_name, mean_name = sq.inputs[0], sq.inputs[1]
    mean = prod.get(mean_name)
    if mean is None or mean.op != "MEAN" or mean.inputs[0] != x_name:
        mean = prod.get(x_name)
        x_name, mean_name = mean_name, x_name
        if mean is None or mean.op != "MEAN" or mean.inputs[0] != x_name:
            return None
    x = g[x_name]
    c = x.shape[-1]
    if any(g[m.inputs[1]].data is None or [int(a) % len(x.shape) for a in np.asarray(g[m.inputs[1]].data).reshape(-1)]
           != [len(x.shape) - 1] for m in (mean, var)):
        return None
    inv, gamma = rsqrt.outputs[0], np.ones(c)
    users = cons.get(inv, [])
    if len(users) == 1 and users[0].op == "MUL":
        g_t, _ = const_and_other(users[0])
        if g_t is not None and g_t.size in (1, c):
            gamma, inv = np.broadcast_to(_real(g_t).reshape(-1), (c,)), users[0].outputs[0]
    muls = cons.get(inv, [])
    xg = next((m for m in muls if m.op == "MUL" and x_name in m.inputs), None)
    mg = next((m for m in muls if m.op == "MUL" and m is not xg), None)
    if xg is None or mg is None or len(muls) != 2 \
            or not _negated_mean(prod, next((t for t in mg.inputs if t != inv), ""), mean_name):
        return None
    beta = np.zeros(c)
    shift = mg
    after = cons.get(mg.outputs[0], [])
    if len(after) == 1 and after[0].op == "ADD" and xg.outputs[0] not in after[0].inputs:
        b_t, _ = const_and_other(after[0])
        if b_t is None or b_t.size not in (1, c):
            return None
        beta, shift = np.broadcast_to(_real(b_t).reshape(-1), (c,)), after[0]
    final = cons.get(shift.outputs[0], [])
    if len(final) != 1 or final[0].op != "ADD" or set(final[0].inputs) != {xg.outputs[0], shift.outputs[0]}:
        return None
    out = final[0].outputs[0]
    tensors = []
    for role, values in (("gamma", gamma), ("beta", beta)):
        t = Tensor(f"{out}/ilayernorm_{role}", (c,), "float32", data=np.asarray(values, np.float32).copy())
        g.tensors[t.name] = t
        tensors.append(t.name)
    eps = max(float(_real(eps_t).reshape(-1)[0]), 0.0)
    return final[0], Node("ILAYERNORM", [x_name, *tensors], [out], {"epsilon": eps}, name=final[0].name)
