"""Binary element-wise int8 ops with numpy broadcasting, and the lookup-table kernel.

ADD, SUB, MUL, MAXIMUM, MINIMUM, SQUARED_DIFFERENCE (and PRELU, defined in
activations.py) share one arithmetic description (`Arith`): the fixed-point
constants TFLite Micro derives at Prepare time, evaluated per element by the
numpy reference here and by the C template kernels/elementwise.c.j2. The
constants must be derived in the oracle's own float/double order (a last-bit
difference in a multiplier changes some outputs).

Broadcasting is lowered at generation time into a few nested loops (dims
where neither operand changes its broadcast pattern are merged) with the
strides baked in. The output may alias a same-shape input: every element is
read before it is written, so the planner may run these ops in place.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from tinyml.codegen.cnames import ctype
from tinyml.fixedpoint import multiply_by_quantized_multiplier, quantize_multiplier, wrap_int32
from tinyml.ir import Graph, Node, Tensor
from tinyml.ops.base import Op, bit_class, register
from tinyml.ops.int16 import int16_per_tensor
from tinyml.ops.quantized import activation_range, activation_reason, int8_per_tensor

if TYPE_CHECKING:
    from tinyml.codegen.context import EmitContext

MAX_RANK = 6  # TFLite Micro's broadcast limit (its MUL/PRELU broadcast only 4-D)
# Comparisons (ops/compare.py): both inputs rescaled like ADD's, then compared; a 0/1 bool out.
COMPARISONS: dict[str, str] = {"LESS": "<", "LESS_EQUAL": "<=", "GREATER": ">", "GREATER_EQUAL": ">=",
                               "EQUAL": "==", "NOT_EQUAL": "!="}
LOGICAL: dict[str, str] = {"LOGICAL_AND": "&&", "LOGICAL_OR": "||"}  # bool operands (ops/logical.py)
_COMPARE = {"LESS": np.less, "LESS_EQUAL": np.less_equal, "GREATER": np.greater,
            "GREATER_EQUAL": np.greater_equal, "EQUAL": np.equal, "NOT_EQUAL": np.not_equal}


def broadcast_shape(a: tuple[int, ...], b: tuple[int, ...]) -> tuple[int, ...]:
    """numpy's rule: align trailing dims; each pair must match or contain a 1."""
    rank = max(len(a), len(b))
    pa, pb = (1,) * (rank - len(a)) + tuple(a), (1,) * (rank - len(b)) + tuple(b)
    out = []
    for da, db in zip(pa, pb):
        if da != db and 1 not in (da, db):
            raise ValueError(f"shapes {tuple(a)} and {tuple(b)} do not broadcast")
        out.append(db if da == 1 else da)
    return tuple(out)


def loop_nest(a: tuple[int, ...], b: tuple[int, ...], out: tuple[int, ...]) -> list[tuple[int, int, int]]:
    """(extent, stride in a, stride in b) per loop, outermost first; the output is contiguous.

    Unit output dims disappear and neighbouring dims along which both
    operands are either full or broadcast merge into one loop, so
    [1,H,W,C] + [1,1,1,C] becomes two loops: H*W (b fixed) over C.
    """
    rank = len(out)
    pa, pb = (1,) * (rank - len(a)) + tuple(a), (1,) * (rank - len(b)) + tuple(b)
    dims: list[list] = []
    for d, n in enumerate(out):
        if n == 1:
            continue
        full = (pa[d] == n, pb[d] == n)
        if dims and tuple(dims[-1][1:]) == full:
            dims[-1][0] *= n
        else:
            dims.append([n, *full])
    if not dims:
        dims = [[1, True, True]]
    nest, sa, sb = [], 1, 1
    for n, fa, fb in reversed(dims):
        nest.append((n, sa if fa else 0, sb if fb else 0))
        sa, sb = sa * (n if fa else 1), sb * (n if fb else 1)
    return nest[::-1]


