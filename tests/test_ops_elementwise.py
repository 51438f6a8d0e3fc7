"""Element-wise, activation and boundary ops: the numpy reference equals TFLite Micro
exactly, and the generated C (host, under ASan/UBSan) equals the reference.

Each case is one op with awkward shapes and quantization, written straight
into a .tflite flatbuffer (no TensorFlow needed, any scale/zero point can be
chosen) and into the IR by hand from the same description.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import flatbuffers
import numpy as np
import pytest
from tflite_micro.python.tflite_micro import runtime
from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as fb

from tinyml import zoo
from tinyml.codegen.emit import generate
from tinyml.ir import Graph, Node, Quant, Tensor
from tinyml.oracle import TflmOracle, random_inputs
from tinyml.ops import get_op
from tinyml.ops.elementwise import loop_nest
from tinyml.pipeline import compile_model
from tinyml.reference import reference_outputs
from tinyml.schedule.memory import plan_memory
from tinyml.sim.host import HostRunner

TFLITE_TYPES = {"float32": 0, "int32": 2, "uint8": 3, "int16": 7, "int8": 9}
ACTIVATIONS = {"NONE": 0, "RELU": 1, "RELU_N1_TO_1": 2, "RELU6": 3}


@dataclass
class T:
    """One tensor of a single-op model: an activation, or a constant when `data` is set."""

    shape: tuple[int, ...]
    dtype: str = "int8"
    scale: float | None = None
    zp: int = 0
    data: np.ndarray | None = None


@dataclass
class Case:
    id: str
    op: str
    inputs: list[T]
    output: T
    attrs: dict = field(default_factory=dict)

    @property
    def lut(self) -> bool:
        """A single 8-bit input: every code can be (and is) checked."""
        live = [t for t in self.inputs if t.data is None]
        return len(live) == 1 and live[0].dtype in ("int8", "uint8")


def q8(shape, scale, zp, dtype="int8") -> T:
    return T(tuple(shape), dtype, scale, zp)


def const8(values, scale, zp) -> T:
    v = np.asarray(values, np.int8)
    return T(v.shape, "int8", scale, zp, v)


# -- the cases ------------------------------------------------------------------
CASES = [
    Case("add_same_shape", "ADD", [q8((1, 3, 5, 7), 0.05, -3), q8((1, 3, 5, 7), 0.031, 10)], q8((1, 3, 5, 7), 0.07, -7)),
    Case("add_channel_bcast_relu", "ADD", [q8((1, 5, 3, 9), 0.02, 5), q8((1, 1, 1, 9), 0.09, -20)],
         q8((1, 5, 3, 9), 0.06, -128), {"fused_activation_function": "RELU"}),
    Case("add_both_bcast_relu6", "ADD", [q8((2, 1, 7), 0.1, 0), q8((3, 1), 0.013, 3)], q8((2, 3, 7), 0.05, -100),
         {"fused_activation_function": "RELU6"}),
    Case("add_const_scalar", "ADD", [q8((1, 11), 0.02, 7), const8(93, 0.011, -2)], q8((1, 11), 0.024, 1)),
    Case("add_rank5", "ADD", [q8((2, 1, 3, 1, 5), 0.04, 1), q8((1, 4, 3, 2, 1), 0.04, 1)], q8((2, 4, 3, 2, 5), 0.08, 0)),
    Case("sub_bcast_n1to1", "SUB", [q8((1, 4, 4, 3), 0.015, -9), q8((1, 4, 1, 3), 0.0271, 14)],
         q8((1, 4, 4, 3), 0.0093, 2), {"fused_activation_function": "RELU_N1_TO_1"}),
    Case("sub_scale_ratio", "SUB", [q8((13,), 0.00392157, -128), q8((13,), 0.1176, 30)], q8((13,), 0.12, 40)),
    Case("mul_same_shape", "MUL", [q8((1, 6, 5), 0.04, 3), q8((1, 6, 5), 0.07, -11)], q8((1, 6, 5), 0.02, -5)),
    Case("mul_bcast_gain_above_one", "MUL", [q8((1, 3, 3, 4), 0.5, 0), q8((4,), 0.25, -4)], q8((1, 3, 3, 4), 0.03, 9)),
    Case("mul_const_relu", "MUL", [q8((2, 7), 0.05, -20), const8(np.arange(-3, 4) * 17, 0.01, 5)], q8((2, 7), 0.02, -128),
         {"fused_activation_function": "RELU"}),
    Case("maximum_bcast", "MAXIMUM", [q8((1, 4, 5), 0.1, 0), q8((1, 1, 5), 0.1, 0)], q8((1, 4, 5), 0.1, 0)),
    Case("minimum_scalar", "MINIMUM", [q8((9,), 0.1, 0), const8(17, 0.1, 0)], q8((9,), 0.1, 0)),
    Case("squared_difference", "SQUARED_DIFFERENCE", [q8((1, 3, 5), 0.05, 4), q8((1, 1, 5), 0.03, -6)],
         q8((1, 3, 5), 0.4, -128)),
    Case("prelu_channel_alpha", "PRELU", [q8((1, 3, 4, 5), 0.04, 7), const8([[[-30, 12, 100, -128, 5]]], 0.004, -2)],
         q8((1, 3, 4, 5), 0.03, -10)),
    Case("logistic", "LOGISTIC", [q8((1, 37), 0.06, 5)], q8((1, 37), 1 / 256, -128)),
    Case("logistic_wide_input", "LOGISTIC", [q8((3, 5, 7), 0.21, -40)], q8((3, 5, 7), 1 / 256, -128)),
    Case("tanh", "TANH", [q8((2, 3, 11), 0.031, -3)], q8((2, 3, 11), 1 / 128, 0)),
    Case("tanh_fine_scale", "TANH", [q8((1, 129), 0.0047, 60)], q8((1, 129), 1 / 128, 0)),
    Case("hard_swish", "HARD_SWISH", [q8((1, 3, 5, 7), 0.047, -12)], q8((1, 3, 5, 7), 0.0311, -90)),
    Case("hard_swish_coarse", "HARD_SWISH", [q8((17,), 0.25, 30)], q8((17,), 0.19, -110)),
    Case("relu_requant", "RELU", [q8((1, 5, 5, 3), 0.05, -7)], q8((1, 5, 5, 3), 0.023, -128)),
    Case("relu_gain_above_one", "RELU", [q8((31,), 0.1, 20)], q8((31,), 0.2, -50)),
    Case("relu6_other_output_quant", "RELU6", [q8((1, 4, 4, 5), 0.06, -15)], q8((1, 4, 4, 5), 0.0235, -128)),
    Case("relu6_saturating_six", "RELU6", [q8((40,), 0.02, 9)], q8((40,), 0.02, 9)),
    Case("leaky_relu", "LEAKY_RELU", [q8((1, 6, 6, 3), 0.045, 11)], q8((1, 6, 6, 3), 0.031, -20), {"alpha": 0.1}),
    Case("leaky_relu_alpha_above_one", "LEAKY_RELU", [q8((23,), 0.02, -5)], q8((23,), 0.05, 4), {"alpha": 1.7}),
    Case("softmax", "SOFTMAX", [q8((1, 10), 0.11, -3)], q8((1, 10), 1 / 256, -128), {"beta": 1.0}),
    Case("softmax_rows_beta", "SOFTMAX", [q8((2, 3, 13), 0.045, 20)], q8((2, 3, 13), 1 / 256, -128), {"beta": 0.7}),
    Case("softmax_peaked", "SOFTMAX", [q8((4, 7), 0.5, 0)], q8((4, 7), 1 / 256, -128), {"beta": 2.0}),
    Case("softmax_int16_out", "SOFTMAX", [q8((3, 9), 0.08, 5)], T((3, 9), "int16", 1 / 65536, -32768), {"beta": 1.0}),
    Case("log_softmax", "LOG_SOFTMAX", [q8((1, 10), 0.11, -3)], q8((1, 10), 16 / 256, 127)),
    Case("log_softmax_rows_fine", "LOG_SOFTMAX", [q8((3, 4, 17), 0.021, 5)], q8((3, 4, 17), 16 / 256, 127)),
    Case("log_softmax_coarse", "LOG_SOFTMAX", [q8((5, 6), 0.5, 0)], q8((5, 6), 16 / 256, 127)),
    Case("log_softmax_wide", "LOG_SOFTMAX", [q8((2, 300), 0.07, -20)], q8((2, 300), 16 / 256, 127)),
    Case("log_softmax_float", "LOG_SOFTMAX", [T((6, 10), "float32")], T((6, 10), "float32")),
    Case("fill_runtime_value", "FILL", [T((3,), "int32", data=np.array([2, 3, 5], np.int32)), q8((), 0.1, 3)],
         q8((2, 3, 5), 0.1, 3)),
    Case("zeros_like", "ZEROS_LIKE", [q8((2, 7), 0.1, 3)], q8((2, 7), 0.1, 3)),
    Case("abs_rescaled", "ABS", [q8((3, 11), 0.05, -7)], q8((3, 11), 0.037, -128)),
    Case("abs_same_scale", "ABS", [q8((40,), 0.02, 9)], q8((40,), 0.02, -100)),
    Case("l2_norm", "L2_NORMALIZATION", [q8((3, 16), 0.05, -7)], q8((3, 16), 1 / 128, 0)),
    Case("l2_norm_wide_rows", "L2_NORMALIZATION", [q8((2, 2, 300), 0.3, 40)], q8((2, 2, 300), 1 / 128, 0)),
    Case("l2_norm_single", "L2_NORMALIZATION", [q8((4, 1), 0.1, 0)], q8((4, 1), 1 / 128, 0)),
    Case("quantize_float_int8", "QUANTIZE", [T((1, 5, 7), "float32")], q8((1, 5, 7), 0.037, -6)),
    Case("quantize_float_int8_ties", "QUANTIZE", [T((50,), "float32")], q8((50,), 0.25, 3)),
    Case("quantize_float_int16", "QUANTIZE", [T((2, 9), "float32")], T((2, 9), "int16", 0.0007, 0)),
    Case("quantize_int8_to_int8", "QUANTIZE", [q8((1, 3, 31), 0.05, 4)], q8((1, 3, 31), 0.032, -17)),
    Case("quantize_int8_to_uint8", "QUANTIZE", [q8((1, 19), 0.05, 4)], q8((1, 19), 0.05, 132, "uint8")),
    Case("quantize_uint8_to_int8", "QUANTIZE", [q8((3, 3, 3), 0.0078125, 128, "uint8")], q8((3, 3, 3), 0.0078125, 0)),
    Case("quantize_uint8_to_int8_rescale", "QUANTIZE", [q8((11,), 0.02, 100, "uint8")], q8((11,), 0.03, -5)),
    Case("quantize_int8_to_int16", "QUANTIZE", [q8((2, 8), 0.03, -3)], T((2, 8), "int16", 0.0004, 0)),
    Case("dequantize_int8", "DEQUANTIZE", [q8((1, 3, 3, 5), 0.0173, -9)], T((1, 3, 3, 5), "float32")),
    Case("dequantize_int16", "DEQUANTIZE", [T((2, 9), "int16", 0.00031, 0)], T((2, 9), "float32")),
]
# Not in TFLite Micro, so checked against the C only (TFLite semantics): RELU_N1_TO_1,
# QUANTIZE float -> uint8, DEQUANTIZE uint8.
C_ONLY_CASES = [
    Case("relu_n1_to_1", "RELU_N1_TO_1", [q8((1, 3, 7), 0.012, -4)], q8((1, 3, 7), 1 / 128, 0)),
    Case("quantize_float_uint8", "QUANTIZE", [T((3, 7), "float32")], q8((3, 7), 0.021, 120, "uint8")),
    Case("dequantize_uint8", "DEQUANTIZE", [q8((13,), 0.05, 128, "uint8")], T((13,), "float32")),
]


# -- building the model twice: .tflite for the oracle, IR for us ----------------
def _options(op: str, attrs: dict):
    act = ACTIVATIONS[attrs.get("fused_activation_function", "NONE")]
    if op in ("ADD", "SUB", "MUL"):
        cls = {"ADD": fb.AddOptionsT, "SUB": fb.SubOptionsT, "MUL": fb.MulOptionsT}[op]
        o = cls()
        o.fusedActivationFunction = act
        return getattr(fb.BuiltinOptions, f"{cls.__name__[:-1]}"), o
    if op == "SOFTMAX":
        o = fb.SoftmaxOptionsT()
        o.beta = attrs["beta"]
        return fb.BuiltinOptions.SoftmaxOptions, o
    if op == "LEAKY_RELU":
        o = fb.LeakyReluOptionsT()
        o.alpha = attrs["alpha"]
        return fb.BuiltinOptions.LeakyReluOptions, o
    return None


def tflite_model(case: Case) -> bytes:
    m = fb.ModelT()
    m.version = 3
    code = getattr(fb.BuiltinOperator, case.op)
    oc = fb.OperatorCodeT()
    oc.builtinCode, oc.deprecatedBuiltinCode, oc.version = code, min(code, 127), 1
    m.operatorCodes = [oc]
    m.buffers = [fb.BufferT()]
    sg = fb.SubGraphT()
    sg.tensors = []
    for i, spec in enumerate(case.inputs + [case.output]):
        buf = fb.BufferT()
        if spec.data is not None:
            buf.data = np.ascontiguousarray(spec.data).view(np.uint8).reshape(-1).tolist()
        m.buffers.append(buf)
        t = fb.TensorT()
        t.shape, t.type, t.buffer, t.name = list(spec.shape), TFLITE_TYPES[spec.dtype], len(m.buffers) - 1, f"t{i}".encode()
        if spec.scale is not None:
            t.quantization = fb.QuantizationParametersT()
            t.quantization.scale, t.quantization.zeroPoint = [float(spec.scale)], [int(spec.zp)]
        sg.tensors.append(t)
    n_in = len(case.inputs)
    sg.inputs = [i for i, s in enumerate(case.inputs) if s.data is None]
    sg.outputs = [n_in]
    op = fb.OperatorT()
    op.opcodeIndex, op.inputs, op.outputs = 0, list(range(n_in)), [n_in]
    if (opts := _options(case.op, case.attrs)) is not None:
        op.builtinOptionsType, op.builtinOptions = opts
    sg.operators = [op]
    m.subgraphs = [sg]
    b = flatbuffers.Builder(0)
    b.Finish(m.Pack(b), file_identifier=b"TFL3")
    return bytes(b.Output())


def add_to_graph(g: Graph, case: Case, prefix: str = "") -> Node:
    names = []
    for i, spec in enumerate(case.inputs + [case.output]):
        quant = None if spec.scale is None else Quant([spec.scale], [spec.zp])
        data = None if spec.data is None else spec.data.reshape(spec.shape)
        name = f"{prefix}t{i}"
        g.add_tensor(Tensor(name, spec.shape, spec.dtype, quant, data))
        names.append(name)
        if i < len(case.inputs) and spec.data is None:
            g.inputs.append(name)
    node = Node(case.op, names[:-1], names[-1:], dict(case.attrs), name=prefix + case.id)
    g.nodes.append(node)
    g.outputs.append(names[-1])
    return node


def ir_graph(cases: list[Case]) -> Graph:
    g = Graph(name="elementwise")
    for k, case in enumerate(cases):
        add_to_graph(g, case, f"c{k}_" if len(cases) > 1 else "")
    return g


def reference(g: Graph, node: Node, live_inputs: list[np.ndarray]) -> np.ndarray:
    feed = iter(live_inputs)
    args = [g[i].data if g[i].is_const else next(feed) for i in node.inputs]
    return get_op(node.op).reference(g, node, args)[0]


# -- inputs ---------------------------------------------------------------------
def random_input(spec: T, rng: np.random.Generator, scale_hint: float) -> np.ndarray:
    if spec.dtype == "float32":
        x = (rng.standard_normal(spec.shape) * 60 * scale_hint).astype(np.float32)
        # exact ties k + 1/2 of the quotient (half away from zero vs half to even)
        flat = x.reshape(-1)
        flat[: flat.size // 3] = (rng.integers(-300, 300, flat.size // 3) + 0.5) * np.float32(scale_hint)
        return x
    info = np.iinfo(np.dtype(spec.dtype))
    return rng.integers(info.min, int(info.max) + 1, spec.shape).astype(spec.dtype)


def input_sets(case: Case, count: int, seed: int) -> list[list[np.ndarray]]:
    """`count` random sets, plus (single 8-bit input) enough sets to visit all 256 codes."""
    rng = np.random.default_rng(seed)
    live = [t for t in case.inputs if t.data is None]
    hint = case.output.scale or 1.0
    sets = [[random_input(t, rng, hint) for t in live] for _ in range(count)]
    if case.lut:
        spec = live[0]
        codes = np.arange(256, dtype=np.uint8).view(np.dtype(spec.dtype))
        size = int(np.prod(spec.shape))
        reps = -(-256 // size)
        tiled = np.resize(rng.permutation(codes), reps * size)
        sets += [[tiled[k * size:(k + 1) * size].reshape(spec.shape)] for k in range(reps)]
    return sets


# -- tests ----------------------------------------------------------------------
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_reference_matches_tflite_micro(case: Case) -> None:
    interp = runtime.Interpreter.from_bytes(tflite_model(case), arena_size=1 << 18)
    g = ir_graph([case])
    node = g.nodes[0]
    op = get_op(case.op)
    assert op.check(g, node) is None
    assert op.infer_shapes(g, node) == [case.output.shape]
    sets = input_sets(case, 20, seed=len(case.id))
    seen = set()
    for inputs in sets:
        for i, x in enumerate(inputs):
            interp.set_input(x, i)
        interp.invoke()
        want = interp.get_output(0)
        got = reference(g, node, inputs)
        assert got.dtype == want.dtype and got.shape == want.shape
        mismatch = got.view(np.uint8) != want.view(np.uint8) if got.dtype != np.float32 else got != want
        assert not mismatch.any(), f"{case.id}: inputs {inputs[0].reshape(-1)[mismatch.reshape(-1)][:8]} " \
                                   f"-> ours {got[mismatch][:8]} tflm {want[mismatch][:8]}"
        if case.lut:
            seen.update(inputs[0].reshape(-1).tolist())
    assert not case.lut or len(seen) == 256


OWN_OPS = {"ADD", "SUB", "MUL", "MAXIMUM", "MINIMUM", "SQUARED_DIFFERENCE", "PRELU", "LOGISTIC", "TANH",
           "HARD_SWISH", "RELU", "RELU6", "RELU_N1_TO_1", "LEAKY_RELU", "SOFTMAX", "LOG_SOFTMAX", "QUANTIZE",
           "DEQUANTIZE", "FILL", "ZEROS_LIKE", "ABS",
           "L2_NORMALIZATION"}
CONVERTED = [n for n in zoo.names("ops") if zoo.get(n).exercises & OWN_OPS] + ["io_float32", "io_uint8"]


@pytest.mark.parametrize("name", CONVERTED)
def test_reference_matches_tflite_micro_on_keras_models(name: str) -> None:
    """Quantization as the TFLite converter chooses it (zoo models, built with fixed seeds)."""
    c = compile_model(zoo.path(name))
    g = c.graph
    assert {n.op for n in g.nodes} & OWN_OPS
    sets = random_inputs(g, 20, seed=11)
    x = g[g.inputs[0]]
    if len(g.inputs) == 1 and x.dtype in ("int8", "uint8"):  # every input code at least once
        codes = np.arange(256, dtype=np.uint8).view(x.np_dtype)
        sets += [[np.resize(np.roll(codes, k * x.size), x.shape)] for k in range(-(-256 // x.size))]
    expected = TflmOracle(c.model_bytes).run_batch(sets)
    for inputs, want in zip(sets, expected):
        for w, got in zip(want, reference_outputs(g, inputs)):
            np.testing.assert_array_equal(np.asarray(got).reshape(-1), np.asarray(w).reshape(-1))


def test_quantize_rounds_half_away_from_zero_and_saturates_like_the_oracle() -> None:
    """Ties, -0.5, and quotients outside int32 (x86 TFLite Micro: INT32_MIN, then + zp)."""
    case = Case("q", "QUANTIZE", [T((12,), "float32")], q8((12,), 0.5, -3))
    x = np.array([0.25, -0.25, 0.75, -0.75, 1.25, -1.25, 3e9, -3e9, np.inf, -np.inf, np.nan, 63.75], np.float32)
    interp = runtime.Interpreter.from_bytes(tflite_model(case), arena_size=1 << 16)
    interp.set_input(x, 0)
    interp.invoke()
    want = interp.get_output(0)
    g = ir_graph([case])
    got = reference(g, g.nodes[0], [x])
    assert got.tolist() == want.tolist()
    assert got[:6].tolist() == [-2, -4, -1, -5, 0, -6]  # round(x / 0.5) - 3, ties away from zero


@pytest.mark.parametrize("sanitize", [True, False], ids=["asan-ubsan", "O2"])
def test_generated_c_matches_reference(sanitize: bool, tmp_path) -> None:
    """Every case in one library: one compile covers every kernel variant."""
    cases = CASES + C_ONLY_CASES
    g = ir_graph(cases)
    for node in g.nodes:
        assert get_op(node.op).check(g, node) is None, node.name
    lib = generate(g, plan_memory(g, reorder=False), tmp_path / "lib")  # outputs are matched to cases by node order
    runner = HostRunner(lib, sanitize=sanitize)
    per_case = [input_sets(c, 4, seed=k) for k, c in enumerate(cases)]
    n_sets = max(len(s) for s in per_case)
    sets = [[x for s in per_case for x in s[j % len(s)]] for j in range(n_sets)]
    outputs = runner.run(sets).outputs
    for j in range(n_sets):
        feed = iter(sets[j])
        for k, (case, node) in enumerate(zip(cases, g.nodes)):
            live = [next(feed) for t in case.inputs if t.data is None]
            want = reference(g, node, live)
            got = outputs[j][k]
            assert np.array_equal(got.view(np.uint8), want.view(np.uint8)), f"{case.id} set {j}"


@pytest.mark.parametrize("case", [c for c in CASES if c.op != "DEQUANTIZE" and c.output.dtype == c.inputs[0].dtype
                                  and c.output.shape == c.inputs[0].shape], ids=lambda c: c.id)
def test_kernels_run_in_place(case: Case, tmp_path) -> None:
    """Output written over the first input's buffer (what the planner will do later) changes nothing."""
    g = ir_graph([case])
    plan = plan_memory(g)
    x, y = g.nodes[0].inputs[0], g.nodes[0].outputs[0]
    plan.offsets[y] = plan.offsets[x]
    lib = generate(g, plan, tmp_path / "lib")
    sets = input_sets(case, 3, seed=7)
    got = HostRunner(lib).run(sets).outputs
    for inputs, out in zip(sets, got):
        assert np.array_equal(out[0], reference(g, g.nodes[0], inputs))


