"""Make a file TFLite Micro refuses only for a run-time-shaped FILL runnable by it, unchanged otherwise.

Some converters (ARM's KWS LSTMs) build an LSTM's zero state with SHAPE ->
STRIDED_SLICE -> PACK -> FILL: the shape is computed at run time, and TFLite Micro
refuses FILL without a constant shape, although every shape in the file is static.
tinyml folds the chain at import (passes/fold.py). For the oracle, the same fold
is written into the flatbuffer: each FILL whose output tinyml's graph holds as a
constant becomes that constant tensor and the operator is dropped. Every other
operator, tensor and quantization parameter is untouched, so TFLite Micro still
computes everything else: it stays the oracle for all the arithmetic.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from tinyml.ir import Graph


def _schema() -> Any:
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated

    return schema_py_generated


def fold_run_time_fills(data: bytes, g: Graph) -> bytes | None:
    """`data` with every FILL that `g` folded replaced by its constant, or None when there is none
    (or one cannot be matched to a folded tensor of the same name, shape and type)."""
    import flatbuffers

    fb = _schema()
    m = fb.ModelT.InitFromObj(fb.Model.GetRootAsModel(data, 0))
    sg = m.subgraphs[0]
    fill_codes = {i for i, oc in enumerate(m.operatorCodes or [])
                  if max(oc.builtinCode, oc.deprecatedBuiltinCode) == fb.BuiltinOperator.FILL}
    keep, folded = [], 0
    for op in sg.operators or []:
        if op.opcodeIndex not in fill_codes:
            keep.append(op)
            continue
        t = sg.tensors[op.outputs[0]]
        name = t.name.decode("utf-8", "replace") if isinstance(t.name, bytes) else str(t.name)
        ours = g.tensors.get(name)
        if ours is None or not ours.is_const or tuple(ours.shape) != tuple(t.shape if t.shape is not None else ()):
            return None
        buf = fb.BufferT()
        buf.data = np.ascontiguousarray(ours.data.astype(ours.np_dtype)).view(np.uint8).reshape(-1)
        m.buffers.append(buf)
        t.buffer = len(m.buffers) - 1
        folded += 1
    if not folded:
        return None
    sg.operators = keep
    b = flatbuffers.Builder(len(data) + 4096)
    b.Finish(m.Pack(b), file_identifier=b"TFL3")
    return bytes(b.Output())