@dataclass(frozen=True)
class Arith:
    """Per-element integer arithmetic of one binary op, as TFLite Micro runs it.

    `off*` are the negated input zero points, `m*/s*` quantized multipliers
    (q, shift) for the inputs (ADD/SUB/SQUARED_DIFFERENCE) or for PRELU's two
    branches (1: x >= 0, 2: x < 0), `mo/so` the output multiplier.
    """

    kind: str
    off1: int = 0
    off2: int = 0
    out_zp: int = 0
    left_shift: int = 0
    m1: int = 0
    s1: int = 0
    m2: int = 0
    s2: int = 0
    mo: int = 0
    so: int = 0
    lo: int = -128
    hi: int = 127

    def apply(self, x1: np.ndarray, x2: np.ndarray) -> np.ndarray:
        """The numpy reference; x1, x2 broadcast against each other."""
        x1, x2 = np.broadcast_arrays(np.asarray(x1, np.int64), np.asarray(x2, np.int64))
        mbqm = multiply_by_quantized_multiplier
        if self.kind in ("MAXIMUM", "MINIMUM"):
            r = np.maximum(x1, x2) if self.kind == "MAXIMUM" else np.minimum(x1, x2)
        elif self.kind == "MUL":
            r = mbqm((x1 + self.off1) * (x2 + self.off2), self.mo, self.so) + self.out_zp
        elif self.kind == "PRELU":
            v = x1 + self.off1
            r = np.where(v >= 0, mbqm(v, self.m1, self.s1), mbqm(v * (x2 + self.off2), self.m2, self.s2))
            r = r + self.out_zp
        elif self.kind in LOGICAL:
            r = (np.logical_and if self.kind == "LOGICAL_AND" else np.logical_or)(x1 != 0, x2 != 0).astype(np.int64)
        elif self.kind in COMPARISONS:
            r = _COMPARE[self.kind](self.rescaled(x1, 1), self.rescaled(x2, 2)).astype(np.int64)
        else:
            a, b = self.rescaled(x1, 1), self.rescaled(x2, 2)
            raw = {"ADD": a + b, "SUB": a - b, "SQUARED_DIFFERENCE": (a - b) * (a - b)}[self.kind]
            r = mbqm(raw, self.mo, self.so) + self.out_zp
        return np.clip(wrap_int32(r), self.lo, self.hi)


    @property
    def rescales_inputs(self) -> bool:
        """Each input is first rescaled on its own (ADD, SUB, SQUARED_DIFFERENCE, comparisons)."""
        return self.kind in ("ADD", "SUB", "SQUARED_DIFFERENCE", *COMPARISONS)

    def rescaled(self, x: np.ndarray, which: int) -> np.ndarray:
        """Input `which` (1 or 2) shifted left and rescaled: a function of its 8-bit code alone,
        so the C kernel reads it from a 256-entry table built from this very function."""
        off, m, sh = (self.off1, self.m1, self.s1) if which == 1 else (self.off2, self.m2, self.s2)
        return multiply_by_quantized_multiplier((np.asarray(x, np.int64) + off) << self.left_shift, m, sh)


def _code_range(t: Tensor) -> dict[str, int]:
    """lo/hi of an Arith that only picks codes (MAXIMUM/MINIMUM): the output type's range."""
    info = np.iinfo(t.np_dtype)
    return dict(lo=int(info.min), hi=int(info.max))


def _f32(v: float | np.floating) -> np.float32:
    return np.float32(v)


def smaller_than_one(m: float, what: str) -> tuple[int, int]:
    """QuantizeMultiplierSmallerThanOneExp; TFLite Micro aborts outside (0, 1)."""
    q, shift = quantize_multiplier(m)
    if not 0.0 < m < 1.0 or shift > 0:
        raise ValueError(f"{what} multiplier {m:g} is not in (0, 1) as TFLite Micro requires")
    return q, shift


def _scales(g: Graph, n: Node) -> tuple[np.float32, np.float32, np.float32]:
    a, b, y = g[n.inputs[0]], g[n.inputs[1]], g[n.outputs[0]]
    return _f32(a.quant.scale[0]), _f32(b.quant.scale[0]), _f32(y.quant.scale[0])


def _offsets(g: Graph, n: Node) -> dict[str, int]:
    a, b, y = g[n.inputs[0]], g[n.inputs[1]], g[n.outputs[0]]
    return dict(off1=-a.quant.zp, off2=-b.quant.zp, out_zp=y.quant.zp)


def add_sub_arith(g: Graph, n: Node, kind: str) -> Arith:
    """CalculateOpDataAdd/Sub: left shift 20 (15 for int16), multipliers from twice the larger scale, in double.

    (TFLite Micro's newest sub_common.cc takes these in float32; the packaged
    oracle still uses double for SUB too, and a float32 derivation differs on
    some code pairs, so we follow the oracle.)
    """
    s1, s2, so = _scales(g, n)
    twice = 2.0 * float(max(s1, s2))
    left_shift = 15 if g[n.outputs[0]].dtype == "int16" else 20
    m1, sh1 = smaller_than_one(float(s1) / twice, "input 1")
    m2, sh2 = smaller_than_one(float(s2) / twice, "input 2")
    mo, sho = smaller_than_one(twice / ((1 << left_shift) * float(so)), "output")
    lo, hi = activation_range(n.attrs.get("fused_activation_function", "NONE"), g[n.outputs[0]])
    return Arith(kind, **_offsets(g, n), left_shift=left_shift, m1=m1, s1=sh1, m2=m2, s2=sh2, mo=mo, so=sho, lo=lo, hi=hi)


