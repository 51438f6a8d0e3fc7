"""The TFLite Micro oracle, checked against facts computed here by hand.

Hand-built flatbuffers (written with LiteRT's schema module, not with
tinyml) give models whose outputs follow from the TFLite Micro kernel
arithmetic written out below in plain Python integers; data-movement zoo
models give outputs that numpy indexing predicts exactly.
"""
from __future__ import annotations

import math
import subprocess
import sys
from collections.abc import Callable

import numpy as np
import pytest

from tinyml.errors import BadModel, TinymlError
from tinyml.oracle import TflmOracle, random_inputs

import ai_edge_litert.schema_py_generated as fb  # noqa: E402


# -- hand-built models -------------------------------------------------------

def _tensor(shape: list[int], ttype: int, buffer: int, scale: list[float] | None = None,
            zero_point: list[int] | None = None, name: str = "") -> object:
    t = fb.TensorT()
    t.shape, t.type, t.buffer, t.name = shape, ttype, buffer, name
    if scale is not None:
        q = fb.QuantizationParametersT()
        q.scale, q.zeroPoint = scale, zero_point
        t.quantization = q
    return t


def _buffer(data: np.ndarray | None) -> object:
    b = fb.BufferT()
    if data is not None:
        b.data = np.frombuffer(np.ascontiguousarray(data).tobytes(), dtype=np.uint8)
    return b


