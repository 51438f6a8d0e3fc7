"""Read a float ONNX model (e.g. `torch.onnx.export(..., dynamo=False)` of a small CNN) into the graph IR.

ONNX is NCHW, the IR is NHWC (TFLite's layout): the model's input keeps its
NCHW shape, so users feed what the PyTorch model took, and a TRANSPOSE to
NHWC follows it, as real converters emit. 4-D values then live in NHWC;
wherever ONNX semantics need the NCHW order (Flatten, Reshape of a 4-D value,
a 4-D graph output) a TRANSPOSE back is inserted. Filters are permuted to
OHWI / 1HWC, BatchNormalization is folded into the preceding Conv (or becomes
MUL+ADD), Gemm/MatMul become FULLY_CONNECTED, and shape arithmetic
(Shape/Gather/Unsqueeze/Concat of constants) is evaluated here.

Only the `onnx` package's protobuf parsing is used (lazily imported); any
decoding error or unsupported construct is a one-line BadModel.
"""
from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np

from tinyml.errors import BadModel, ToolMissing, UnsupportedOps, show
from tinyml.frontend.check import inferred_shapes
from tinyml.ir import Graph, Node, Tensor
from tinyml.ops.quantized import out_size, same_padding

TO_NHWC, TO_NCHW = (0, 2, 3, 1), (0, 3, 1, 2)
NCHW_AXIS_IN_NHWC = {0: 0, 1: 3, 2: 1, 3: 2}
ELEMENTWISE = {"Add": "ADD", "Sub": "SUB", "Mul": "MUL"}
UNARY = {"Relu": "RELU", "Sigmoid": "LOGISTIC", "Tanh": "TANH", "HardSwish": "HARD_SWISH"}


def _onnx() -> Any:
    try:
        import onnx
        from onnx import numpy_helper
    except ImportError as e:
        raise ToolMissing("reading ONNX models needs the onnx package (pip install 'tinyml[onnx]')") from e
    return onnx, numpy_helper


def load_onnx(data: bytes) -> Graph:
    onnx, numpy_helper = _onnx()
    try:
        model = onnx.load_model_from_string(data)
    except Exception as e:  # noqa: BLE001 - protobuf raises DecodeError and friends on garbage
        raise BadModel(f"not an ONNX model: {show(str(e) or type(e).__name__, 120)}") from None
    if not model.graph.node:
        raise BadModel("not an ONNX model: the graph has no nodes")
    try:
        return _Reader(model.graph, numpy_helper).run()
    except (BadModel, UnsupportedOps):
        raise
    except (ValueError, KeyError, IndexError, TypeError) as e:
        raise BadModel(f"malformed ONNX model: {type(e).__name__}: {show(str(e), 160)}") from None


def _text(v: str | bytes) -> str:
    """A protobuf string field (bytes when the file holds invalid UTF-8) as text."""
    return v if isinstance(v, str) else bytes(v).decode("utf-8", "replace")


def _attrs(node: Any) -> dict[str, Any]:
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