def mul_arith(g: Graph, n: Node) -> Arith:
    s1, s2, so = _scales(g, n)
    mo, sho = quantize_multiplier(float(s1) * float(s2) / float(so))
    lo, hi = activation_range(n.attrs.get("fused_activation_function", "NONE"), g[n.outputs[0]])
    return Arith("MUL", **_offsets(g, n), mo=mo, so=sho, lo=lo, hi=hi)


def squared_difference_arith(g: Graph, n: Node) -> Arith:
    """squared_difference.cc: left shift 7, output multiplier from twice_max squared."""
    s1, s2, so = _scales(g, n)
    twice = 2.0 * float(max(s1, s2))
    m1, sh1 = smaller_than_one(float(s1) / twice, "input 1")
    m2, sh2 = smaller_than_one(float(s2) / twice, "input 2")
    mo, sho = quantize_multiplier(twice * twice / float(_f32(1 << 14) * so))
    return Arith("SQUARED_DIFFERENCE", **_offsets(g, n), left_shift=7, m1=m1, s1=sh1, m2=m2, s2=sh2,
                 mo=mo, so=sho)


class BinaryOp(Op):
    """Two int8 operands broadcast numpy-style into one int8 output."""

    quantized: ClassVar[bool] = True  # MAXIMUM/MINIMUM compare raw codes and ignore quantization
    int16: ClassVar[bool] = False  # TFLite Micro also runs it on int16 operands (16x8 mode, zero points 0)
    pointwise = True

    def arith(self, g: Graph, n: Node) -> Arith:
        raise NotImplementedError

    def check(self, g: Graph, n: Node) -> str | None:
        if len(n.inputs) != 2 or len(n.outputs) != 1 or None in n.inputs:
            return "expects two inputs and one output"
        tensors = (g[n.inputs[0]], g[n.inputs[1]], g[n.outputs[0]])
        wide = self.int16 and tensors[2].dtype == "int16"
        for t, role in zip(tensors, ("input 1", "input 2", "output")):
            why = int16_per_tensor(t, role) if wide else int8_per_tensor(t, role) if self.quantized else (
                None if t.dtype in ("int8", "int16") and t.dtype == tensors[2].dtype
                else f"{role} is {t.dtype}: int8 or int16 operands like the output are supported")
            if why:
                return why
        try:
            shape = broadcast_shape(tensors[0].shape, tensors[1].shape)
        except ValueError as e:
            return str(e)
        if len(shape) > MAX_RANK:
            return f"rank {len(shape)} is above the supported {MAX_RANK}"
        if tensors[2].shape != shape:
            return f"output shape {tensors[2].shape} is not the broadcast shape {shape}"
        if self.fuses_activation and (why := activation_reason(n)):
            return why
        try:
            self.arith(g, n)
        except ValueError as e:
            return str(e)
        return None

    def infer_shapes(self, g: Graph, n: Node) -> list[tuple[int, ...]]:
        return [broadcast_shape(g[n.inputs[0]].shape, g[n.inputs[1]].shape)]

    def reference(self, g: Graph, n: Node, inputs: list[np.ndarray | None]) -> list[np.ndarray]:
        y = self.arith(g, n).apply(inputs[0], inputs[1])
        return [y.reshape(g[n.outputs[0]].shape).astype(g[n.outputs[0]].np_dtype)]

    def inplace_inputs(self, g: Graph, n: Node) -> tuple[int, ...]:
        # y[i] is written after a[i] and b[i] are read: an operand laid out like y can take its place.
        y = g[n.outputs[0]]
        return tuple(i for i in (0, 1) if g[n.inputs[i]].shape == y.shape and g[n.inputs[i]].dtype == y.dtype
                     and g[n.inputs[i]].bits == y.bits)

    def emit(self, g: Graph, n: Node, ctx: "EmitContext") -> None:
        a, b, y = g[n.inputs[0]], g[n.inputs[1]], g[n.outputs[0]]
        nest = loop_nest(a.shape, b.shape, y.shape)
        p = self.arith(g, n)
        rescaled = self.byte_tables(g, n, p)
        # The output requantization of ADD/SUB in two shifts instead of TFLite's general sequence: exact when
        # the shift is a right shift (< 31) and |s1 +- s2| + 2^(shift-1) cannot overflow (true of real models).
        # On DSP cores with a shift <= 22, tables hold the rescaled inputs doubled for tm_requant_dsp2p
        # (one SMMULR, the zero point in its rounding term; |s1 +- s2| < 2^30 keeps the double in range).
        bound = sum(int(np.abs(t).max()) for t in rescaled) if rescaled else 2**31
        short = bool(rescaled) and p.kind in ("ADD", "SUB") and -30 <= p.so <= 0 and bound + 2**30 < 2**31
        fold = short and ctx.target.dsp and p.so >= -22
        tables = [ctx.const(t.astype(np.int32) * (2 if fold else 1), "rescale", "int32_t") for t in rescaled]
        fn = ctx.kernel("elementwise.c.j2", p=p, outer=nest[:-1], inner=nest[-1], tables=len(tables), short=short,
                        fold=fold, cmp=COMPARISONS.get(p.kind), logic=LOGICAL.get(p.kind), pz=(1 << -p.so) + (p.out_zp << (1 - p.so)) if fold else 0,
                        ta=ctype(a.dtype), tb=ctype(b.dtype), ty=ctype(y.dtype), abits=a.bits, bbits=b.bits,
                        ybits=y.bits)
        ctx.call(fn, ctx.tensor(a.name), ctx.tensor(b.name), ctx.tensor(y.name), *tables)

    def byte_tables(self, g: Graph, n: Node, p: Arith) -> list[np.ndarray]:
        """int32 tables the kernel indexes by an input's byte (t1, t2...), exact: built by the reference's
        own arithmetic. Rescaling an 8-bit input is a function of its byte: two tables replace two
        requantizations per element."""
        a, b = g[n.inputs[0]], g[n.inputs[1]]
        if not (p.rescales_inputs and a.bits == b.bits == 8):
            return []
        return [p.rescaled(byte_codes(t.dtype), k) for k, t in ((1, a), (2, b))]

    def cost_terms(self, g: Graph, n: Node) -> tuple[str, dict[str, float]]:
        """The (broadcast) output in loop_nest's loops, one kernel per op kind: `rows` counts the
        starts of the innermost loop (1 without broadcasting)."""
        a, b, y = g[n.inputs[0]], g[n.inputs[1]], g[n.outputs[0]]
        rows = int(np.prod([e for e, _, _ in loop_nest(a.shape, b.shape, y.shape)[:-1]]))
        return bit_class(f"eltwise_{self.name.lower()}", a, b, y), {"call": 1, "out": y.size, "rows": rows}