def _model(opcode: int, tensors: list, buffers: list, options_type: int, options: object,
           op_inputs: list[int], op_outputs: list[int]) -> bytes:
    import flatbuffers

    code = fb.OperatorCodeT()
    code.builtinCode = code.deprecatedBuiltinCode = opcode
    code.version = 1
    op = fb.OperatorT()
    op.opcodeIndex, op.inputs, op.outputs = 0, op_inputs, op_outputs
    op.builtinOptionsType, op.builtinOptions = options_type, options
    sg = fb.SubGraphT()
    sg.tensors, sg.operators = tensors, [op]
    sg.inputs, sg.outputs = [op_inputs[0]], op_outputs
    m = fb.ModelT()
    m.version, m.operatorCodes, m.subgraphs, m.buffers = 3, [code], [sg], buffers
    builder = flatbuffers.Builder(1024)
    builder.Finish(m.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


# Scales chosen so the requantization shift is large and many accumulators
# land where single and double rounding disagree.
FC_IN = (0.0173, -7)
FC_W_SCALE = 0.0031
FC_OUT = (0.0419, 5)


def fc_model(weights: np.ndarray, bias: np.ndarray) -> bytes:
    n, k = weights.shape
    tensors = [
        _tensor([1, k], fb.TensorType.INT8, 1, [FC_IN[0]], [FC_IN[1]], "x"),
        _tensor([n, k], fb.TensorType.INT8, 2, [FC_W_SCALE], [0], "w"),
        _tensor([n], fb.TensorType.INT32, 3, [FC_IN[0] * FC_W_SCALE], [0], "b"),
        _tensor([1, n], fb.TensorType.INT8, 4, [FC_OUT[0]], [FC_OUT[1]], "y"),
    ]
    buffers = [_buffer(None), _buffer(None), _buffer(weights.astype(np.int8)),
               _buffer(bias.astype("<i4")), _buffer(None)]
    return _model(fb.BuiltinOperator.FULLY_CONNECTED, tensors, buffers,
                  fb.BuiltinOptions.FullyConnectedOptions, fb.FullyConnectedOptionsT(),
                  [0, 1, 2], [3])


def quantize_model(scale: float, zero_point: int, shape: list[int]) -> bytes:
    tensors = [_tensor(shape, fb.TensorType.FLOAT32, 1, name="f"),
               _tensor(shape, fb.TensorType.INT8, 2, [scale], [zero_point], "q")]
    return _model(fb.BuiltinOperator.QUANTIZE, tensors, [_buffer(None)] * 3,
                  fb.BuiltinOptions.NONE, None, [0], [1])


# -- TFLite Micro's requantization, written out with Python integers ----------

def _quantize_multiplier(m: float) -> tuple[int, int]:
    mantissa, exponent = math.frexp(m)
    q = math.floor(mantissa * (1 << 31) + 0.5)  # std::round; mantissa > 0 here
    if q == 1 << 31:
        q, exponent = q // 2, exponent + 1
    return q, exponent


def _trunc_div(a: int, b: int) -> int:
    """C++ integer division: rounds toward zero."""
    return abs(a) // b * (1 if a >= 0 else -1)


def _double_rounding(acc: int, q: int, shift: int) -> int:
    """SaturatingRoundingDoublingHighMul, then RoundingDivideByPOT (gemmlowp)."""
    ab = (acc << max(shift, 0)) * q
    high = _trunc_div(ab + ((1 << 30) if ab >= 0 else 1 - (1 << 30)), 1 << 31)
    right = max(-shift, 0)
    mask = (1 << right) - 1
    threshold = (mask >> 1) + (1 if high < 0 else 0)
    return (high >> right) + (1 if (high & mask) > threshold else 0)


def _single_rounding(acc: int, q: int, shift: int) -> int:
    total = 31 - shift
    return (acc * q + (1 << (total - 1))) >> total


def _fc_expected(x: np.ndarray, w: np.ndarray, b: np.ndarray, rounding: Callable) -> np.ndarray:
    # TFLite Micro forms input_scale * filter_scale in float32, then divides in double.
    product = float(np.float32(np.float32(FC_IN[0]) * np.float32(FC_W_SCALE)))
    q, shift = _quantize_multiplier(product / float(np.float32(FC_OUT[0])))
    out = []
    for row, bias in zip(w.astype(int), b.astype(int)):
        acc = int(sum((int(xi) - FC_IN[1]) * int(wi) for xi, wi in zip(x.reshape(-1), row))) + int(bias)
        out.append(min(127, max(-128, rounding(acc, q, shift) + FC_OUT[1])))
    return np.array([out], dtype=np.int8)


@pytest.fixture(scope="module")
def fc_case() -> tuple[bytes, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(42)
    w = rng.integers(-127, 128, size=(9, 13)).astype(np.int8)
    b = rng.integers(-3000, 3000, size=9).astype(np.int32)
    return fc_model(w, b), w, b


def test_fully_connected_matches_hand_computed_double_rounding(fc_case) -> None:
    data, w, b = fc_case
    oracle = TflmOracle(data)
    disagreements = 0
    for (x,) in random_inputs(oracle, 200, seed=1):
        expected = _fc_expected(x, w, b, _double_rounding)
        np.testing.assert_array_equal(oracle.run([x])[0], expected)
        disagreements += int(np.sum(expected != _fc_expected(x, w, b, _single_rounding)))
    # The inputs must be able to tell the two roundings apart, or the test proves nothing.
    assert disagreements > 0


def test_run_batch_equals_repeated_run(fc_case) -> None:
    oracle = TflmOracle(fc_case[0])
    batch = random_inputs(oracle, 4, seed=5)
    assert [y[0].tolist() for y in oracle.run_batch(batch)] == [oracle.run(x)[0].tolist() for x in batch]


def test_tensors_hold_the_input_and_the_run_output(fc_case) -> None:
    oracle = TflmOracle(fc_case[0])
    (x,) = random_inputs(oracle, 1, seed=9)[0]
    values = oracle.tensors([x])
    np.testing.assert_array_equal(values["x"], x)
    np.testing.assert_array_equal(values[0], x)
    np.testing.assert_array_equal(values["y"], oracle.run([x])[0])
    assert "w" not in values and 1 not in values  # constants are left out


def test_arena_is_positive_stable_and_holds_live_tensors(fc_case) -> None:
    import tinyml.oracle as oracle_module

    data = fc_case[0]
    first = TflmOracle(data).arena_usage()
    oracle_module._ARENA_CACHE.clear()  # measure again from scratch
    second = TflmOracle(data).arena_usage()
    assert first == second
    assert first.total == first.head + first.tail > 0
    assert first.head >= 13 + 9  # input [1,13] and output [1,9] are live together
    assert first.total % 16 == 0


def test_min_arena_size_loads_and_is_at_least_the_recorded_use(fc_case) -> None:
    from tflite_micro import runtime

    oracle = TflmOracle(fc_case[0])
    n = oracle.min_arena_size()
    assert n >= oracle.arena_bytes() and n % 16 == 0
    runtime.Interpreter.from_bytes(fc_case[0], arena_size=n)  # raises if it does not fit


def test_float_inputs_follow_the_quantize_range_and_quantize_rounds() -> None:
    scale, zp = 0.05, 10
    data = quantize_model(scale, zp, [1, 400])
    oracle = TflmOracle(data)
    (x,) = random_inputs(data, 1, seed=3)[0]
    assert x.dtype == np.float32
    lo, hi = scale * (-128 - zp), scale * (127 - zp)
    assert lo <= x.min() < lo * 0.9 and hi * 0.9 < x.max() <= hi
    q = np.float32(x) / np.float32(scale)
    expected = np.clip(np.sign(q) * np.floor(np.abs(q) + 0.5) + zp, -128, 127).astype(np.int8)
    np.testing.assert_array_equal(oracle.run([x])[0], expected)


def test_random_inputs_are_reproducible_and_prefix_stable(fc_case) -> None:
    a = random_inputs(fc_case[0], 5, seed=11)
    b = random_inputs(fc_case[0], 2, seed=11)
    assert all(np.array_equal(x[0], y[0]) for x, y in zip(a, b))
    assert a[0][0].dtype == np.int8 and a[0][0].shape == (1, 13)
    values = np.concatenate([s[0].reshape(-1) for s in a])
    assert values.min() < -100 and values.max() > 100  # the whole int8 range is used


@pytest.mark.parametrize("data", [b"", b"garbage" * 10, b"1234TFL3" + bytes(64)])
def test_malformed_models_raise_bad_model(data: bytes) -> None:
    with pytest.raises(BadModel):
        TflmOracle(data).run([np.zeros((1, 13), np.int8)])


def test_truncated_model_raises_bad_model(fc_case) -> None:
    with pytest.raises(BadModel):
        TflmOracle(fc_case[0][: len(fc_case[0]) // 2]).run([np.zeros((1, 13), np.int8)])


def test_wrong_input_is_a_one_line_error(fc_case) -> None:
    oracle = TflmOracle(fc_case[0])
    for bad in ([np.zeros((1, 13), np.float32)], [np.zeros((1, 12), np.int8)], []):
        with pytest.raises(TinymlError) as info:
            oracle.run(bad)
        assert "\n" not in str(info.value)


def test_importing_the_oracle_and_zoo_stays_light() -> None:
    code = ("import sys, tinyml.oracle, tinyml.zoo; "
            "heavy = [m for m in ('tensorflow', 'tflite_micro', 'keras') if m in sys.modules]; "
            "print(heavy); sys.exit(1 if heavy else 0)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


# -- data-movement zoo models: numpy indexing predicts TFLite Micro exactly ----

def _same_quant(data: bytes) -> tuple[float, int]:
    m = fb.ModelT.InitFromObj(fb.Model.GetRootAsModel(data, 0))
    sg = m.subgraphs[0]
    qi, qo = sg.tensors[sg.inputs[0]].quantization, sg.tensors[sg.outputs[0]].quantization
    assert list(qi.scale) == list(qo.scale) and list(qi.zeroPoint) == list(qo.zeroPoint)
    return float(qi.scale[0]), int(qi.zeroPoint[0])


def _max_pool(x: np.ndarray, k: int, s: int, same: bool) -> np.ndarray:
    _, h, w, c = x.shape
    if same:
        oh, ow = -(-h // s), -(-w // s)
        pt = max((oh - 1) * s + k - h, 0) // 2
        pl = max((ow - 1) * s + k - w, 0) // 2
    else:
        oh, ow, pt, pl = (h - k) // s + 1, (w - k) // s + 1, 0, 0
    out = np.empty((1, oh, ow, c), dtype=x.dtype)
    for i in range(oh):
        for j in range(ow):
            r0, c0 = max(i * s - pt, 0), max(j * s - pl, 0)
            window = x[:, r0:i * s - pt + k, c0:j * s - pl + k, :]
            out[:, i, j, :] = window.max(axis=(1, 2))
    return out


MOVEMENT: dict[str, Callable[[np.ndarray, int], np.ndarray]] = {
    "op_reshape": lambda x, zp: x.reshape(1, 8, 9),
    "op_squeeze": lambda x, zp: x.reshape(1, 5, 7),
    "op_transpose": lambda x, zp: x.transpose(0, 3, 1, 2),
    "op_strided_slice": lambda x, zp: x[:, 1:8:2, ::3, 1:5],
    "op_pad": lambda x, zp: np.pad(x, ((0, 0), (1, 2), (0, 3), (0, 0)), constant_values=zp),
    "op_maxpool_2x2_valid": lambda x, zp: _max_pool(x, 2, 2, same=False),
    "op_maxpool_3x3_s2_same": lambda x, zp: _max_pool(x, 3, 2, same=True),
}


@pytest.mark.parametrize("name", sorted(MOVEMENT))
def test_data_movement_models_match_numpy(name: str, zoo_bytes) -> None:
    data = zoo_bytes(name)
    _, zp = _same_quant(data)
    oracle = TflmOracle(data)
    for (x,) in random_inputs(oracle, 5, seed=2):
        np.testing.assert_array_equal(oracle.run([x])[0], MOVEMENT[name](x, zp))