class _Reader:
    def __init__(self, graph: Any, numpy_helper: Any):
        self.onnx_graph, self.nh = graph, numpy_helper
        self.g = Graph()
        self.consts: dict[str, np.ndarray] = {}
        self.names: dict[str, str] = {}  # ONNX value -> IR tensor
        self.nhwc: set[str] = set()  # IR tensors holding a 4-D value in NHWC order
        self.transposed: dict[tuple[str, tuple[int, ...]], str] = {}
        self.unsupported: list[tuple[str, str]] = []

    # ---- helpers -------------------------------------------------------------
    def const(self, name: str, value: np.ndarray, dtype: str = "float32") -> str:
        t = self.g.add_tensor(Tensor(name=name, shape=value.shape, dtype=dtype,
                                     data=np.asarray(value).astype(dtype)))
        return t.name

    def emit(self, op: str, inputs: list[str | None], out: str, attrs: dict[str, Any] | None = None,
             nhwc: bool = False) -> str:
        """Append a float node; its output shape comes from the op's own shape rule."""
        t = self.g.add_tensor(Tensor(name=out, shape=(1,), dtype="float32"))
        n = Node(op, list(inputs), [t.name], dict(attrs or {}), name=t.name)
        self.g.nodes.append(n)
        t.shape = inferred_shapes(self.g, n)[0]
        if nhwc:
            self.nhwc.add(t.name)
        return t.name

    def transpose(self, name: str, perm: tuple[int, ...]) -> str:
        key = (name, perm)
        if key not in self.transposed:
            p = self.const(f"{name}/perm{''.join(map(str, perm))}", np.array(perm), "int32")
            self.transposed[key] = self.emit("TRANSPOSE", [name, p], f"{name}/{'nhwc' if perm == TO_NHWC else 'nchw'}",
                                             nhwc=perm == TO_NHWC)
        return self.transposed[key]

    def nhwc_of(self, value: str) -> str:
        """The IR tensor of a 4-D ONNX value in NHWC order."""
        name = self.names[value]
        if name in self.nhwc:
            return name
        if len(self.g[name].shape) != 4:
            raise BadModel(f"value {show(value)} has shape {list(self.g[name].shape)}, expected 4-D NCHW")
        return self.transpose(name, TO_NHWC)

    def plain_of(self, value: str) -> str:
        """The IR tensor of an ONNX value in ONNX's own (NCHW) order."""
        name = self.names[value]
        return self.transpose(name, TO_NCHW) if name in self.nhwc else name

    def onnx_shape(self, value: str) -> tuple[int, ...]:
        if value in self.consts:
            return self.consts[value].shape
        s = self.g[self.names[value]].shape
        return tuple(s[i] for i in TO_NCHW) if self.names[value] in self.nhwc else s

    def weight(self, value: str, what: str) -> np.ndarray:
        if value not in self.consts:
            raise BadModel(f"{what}: {show(value)} must be a constant (an initializer)")
        return self.consts[value].astype(np.float64)

    # ---- the graph -------------------------------------------------------------
    def run(self) -> Graph:
        og = self.onnx_graph
        self.uses = Counter(_text(i) for node in og.node for i in node.input)
        self.uses.update(_text(v.name) for v in og.output)
        for init in og.initializer:
            self.consts[_text(init.name)] = self.nh.to_array(init)
        inputs = [v for v in og.input if _text(v.name) not in self.consts]
        if len(inputs) != 1:
            raise BadModel(f"the ONNX model has {len(inputs)} inputs; tinyml quantize handles single-input models")
        self._input(inputs[0])
        for k, node in enumerate(og.node):
            self._node(node, k)
        if self.unsupported:
            raise UnsupportedOps(self.unsupported)
        for name in (_text(v.name) for v in og.output):
            if name not in self.names:
                raise BadModel(f"ONNX output {show(name)} is a constant or never computed")
            self.g.outputs.append(self.plain_of(name))
        return self.g

    def _input(self, v: Any) -> None:
        t = v.type.tensor_type
        name = _text(v.name)
        if t.elem_type != 1:
            raise BadModel(f"ONNX input {show(name)} has element type {t.elem_type}, expected float32 (1)")
        dims = [d.dim_value if d.HasField("dim_value") else 0 for d in t.shape.dim]
        shape = tuple([1] + dims[1:]) if dims else ()
        if not shape or any(d < 1 for d in shape):
            raise BadModel(f"ONNX input {show(name)} needs static dimensions after the batch, got {dims}")
        self.g.inputs = [self.g.add_tensor(Tensor(name=name, shape=shape, dtype="float32")).name]
        self.names[name] = self.g.inputs[0]

    def _node(self, node: Any, k: int) -> None:
        op, ins, outs, a = _text(node.op_type), [_text(i) for i in node.input], [_text(o) for o in node.output], _attrs(node)
        label = show(_text(node.name) or (outs[0] if outs else f"node {k}"))
        if op == "Constant":
            value = a.get("value")
            if value is None:
                raise BadModel(f"node {label} (Constant): only 'value' constants are supported")
            self.consts[outs[0]] = self.nh.to_array(value)
            return
        if ins and all(i in self.consts or i == "" for i in ins) and op in SHAPE_FOLDS:
            self.consts[outs[0]] = SHAPE_FOLDS[op](self, ins, a)
            return
        if op == "Shape":
            self.consts[outs[0]] = np.array(self.onnx_shape(ins[0]), np.int64)
            return
        missing = [i for i in ins if i and i not in self.names and i not in self.consts]
        if missing:
            if self.unsupported:  # fed by an op already reported
                return
            raise BadModel(f"node {label} ({op}) reads {show(missing[0])} before any node computes it")
        handler = HANDLERS.get(op)
        if handler is None:
            self.unsupported.append((op, label))
            return
        self.names[outs[0]] = handler(self, ins, outs[0], a, label)

    # ---- ops -------------------------------------------------------------------
    def _padding(self, a: dict, shape: tuple[int, ...], k: tuple[int, int], stride: tuple[int, int],
                 dil: tuple[int, int], label: str) -> tuple[str, tuple[int, int, int, int] | None]:
        """('SAME'|'VALID', None) when TFLite's padding matches the ONNX pads, else ('VALID', explicit pads)."""
        if a.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
            raise BadModel(f"node {label}: auto_pad is not supported, export with explicit pads")
        t, l, b, r = (list(a.get("pads", [0, 0, 0, 0])) + [0] * 4)[:4]
        top, left, bottom, right = t, l, b, r
        if not any((top, left, bottom, right)):
            return "VALID", None
        same = []
        for size, kk, s, d in ((shape[1], k[0], stride[0], dil[0]), (shape[2], k[1], stride[1], dil[1])):
            same.append(same_padding(size, kk, s, d, out_size("SAME", size, kk, s, d)))
        explicit_out_h = (shape[1] + top + bottom - ((k[0] - 1) * dil[0] + 1)) // stride[0] + 1
        explicit_out_w = (shape[2] + left + right - ((k[1] - 1) * dil[1] + 1)) // stride[1] + 1
        if (same == [(top, bottom), (left, right)] and explicit_out_h == out_size("SAME", shape[1], k[0], stride[0], dil[0])
                and explicit_out_w == out_size("SAME", shape[2], k[1], stride[1], dil[1])):
            return "SAME", None
        return "VALID", (top, bottom, left, right)

    def _pad(self, x: str, pads: tuple[int, int, int, int], out: str) -> str:
        t, b, l, r = pads
        p = self.const(f"{out}/paddings", np.array([[0, 0], [t, b], [l, r], [0, 0]]), "int32")
        return self.emit("PAD", [x, p], f"{out}/pad", nhwc=True)

    def conv(self, ins: list[str], out: str, a: dict, label: str) -> str:
        x = self.nhwc_of(ins[0])
        w = self.weight(ins[1], f"node {label} (Conv)")
        if w.ndim != 4:
            raise BadModel(f"node {label} (Conv): only 2-D convolutions are supported")
        bias = self.weight(ins[2], f"node {label} (Conv)") if len(ins) > 2 and ins[2] else np.zeros(w.shape[0])
        cout, cin_g, kh, kw = w.shape
        cin = self.g[x].shape[3]
        group = int(a.get("group", 1))
        stride = tuple(a.get("strides", [1, 1]))
        dil = tuple(a.get("dilations", [1, 1]))
        padding, explicit = self._padding(a, self.g[x].shape, (kh, kw), stride, dil, label)
        if explicit is not None:
            x = self._pad(x, explicit, out)
        attrs = {"padding": padding, "stride_h": stride[0], "stride_w": stride[1], "dilation_h_factor": dil[0],
                 "dilation_w_factor": dil[1], "fused_activation_function": "NONE"}
        b = self.const(f"{out}/bias", bias)
        if group == cin and group > 1 and cin_g == 1:
            wt = self.const(f"{out}/weights", w.reshape(cout, kh, kw).transpose(1, 2, 0)[None])
            attrs["depth_multiplier"] = cout // cin
            return self.emit("DEPTHWISE_CONV_2D", [x, wt, b], out, attrs, nhwc=True)
        if cin_g * group != cin:
            raise BadModel(f"node {label} (Conv): {group} groups of depth {cin_g} do not match input depth {cin}")
        wt = self.const(f"{out}/weights", w.transpose(0, 2, 3, 1))
        return self.emit("CONV_2D", [x, wt, b], out, attrs, nhwc=True)

    def batchnorm(self, ins: list[str], out: str, a: dict, label: str) -> str:
        gamma, beta, mean, var = (self.weight(i, f"node {label} (BatchNormalization)") for i in ins[1:5])
        var = var + float(a.get("epsilon", 1e-5))
        if not np.all(var > 0):
            raise BadModel(f"node {label} (BatchNormalization): variance + epsilon is not positive")
        scale = gamma / np.sqrt(var)
        shift = beta - mean * scale
        x = self.names[ins[0]]
        prod = self.g.producers().get(x)
        if prod is not None and prod.op in ("CONV_2D", "DEPTHWISE_CONV_2D") and self.uses[ins[0]] == 1:
            wt, bt = self.g[prod.inputs[1]], self.g[prod.inputs[2]]
            axis = 0 if prod.op == "CONV_2D" else 3
            shape = [1] * 4
            shape[axis] = -1
            wt.data = (wt.data * scale.reshape(shape)).astype(np.float32)
            bt.data = (bt.data * scale + shift).astype(np.float32)
            return x
        x = self.nhwc_of(ins[0]) if len(self.onnx_shape(ins[0])) == 4 else x
        y = self.emit("MUL", [x, self.const(f"{out}/scale", scale)], f"{out}/mul", nhwc=x in self.nhwc)
        return self.emit("ADD", [y, self.const(f"{out}/shift", shift)], out, nhwc=x in self.nhwc)

    def gemm(self, ins: list[str], out: str, a: dict, label: str) -> str:
        w = self.weight(ins[1], f"node {label} (Gemm)") * float(a.get("alpha", 1.0))
        if int(a.get("transA", 0)):
            raise BadModel(f"node {label} (Gemm): transA is not supported")
        w = w if int(a.get("transB", 0)) else w.T
        bias = (self.weight(ins[2], f"node {label} (Gemm)") * float(a.get("beta", 1.0))).reshape(-1) \
            if len(ins) > 2 and ins[2] else np.zeros(w.shape[0])
        if bias.size != w.shape[0]:
            raise BadModel(f"node {label} (Gemm): bias of {bias.size} values for {w.shape[0]} units")
        x = self.plain_of(ins[0])
        return self.emit("FULLY_CONNECTED", [x, self.const(f"{out}/weights", w), self.const(f"{out}/bias", bias)], out,
                         {"fused_activation_function": "NONE", "keep_num_dims": False})

    def matmul(self, ins: list[str], out: str, a: dict, label: str) -> str:
        w = self.weight(ins[1], f"node {label} (MatMul)")
        if w.ndim != 2 or len(self.onnx_shape(ins[0])) != 2:
            raise BadModel(f"node {label} (MatMul): only [N, depth] x constant [depth, units] is supported")
        return self.gemm([ins[0], ins[1]], out, {"transB": 0}, label)

    @staticmethod
    def elementwise(op: str) -> Any:
        def handler(self: _Reader, ins: list[str], out: str, a: dict, label: str) -> str:
            if ins[0] in self.consts and ins[1] in self.consts:
                raise BadModel(f"node {label} ({op}): both operands are constants")
            if op == "ADD" and ins[1] in self.consts and self._bias_into_fc(ins[0], ins[1]):
                return self.names[ins[0]]
            rank = max(len(self.onnx_shape(i)) for i in ins)
            as_nhwc = rank == 4 and any(self.names.get(i) in self.nhwc for i in ins)
            args = []
            for i in ins:
                if i in self.consts:
                    c = self.consts[i].astype(np.float64)
                    if as_nhwc:
                        c = c.reshape((1,) * (4 - c.ndim) + c.shape).transpose(TO_NHWC)
                    args.append(self.const(f"{out}/{len(args)}", c))
                else:
                    args.append(self.nhwc_of(i) if as_nhwc else self.plain_of(i))
            return self.emit(op, args, out, {"fused_activation_function": "NONE"}, nhwc=as_nhwc)
        return handler

    def _bias_into_fc(self, x_value: str, c_value: str) -> bool:
        """MatMul + Add(constant vector) -> the FULLY_CONNECTED's bias."""
        x = self.names[x_value]
        prod = self.g.producers().get(x)
        c = self.consts[c_value].reshape(-1)
        if prod is None or prod.op != "FULLY_CONNECTED" or self.uses[x_value] != 1 or c.size != self.g[x].shape[-1]:
            return False
        bt = self.g[prod.inputs[2]]
        bt.data = (bt.data + c).astype(np.float32)
        return True

    @staticmethod
    def unary(op: str) -> Any:
        def handler(self: _Reader, ins: list[str], out: str, a: dict, label: str) -> str:
            x = self.names[ins[0]]
            attrs = {"alpha": float(a.get("alpha", 0.01))} if op == "LEAKY_RELU" else {}
            return self.emit(op, [x], out, attrs, nhwc=x in self.nhwc)
        return handler

    def clip(self, ins: list[str], out: str, a: dict, label: str) -> str:
        lo = float(self.consts[ins[1]]) if len(ins) > 1 and ins[1] else float(a.get("min", -np.inf))
        hi = float(self.consts[ins[2]]) if len(ins) > 2 and ins[2] else float(a.get("max", np.inf))
        op = {(0.0, 6.0): "RELU6", (0.0, np.inf): "RELU", (-1.0, 1.0): "RELU_N1_TO_1"}.get((lo, hi))
        if op is None:
            raise BadModel(f"node {label} (Clip): only clips to [0, 6], [0, inf) and [-1, 1] are supported")
        return _Reader.unary(op)(self, ins[:1], out, a, label)

    @staticmethod
    def pool(op: str) -> Any:
        def handler(self: _Reader, ins: list[str], out: str, a: dict, label: str) -> str:
            x = self.nhwc_of(ins[0])
            kh, kw = a["kernel_shape"]
            stride = tuple(a.get("strides", [1, 1]))
            if int(a.get("ceil_mode", 0)) or tuple(a.get("dilations", [1, 1])) != (1, 1):
                raise BadModel(f"node {label}: ceil_mode and dilated pooling are not supported")
            padding, explicit = self._padding(a, self.g[x].shape, (kh, kw), stride, (1, 1), label)
            if explicit is not None or (op == "AVERAGE_POOL_2D" and padding == "SAME"
                                        and int(a.get("count_include_pad", 0))):
                raise BadModel(f"node {label}: pooling pads {a.get('pads')} have no TFLite equivalent")
            attrs = {"padding": padding, "stride_h": stride[0], "stride_w": stride[1], "filter_height": kh,
                     "filter_width": kw, "fused_activation_function": "NONE"}
            return self.emit(op, [x], out, attrs, nhwc=True)
        return handler

    def global_pool(self, ins: list[str], out: str, a: dict, label: str) -> str:
        x = self.nhwc_of(ins[0])
        axes = self.const(f"{out}/axes", np.array([1, 2]), "int32")
        return self.emit("MEAN", [x, axes], out, {"keep_dims": True}, nhwc=True)

    def reduce_mean(self, ins: list[str], out: str, a: dict, label: str) -> str:
        axes = a.get("axes") if "axes" in a else (self.consts[ins[1]].tolist() if len(ins) > 1 else None)
        if axes is None or sorted(int(d) % 4 for d in axes) != [2, 3] or len(self.onnx_shape(ins[0])) != 4:
            raise BadModel(f"node {label} (ReduceMean): only the mean over H and W of a 4-D value is supported")
        y = self.global_pool(ins, out if int(a.get("keepdims", 1)) else f"{out}/keep", a, label)
        if int(a.get("keepdims", 1)):
            return y
        return self._reshape_to(y, (1, self.g[y].shape[3]), out)

    def _reshape_to(self, x: str, shape: tuple[int, ...], out: str) -> str:
        s = self.const(f"{out}/shape", np.array(shape), "int32")
        t = self.g.add_tensor(Tensor(name=out, shape=shape, dtype="float32"))
        self.g.nodes.append(Node("RESHAPE", [x, s], [t.name], {"new_shape": list(shape)}, name=t.name))
        return t.name

    def flatten(self, ins: list[str], out: str, a: dict, label: str) -> str:
        shape = self.onnx_shape(ins[0])
        axis = int(a.get("axis", 1)) % max(len(shape), 1)
        target = (int(np.prod(shape[:axis], dtype=np.int64)), int(np.prod(shape[axis:], dtype=np.int64)))
        return self._reshape_to(self._plain_for_reshape(ins[0]), target, out)

    def _plain_for_reshape(self, value: str) -> str:
        """A reshape of an NHWC value: NCHW order first, unless only C is non-trivial (same bytes)."""
        name = self.names[value]
        if name in self.nhwc and self.g[name].shape[1:3] == (1, 1):
            return name
        return self.plain_of(value)

    def reshape(self, ins: list[str], out: str, a: dict, label: str) -> str:
        if ins[1] not in self.consts:
            raise BadModel(f"node {label} (Reshape): the target shape must be computable offline")
        src = self.onnx_shape(ins[0])
        want = [int(d) for d in self.consts[ins[1]].reshape(-1)]
        want = [src[i] if d == 0 and i < len(src) else d for i, d in enumerate(want)]
        if want.count(-1) == 1:
            known = int(np.prod([d for d in want if d != -1], dtype=np.int64))
            want[want.index(-1)] = int(np.prod(src, dtype=np.int64)) // max(known, 1)
        if int(np.prod(want, dtype=np.int64)) != int(np.prod(src, dtype=np.int64)) or min(want, default=1) < 1:
            raise BadModel(f"node {label} (Reshape): cannot reshape {list(src)} to {want}")
        return self._reshape_to(self._plain_for_reshape(ins[0]), tuple(want), out)

    def concat(self, ins: list[str], out: str, a: dict, label: str) -> str:
        rank = len(self.onnx_shape(ins[0]))
        axis = int(a.get("axis", 1)) % rank
        if any(i in self.consts for i in ins):
            raise BadModel(f"node {label} (Concat): constant operands are not supported")
        if rank == 4:
            args = [self.nhwc_of(i) for i in ins]
            return self.emit("CONCATENATION", args, out, {"axis": NCHW_AXIS_IN_NHWC[axis],
                                                          "fused_activation_function": "NONE"}, nhwc=True)
        return self.emit("CONCATENATION", [self.plain_of(i) for i in ins], out,
                         {"axis": axis, "fused_activation_function": "NONE"})

    def softmax(self, ins: list[str], out: str, a: dict, label: str) -> str:
        shape = self.onnx_shape(ins[0])
        if int(a.get("axis", -1)) % len(shape) != len(shape) - 1 or len(shape) == 4:
            raise BadModel(f"node {label} (Softmax): only the last axis of a non-image value is supported")
        return self.emit("SOFTMAX", [self.plain_of(ins[0])], out, {"beta": 1.0})

    def identity(self, ins: list[str], out: str, a: dict, label: str) -> str:
        return self.names[ins[0]]

    def pad(self, ins: list[str], out: str, a: dict, label: str) -> str:
        pads = self.consts[ins[1]].reshape(-1) if len(ins) > 1 and ins[1] in self.consts else a.get("pads")
        value = float(self.consts[ins[2]]) if len(ins) > 2 and ins[2] in self.consts else float(a.get("value", 0.0))
        mode = a.get("mode", b"constant")
        if pads is None or len(pads) != 8 or mode not in (b"constant", "constant") or value != 0.0:
            raise BadModel(f"node {label} (Pad): only constant zero padding of a 4-D value is supported")
        n0, c0, h0, w0, n1, c1, h1, w1 = (int(p) for p in pads)
        if n0 or c0 or n1 or c1 or min(h0, w0, h1, w1) < 0:
            raise BadModel(f"node {label} (Pad): only spatial, non-negative padding is supported")
        return self._pad(self.nhwc_of(ins[0]), (h0, h1, w0, w1), out)


