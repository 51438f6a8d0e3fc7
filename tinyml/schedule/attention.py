"""Operator integration (MCUFormer): attention computed a block of query rows at a time.

Finds BATCH_MATMUL (scores) -> [MUL by a scalar] -> SOFTMAX | SHIFTMAX -> BATCH_MATMUL (values)
chains whose intermediate tensors feed nothing else, and replaces each by one ATTENTION node
(tinyml/ops/attention.py) that holds `block` rows of scores instead of the [heads x T x T]
matrix. The TRANSPOSEs that split heads before the products and merge them after are absorbed
as strides: Q, K and V are read where the FULLY_CONNECTEDs wrote them and the output is written
token-major, so those copies vanish too. The planner's in-place rule then lets the output take
Q's buffer (token overwriting). Bit-exact with the unfused graph (each step is row-local).
"""
from __future__ import annotations

import numpy as np

from tinyml.ir import Graph, Node
from tinyml.ops import get_op
from tinyml.passes.cleanup import remove_dead

CANDIDATE_BLOCKS = (4, 8, 16, 32, 1 << 20)  # query rows per step (the last: all rows of a head)


def _contiguous(shape: tuple[int, ...]) -> list[int]:
    out, step = [], 1
    for n in reversed(shape):
        out.append(step)
        step *= n
    return out[::-1]


def _perm(g: Graph, n: Node) -> list[int] | None:
    if len(n.inputs) < 2 or n.inputs[1] is None or g[n.inputs[1]].data is None:
        return None
    return [int(v) for v in np.asarray(g[n.inputs[1]].data).reshape(-1)]


def _view(g: Graph, name: str, prod: dict) -> tuple[str, list[int]]:
    """(tensor holding the bytes, element strides of `name`'s axes in it): through a TRANSPOSE."""
    p = prod.get(name)
    if p is not None and p.op == "TRANSPOSE" and (perm := _perm(g, p)) is not None:
        base = _contiguous(g[p.inputs[0]].shape)
        return p.inputs[0], [base[a] for a in perm]
    return name, _contiguous(g[name].shape)


def _heads(shape: tuple[int, ...], strides: list[int]) -> tuple[int, int] | None:
    """(heads, head stride) of the batch axes, when at most one of them is not 1."""
    batch = [(n, s) for n, s in zip(shape[:-2], strides[:-2]) if n != 1]
    if len(batch) > 1:
        return None
    return batch[0] if batch else (1, 0)


def _matrix(g: Graph, name: str, prod: dict, adj: bool) -> tuple[str, int, int, int, int, int] | None:
    """(base, heads, head stride, rows, row stride, col stride) of a matmul operand as used."""
    base, st = _view(g, name, prod)
    shape = g[name].shape
    h = _heads(shape, st)
    if h is None or len(shape) < 2:
        return None
    rows, cols, rs, cs = shape[-2], shape[-1], st[-2], st[-1]
    if adj:
        rows, cols, rs, cs = cols, rows, cs, rs
    return base, h[0], h[1], rs, cs, rows


def choose_block(g: Graph) -> int:
    """The largest candidate block whose planned arena is the smallest any candidate reaches: fewer,
    longer steps cost fewer instructions (the DSP product gathers each K and V column once per
    block), and past the size where the scores stop being the peak a longer block is free. 0 when
    g has no attention chain."""
    from copy import deepcopy

    from tinyml.schedule.memory import plan_memory

    ops = {n.op for n in g.nodes}
    if "BATCH_MATMUL" not in ops or not ops & {"SOFTMAX", "SHIFTMAX"}:
        return 0
    arenas = {}
    for block in CANDIDATE_BLOCKS:
        trial = deepcopy(g)
        if fuse_attention(trial, block) == 0:
            return 0
        arenas[block] = plan_memory(trial).arena_bytes
    best = min(arenas.values())
    return max(b for b, a in arenas.items() if a == best)


