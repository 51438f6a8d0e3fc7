"""Read a .tflite file into the graph IR, validating everything it says.

Model files come from anywhere, so nothing in them is trusted: every index,
shape, buffer size, quantization vector and the execution order are checked,
and any inconsistency raises `BadModel` with one line saying what is wrong.
Reading never imports TensorFlow: the flatbuffer is walked by `flatbuf`, a
bounds-checked reader, with field ids from `schema`.

Only subgraph 0 (the model's entry point) becomes the Graph, its resource
variables state tensors (frontend/variables.py, which reads the init subgraph
CALL_ONCE runs); the rest of the file (other subgraphs, buffers, metadata,
signatures) is still walked so a truncated or corrupted file is rejected as a
whole rather than half-trusted.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tinyml.errors import BadModel, UnsupportedOps, show
from tinyml.frontend import bits_meta, schema as S
from tinyml.frontend.flatbuf import FlatBuffer, Table, TableVector
from tinyml.frontend.variables import lower_resource_variables, refuse_unsupported_state
from tinyml.ir import Graph, Node, Quant, Tensor
from tinyml.ops import OPS

MAX_RANK = 8
MAX_TENSOR_BYTES = 64 * 1024 * 1024  # far beyond any microcontroller; bounds every allocation
MAX_FILE_BYTES = 256 * 1024 * 1024
# Per-vector table counts: hundreds in real microcontroller models, and each
# table costs microseconds of Python, so a hostile count is refused up front.
MAX_TABLES = 1 << 16
_INT_RANGES = {"int8": (-128, 127), "uint8": (0, 255), "int16": (-32768, 32767), "int4": (-8, 7)}


@dataclass
class Imported:
    """The graph plus where each of its tensors lives in the file.

    `tensor_index` maps IR tensor names to subgraph-0 tensor indices, which is
    how TFLite Micro addresses tensors (per-layer comparisons need it).
    """

    graph: Graph
    tensor_index: dict[str, int]


def load_tflite(data: bytes | bytearray | memoryview | str | Path) -> Graph:
    """Parse a .tflite model (bytes or a path) into a Graph; raises BadModel."""
    return read_tflite(data).graph


def read_tflite(data: bytes | bytearray | memoryview | str | Path) -> Imported:
    """As load_tflite, also returning the file's tensor indices."""
    buf, name = _bytes_of(data)
    if len(buf) < 8:
        raise BadModel(f"not a TFLite model: the file is only {len(buf)} bytes")
    if buf[4:8] != S.FILE_IDENTIFIER:
        raise BadModel(f"not a TFLite model: file identifier is {bytes(buf[4:8])!r}, expected b'TFL3'")
    fb = FlatBuffer(buf)
    model = fb.root("model")
    version = model.scalar(S.Model.VERSION, "I", 0, "version")
    if version != S.SCHEMA_VERSION:
        raise BadModel(f"unsupported TFLite schema version {version} (expected {S.SCHEMA_VERSION})")
    return _Reader(fb, model, name).run()


def _bytes_of(data: bytes | bytearray | memoryview | str | Path) -> tuple[bytes, str]:
    """The model's bytes and a default graph name; files are size-checked before reading."""
    if isinstance(data, (str, Path)):
        p = Path(data)
        try:
            if p.stat().st_size > MAX_FILE_BYTES:
                raise BadModel(f"{show(str(p))}: {p.stat().st_size:,} bytes is larger than any microcontroller model")
            return p.read_bytes(), p.stem
        except OSError as e:
            raise BadModel(f"cannot read {show(str(p))}: {e.strerror or e}") from None
    if len(data) > MAX_FILE_BYTES:
        raise BadModel(f"{len(data):,} bytes is larger than any microcontroller model")
    return bytes(data), "model"


@dataclass
class _RawTensor:
    shape: tuple[int, ...]
    type_code: int
    buffer: int
    name: str
    quant: Table | None
    sparse: bool
    variable: bool  # state TFLite Micro keeps across invocations


