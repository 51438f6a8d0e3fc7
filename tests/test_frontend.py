"""The .tflite frontend and legalization, checked against independent readers.

Models are small Keras networks converted here with TensorFlow's converter
(full int8, fixed seeds). What the loader reports is compared with TFLite's
own C++ interpreter (tensor names, shapes, quantization, constants, ops);
legalization is checked for structure and, through TFLite Micro, for
bit-exactness.
"""
from __future__ import annotations

import copy
import functools
import os

import numpy as np
import pytest

from tinyml.errors import BadModel, UnsupportedOps
from tinyml.frontend.check import check_supported, verify_shapes
from tinyml.frontend.tflite import load_tflite, read_tflite
from tinyml.ir import Graph, Node, Quant, Tensor
from tinyml.passes.cleanup import drop_identities, remove_dead
from tinyml.passes.fold import fold_constants, static_reshape_shapes
from tinyml.passes.fuse import fuse_activations, fuse_pad_into_conv
from tinyml.passes.legalize import legalize

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


# -- building real models ------------------------------------------------------

@functools.cache
def _tf():
    import tensorflow as tf

    return tf


def convert(build, input_shape: tuple[int, ...], io: str = "int8", per_channel: bool = True) -> bytes:
    """Full-int8 conversion with a fixed-seed representative dataset."""
    tf = _tf()
    tf.keras.utils.set_random_seed(1234)
    model = build(tf.keras)

    def representative():
        rng = np.random.default_rng(0)
        for _ in range(16):
            yield [rng.uniform(-1, 1, (1, *input_shape)).astype(np.float32)]

    c = tf.lite.TFLiteConverter.from_keras_model(model)
    c.optimizations = [tf.lite.Optimize.DEFAULT]
    c.representative_dataset = representative
    c.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    if io != "float32":
        c.inference_input_type = c.inference_output_type = getattr(tf, io)
    if not per_channel:
        c._experimental_disable_per_channel = True
    return bytes(c.convert())


def cnn(keras):
    """Conv (stride 2, SAME, fused RELU), depthwise x2 (fused RELU6), pool, Flatten, Dense, Softmax."""
    L = keras.layers
    i = keras.Input((16, 16, 3))
    x = L.Conv2D(8, 3, strides=2, padding="same", activation="relu")(i)
    x = L.DepthwiseConv2D(3, padding="same", depth_multiplier=2)(x)
    x = L.ReLU(6.0)(x)
    x = L.AveragePooling2D(2)(x)
    x = L.Flatten()(x)
    x = L.Dense(10)(x)
    return keras.Model(i, L.Softmax()(x))


def torch_like(keras):
    """NCHW input, TRANSPOSE to NHWC, an asymmetric explicit PAD, VALID conv: a PyTorch export."""
    L = keras.layers
    i = keras.Input((3, 12, 12))
    x = L.Permute((2, 3, 1))(i)
    x = L.ZeroPadding2D(padding=((1, 0), (2, 1)))(x)
    return keras.Model(i, L.Conv2D(5, 3, strides=2, padding="valid")(x))


def fused_ops(keras):
    """Activations the converter fuses into pooling, ADD, MUL and FULLY_CONNECTED."""
    L = keras.layers
    i = keras.Input((8, 8, 4))
    a = L.Conv2D(4, 3, padding="same")(i)
    b = L.ReLU()(L.MaxPooling2D(2)(a))
    c = L.ReLU(6.0)(L.AveragePooling2D(2)(a))
    d = L.ReLU()(L.Add()([b, c]))
    e = L.ReLU()(L.Multiply()([d, c]))
    f = L.Dense(6, activation="relu")(L.Flatten()(e))
    return keras.Model(i, [d, f])


MODELS = {
    "cnn": (cnn, (16, 16, 3), {}),
    "cnn_float_io": (cnn, (16, 16, 3), {"io": "float32"}),
    "cnn_uint8_per_tensor": (cnn, (16, 16, 3), {"io": "uint8", "per_channel": False}),
    "torch_like": (torch_like, (3, 12, 12), {}),
    "fused_ops": (fused_ops, (8, 8, 4), {}),
}


