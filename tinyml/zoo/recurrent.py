"""Zoo models for the recurrent ops: SVDF (int8 with int16 state).

Keras has no SVDF layer and the converter emits SVDF only from TensorFlow
graphs that are not Keras, so an SVDF model starts as a Keras Dense (its
converted int8 weights and input quantization become weights_feature) and
`postprocess` turns the FULLY_CONNECTED into an SVDF: an int16 time filter,
an int16 state tensor (variable) and an int32 bias with TFLite's scale
rules. The result runs in TensorFlow Lite Micro, the oracle.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from tinyml.zoo.convert import _schema, op_name, read_model, write_model
from tinyml.zoo.ops import dense
from tinyml.zoo.registry import add

MEMORY = 5  # time steps each filter remembers


def svdf_from_dense(data: bytes, rank: int, memory: int = MEMORY) -> bytes:
    """The converted Dense model with its FULLY_CONNECTED replaced by an SVDF of `rank`."""
    s = _schema()
    m = read_model(data)
    sg = m.subgraphs[0]
    k = next(i for i, op in enumerate(sg.operators) if op_name(m, op) == "FULLY_CONNECTED")
    fc = sg.operators[k]
    wf = sg.tensors[fc.inputs[1]]
    filters = wf.shape[0]
    units = filters // rank
    rng = np.random.default_rng(filters * 31 + rank)
    fc_out = sg.tensors[fc.outputs[0]]

    def quant(scale: float, zp: int = 0) -> Any:
        q = s.QuantizationParametersT()
        q.scale, q.zeroPoint = [float(np.float32(scale))], [zp]
        return q

    def tensor(name: str, shape: list[int], type_: int, q: Any, values: np.ndarray | None = None,
               variable: bool = False) -> int:
        t = s.TensorT()
        t.name, t.shape, t.type, t.quantization, t.isVariable = name.encode(), shape, type_, q, variable
        buf = s.BufferT()
        if values is not None:
            buf.data = list(np.ascontiguousarray(values).view(np.uint8).reshape(-1))
        m.buffers.append(buf)
        t.buffer = len(m.buffers) - 1
        sg.tensors.append(t)
        return len(sg.tensors) - 1

    state_scale = float(fc_out.quantization.scale[0]) / 64  # int16 state: 64x finer than the int8 projection
    wt_scale = 1.0 / (1 << 14)
    wt = rng.integers(-(1 << 14), 1 << 14, size=(filters, memory)).astype(np.int16)
    acc_scale = float(np.float32(state_scale) * np.float32(wt_scale))
    bias = rng.integers(-2000, 2000, size=units).astype(np.int32) * 64
    typical = 8192 * (1 << 13) * np.sqrt(rank * memory)  # state x time filter magnitudes, summed
    out_scale = acc_scale * typical / 100
    i_wt = tensor("svdf/weights_time", [filters, memory], s.TensorType.INT16, quant(wt_scale), wt)
    i_b = tensor("svdf/bias", [units], s.TensorType.INT32, quant(acc_scale), bias)
    i_state = tensor("svdf/state", [1, filters * memory], s.TensorType.INT16, quant(state_scale), None, True)
    i_out = tensor("svdf/output", [1, units], s.TensorType.INT8, quant(out_scale, int(rng.integers(-20, 20))))
    svdf = s.OperatorT()
    code = s.OperatorCodeT()
    code.builtinCode = code.deprecatedBuiltinCode = s.BuiltinOperator.SVDF
    code.version = 1
    m.operatorCodes.append(code)
    svdf.opcodeIndex = len(m.operatorCodes) - 1
    svdf.inputs = [fc.inputs[0], fc.inputs[1], i_wt, i_b, i_state]
    svdf.outputs = [i_out]
    svdf.builtinOptionsType = s.BuiltinOptions.SVDFOptions
    svdf.builtinOptions = s.SVDFOptionsT()
    svdf.builtinOptions.rank = rank
    sg.operators = sg.operators[:k] + [svdf]
    sg.outputs = [i_out]
    return write_model(m)


def _svdf_rank1(data: bytes) -> bytes:
    return svdf_from_dense(data, rank=1)


def _svdf_rank2(data: bytes) -> bytes:
    return svdf_from_dense(data, rank=2)


add("op_svdf_rank1", "ops", dense, {"SVDF"}, shape=(40,), units=16, use_bias=False, per_channel=False,
    postprocess=_svdf_rank1, note="a Keras Dense turned into SVDF (tinyml/zoo/recurrent.py)")
add("op_svdf_rank2", "ops", dense, {"SVDF"}, shape=(24,), units=12, use_bias=False, per_channel=False,
    postprocess=_svdf_rank2, note="a Keras Dense turned into SVDF (tinyml/zoo/recurrent.py)")