def fuse_attention(g: Graph, block: int | None = None) -> int:
    """Rewrite every attention chain in place (blocks of `block` query rows; None: choose_block's;
    0 leaves the graph layer by layer); returns how many were fused."""
    block = choose_block(g) if block is None else block
    if block <= 0:
        return 0
    fused = 0
    for mm2 in list(g.nodes):
        if mm2.op != "BATCH_MATMUL" or mm2 not in g.nodes:
            continue
        found = _fuse_one(g, mm2, block)
        if found is not None and get_op("ATTENTION").check(g, found[0]) is None:
            g.nodes[g.nodes.index(mm2)] = found[0]
            if found[1] is not None:  # its output is now written by the ATTENTION node
                g.nodes.remove(found[1])
            fused += 1
    if fused:
        remove_dead(g)
    return fused


def _fuse_one(g: Graph, mm2: Node, block: int) -> tuple[Node, Node | None] | None:
    """(the ATTENTION node for the chain ending at mm2, the output TRANSPOSE it absorbs), or None."""
    prod, cons = g.producers(), g.consumers()
    outs = set(g.outputs)

    def only_into(name: str, node: Node) -> bool:
        return name not in outs and [c is node for c in cons.get(name, [])] == [True]

    sm = prod.get(mm2.inputs[0])
    if sm is None or sm.op not in ("SOFTMAX", "SHIFTMAX") or not only_into(sm.outputs[0], mm2):
        return None
    mul, scores = None, sm.inputs[0]
    p = prod.get(scores)
    if p is not None and p.op == "MUL" and only_into(scores, sm):
        consts = [t for t in p.inputs if t is not None and g[t].is_const]
        if len(consts) != 1 or g[consts[0]].size != 1 or g[consts[0]].dtype != "int8":
            return None
        mul, scores = p, next(t for t in p.inputs if t != consts[0])
    mm1 = prod.get(scores)
    if mm1 is None or mm1.op != "BATCH_MATMUL" or not only_into(scores, mul or sm) or mm1.attrs.get("adj_x"):
        return None
    q = _matrix(g, mm1.inputs[0], prod, False)
    k = _matrix(g, mm1.inputs[1], prod, not mm1.attrs.get("adj_y"))  # as [keys, depth]
    v = _matrix(g, mm2.inputs[1], prod, bool(mm2.attrs.get("adj_y")) or False)
    if q is None or k is None or v is None or mm2.attrs.get("adj_x"):
        return None
    out, o_strides = mm2.outputs[0], _contiguous(g[mm2.outputs[0]].shape)
    after, merge = cons.get(out, []), None
    if out not in outs and len(after) == 1 and after[0].op == "TRANSPOSE" and (perm := _perm(g, after[0])):
        target = _contiguous(g[after[0].outputs[0]].shape)
        o_strides = [0] * len(perm)
        for pos, axis in enumerate(perm):
            o_strides[axis] = target[pos]
        out, merge = after[0].outputs[0], after[0]
    o_shape = g[mm2.outputs[0]].shape
    oh = _heads(o_shape, o_strides)
    heads = {q[1], k[1], v[1], oh[0] if oh else -1}
    if oh is None or len(heads) != 1:
        return None
    t, d = g[mm1.inputs[0]].shape[-2:]
    tk, dv = k[5], o_shape[-1]
    if v[5] != tk:
        return None
    attrs = {
        "heads": q[1], "rows": t, "keys": tk, "depth": d, "dv": dv,
        "q": (q[2], q[3], q[4]), "k": (k[2], k[3], k[4]), "v": (v[2], v[3], v[4]),
        "o": (oh[1], o_strides[-2], o_strides[-1]),
        "scores": _quant(g, mm1.outputs[0]), "scaled": _quant(g, mul.outputs[0]) if mul else None,
        "mul": None, "softmax": sm.op, "beta": float(sm.attrs.get("beta", 1.0)), "block": min(block, t),
    }
    if mul is not None:
        c = g[next(x for x in mul.inputs if x is not None and g[x].is_const)]
        attrs["mul"] = (int(np.asarray(c.data).reshape(-1)[0]), float(c.quant.scale[0]), c.quant.zp)
    return Node("ATTENTION", [q[0], k[0], v[0]], [out], attrs, name=mm2.name), merge


def _quant(g: Graph, name: str) -> tuple[float, int]:
    t = g[name]
    return float(t.quant.scale[0]), t.quant.zp