@functools.cache
def model(name: str) -> bytes:
    build, shape, kw = MODELS[name]
    return convert(build, shape, **kw)


# -- flatbuffer edits through TensorFlow's generated object API ----------------

def edit(data: bytes, fn) -> bytes:
    """Apply fn(ModelT) to a copy of the model and serialize it again."""
    import flatbuffers
    from tensorflow.lite.python import schema_py_generated as s

    m = s.ModelT.InitFromObj(s.Model.GetRootAsModel(data, 0))
    fn(m, s)
    b = flatbuffers.Builder(1024)
    b.Finish(m.Pack(b), file_identifier=b"TFL3")
    return bytes(b.Output())


def opcode_index(m, s, name: str) -> int:
    number = getattr(s.BuiltinOperator, name)
    for i, c in enumerate(m.operatorCodes):
        if max(c.builtinCode, c.deprecatedBuiltinCode) == number:
            return i
    code = s.OperatorCodeT()
    code.builtinCode, code.deprecatedBuiltinCode, code.version = number, min(number, 127), 1
    m.operatorCodes.append(code)
    return len(m.operatorCodes) - 1


def tflite_interpreter(data: bytes):
    tf = _tf()
    it = tf.lite.Interpreter(model_content=data,
                             experimental_op_resolver_type=tf.lite.experimental.OpResolverType.BUILTIN_REF)
    it.allocate_tensors()
    return it


# -- the loader against TFLite's own reading -----------------------------------

@pytest.mark.parametrize("name", list(MODELS))
def test_ir_matches_tflite_interpreter(name):
    data = model(name)
    imp = read_tflite(data)
    g, index = imp.graph, imp.tensor_index
    it = tflite_interpreter(data)
    details = {d["index"]: d for d in it.get_tensor_details()}
    assert set(index.values()) <= set(details)
    for tname, i in index.items():
        d, t = details[i], g[tname]
        assert tname == d["name"] or tname.startswith(d["name"])
        assert list(t.shape) == [int(x) for x in d["shape"]]
        assert t.np_dtype == np.dtype(d["dtype"])
        q = d["quantization_parameters"]
        if len(q["scales"]):
            assert t.quant is not None
            np.testing.assert_array_equal(t.quant.scale, q["scales"].astype(np.float32))
            np.testing.assert_array_equal(t.quant.zero_point, q["zero_points"])
            if t.quant.per_channel:
                assert t.quant.axis == q["quantized_dimension"]
        else:
            assert t.quant is None
        if t.is_const:
            np.testing.assert_array_equal(t.data, it.get_tensor(i))
    ops = it._get_ops_details()
    assert [n.op for n in g.nodes] == [o["op_name"] for o in ops]
    for n, o in zip(g.nodes, ops):
        assert [index[x] if x else -1 for x in n.inputs] == [int(v) for v in o["inputs"]]
        assert [index[x] for x in n.outputs] == [int(v) for v in o["outputs"]]
    assert [index[x] for x in g.inputs] == [d["index"] for d in it.get_input_details()]
    assert [index[x] for x in g.outputs] == [d["index"] for d in it.get_output_details()]


def test_builtin_options_become_attrs():
    g = load_tflite(model("cnn"))
    conv, dw, pool = g.nodes[0], g.nodes[1], g.nodes[2]
    assert conv.attrs == {"padding": "SAME", "stride_w": 2, "stride_h": 2, "fused_activation_function": "RELU",
                          "dilation_w_factor": 1, "dilation_h_factor": 1}
    assert dw.attrs["depth_multiplier"] == 2 and dw.attrs["fused_activation_function"] == "RELU6"
    assert (pool.op, pool.attrs["filter_width"], pool.attrs["padding"]) == ("AVERAGE_POOL_2D", 2, "VALID")
    assert g.nodes[-1].attrs == {"beta": 1.0}


