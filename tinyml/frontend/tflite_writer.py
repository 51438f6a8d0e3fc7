"""Write a graph IR as a .tflite flatbuffer: what `tinyml quantize` hands to every other tool.

The flatbuffer is built with the object API of the TFLite schema module that
ships with ai-edge-litert (it needs only the `flatbuffers` package, no
TensorFlow). Op options come back from the node attrs through the same field
tables the reader uses (tinyml/frontend/schema.py), so a graph read and
written again keeps its meaning. Legalization-only attrs (e.g. a conv's
`explicit_padding`) have no TFLite field: graphs that carry them are refused.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from tinyml.errors import TinymlError, ToolMissing
from tinyml.frontend import bits_meta, schema as S
from tinyml.ir import Graph, Node, Tensor
from tinyml.ops.subbyte import pack_bits

TYPE_CODES = {dtype: code for code, (_, dtype) in S.TENSOR_TYPES.items() if dtype is not None}
# IR attrs that the reader derives or that passes add, never written as options.
NOT_OPTIONS = frozenset({"explicit_padding"})


def _schema() -> Any:
    try:
        from ai_edge_litert import schema_py_generated
    except ImportError as e:
        raise ToolMissing("writing .tflite files needs ai-edge-litert (pip install 'tinyml[quantize]')") from e
    return schema_py_generated


def _camel(attr: str) -> str:
    head, *rest = attr.split("_")
    return head + "".join(p[:1].upper() + p[1:] for p in rest)


def _options(fb: Any, n: Node) -> tuple[int, Any]:
    """(BuiltinOptions union type, options object) from the node's attrs."""
    extra = NOT_OPTIONS & {k for k, v in n.attrs.items() if v is not None}
    if extra:
        raise TinymlError(f"node {n.name}: attrs {sorted(extra)} have no .tflite representation")
    table = S.OP_OPTIONS.get(n.op)
    if table is None:
        return 0, None
    union, fields = S.OPTION_TABLES[table]
    opts = getattr(fb, f"{table}T")()
    for attr, _, kind, _ in fields:
        value = n.attrs.get(attr)
        if value is None:
            continue
        if kind in S.ENUMS:
            value = S.ENUMS[kind].index(value)
        elif kind == S.TYPE:
            value = next(code for code, (label, _) in S.TENSOR_TYPES.items() if label == value)
        elif kind == S.INTS:
            value = [int(v) for v in value]
        setattr(opts, _camel(attr), value)
    return union, opts


def _tensor(fb: Any, t: Tensor, buffer: int, int4: bool) -> Any:
    out = fb.TensorT()
    out.name, out.shape, out.type, out.buffer = t.name, list(t.shape), TYPE_CODES["int4" if int4 else t.dtype], buffer
    out.isVariable = t.state  # state (SVDF, LSTM): no buffer, starts at its zero point
    if t.quant is not None:
        q = fb.QuantizationParametersT()
        q.scale = [float(s) for s in t.quant.scale]
        q.zeroPoint = [int(z) for z in t.quant.zero_point]
        q.quantizedDimension = int(t.quant.axis)
        out.quantization = q
    return out


def _buffer_bytes(t: Tensor, int4: bool) -> np.ndarray:
    if int4:  # TFLite's INT4: two values per byte, the first in the low nibble
        return pack_bits(t.data, 4)
    return np.frombuffer(np.ascontiguousarray(t.data.astype(t.np_dtype.newbyteorder("<"))).tobytes(), np.uint8)


def write_tflite(g: Graph, description: str = "tinyml") -> bytes:
    """The graph's single subgraph as .tflite bytes (schema version 3)."""
    fb = _schema()
    import flatbuffers

    order = list(dict.fromkeys(g.inputs + [i for n in g.nodes for i in n.inputs + n.outputs if i is not None]
                               + g.outputs))
    index = {name: k for k, name in enumerate(order)}
    buffers = [fb.BufferT()]
    tensors = []
    for name in order:
        t = g[name]
        int4 = bits_meta.native_int4(g, name)
        if t.is_const:
            b = fb.BufferT()
            b.data = _buffer_bytes(t, int4)
            buffers.append(b)
        tensors.append(_tensor(fb, t, len(buffers) - 1 if t.is_const else 0, int4))
    codes: dict[str, int] = {}
    operators = []
    for n in g.nodes:
        if n.op not in codes:
            codes[n.op] = len(codes)
        op = fb.OperatorT()
        op.opcodeIndex = codes[n.op]
        op.inputs = [index[i] if i is not None else -1 for i in n.inputs]
        op.outputs = [index[o] for o in n.outputs]
        op.builtinOptionsType, op.builtinOptions = _options(fb, n)
        operators.append(op)
    opcodes = []
    for name in codes:
        c = fb.OperatorCodeT()
        c.builtinCode = S.BUILTIN_OPS.index(name)
        c.deprecatedBuiltinCode = min(c.builtinCode, 127)
        c.version = 1
        opcodes.append(c)
    sub = fb.SubGraphT()
    sub.tensors, sub.operators, sub.name = tensors, operators, "main"
    sub.inputs, sub.outputs = [index[i] for i in g.inputs], [index[o] for o in g.outputs]
    model = fb.ModelT()
    model.version, model.operatorCodes, model.subgraphs, model.buffers = S.SCHEMA_VERSION, opcodes, [sub], buffers
    model.description = description
    narrow = {index[name]: g[name].bits for name in order if g[name].bits < 8 and not bits_meta.native_int4(g, name)}
    if narrow:  # widths TFLite cannot express (bits_meta.py)
        b = fb.BufferT()
        b.data = np.frombuffer(bits_meta.encode(narrow), np.uint8)
        buffers.append(b)
        meta = fb.MetadataT()
        meta.name, meta.buffer = bits_meta.NAME, len(buffers) - 1
        model.metadata = [meta]
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=S.FILE_IDENTIFIER)
    return bytes(builder.Output())