@dataclass
class _RawOp:
    opcode: int
    inputs: list[int]
    outputs: list[int]
    options_type: int
    options: Table | None


@dataclass
class _RawSubgraph:
    tensors: list[_RawTensor]
    inputs: list[int]
    outputs: list[int]
    ops: list[_RawOp]


class _Reader:
    """One parse: raw structure first (all of the file), then subgraph 0 to IR."""

    def __init__(self, fb: FlatBuffer, model: Table, name: str):
        self.fb, self.model, self.name = fb, model, name

    def run(self) -> Imported:
        m = self.model
        self.opcodes = [self._opcode(t) for t in _tables(m, S.Model.OPERATOR_CODES, "operator_codes")]
        self.buffers = _tables(m, S.Model.BUFFERS, "buffers")
        self._buffer_cache: dict[int, memoryview | None] = {}
        subgraphs = _tables(m, S.Model.SUBGRAPHS, "subgraphs")
        if not subgraphs:
            raise BadModel("malformed model: the model has no subgraphs")
        raw = [self._subgraph(sg, i) for i, sg in enumerate(subgraphs)]
        self._check_extras(raw)
        for i in range(len(self.buffers)):
            self._buffer(i)
        return self._to_graph(raw[0], raw)

    # ---- raw structure -------------------------------------------------
    def _opcode(self, t: Table) -> str:
        """The op's name: a builtin name, CUSTOM:<code>, or BUILTIN_<n> for enum values newer than tinyml."""
        C = S.OperatorCode
        code = max(t.scalar(C.DEPRECATED_BUILTIN_CODE, "b", 0, "deprecated_builtin_code"),
                   t.scalar(C.BUILTIN_CODE, "i", 0, "builtin_code"))
        custom = t.string(C.CUSTOM_CODE, "custom_code")
        if code == S.CUSTOM:
            return f"CUSTOM:{show(custom or '', 40)}"
        if 0 <= code < len(S.BUILTIN_OPS):
            return S.BUILTIN_OPS[code]
        return f"BUILTIN_{code}"

    def _subgraph(self, sg: Table, k: int) -> _RawSubgraph:
        T = S.Tensor
        tensors = []
        for i, t in enumerate(_tables(sg, S.SubGraph.TENSORS, "tensors")):
            what = f"subgraph {k} tensor {i}"
            shape = t.numbers(T.SHAPE, "<i4", "shape")
            signature = t.numbers(T.SHAPE_SIGNATURE, "<i4", "shape_signature")
            if max(len(v) for v in (shape, signature, ()) if v is not None) > MAX_RANK:
                raise BadModel(f"malformed model: {what} has more than {MAX_RANK} dimensions")
            tensors.append(_RawTensor(
                shape=tuple(int(d) for d in shape) if shape is not None else (),
                type_code=t.scalar(T.TYPE, "b", 0, "type"),
                buffer=t.scalar(T.BUFFER, "I", 0, "buffer"),
                name=t.string(T.NAME, "name") or "",
                quant=t.table(T.QUANTIZATION, "quantization"),
                sparse=t.has(T.SPARSITY),
                variable=bool(t.scalar(T.IS_VARIABLE, "B", 0, "is_variable")),
            ))
        n = len(tensors)
        inputs = self._indices(sg.numbers(S.SubGraph.INPUTS, "<i4", "inputs"), n, f"subgraph {k} inputs")
        outputs = self._indices(sg.numbers(S.SubGraph.OUTPUTS, "<i4", "outputs"), n, f"subgraph {k} outputs")
        sg.string(S.SubGraph.NAME, "name")
        ops = [self._op(t, n, f"subgraph {k} operator {i}")
               for i, t in enumerate(_tables(sg, S.SubGraph.OPERATORS, "operators"))]
        return _RawSubgraph(tensors, inputs, outputs, ops)

    def _op(self, t: Table, ntensors: int, what: str) -> _RawOp:
        O = S.Operator
        opcode = t.scalar(O.OPCODE_INDEX, "I", 0, "opcode_index")
        if opcode >= len(self.opcodes):
            raise BadModel(f"malformed model: {what} uses operator code {opcode}, "
                           f"but the model defines {len(self.opcodes)}")
        t.raw_bytes(O.CUSTOM_OPTIONS, "custom_options")
        return _RawOp(
            opcode=opcode,
            inputs=self._indices(t.numbers(O.INPUTS, "<i4", "inputs"), ntensors, f"{what} inputs", optional=True),
            outputs=self._indices(t.numbers(O.OUTPUTS, "<i4", "outputs"), ntensors, f"{what} outputs"),
            options_type=t.scalar(O.BUILTIN_OPTIONS_TYPE, "B", 0, "builtin_options_type"),
            options=t.table(O.BUILTIN_OPTIONS, "builtin_options"),
        )

    @staticmethod
    def _indices(v: np.ndarray | None, n: int, what: str, optional: bool = False) -> list[int]:
        out = [] if v is None else [int(i) for i in v]
        lo = -1 if optional else 0
        for i in out:
            if not lo <= i < n:
                raise BadModel(f"malformed model: {what} refer to tensor {i}, but there are {n} tensors")
        return out

    def _check_extras(self, raw: list[_RawSubgraph]) -> None:
        """Walk the model-level tables tinyml does not use, so corruption there is caught too."""
        m, nbuf = self.model, len(self.buffers)
        m.string(S.Model.DESCRIPTION, "description")
        meta = m.numbers(S.Model.METADATA_BUFFER, "<i4", "metadata_buffer")
        for b in (meta if meta is not None else []):
            if not 0 <= b < nbuf:
                raise BadModel(f"malformed model: metadata_buffer refers to buffer {b} of {nbuf}")
        self.bits_buffer: int | None = None
        for i, t in enumerate(_tables(m, S.Model.METADATA, "metadata")):
            name = t.string(S.Metadata.NAME, "name")
            buffer = t.scalar(S.Metadata.BUFFER, "I", 0, "buffer")
            if buffer >= nbuf:
                raise BadModel(f"malformed model: metadata {i} refers to a missing buffer")
            if name == bits_meta.NAME:
                self.bits_buffer = buffer
        for i, t in enumerate(_tables(m, S.Model.SIGNATURE_DEFS, "signature_defs")):
            D = S.SignatureDef
            t.string(D.SIGNATURE_KEY, "signature_key")
            sub = t.scalar(D.SUBGRAPH_INDEX, "I", 0, "subgraph_index")
            if sub >= len(raw):
                raise BadModel(f"malformed model: signature {i} refers to subgraph {sub} of {len(raw)}")
            for fid, label in ((D.INPUTS, "inputs"), (D.OUTPUTS, "outputs")):
                for tm in _tables(t, fid, label):
                    tm.string(S.TensorMap.NAME, "name")
                    if tm.scalar(S.TensorMap.TENSOR_INDEX, "I", 0, "tensor_index") >= len(raw[sub].tensors):
                        raise BadModel(f"malformed model: signature {i} {label} refer to a missing tensor")

    def _buffer(self, i: int) -> memoryview | None:
        """Bytes of buffer i (None when empty), from the data vector or an offset/size pair."""
        if i in self._buffer_cache:
            return self._buffer_cache[i]
        if i >= len(self.buffers):
            raise BadModel(f"malformed model: buffer {i} does not exist ({len(self.buffers)} buffers)")
        b = self.buffers[i]
        data = b.raw_bytes(S.Buffer.DATA, "data")
        if data is None or len(data) == 0:
            offset = b.scalar(S.Buffer.OFFSET, "Q", 0, "offset")
            size = b.scalar(S.Buffer.SIZE, "Q", 0, "size")
            data = None
            if offset > 1 and size > 0:
                if offset + size > self.fb.size:
                    raise BadModel(f"malformed model: buffer {i} lies outside the file "
                                   f"(offset {offset}, size {size}, file {self.fb.size} bytes)")
                data = memoryview(self.fb.data)[offset:offset + size]
        self._buffer_cache[i] = data if data is not None and len(data) else None
        return self._buffer_cache[i]

    # ---- subgraph 0 -> IR --------------------------------------------------
    def _to_graph(self, sg: _RawSubgraph, raw: list[_RawSubgraph]) -> Imported:
        if not sg.ops:
            raise BadModel("malformed model: the main subgraph has no operators")
        if not sg.outputs:
            raise BadModel("malformed model: the main subgraph has no outputs")
        sg = lower_resource_variables(sg, raw, self.opcodes, lambda b: len(self._buffer(b) or b""))
        refuse_unsupported_state(sg, self.opcodes)
        # Graph inputs and outputs claim their names first: users see those.
        used = list(dict.fromkeys(sg.inputs + sg.outputs + sorted(
            {i for op in sg.ops for i in op.inputs + op.outputs if i >= 0})))
        g = Graph(name=self.name)
        names: dict[int, str] = {}
        for i in used:
            t = self._tensor(sg.tensors[i], i)
            names[i] = g.add_tensor(t).name
        g.inputs = self._io(sg.inputs, names, "input")
        g.outputs = [names[i] for i in sg.outputs]  # one tensor may be listed twice: TFLite Micro fills both
        g.nodes = [self._node(op, names, k) for k, op in enumerate(sg.ops)]
        if self.bits_buffer is not None:
            bits_meta.apply(g, bits_meta.decode(self._buffer(self.bits_buffer), len(sg.tensors)), names)
        _check_order(g)
        return Imported(g, {name: i for i, name in names.items()})

    def _tensor(self, r: _RawTensor, i: int) -> Tensor:
        label = show(r.name) or f"#{i}"
        what = f"tensor {i} ({label})"
        type_name, dtype = S.TENSOR_TYPES.get(r.type_code, (f"type {r.type_code}", None))
        if dtype is None:
            raise BadModel(f"{what} has type {type_name}, which tinyml does not handle")
        if r.sparse:
            raise BadModel(f"{what} is stored sparse, which tinyml does not handle")
        if any(d < 0 for d in r.shape):
            raise BadModel(f"malformed model: {what} has a negative dimension in shape {list(r.shape)}")
        if any(d == 0 for d in r.shape):
            raise BadModel(f"{what} has an empty dimension in shape {list(r.shape)}")
        t = Tensor(name=r.name or f"tensor{i}", shape=r.shape, dtype=dtype)
        if t.nbytes > MAX_TENSOR_BYTES:
            raise BadModel(f"{what} has shape {list(r.shape)}: {t.nbytes:,} bytes is beyond any microcontroller")
        buf = self._buffer(r.buffer)
        if buf is not None:
            t.data = _decode(buf, t, what)
        if t.dtype == "int4":  # the IR keeps sub-byte values in an int8 container, `bits` wide
            t.dtype = "int8"
        if r.quant is not None:
            t.quant = _quant(r.quant, t, what)
        if r.variable:
            # State: the value an init subgraph assigns, else the zero point TFLite Micro resets it to.
            zp = t.quant.zp if t.quant is not None and t.dtype in ("int8", "int16") else 0
            t.state, t.data = True, None
            t.init = _decode(buf, t, what) if buf is not None else np.full(t.shape, zp, dtype=t.np_dtype)
        return t

    @staticmethod
    def _io(indices: list[int], names: dict[int, str], kind: str) -> list[str]:
        out = [names[i] for i in indices]
        if len(set(out)) != len(out):
            raise BadModel(f"malformed model: a graph {kind} is listed twice")
        return out

    def _node(self, op: _RawOp, names: dict[int, str], k: int) -> Node:
        name = self.opcodes[op.opcode]
        writes_state = name in OPS and OPS[name].writes_state
        if not op.outputs and not writes_state:
            raise BadModel(f"malformed model: operator {k} ({name}) has no outputs")
        if op.inputs and op.inputs[0] < 0 and not name.startswith("CUSTOM:"):
            # Only trailing operands (bias, constant values...) of builtin ops are optional.
            raise BadModel(f"malformed model: operator {k} ({name}) lacks its first input")
        node = Node(op=name, inputs=[names[i] if i >= 0 else None for i in op.inputs],
                    outputs=[names[i] for i in op.outputs],
                    name=names[op.outputs[0]] if op.outputs else f"{names[op.inputs[0]]}/{name.lower()}")
        node.attrs = _options(op, name, f"operator {k} ({name})")
        return node