def test_broadcast_lowering_merges_dims() -> None:
    assert loop_nest((1, 5, 3, 9), (1, 1, 1, 9), (1, 5, 3, 9)) == [(15, 9, 0), (9, 1, 1)]
    assert loop_nest((2, 1, 7), (3, 1), (2, 3, 7)) == [(2, 7, 0), (3, 0, 1), (7, 1, 0)]
    assert loop_nest((4,), (), (4,)) == [(4, 1, 0)]
    assert loop_nest((1, 1), (1, 1), (1, 1)) == [(1, 1, 1)]


@pytest.mark.parametrize("op, inputs, output, attrs, words", [
    ("ADD", [q8((2, 3), 0.1, 0), q8((4, 3), 0.1, 0)], q8((4, 3), 0.1, 0), {}, "broadcast"),
    ("ADD", [q8((3,), 0.1, 0), q8((3,), 0.1, 0)], q8((3,), 1e-9, 0), {}, "multiplier"),
    ("MUL", [q8((3,), 0.1, 0), T((3,), "float32")], q8((3,), 0.1, 0), {}, "float32"),
    ("SUB", [q8((3,), 0.1, 0), q8((3,), 0.1, 0)], q8((3,), 0.1, 0), {"fused_activation_function": "TANH"}, "TANH"),
    ("LOGISTIC", [q8((3,), 0.1, 0)], q8((3,), 1 / 256, 0), {}, "zero point"),
    ("SOFTMAX", [q8((3,), 0.1, 0)], q8((3,), 1 / 255, -128), {"beta": 1.0}, "1/256"),
    ("SOFTMAX", [q8((5000,), 0.1, 0)], q8((5000,), 1 / 256, -128), {"beta": 1.0}, "overflow"),
    ("HARD_SWISH", [q8((3,), 0.5, 0)], q8((3,), 0.001, 0), {}, "output scale"),
    ("RELU", [q8((3,), 0.1, 0)], T((3,), "int16", 0.1, 0), {}, "int16"),
    ("QUANTIZE", [q8((3,), 0.1, 0, "uint8")], T((3,), "int16", 0.1, 0), {}, "uint8 -> int16"),
    ("DEQUANTIZE", [T((3,), "float32")], T((3,), "float32"), {}, "float32"),
])
def test_unsupported_configurations_name_the_reason(op, inputs, output, attrs, words) -> None:
    g = ir_graph([Case("bad", op, inputs, output, attrs)])
    why = get_op(op).check(g, g.nodes[0])
    assert why is not None and words in why