@register
class Add(BinaryOp):
    name = "ADD"
    fuses_activation = True
    subbyte_io = True
    int16 = True

    def arith(self, g: Graph, n: Node) -> Arith:
        return add_sub_arith(g, n, "ADD")


@register
class Sub(BinaryOp):
    name = "SUB"
    fuses_activation = True
    int16 = True

    def arith(self, g: Graph, n: Node) -> Arith:
        return add_sub_arith(g, n, "SUB")


@register
class Mul(BinaryOp):
    name = "MUL"
    fuses_activation = True
    int16 = True

    def arith(self, g: Graph, n: Node) -> Arith:
        return mul_arith(g, n)

    def macs(self, g: Graph, n: Node) -> int:
        return g[n.outputs[0]].size


@register
class Maximum(BinaryOp):
    name = "MAXIMUM"
    quantized = False

    def arith(self, g: Graph, n: Node) -> Arith:
        return Arith("MAXIMUM", **_code_range(g[n.outputs[0]]))


@register
class Minimum(BinaryOp):
    name = "MINIMUM"
    quantized = False

    def arith(self, g: Graph, n: Node) -> Arith:
        return Arith("MINIMUM", **_code_range(g[n.outputs[0]]))


@register
class SquaredDifference(BinaryOp):
    name = "SQUARED_DIFFERENCE"

    def arith(self, g: Graph, n: Node) -> Arith:
        return squared_difference_arith(g, n)

    def macs(self, g: Graph, n: Node) -> int:
        return g[n.outputs[0]].size


# -- lookup tables -------------------------------------------------------------
def per_tensor_reason(t: Tensor, role: str) -> str | None:
    """Why `t` (any integer dtype) lacks usable per-tensor quantization, or None."""
    if t.quant is None or t.quant.scale.size != 1:
        return f"{role} needs per-tensor quantization"
    if not (t.quant.scale[0] > 0 and math.isfinite(float(t.quant.scale[0]))):
        return f"{role} has a non-positive scale"
    return None


def byte_codes(dtype: str) -> np.ndarray:
    """The 256 values of an 8-bit dtype, ordered by their byte (the C kernel's index)."""
    return np.arange(256, dtype=np.uint8).view(np.dtype(dtype)).astype(np.int64)


def emit_lut(ctx: "EmitContext", x: str, y: str, table: np.ndarray) -> None:
    """y[i] = table[byte of x[i]]: any function of one 8-bit input, exact by construction.

    One kernel per (input, output) C type serves every such layer; y may alias x.
    """
    g = ctx.graph
    tx, ty = g[x], g[y]
    fn = ctx.kernel("lut.c.j2", tx=ctype(tx.dtype), ty=ctype(ty.dtype))
    sym = ctx.const(np.asarray(table).astype(ty.np_dtype), "table", ctype(ty.dtype))
    ctx.call(fn, ctx.tensor(x), ctx.tensor(y), sym, f"{tx.size}u")
