"""ATTENTION: softmax(Q.K^T [* c]).V computed a block of query rows at a time (MCUFormer's
"operator integration"), so the [heads x T x T] score matrix is never whole. Made by
tinyml/schedule/attention.py from BATCH_MATMUL -> [MUL by a scalar] -> SOFTMAX | SHIFTMAX ->
BATCH_MATMUL; never imported.

Every step is row-local (a score row needs one query row; softmax normalizes within a row; an
output row needs one probability row), so running the same integer steps per row block gives the
layer-by-layer result bit for bit: the reference is literally the chain's ops (their references)
on the whole tensors. Q, K, V and the output are read and written through element strides
(attrs q, k, v, o: per head, per row, per column), so the TRANSPOSEs that split and merge heads
need not be materialized. Attributes (all set by the pass): heads, rows (queries), keys, depth,
dv; scores / scaled / probs quantization (scale, zero point); mul (the scalar code, its scale and
zero point, or None); softmax ("SOFTMAX" or "SHIFTMAX") and beta; block (query rows per step).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from tinyml.ir import Graph, Node, Quant, Tensor
from tinyml.ops.base import Op, bit_class, get_op, register
from tinyml.ops.batch_matmul import DSP_MAX_DEPTH, matmul_multiplier
from tinyml.ops.quantized import c_int32, int8_per_tensor

if TYPE_CHECKING:
    from tinyml.codegen.context import EmitContext


def chain_graph(g: Graph, n: Node) -> Graph:
    """The unfused chain on logical [heads, rows, cols] tensors (q, k as [keys, depth], v, o)."""
    a = n.attrs
    h, t, tk, d, dv = a["heads"], a["rows"], a["keys"], a["depth"], a["dv"]
    c = Graph(name="attention_chain")

    def add(name: str, shape: tuple[int, ...], quant: tuple[float, int] | Quant, data: np.ndarray | None = None) -> str:
        q = quant if isinstance(quant, Quant) else Quant([quant[0]], [quant[1]])
        c.tensors[name] = Tensor(name, shape, "int8", q, data=data)
        return name

    add("q", (h, t, d), g[n.inputs[0]].quant)
    add("k", (h, tk, d), g[n.inputs[1]].quant)
    add("v", (h, tk, dv), g[n.inputs[2]].quant)
    add("s", (h, t, tk), tuple(a["scores"]))
    scores = "s"
    c.nodes.append(Node("BATCH_MATMUL", ["q", "k"], ["s"], {"adj_x": False, "adj_y": True}, name="qk"))
    if a["mul"] is not None:
        code, scale, zp = a["mul"]
        add("c", (1,), (scale, zp), np.array([code], np.int8))
        add("m", (h, t, tk), tuple(a["scaled"]))
        c.nodes.append(Node("MUL", ["s", "c"], ["m"], {"fused_activation_function": "NONE"}, name="scale"))
        scores = "m"
    add("p", (h, t, tk), (1 / 256, -128))
    c.nodes.append(Node(a["softmax"], [scores], ["p"], {"beta": a["beta"]}, name="softmax"))
    add("o", (h, t, dv), g[n.outputs[0]].quant)
    c.nodes.append(Node("BATCH_MATMUL", ["p", "v"], ["o"], {"adj_x": False, "adj_y": False}, name="pv"))
    c.inputs, c.outputs = ["q", "k", "v"], ["o"]
    return c


def _index(shape: tuple[int, int, int], strides: tuple[int, int, int]) -> np.ndarray:
    """Flat element index of every [heads, rows, cols] position."""
    axes = np.ix_(*(np.arange(s) for s in shape))
    return sum(ax * st for ax, st in zip(axes, strides))


def _shapes(n: Node) -> dict[str, tuple[int, int, int]]:
    a = n.attrs
    return {"q": (a["heads"], a["rows"], a["depth"]), "k": (a["heads"], a["keys"], a["depth"]),
            "v": (a["heads"], a["keys"], a["dv"]), "o": (a["heads"], a["rows"], a["dv"])}


@register
class Attention(Op):
    name = "ATTENTION"

    def check(self, g: Graph, n: Node) -> str | None:
        if len(n.inputs) != 3 or None in n.inputs or len(n.outputs) != 1:
            return "expects q, k, v and one output"
        for t, role in zip([*n.inputs, n.outputs[0]], ("q", "k", "v", "output")):
            if why := int8_per_tensor(g[t], role):
                return why
        a = n.attrs
        if a["q"][2] != 1 or a["o"][2] != 1:
            return "query and output rows must be contiguous"
        if not 1 <= a["block"] <= a["rows"]:
            return "block out of range"
        for role, shape in _shapes(n).items():
            t = g[n.outputs[0] if role == "o" else n.inputs["qkv".index(role)]]
            last = int(_index(shape, tuple(a[role])).max())
            if last >= t.size or int(_index(shape, tuple(a[role])).min()) < 0:
                return f"{role} strides reach outside its tensor"
        chain = chain_graph(g, n)
        for node in chain.nodes:
            if why := get_op(node.op).check(chain, node):
                return f"{node.op}: {why}"
        return None

    def infer_shapes(self, g: Graph, n: Node) -> list[tuple[int, ...]]:
        return [g[n.outputs[0]].shape]

    def reference(self, g: Graph, n: Node, inputs: list[np.ndarray | None]) -> list[np.ndarray]:
        from tinyml.reference import reference_outputs

        shapes = _shapes(n)
        logical = [np.asarray(x).reshape(-1)[_index(shapes[r], tuple(n.attrs[r]))] for x, r in zip(inputs, "qkv")]
        o = reference_outputs(chain_graph(g, n), logical)[0]
        y = g[n.outputs[0]]
        out = np.zeros(y.size, np.int8)
        out[_index(shapes["o"], tuple(n.attrs["o"]))] = o
        return [out.reshape(y.shape)]

    def macs(self, g: Graph, n: Node) -> int:
        a = n.attrs
        return a["heads"] * a["rows"] * a["keys"] * (a["depth"] + a["dv"])

    def scratch_bytes(self, g: Graph, n: Node) -> int:
        return n.attrs["block"] * n.attrs["keys"]

    def inplace_inputs(self, g: Graph, n: Node) -> tuple[int, ...]:
        """The output over Q when both have one layout: a block's output rows land on the query
        rows its scores were computed from (read whole before), never on rows still to come."""
        q, o = g[n.inputs[0]], g[n.outputs[0]]
        same = tuple(n.attrs["q"]) == tuple(n.attrs["o"]) and n.attrs["depth"] == n.attrs["dv"] and q.size == o.size
        return (0,) if same else ()

    def emit(self, g: Graph, n: Node, ctx: "EmitContext") -> None:
        a = n.attrs
        chain = chain_graph(g, n)
        t, tk, d, dv, r = a["rows"], a["keys"], a["depth"], a["dv"], a["block"]
        dsp = bool(ctx.target.dsp)

        def matmul(rows: int, lhs: tuple[int, int], rhs: tuple[int, int], depth: int, cols: int, out_i: int,
                   zps: tuple[int, int, int], scales: tuple[float, float, float]) -> str:
            mult, shift = matmul_multiplier(*scales)
            return ctx.kernel(
                "batch_matmul.c.j2", dsp=dsp and lhs[1] == 1 and 4 <= depth <= DSP_MAX_DEPTH, depth4=depth - depth % 4,
                batch=(1, 1, 1), lhs_strides=[0, 0, 0], rhs_strides=[0, 0, 0], rows=rows, cols=cols, depth=depth,
                lhs_i=lhs[0], lhs_k=lhs[1], rhs_k=rhs[0], rhs_j=rhs[1], lhs_zp=zps[0], rhs_zp=zps[1],
                mult=c_int32(mult), shift=shift, out_zp=zps[2], out_i=out_i)

        qt, kt, vt, st, pt, ot = (chain[x] for x in ("q", "k", "v", "s", "p", "o"))
        q_s, k_s, v_s, o_s = (tuple(a[x]) for x in "qkvo")
        rest = t % r
        mm1 = {rows: matmul(rows, (q_s[1], q_s[2]), (k_s[2], k_s[1]), d, tk, tk,
                            (qt.quant.zp, kt.quant.zp, st.quant.zp), (qt.quant.scale[0], kt.quant.scale[0], st.quant.scale[0]))
               for rows in {r, rest} - {0}}
        mm2 = {rows: matmul(rows, (tk, 1), (v_s[1], v_s[2]), tk, dv, o_s[1],
                            (pt.quant.zp, vt.quant.zp, ot.quant.zp), (pt.quant.scale[0], vt.quant.scale[0], ot.quant.scale[0]))
               for rows in {r, rest} - {0}}
        args = [ctx.tensor(x) for x in (*n.inputs, n.outputs[0])] + [ctx.scratch(r * tk)]
        lut = None
        if a["mul"] is not None:
            mul = chain.nodes[1]
            codes = np.arange(-128, 128, dtype=np.int8).reshape(1, 1, 256)
            table = get_op("MUL").reference(_scaled_view(chain, 256), mul, [codes, chain["c"].data])[0].reshape(-1)
            lut = ctx.kernel("lut.c.j2", tx="int8_t", ty="int8_t")
            args.append(ctx.const(np.roll(table.astype(np.int8), -128), "scale_table", "int8_t"))
        if a["softmax"] == "SOFTMAX":
            from tinyml.ops.activations import softmax_exp_table

            sm = ctx.kernel("softmax.c.j2", ty="int8_t", out_bits=8)
            args.append(ctx.const(softmax_exp_table(a["beta"], float(np.float32(chain[chain.nodes[-2].inputs[0]].quant.scale[0])))
                                  .astype(np.int32), "exp_table", "int32_t"))
        else:
            from tinyml.ops.shiftmax import RECIP_BITS, _fine

            p, i0 = _fine(chain, chain.nodes[-2])
            sm = ctx.kernel("shiftmax.c.j2", p=p, i0=i0, recip_bits=RECIP_BITS)
        fn = ctx.kernel("attention.c.j2", heads=a["heads"], rows=t, keys=tk, block=r, rest=rest, q_s=q_s, k_s=k_s,
                        v_s=v_s, o_s=o_s, mm1=mm1, mm2=mm2, lut=lut, sm=sm, exp=a["softmax"] == "SOFTMAX")
        ctx.call(fn, *args)

    def cost_terms(self, g: Graph, n: Node) -> tuple[str, dict[str, float]]:
        """The kernels it runs per block, as "<class>/<count>" (tinyml/cost/model.py): two matrix
        products (calls, multiply-accumulates, requantized outputs: scores and output rows), the
        scale table and the softmax over every score."""
        a = n.attrs
        h, t, tk = a["heads"], a["rows"], a["keys"]
        calls = h * -(-t // a["block"])
        sm = "softmax" if a["softmax"] == "SOFTMAX" else "shiftmax"
        terms = {"matmul/call": 2 * calls, "matmul/macs": self.macs(g, n), "matmul/out": h * t * (tk + a["dv"]),
                 f"{sm}/out": h * t * tk, f"{sm}/rows": h * t, f"{sm}/call": calls}
        if a["mul"] is not None:
            terms.update({"lut/call": calls, "lut/out": h * t * tk})
        return bit_class("attention", g[n.inputs[0]], g[n.outputs[0]]), terms


def _scaled_view(chain: Graph, cols: int) -> Graph:
    """The chain with its score tensors one row of `cols` long: MUL's reference on all 256 codes."""
    view = Graph(name="scale_table")
    for name in ("s", "c", "m"):
        t = chain[name]
        view.tensors[name] = Tensor(name, (1, 1, cols) if name != "c" else t.shape, "int8", t.quant, data=t.data)
    return view