def test_float_log_softmax_agrees_with_tflite_micro_within_its_stated_tolerance() -> None:
    """float32 LOG_SOFTMAX calls libm: our reference (exp/log rounded once from float64) and TFLite
    Micro's (this machine's expf/logf) agree within Op.float_tolerance, bit for bit on most rows."""
    case = Case("f", "LOG_SOFTMAX", [T((2000, 13), "float32")], T((2000, 13), "float32"))
    interp = runtime.Interpreter.from_bytes(tflite_model(case), arena_size=1 << 20)
    g = ir_graph([case])
    atol, rtol = get_op("LOG_SOFTMAX").float_tolerance(g, g.nodes[0])
    rng = np.random.default_rng(5)
    exact_rows = 0
    for spread in (0.01, 1.0, 8.0, 40.0):
        x = (rng.standard_normal(case.inputs[0].shape) * spread).astype(np.float32)
        interp.set_input(x, 0)
        interp.invoke()
        want = interp.get_output(0).astype(np.float64)
        got = reference(g, g.nodes[0], [x]).astype(np.float64)
        assert np.all(np.abs(got - want) <= atol + rtol * np.abs(want))
        exact_rows += int(np.all(got == want, axis=1).sum())
    assert exact_rows >= 0.98 * 4 * 2000