def _gather(r: _Reader, ins: list[str], a: dict) -> np.ndarray:
    return np.take(r.consts[ins[0]], r.consts[ins[1]], axis=int(a.get("axis", 0)))


def _axes(r: _Reader, ins: list[str], a: dict) -> tuple[int, ...] | None:
    """The axes of (Un)Squeeze: an attribute before opset 13, an optional input since."""
    if "axes" in a:
        return tuple(int(d) for d in a["axes"])
    return tuple(int(d) for d in r.consts[ins[1]].reshape(-1)) if len(ins) > 1 and ins[1] else None


def _unsqueeze(r: _Reader, ins: list[str], a: dict) -> np.ndarray:
    x = r.consts[ins[0]]
    axes = _axes(r, ins, a) or ()
    for d in sorted(int(d) % (x.ndim + len(axes)) for d in axes):
        x = np.expand_dims(x, d)
    return x


SHAPE_FOLDS = {
    "Gather": _gather, "Unsqueeze": _unsqueeze,
    "Concat": lambda r, ins, a: np.concatenate([np.atleast_1d(r.consts[i]) for i in ins], axis=int(a.get("axis", 0))),
    "Cast": lambda r, ins, a: r.consts[ins[0]],
    "Identity": lambda r, ins, a: r.consts[ins[0]],
    "Squeeze": lambda r, ins, a: np.squeeze(r.consts[ins[0]], axis=_axes(r, ins, a)),
}
HANDLERS: dict[str, Any] = {
    "Conv": _Reader.conv, "BatchNormalization": _Reader.batchnorm, "Gemm": _Reader.gemm, "MatMul": _Reader.matmul,
    "Clip": _Reader.clip, "MaxPool": _Reader.pool("MAX_POOL_2D"), "AveragePool": _Reader.pool("AVERAGE_POOL_2D"),
    "GlobalAveragePool": _Reader.global_pool, "ReduceMean": _Reader.reduce_mean, "Flatten": _Reader.flatten,
    "Reshape": _Reader.reshape, "Concat": _Reader.concat, "Softmax": _Reader.softmax, "Pad": _Reader.pad,
    "Identity": _Reader.identity, "Dropout": _Reader.identity,
    "LeakyRelu": _Reader.unary("LEAKY_RELU"),
    **{k: _Reader.elementwise(v) for k, v in ELEMENTWISE.items()},
    **{k: _Reader.unary(v) for k, v in UNARY.items()},
}
