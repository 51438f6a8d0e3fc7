"""The `tinyml_bits` metadata entry: sub-byte widths TFLite cannot express, kept in the .tflite.

TFLite has INT4 tensors, and TFLite Micro runs them as CONV_2D and
FULLY_CONNECTED filters; those are written natively (tflite_writer.py). Every
other narrow tensor (int2 weights, int4 depthwise filters, 4-bit activations)
is written as INT8 with its values in range, and this entry records its width
by subgraph-0 tensor index: {"version": 1, "tensors": {"12": 4, ...}}.
A file carrying it is one TFLite Micro would run with the wrong arithmetic
(no clamp at 4 bits), so `oracle.model_oracle` checks it against the numpy
reference instead. The payload is untrusted: anything malformed is BadModel.
"""
from __future__ import annotations

import json

from tinyml.errors import BadModel
from tinyml.ir import Graph, Tensor
from tinyml.ops.subbyte import SUBBYTE_BITS, values_fit

NAME = "tinyml_bits"
VERSION = 1
MAX_PAYLOAD = 1 << 20


def encode(widths: dict[int, int]) -> bytes:
    """The entry's bytes for {tensor index: bits}."""
    return json.dumps({"version": VERSION, "tensors": {str(k): int(v) for k, v in sorted(widths.items())}},
                      separators=(",", ":")).encode()


def decode(payload: bytes | memoryview | None, tensors: int) -> dict[int, int]:
    """{tensor index: bits} from the entry's bytes; BadModel on anything but the documented form."""
    if payload is None:
        raise BadModel(f"malformed model: the {NAME} metadata has no buffer")
    if len(payload) > MAX_PAYLOAD:
        raise BadModel(f"malformed model: the {NAME} metadata is {len(payload):,} bytes")
    try:
        doc = json.loads(bytes(payload).decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise BadModel(f"malformed model: the {NAME} metadata is not JSON") from None
    if not isinstance(doc, dict) or doc.get("version") != VERSION or not isinstance(doc.get("tensors"), dict):
        raise BadModel(f"malformed model: the {NAME} metadata is not version {VERSION} with a tensors table")
    out: dict[int, int] = {}
    for key, bits in doc["tensors"].items():
        if not (isinstance(key, str) and key.isdigit() and int(key) < tensors):
            raise BadModel(f"malformed model: the {NAME} metadata names tensor {key[:20]!r}, which does not exist")
        if isinstance(bits, bool) or bits not in SUBBYTE_BITS:
            raise BadModel(f"malformed model: the {NAME} metadata gives tensor {key} {str(bits)[:20]} bits "
                           f"(only {', '.join(map(str, SUBBYTE_BITS))})")
        out[int(key)] = int(bits)
    return out


def apply(g: Graph, widths: dict[int, int], names: dict[int, str]) -> None:
    """Narrow the graph's tensors to the recorded widths (int8 containers only; constants must fit)."""
    for index, bits in widths.items():
        if index not in names:
            continue  # a tensor subgraph 0 does not use
        t: Tensor = g[names[index]]
        if t.dtype != "int8" or t.bits != 8:
            raise BadModel(f"malformed model: the {NAME} metadata narrows a {t.dtype} tensor to {bits} bits")
        t.bits = bits
        if not values_fit(t):
            raise BadModel(f"malformed model: a constant marked {bits}-bit holds values outside that range")


def has_entry(g: Graph) -> bool:
    """Whether the graph needs the entry: a narrow tensor other than a native INT4 filter."""
    return any(t.bits < 8 and not native_int4(g, name) for name, t in g.tensors.items())


def native_int4(g: Graph, name: str) -> bool:
    """A 4-bit filter TFLite Micro runs as INT4: CONV_2D's, or FULLY_CONNECTED's if per tensor."""
    t = g[name]
    if t.bits != 4 or not t.is_const or t.dtype != "int8" or t.quant is None:
        return False
    users = [n for n in g.nodes if name in n.inputs]
    # TFLite Micro's INT4 FULLY_CONNECTED takes per-tensor filters only
    return bool(users) and all(n.op in NATIVE_INT4_OPS and n.inputs[1] == name and name not in n.inputs[2:]
                               and (n.op == "CONV_2D" or not t.quant.per_channel) for n in users)


NATIVE_INT4_OPS = ("CONV_2D", "FULLY_CONNECTED")