def test_validation_accepts_a_float_difference_only_within_the_producers_tolerance() -> None:
    from tinyml.validation import compare, output_tolerances

    g = ir_graph([Case("f", "LOG_SOFTMAX", [T((1, 10), "float32")], T((1, 10), "float32")),
                  Case("q", "LOG_SOFTMAX", [q8((1, 10), 0.1, 0)], q8((1, 10), 16 / 256, 127))])
    tols = output_tolerances(g)
    assert tols[0] is not None and tols[1] is None
    want = [np.full(10, -2.5, np.float32), np.zeros(10, np.int8)]
    near = [np.nextafter(want[0], np.float32(0)), want[1]]
    far = [want[0] + np.float32(1e-3), want[1]]
    off_by_one = [want[0], want[1] + np.int8(1)]
    assert compare([want], [near], tols).within_tolerance and not compare([want], [near], tols).bit_exact
    assert not compare([want], [far], tols).within_tolerance
    assert not compare([want], [off_by_one], tols).within_tolerance
    assert not compare([want], [near]).within_tolerance  # no tolerance stated: exact only


def test_float_compute_op_is_refused_in_one_line_pointing_at_quantize(tmp_path, capsys) -> None:
    """Issue 19 group 6: float32 compute (here ADD) is refused by name with the way out, exit 2."""
    from tinyml.cli import main

    case = Case("add_float", "ADD", [T((1, 4), "float32"), T((1, 4), "float32")], T((1, 4), "float32"))
    path = tmp_path / "float_add.tflite"
    path.write_bytes(tflite_model(case))
    assert main(["analyze", str(path), "--no-tflm"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "unsupported op ADD" in err and "tinyml quantize" in err, err