def _tables(t: Table, fid: int, name: str) -> TableVector:
    v = t.tables(fid, name)
    if len(v) > MAX_TABLES:
        raise BadModel(f"malformed model: {t.what}.{name} has {len(v):,} entries (at most {MAX_TABLES:,} supported)")
    return v


def _decode(buf: memoryview, t: Tensor, what: str) -> np.ndarray:
    """Constant data with the tensor's dtype and shape; the byte count must match exactly."""
    if t.dtype == "int4":
        expected = (t.size + 1) // 2
    else:
        expected = t.size * t.np_dtype.itemsize
    if len(buf) != expected:
        raise BadModel(f"malformed model: {what} has shape {list(t.shape)} and type {t.dtype}, "
                       f"so {expected} bytes, but its buffer holds {len(buf)}")
    if t.dtype == "int4":
        # Two values per byte, the first in the low nibble; sign-extend each.
        packed = np.frombuffer(buf, dtype=np.uint8)
        nib = np.empty(packed.size * 2, dtype=np.uint8)
        nib[0::2], nib[1::2] = packed & 0x0F, packed >> 4
        return ((nib[:t.size].astype(np.int8) ^ 8) - 8).reshape(t.shape)
    if t.dtype == "bool":
        return (np.frombuffer(buf, dtype=np.uint8) != 0).reshape(t.shape)
    dt = t.np_dtype.newbyteorder("<")
    return np.frombuffer(buf, dtype=dt).astype(t.np_dtype).reshape(t.shape)