def test_per_channel_and_per_tensor_weights():
    pc = load_tflite(model("cnn"))
    conv_w, dw_w = pc[pc.nodes[0].inputs[1]], pc[pc.nodes[1].inputs[1]]
    assert conv_w.quant.scale.size == 8 and conv_w.quant.axis == 0
    assert dw_w.quant.scale.size == 16 and dw_w.quant.axis == 3
    pt = load_tflite(model("cnn_uint8_per_tensor"))
    weights = [pt[n.inputs[1]] for n in pt.nodes if n.op in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")]
    assert weights and all(w.quant.scale.size == 1 for w in weights)


def test_boundary_quantize_ops_and_io_types():
    f = legalize(load_tflite(model("cnn_float_io")))
    assert (f.nodes[0].op, f.nodes[-1].op) == ("QUANTIZE", "DEQUANTIZE")
    assert f[f.inputs[0]].dtype == f[f.outputs[0]].dtype == "float32"
    u = legalize(load_tflite(model("cnn_uint8_per_tensor")))
    assert (u.nodes[0].op, u.nodes[-1].op) == ("QUANTIZE", "QUANTIZE")
    assert u[u.inputs[0]].dtype == u[u.outputs[0]].dtype == "uint8"


def test_flatten_shape_chain_folds_away():
    before = load_tflite(model("cnn"))
    assert {"SHAPE", "STRIDED_SLICE", "PACK"} <= {n.op for n in before.nodes}
    g = legalize(before)
    assert [n.op for n in g.nodes] == ["CONV_2D", "DEPTHWISE_CONV_2D", "AVERAGE_POOL_2D", "RESHAPE",
                                       "FULLY_CONNECTED", "SOFTMAX"]
    reshape = g.nodes[3]
    shape = g[reshape.inputs[1]]
    assert shape.is_const and shape.data.tolist() == [1, 256] == list(g[reshape.outputs[0]].shape)
    assert all(t.is_const or any(t.name in n.inputs + n.outputs for n in g.nodes) for t in g.tensors.values())


def test_explicit_pad_fuses_into_conv():
    """Exactness of the fused form is checked with the other models below."""
    g = legalize(load_tflite(model("torch_like")))
    assert [n.op for n in g.nodes] == ["TRANSPOSE", "CONV_2D"]
    conv = g.nodes[1]
    assert conv.attrs["explicit_padding"] == (1, 0, 2, 1) and conv.attrs["padding"] == "VALID"
    assert conv.inputs[0] == g.nodes[0].outputs[0]


def split_fused_activations(m, s):
    """Move every fused RELU/RELU6 of a conv out into a standalone op (same quantization)."""
    sg = m.subgraphs[0]
    ops = []
    for op in sg.operators:
        ops.append(op)
        opt = op.builtinOptions
        act = getattr(opt, "fusedActivationFunction", 0)
        if act not in (s.ActivationFunctionType.RELU, s.ActivationFunctionType.RELU6):
            continue
        opt.fusedActivationFunction = s.ActivationFunctionType.NONE
        out = op.outputs[0]
        pre = copy.copy(sg.tensors[out])
        pre.name = sg.tensors[out].name + b"/pre_activation"
        sg.tensors.append(pre)
        op.outputs = [len(sg.tensors) - 1]
        relu = s.OperatorT()
        relu.opcodeIndex = opcode_index(m, s, "RELU" if act == s.ActivationFunctionType.RELU else "RELU6")
        relu.inputs, relu.outputs = [len(sg.tensors) - 1], [out]
        ops.append(relu)
    sg.operators = ops


@pytest.mark.parametrize("name", ["cnn", "fused_ops"])
def test_standalone_activations_fuse_exactly(name):
    from tinyml.oracle import TflmOracle, random_inputs

    fused = model(name)
    split = edit(fused, split_fused_activations)
    fused_ops = {n.op for n in load_tflite(fused).nodes if n.attrs.get("fused_activation_function", "NONE") != "NONE"}
    split_nodes = load_tflite(split).nodes
    assert len(split_nodes) - len(load_tflite(fused).nodes) >= len(fused_ops) >= 2
    assert all(n.attrs.get("fused_activation_function", "NONE") == "NONE" for n in split_nodes)
    # The claim behind the fusion, checked on the oracle itself ...
    a, b = TflmOracle(fused), TflmOracle(split)
    for inputs in random_inputs(a, 20, seed=1):
        for x, y in zip(a.run(inputs), b.run(inputs)):
            np.testing.assert_array_equal(x, y)
    # ... and the pass restores the fused form.
    ga, gb = legalize(load_tflite(fused)), legalize(load_tflite(split))
    assert [(n.op, n.attrs) for n in ga.nodes] == [(n.op, n.attrs) for n in gb.nodes]


@pytest.mark.parametrize("name", list(MODELS))
def test_legalized_graph_computes_what_tflite_micro_computes(name):
    """End to end: the folded, fused graph run by the ops' references equals the oracle on the original file."""
    from tinyml.oracle import TflmOracle, random_inputs
    from tinyml.reference import reference_outputs

    data = model(name)
    g = legalize(load_tflite(data))
    check_supported(g)
    verify_shapes(g)
    oracle = TflmOracle(data)
    for inputs in random_inputs(oracle, 10, seed=2):
        for ours, theirs in zip(reference_outputs(g, inputs), oracle.run(inputs)):
            np.testing.assert_array_equal(ours, theirs)


# -- file features converters rarely produce -------------------------------------

def test_custom_and_unknown_ops_are_all_listed():
    def rewrite(m, s):
        sg = m.subgraphs[0]
        custom = s.OperatorCodeT()
        custom.builtinCode = custom.deprecatedBuiltinCode = s.BuiltinOperator.CUSTOM
        custom.customCode, custom.version = b"MyConv\n*/", 1
        future = s.OperatorCodeT()
        future.builtinCode, future.deprecatedBuiltinCode, future.version = 600, 127, 1
        m.operatorCodes += [custom, future]
        sg.operators[0].opcodeIndex = len(m.operatorCodes) - 2
        sg.operators[0].builtinOptionsType, sg.operators[0].builtinOptions = 0, None
        sg.operators[-1].opcodeIndex = len(m.operatorCodes) - 1

    g = legalize(load_tflite(edit(model("cnn"), rewrite)))
    with pytest.raises(UnsupportedOps) as e:
        check_supported(g)
    ops = [op for op, _ in e.value.items]
    assert ops[0] == "CUSTOM:MyConv\\n*/" and ops[-1] == "BUILTIN_600"
    assert "\n" not in str(e.value)


def test_state_is_named_as_unsupported_ops_not_malformed():
    """A variable (state) tensor and a resource-typed tensor: each operator touching one is listed,
    with every op tinyml lacks, as UnsupportedOps; the file is not called malformed."""
    def stateful(m, s):
        sg = m.subgraphs[0]
        sg.tensors[sg.operators[0].outputs[0]].isVariable = True
        sg.tensors[sg.operators[-1].outputs[0]].type = s.TensorType.RESOURCE
        sg.operators[1].opcodeIndex = opcode_index(m, s, "LSH_PROJECTION")

    with pytest.raises(UnsupportedOps) as e:
        load_tflite(edit(model("cnn"), stateful))
    ops = [op for op, _ in e.value.items]
    assert "is a variable (state kept across invocations)" in ops[0]
    assert ops[1] == "LSH_PROJECTION" and "has type RESOURCE" in ops[-1]
    assert "malformed" not in str(e.value) and "\n" not in str(e.value)


def test_builtin_code_beyond_127_uses_the_new_field():
    def gelu(m, s):
        code = s.OperatorCodeT()
        code.builtinCode, code.deprecatedBuiltinCode, code.version = s.BuiltinOperator.GELU, 127, 1
        m.operatorCodes.append(code)
        m.subgraphs[0].operators[-1].opcodeIndex = len(m.operatorCodes) - 1
        m.subgraphs[0].operators[-1].builtinOptionsType = s.BuiltinOptions.GeluOptions
        m.subgraphs[0].operators[-1].builtinOptions = s.GeluOptionsT()
        m.subgraphs[0].operators[-1].builtinOptions.approximate = True

    g = load_tflite(edit(model("cnn"), gelu))
    assert g.nodes[-1].op == "GELU" and g.nodes[-1].attrs == {"approximate": True}


def test_buffers_stored_outside_the_flatbuffer():
    """>2 GB models keep weights after the flatbuffer, located by Buffer.offset/size."""
    data = model("cnn")
    payload: list[bytes] = []

    def externalize(m, s):
        for b in m.buffers:
            if b.data is not None and len(b.data):
                payload.append(bytes(np.asarray(b.data, dtype=np.uint8)))
                b.data, b.offset, b.size = None, 1 << 40, len(payload[-1])

    stub = edit(data, externalize)
    base = (len(stub) + 15) // 16 * 16
    offsets = []
    for p in payload:
        offsets.append(base + sum(len(x) + (-len(x)) % 16 for x in payload[:len(offsets)]))

    def place(m, s):
        k = 0
        for b in m.buffers:
            if b.offset:
                b.offset = offsets[k]
                k += 1

    head = edit(stub, place)
    assert len(head) == len(stub)
    blob = bytearray(head.ljust(base, b"\0"))
    for p in payload:
        blob += p + b"\0" * ((-len(p)) % 16)
    a, b = load_tflite(data), load_tflite(bytes(blob))
    consts = [t for t in a.tensors.values() if t.is_const]
    assert consts
    for t in consts:
        np.testing.assert_array_equal(b[t.name].data, t.data)
        assert b[t.name].data.dtype == t.data.dtype
    with pytest.raises(BadModel, match="outside the file"):
        load_tflite(bytes(blob[:-40]))


def test_int4_weights_are_unpacked_low_nibble_first():
    values = {}

    def to_int4(m, s):
        sg = m.subgraphs[0]
        t = sg.tensors[sg.operators[0].inputs[1]]
        q = np.clip(np.asarray(m.buffers[t.buffer].data, dtype=np.uint8).view(np.int8), -8, 7)
        values["q"] = q
        flat = [int(v) & 0xF for v in q]
        flat += [0] * (len(flat) % 2)
        m.buffers[t.buffer].data = [flat[i] | (flat[i + 1] << 4) for i in range(0, len(flat), 2)]
        t.type = s.TensorType.INT4

    g = load_tflite(edit(model("cnn"), to_int4))
    w = g[g.nodes[0].inputs[1]]
    # the IR keeps the values in an int8 container, 4 bits wide
    assert (w.dtype, w.bits, w.nbytes) == ("int8", 4, (values["q"].size + 1) // 2)
    np.testing.assert_array_equal(w.data.reshape(-1), values["q"])


def test_duplicate_and_hostile_names():
    def rename(m, s):
        for t in m.subgraphs[0].tensors:
            t.name = b'x"\\\n*/'

    g = load_tflite(edit(model("cnn"), rename))
    assert len(set(g.tensors)) == len(g.tensors) and g.inputs == ['x"\\\n*/']


def test_shapes_that_disagree_with_the_ops_are_rejected():
    def widen(m, s):
        sg = m.subgraphs[0]
        sg.tensors[sg.operators[0].outputs[0]].shape = [1, 9, 8, 8]

    g = load_tflite(edit(model("cnn"), widen))
    with pytest.raises(BadModel, match="declares output shapes"):
        verify_shapes(g)


# -- legalization passes on hand-built graphs ---------------------------------

def q(scale: float = 0.05, zp: int = -3) -> Quant:
    return Quant(np.array([scale], np.float32), np.array([zp]))


def pad_conv_graph(pad_value: int | None = None, paddings=((0, 0), (1, 2), (0, 1), (0, 0)),
                   conv_padding: str = "VALID", pad_quant: Quant | None = None) -> Graph:
    g = Graph()
    for t in (Tensor("x", (1, 6, 6, 2), "int8", q()),
              Tensor("p", (1, 6 + sum(paddings[1]), 6 + sum(paddings[2]), 2), "int8", pad_quant or q()),
              Tensor("pads", (4, 2), "int32", data=np.array(paddings, np.int32)),
              Tensor("w", (3, 3, 3, 2), "int8", Quant(np.full(3, 0.01, np.float32), np.zeros(3)),
                     data=np.ones((3, 3, 3, 2), np.int8)),
              Tensor("y", (1, 4 + sum(paddings[1]), 4 + sum(paddings[2]), 3), "int8", q(0.1, 1))):
        g.add_tensor(t)
    pad_inputs = ["x", "pads"]
    if pad_value is not None:
        g.add_tensor(Tensor("v", (1,), "int8", data=np.array([pad_value], np.int8)))
        pad_inputs.append("v")
    g.nodes = [Node("PADV2" if pad_value is not None else "PAD", pad_inputs, ["p"], name="pad"),
               Node("CONV_2D", ["p", "w", None], ["y"], {"padding": conv_padding, "stride_w": 1, "stride_h": 1,
                                                        "fused_activation_function": "NONE"}, name="conv")]
    g.inputs, g.outputs = ["x"], ["y"]
    return g


def test_pad_fusion_happens_only_when_exact():
    g = pad_conv_graph()
    fuse_pad_into_conv(g)
    assert [n.op for n in g.nodes] == ["CONV_2D"]
    assert g.nodes[0].inputs[0] == "x" and g.nodes[0].attrs["explicit_padding"] == (1, 2, 0, 1)
    g = pad_conv_graph(pad_value=-3)  # PADV2 with the zero point as its value
    fuse_pad_into_conv(g)
    assert [n.op for n in g.nodes] == ["CONV_2D"]
    for g in (pad_conv_graph(pad_value=0),                               # pads a real zero, not zp
              pad_conv_graph(paddings=((0, 0), (1, 1), (1, 1), (0, 1))),  # pads channels
              pad_conv_graph(conv_padding="SAME"),
              pad_conv_graph(pad_quant=q(0.05, -4))):                    # PAD requantizes nothing
        fuse_pad_into_conv(g)
        assert len(g.nodes) == 2 and g.nodes[1].inputs[0] == "p"
    g = pad_conv_graph()
    g.outputs.append("p")
    fuse_pad_into_conv(g)
    assert len(g.nodes) == 2


def act_graph(act: str, out_quant: Quant, producer_act: str = "NONE", extra_consumer: bool = False) -> Graph:
    g = Graph()
    for t in (Tensor("x", (1, 4), "int8", q()), Tensor("w", (4, 4), "int8", q(), data=np.eye(4, dtype=np.int8)),
              Tensor("h", (1, 4), "int8", q(0.1, -5)), Tensor("y", (1, 4), "int8", out_quant),
              Tensor("z", (1, 4), "int8", q(0.1, -5))):
        g.add_tensor(t)
    g.nodes = [Node("FULLY_CONNECTED", ["x", "w", None], ["h"], {"fused_activation_function": producer_act}),
               Node(act, ["h"], ["y"])]
    g.inputs, g.outputs = ["x"], ["y"]
    if extra_consumer:
        g.nodes.append(Node("RESHAPE", ["h"], ["z"]))
        g.outputs.append("z")
    return g


def test_activation_fusion_conditions():
    g = act_graph("RELU6", q(0.1, -5))
    fuse_activations(g)
    assert len(g.nodes) == 1 and g.nodes[0].outputs == ["y"]
    assert g.nodes[0].attrs["fused_activation_function"] == "RELU6"
    for g in (act_graph("RELU", q(0.2, -5)),                  # requantizing RELU
              act_graph("RELU", q(0.1, -5), producer_act="RELU6"),
              act_graph("RELU", q(0.1, -5), extra_consumer=True),
              act_graph("LEAKY_RELU", q(0.1, -5))):
        n = len(g.nodes)
        fuse_activations(g)
        assert len(g.nodes) == n


def test_identity_reshape_dropped_only_when_exact():
    g = act_graph("RESHAPE", q(0.1, -5))
    g.nodes.append(Node("SOFTMAX", ["y"], ["z"]))
    g.outputs = ["z"]
    drop_identities(g)
    assert [n.op for n in g.nodes] == ["FULLY_CONNECTED", "SOFTMAX"] and g.nodes[1].inputs == ["h"]
    g = act_graph("RESHAPE", q(0.1, -4))
    g.nodes.append(Node("SOFTMAX", ["y"], ["z"]))
    g.outputs = ["z"]
    drop_identities(g)
    assert len(g.nodes) == 3


def test_dead_nodes_and_tensors_removed():
    g = act_graph("RELU", q(0.1, -5), extra_consumer=True)
    g.outputs = ["y"]
    remove_dead(g)
    assert [n.op for n in g.nodes] == ["FULLY_CONNECTED", "RELU"] and "z" not in g.tensors


def test_fold_uses_op_reference_and_respects_growth_limit(monkeypatch):
    from tinyml.ops import OPS
    from tinyml.ops.base import Op

    class Tile(Op):
        name = "TEST_TILE"

        def infer_shapes(self, g, n):
            return [tuple(int(k) * d for k, d in zip(g[n.inputs[1]].data, g[n.inputs[0]].shape))]

        def reference(self, g, n, inputs):
            return [np.tile(inputs[0], inputs[1])]

    monkeypatch.setitem(OPS, "TEST_TILE", Tile())

    def graph(reps: int) -> Graph:
        g = Graph()
        g.add_tensor(Tensor("c", (2,), "int32", data=np.array([3, -4], np.int32)))
        g.add_tensor(Tensor("r", (1,), "int32", data=np.array([reps], np.int32)))
        g.add_tensor(Tensor("t", (2 * reps,), "int32"))
        g.add_tensor(Tensor("x", (2 * reps,), "int32"))
        g.add_tensor(Tensor("y", (2 * reps,), "int32"))
        g.nodes = [Node("TEST_TILE", ["c", "r"], ["t"]), Node("ADD", ["x", "t"], ["y"])]
        g.inputs, g.outputs = ["x"], ["y"]
        return g

    small = graph(3)
    fold_constants(small)
    assert [n.op for n in small.nodes] == ["ADD"] and small["t"].data.tolist() == [3, -4] * 3
    big = graph(4096)  # 32 KiB of constant from 12 bytes: not worth the flash
    fold_constants(big)
    assert [n.op for n in big.nodes] == ["TEST_TILE", "ADD"] and not big["t"].is_const


def test_reshape_target_is_the_output_shape():
    """TFLite Micro reshapes to the output tensor's shape, whatever the shape input or new_shape say."""
    g = Graph()
    for t in (Tensor("x", (1, 2, 3), "int8", q()), Tensor("s", (2,), "int32"),
              Tensor("a", (1, 6), "int8", q()), Tensor("b", (6, 1), "int8", q()), Tensor("c", (), "int8", q()),
              Tensor("one", (1, 1, 1), "int8", q())):
        g.add_tensor(t)
    g.nodes = [Node("RESHAPE", ["x", "s"], ["a"]), Node("RESHAPE", ["x"], ["b"], {"new_shape": [3, 2]}),
               Node("RESHAPE", ["one", "s"], ["c"], {"new_shape": [1]})]
    static_reshape_shapes(g)
    assert [g[n.inputs[1]].data.tolist() for n in g.nodes[:2]] == [[1, 6], [6, 1]]
    assert g.nodes[2].inputs == ["one"] and g.nodes[2].attrs["new_shape"] is None
