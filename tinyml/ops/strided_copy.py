"""The one kernel family behind every op that only moves elements.

SLICE, STRIDED_SLICE, TRANSPOSE, CONCATENATION, PACK, UNPACK, SPLIT... are each
one or a few loop nests of the form

    dst[dst_offset + sum_k i_k * dst_strides[k]] = src[src_offset + sum_k i_k * src_strides[k]]

over extents `dims`. Describing an op as such `Copy`s and simplifying the nest at
generation time (unit extents dropped, dimensions that are contiguous in both
tensors merged) yields one template, specialized by shape, that degenerates to a
single memcpy when the data is contiguous and to a plain element loop otherwise.
Strides may be negative (reversed slices).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

from tinyml.codegen.cnames import ctype
from tinyml.ir import DTYPES, Graph, Node, Tensor
from tinyml.ops.base import bit_class, output_channels

if TYPE_CHECKING:
    from tinyml.codegen.context import EmitContext

# Loop indices are int32 in the generated C.
MAX_ELEMENTS = 2**31 - 1
# Estimated instructions per byte a copy moves (the patch search's estimate, see Op.pixel_cost).
COPY_COST = 0.5
# The cost model's class of this kernel (tinyml/cost): one kernel, one set of coefficients.
COPY_CLASS = "copy_strided"


def copy_class(t: Tensor) -> str:
    """The cost class of copies of `t`: COPY_CLASS whatever its byte width (the terms count bytes and
    elements), another for sub-byte storage (moved one element at a time through bit helpers)."""
    return COPY_CLASS if t.bits >= 8 else bit_class(COPY_CLASS, t)


def contiguous_strides(shape: Sequence[int]) -> tuple[int, ...]:
    """Row-major element strides of a dense tensor of `shape`."""
    strides = [1] * len(shape)
    for k in range(len(shape) - 2, -1, -1):
        strides[k] = strides[k + 1] * int(shape[k + 1])
    return tuple(strides)


@dataclass(frozen=True)
class Copy:
    """One strided loop nest; strides and offsets count elements, not bytes."""

    dims: tuple[int, ...]
    src_strides: tuple[int, ...]
    dst_strides: tuple[int, ...]
    src_offset: int = 0
    dst_offset: int = 0

    @property
    def count(self) -> int:
        n = 1
        for d in self.dims:
            n *= d
        return n

    def simplified(self) -> "Copy":
        """Same copy with unit extents dropped and jointly contiguous dims merged."""
        dims: list[int] = []
        ss: list[int] = []
        ds: list[int] = []
        for d, s, t in zip(self.dims, self.src_strides, self.dst_strides):
            if d == 1:
                continue
            if dims and ss[-1] == s * d and ds[-1] == t * d:
                # the previous (outer) dim steps exactly over this one in both tensors
                dims[-1] *= d
                ss[-1], ds[-1] = s, t
                continue
            dims.append(d)
            ss.append(s)
            ds.append(t)
        if not dims:
            dims, ss, ds = [1], [1], [1]
        return Copy(tuple(dims), tuple(ss), tuple(ds), self.src_offset, self.dst_offset)


def strided_copy_terms(copies: Sequence[Copy], itemsize: int) -> dict[str, float]:
    """Op.cost_terms counts of the copies emit_copy runs: kernel calls; when the innermost dimension
    is contiguous in both tensors, one memcpy of a constant size per run, which the compiler inlines
    as word moves up to INLINE_MEMCPY_BYTES of whole words (`inline_runs`, `inline_words`), else calls
    (`runs`, `bytes`; `odd_` when the size is not whole words: the library copies bytes; wider
    elements are aligned to their size, so such runs of them are inlined too); else elements copied
    one by one (`wide_elements` when wider than a byte: one more instruction each, measured on
    int16) and the entries into their innermost loop (`rows`)."""
    t: dict[str, float] = {"call": 0.0}
    for copy in copies:
        if copy.count == 0:
            continue
        c = copy.simplified()
        t["call"] += 1
        rows = c.count // c.dims[-1]
        if c.src_strides[-1] == 1 and c.dst_strides[-1] == 1:
            run = c.dims[-1] * itemsize
            if run % min(itemsize, 4) == 0 and run <= INLINE_MEMCPY_BYTES and (run % 4 == 0 or itemsize > 1):
                keys, per_run = ("inline_runs", "inline_words"), -(-run // 4)
            else:
                keys, per_run = ("runs", "bytes") if run % 4 == 0 else ("odd_runs", "odd_bytes"), run
        else:
            keys, per_run = ("rows", "elements" if itemsize == 1 else "wide_elements"), c.dims[-1]
        t[keys[0]] = t.get(keys[0], 0.0) + rows
        t[keys[1]] = t.get(keys[1], 0.0) + rows * per_run
    return t


# Constant-size memcpy of whole words up to this many bytes: inline loads and stores (arm-none-eabi-gcc
# -O2, measured: 24..48-byte runs cost 9-13 instructions, 96-byte ones 75).
INLINE_MEMCPY_BYTES = 64


def copy_pixel_cost(g: Graph, n: Node) -> tuple[float, float]:
    """Op.pixel_cost of a copy: COPY_COST per byte of an output pixel."""
    y = g[n.outputs[0]]
    return 0.0, COPY_COST * y.nbytes / max(1, y.size // output_channels(g, n))


def plain_dtype_problem(t: Tensor) -> str | None:
    """Why element-wise copies cannot handle `t` (packed sub-byte storage), or None."""
    if t.bits != DTYPES[t.dtype][0].itemsize * 8:
        return f"tensor stored at {t.bits} bits per element is not supported by data-movement ops"
    return None


def node_dtype_problem(g: Graph, n: Node, data_inputs: Sequence[int] = (0,), nibbles: bool = False) -> str | None:
    """Data inputs and all outputs must share one byte-addressable dtype (with `nibbles`, 4-bit
    activations of equal width too: emit_copy moves them one by one)."""
    tensors = [g[n.inputs[i]] for i in data_inputs if i < len(n.inputs) and n.inputs[i] is not None]
    tensors += [g[o] for o in n.outputs]
    if not tensors:
        return "node has no tensors"
    for t in tensors:
        why = None if nibbles and t.bits == 4 and not t.is_const else plain_dtype_problem(t)
        if why:
            return why
    if len({t.dtype for t in tensors}) != 1:
        return "inputs and outputs must have the same dtype"
    if max(t.size for t in tensors) > MAX_ELEMENTS:
        return "tensor too large"
    return None


def const_ints(g: Graph, name: str | None, what: str) -> list[int]:
    """The values of a constant integer parameter tensor (axis, begin, perm...)."""
    from tinyml.errors import BadModel

    if name is None:
        raise BadModel(f"missing {what} tensor")
    t = g[name]
    if not t.is_const:
        raise BadModel(f"{what} must be a constant tensor")
    if t.data.dtype.kind not in "iu":
        raise BadModel(f"{what} must be an integer tensor")
    return [int(v) for v in t.data.reshape(-1)]


def emit_copy(ctx: "EmitContext", copy: Copy, src: str, dst: str, dtype: str, bits: int = 8) -> None:
    """Render the strided-copy kernel for `copy` and call it on two C pointer expressions.
    `bits` 4: both tensors packed two per byte; elements move one by one (offsets in elements)."""
    if copy.count == 0:
        return
    c = copy.simplified()
    inner = c.src_strides[-1] == 1 and c.dst_strides[-1] == 1 and bits == 8
    loops = c.dims[:-1] if inner else c.dims

    def index(strides: tuple[int, ...]) -> str:
        terms = [f"i{k}" if s == 1 else f"i{k} * {s}" if s > 0 else f"i{k} * ({s})"
                 for k, s in enumerate(strides[: len(loops)]) if s]
        return " + ".join(terms) or "0"

    fn = ctx.kernel(
        "copy_strided.c.j2",
        t=ctype(dtype),
        loops=list(loops),
        inner=c.dims[-1] if inner else 0,
        src_index=index(c.src_strides),
        dst_index=index(c.dst_strides),
        **({"bits": bits, "src_offset": c.src_offset, "dst_offset": c.dst_offset} if bits < 8 else {}),
    )
    if bits < 8:
        ctx.call(fn, src, dst)
        return
    s = f"{src} + {c.src_offset}" if c.src_offset else src
    d = f"{dst} + {c.dst_offset}" if c.dst_offset else dst
    ctx.call(fn, s, d)