def _quant(q: Table, t: Tensor, what: str) -> Quant | None:
    """Per-tensor or per-channel parameters; None when the table holds only min/max (float models)."""
    Q = S.Quantization
    q.numbers(Q.MIN, "<f4", "min")
    q.numbers(Q.MAX, "<f4", "max")
    scale = q.numbers(Q.SCALE, "<f4", "scale")
    zp = q.numbers(Q.ZERO_POINT, "<i8", "zero_point")
    axis = q.scalar(Q.QUANTIZED_DIMENSION, "i", 0, "quantized_dimension")
    if q.scalar(Q.DETAILS_TYPE, "B", 0, "details_type") != 0:
        raise BadModel(f"{what} uses custom quantization details, which tinyml does not handle")
    if scale is None or scale.size == 0 or zp is None or zp.size == 0:
        return None  # TFLite Micro too reads a tensor without both vectors as not quantized
    if zp.size == 1 and scale.size > 1:
        zp = np.repeat(zp, scale.size)  # TFLite Micro's kernels read zero_point[0] for every channel
    if zp.size != scale.size:
        raise BadModel(f"malformed model: {what} has {scale.size} scales but "
                       f"{0 if zp is None else zp.size} zero points")
    if scale.size > 1 and not (0 <= axis < len(t.shape) and t.shape[axis] == scale.size):
        # TFLite Micro checks quantized_dimension only where a kernel reads it (filters); converters
        # write any value on 1-D biases, and int8 kernels never read a bias's scales at all.
        if len(t.shape) == 1 and t.shape[0] == scale.size:
            axis = 0
        elif t.is_const and t.dtype in ("int32", "int64"):
            return None
        else:
            raise BadModel(f"malformed model: {what} has {scale.size} per-channel scales along dimension {axis} "
                           f"of shape {list(t.shape)}")
    elif scale.size == 1 and not 0 <= axis < max(len(t.shape), 1):
        axis = 0
    # Constants' scales (per-channel filters, biases) become multipliers as they are, sign included,
    # a tiny one a zero multiplier, as TFLite Micro derives them; an activation's must be positive.
    if not np.all(np.isfinite(scale)) or (t.data is None and np.any(scale <= 0)):
        raise BadModel(f"malformed model: {what} has an invalid quantization scale {scale.min()!r}")
    lo, hi = _INT_RANGES.get(t.dtype, (-math.inf, math.inf))
    if zp.size and (zp.min() < lo or zp.max() > hi):
        raise BadModel(f"malformed model: {what} has zero point {int(zp.min())}..{int(zp.max())} "
                       f"outside the {t.dtype} range")
    return Quant(scale=scale, zero_point=zp, axis=int(axis))


def _options(op: _RawOp, name: str, what: str) -> dict:
    """The builtin options as IR attrs: snake_case keys, enums as schema names.

    An op whose options tinyml reads must carry its own options table (or
    none, meaning schema defaults); any other table type is corruption.
    """
    table_name = S.OP_OPTIONS.get(name)
    if table_name is None:
        return {}
    union_id, fields = S.OPTION_TABLES[table_name]
    if op.options_type not in (0, union_id) or (op.options_type == union_id) != (op.options is not None):
        raise BadModel(f"malformed model: {what} carries options of type {op.options_type}, expected {table_name}")
    t = op.options
    attrs: dict = {}
    for attr, fid, kind, default in fields:
        if kind == S.INTS:
            v = t.numbers(fid, "<i4", attr) if t is not None else None
            if v is not None and v.size > MAX_RANK:
                raise BadModel(f"malformed model: {what} option {attr} has {v.size} entries")
            attrs[attr] = [int(x) for x in v] if v is not None else None
            continue
        fmt = {S.ACT: "b", S.PAD: "b", S.MIRROR: "b", S.WFORMAT: "b", S.TYPE: "b"}.get(kind, kind)
        value = t.scalar(fid, fmt, default, attr) if t is not None else default
        if kind in S.ENUMS:
            names = S.ENUMS[kind]
            if not 0 <= value < len(names):
                raise BadModel(f"malformed model: {what} option {attr} has unknown value {value}")
            value = names[value]
        elif kind == S.TYPE:
            value = S.TENSOR_TYPES.get(value, (f"TYPE_{value}", None))[0]
        elif kind == "f":
            value = float(np.float32(value))
        if attr in S.POSITIVE_ATTRS and value < 1:
            raise BadModel(f"malformed model: {what} option {attr} is {value}, must be at least 1")
        attrs[attr] = value
    return attrs


def _check_order(g: Graph) -> None:
    """Nodes must be in execution order and every tensor written at most once."""
    ready = set(g.inputs)
    for name in g.inputs:
        if g[name].is_const:
            raise BadModel(f"malformed model: graph input {show(name)} is a constant")
    for n in g.nodes:
        for i in n.inputs:
            if i is not None and i not in ready and not g[i].is_const and not g[i].state:
                raise BadModel(f"malformed model: node {show(n.name)} ({n.op}) reads {show(i)} "
                               f"before any earlier node computes it")
        for o in n.outputs:
            if o in ready or g[o].is_const or g[o].state:
                raise BadModel(f"malformed model: node {show(n.name)} ({n.op}) writes {show(o)}, "
                               f"which is already a graph input, a constant or another node's output")
            ready.add(o)
    for name in g.outputs:
        if name not in ready:
            raise BadModel(f"malformed model: graph output {show(name)} is never computed")
