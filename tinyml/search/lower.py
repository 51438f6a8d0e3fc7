"""A subnet as tinyml's IR, without TensorFlow: what tinyml.cost prices and what gets quantized.

`layer_plan` spells a subnet out layer by layer (names, shapes, strides); the
supernet exports its weights under the same names. `float_graph` builds the float
IR (TFLite layout: NHWC, OHWI filters, SAME padding, fused RELU6) that
`tinyml.quantize` turns into the delivered int8 model; `cost_graph` runs the same
PTQ pass on random weights with nominal ranges, so the graph the search prices has
the delivered model's ops, shapes, widths and weight bytes.
"""
from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import lru_cache

import numpy as np

from tinyml.frontend.check import inferred_shapes
from tinyml.ir import Graph, Node, Tensor
from tinyml.search.space import Arch, Space


@dataclass(frozen=True)
class LayerSpec:
    name: str
    kind: str  # conv (1x1 or the stem), dw, add, pool, flatten, fc
    cin: int
    cout: int
    kernel: int = 1
    stride: int = 1
    relu6: bool = False
    residual: str = ""  # add: the tensor it adds to the block's output


@dataclass(frozen=True)
class Task:
    """What the network maps: an image of `channels` channels to `classes` scores."""

    channels: int
    classes: int


def layer_plan(arch: Arch, space: Space, task: Task) -> list[LayerSpec]:
    """Every layer of the subnet in execution order, with the names its weights go by."""
    ch = lambda c: space.channels(c, arch.width)  # noqa: E731 (one rounding rule for every layer)
    c = ch(space.stem_channels)
    out = [LayerSpec("stem", "conv", task.channels, c, 3, space.stem_stride, True)]
    for i, (stage, blocks) in enumerate(zip(space.stages, arch.stages)):
        cout = ch(stage.channels)
        for j, (k, e) in enumerate(blocks):
            name, stride, block_in = f"s{i}b{j}", stage.stride if j == 0 else 1, out[-1].name
            hidden = c * e
            if e != 1:
                out.append(LayerSpec(f"{name}/expand", "conv", c, hidden, 1, 1, True))
            out.append(LayerSpec(f"{name}/dw", "dw", hidden, hidden, k, stride, True))
            out.append(LayerSpec(f"{name}/project", "conv", hidden, cout, 1, 1, False))
            if stride == 1 and c == cout:
                out.append(LayerSpec(f"{name}/add", "add", cout, cout, residual=block_in))
            c = cout
    if space.head_channels:
        out.append(LayerSpec("head", "conv", c, ch(space.head_channels), 1, 1, True))
        c = ch(space.head_channels)
    out.append(LayerSpec("pool", "pool", c, c))
    out.append(LayerSpec("flatten", "flatten", c, c))
    out.append(LayerSpec("classifier", "fc", c, task.classes))
    return out


WeightFn = Callable[[LayerSpec], tuple[np.ndarray, np.ndarray]]  # -> (weights in IR layout, bias)


def float_graph(arch: Arch, space: Space, task: Task, weights: WeightFn, name: str = "searched") -> Graph:
    """The subnet as a float32 IR graph (batch 1, NHWC input of arch.resolution)."""
    return plan_graph(layer_plan(arch, space, task), arch.resolution, task, weights, name)


def plan_graph(plan: list[LayerSpec], r: int, task: Task, weights: WeightFn, name: str = "searched") -> Graph:
    """Any layer plan (a subnet's, or a hand-designed baseline's) as a float32 IR graph on r x r inputs."""
    g = Graph(name=name)
    g.add_tensor(Tensor("input", (1, r, r, task.channels), "float32"))
    g.inputs = ["input"]
    x = "input"
    for spec in plan:
        ins: list[str | None] = [x]
        attrs: dict = {}
        if spec.kind in ("conv", "dw", "fc"):
            w, b = weights(spec)
            ins += [_const(g, f"{spec.name}/weights", w), _const(g, f"{spec.name}/bias", b)]
            attrs["fused_activation_function"] = "RELU6" if spec.relu6 else "NONE"
            if spec.kind == "fc":
                attrs["keep_num_dims"] = False
            else:
                attrs.update(padding="SAME", stride_h=spec.stride, stride_w=spec.stride,
                             dilation_h_factor=1, dilation_w_factor=1)
                if spec.kind == "dw":
                    attrs["depth_multiplier"] = 1
        elif spec.kind == "add":
            ins.append(spec.residual)
            attrs["fused_activation_function"] = "NONE"
        elif spec.kind == "pool":
            ins.append(_const(g, "pool/axes", np.array([1, 2], np.int32), "int32"))
            attrs["keep_dims"] = True
        elif spec.kind == "flatten":
            ins.append(_const(g, "flatten/shape", np.array([1, spec.cout], np.int32), "int32"))
            attrs["new_shape"] = [1, spec.cout]
        op = {"conv": "CONV_2D", "dw": "DEPTHWISE_CONV_2D", "fc": "FULLY_CONNECTED", "add": "ADD", "pool": "MEAN",
              "flatten": "RESHAPE"}[spec.kind]
        t = g.add_tensor(Tensor(spec.name, (1,), "float32"))
        n = Node(op, ins, [t.name], attrs, name=spec.name)
        g.nodes.append(n)
        t.shape = inferred_shapes(g, n)[0]
        x = t.name
    g.outputs = [x]
    return g


def weight_shape(spec: LayerSpec) -> tuple[int, ...]:
    """The IR layout: OHWI conv filters, 1HWC depthwise filters, [units, depth] FC weights."""
    if spec.kind == "conv":
        return (spec.cout, spec.kernel, spec.kernel, spec.cin)
    if spec.kind == "dw":
        return (1, spec.kernel, spec.kernel, spec.cout)
    return (spec.cout, spec.cin)


def random_weights(seed: int = 0) -> WeightFn:
    """He-scaled random weights: stand-ins with the real shapes for pricing a subnet (the same per layer shape)."""
    def fn(spec: LayerSpec) -> tuple[np.ndarray, np.ndarray]:
        return _random_layer(replace(spec, name="", residual=""), seed)
    return fn


@lru_cache(maxsize=8192)
def _random_layer(spec: LayerSpec, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng([seed, zlib.crc32(repr(spec).encode())])
    shape = weight_shape(spec)
    fan_in = int(np.prod(shape[1:])) if spec.kind != "dw" else spec.kernel * spec.kernel
    return rng.standard_normal(shape).astype(np.float32) * np.float32(np.sqrt(2.0 / fan_in)), \
        np.zeros(spec.cout, np.float32)


NOMINAL = {False: (-4.0, 4.0), True: (0.0, 6.0)}  # activation ranges the search prices with (no RELU6, RELU6)


def nominal_ranges(g: Graph) -> dict[str, tuple[float, float]]:
    ranges = {t.name: NOMINAL[False] for t in g.activations()}
    for n in g.nodes:
        ranges[n.outputs[0]] = NOMINAL[n.attrs.get("fused_activation_function") == "RELU6"]
    return ranges


def ptq_cost_graph(plan: list[LayerSpec], r: int, task: Task, seed: int = 0) -> Graph:
    """The PTQ pass on the whole float graph with nominal ranges: what `cost_graph` reproduces layer by layer."""
    from tinyml.quantize.calibrate import Calibration
    from tinyml.quantize.policy import QuantPolicy
    from tinyml.quantize.ptq import quantize_graph

    g = plan_graph(plan, r, task, random_weights(seed))
    ranges = nominal_ranges(g)
    return quantize_graph(g, Calibration(minmax=ranges, ranges=ranges), QuantPolicy(bias_correction=False))


def cost_graph(arch: Arch, space: Space, task: Task, seed: int = 0, weight_bits: int = 8) -> Graph:
    """The integer graph the search prices: the float graph through the PTQ pass, nominal activation ranges,
    every weighted layer's weights at `weight_bits` (8; 4 is the floor `--bits mixed` judges flash by)."""
    return plan_cost_graph(layer_plan(arch, space, task), arch.resolution, task, seed, weight_bits)


def plan_cost_graph(plan: list[LayerSpec], r: int, task: Task, seed: int = 0, weight_bits: int = 8) -> Graph:
    """`ptq_cost_graph`, fast: each layer's quantized constants come from the PTQ pass run once on that layer
    alone (cached: a search prices the same layers thousands of times), activations get the nominal ranges'
    parameters. Equal to ptq_cost_graph tensor for tensor (tested)."""
    from tinyml.ir import Quant
    from tinyml.quantize.scales import activation_quant

    g = plan_graph(plan, r, task, random_weights(seed))
    ranges = nominal_ranges(g)
    specs = {s.name: s for s in plan}
    producer = {o: n for n in g.nodes for o in n.outputs}
    for t in list(g.activations()):
        scale, zp = activation_quant(*ranges[t.name], 8)
        t.dtype, t.bits, t.quant = "int8", 8, Quant(scale=[scale], zero_point=[zp])
    for n in g.nodes:
        if n.name in specs and specs[n.name].kind in ("conv", "dw", "fc"):
            x = n.inputs[0]
            relu_in = x in producer and producer[x].attrs.get("fused_activation_function") == "RELU6"
            for name, q in zip(n.inputs[1:3], _quantized_layer(replace(specs[n.name], name="", residual=""),
                                                               relu_in, seed, weight_bits)):
                g.tensors[name] = replace(q, name=name)
    return g


@lru_cache(maxsize=8192)
def _quantized_layer(spec: LayerSpec, relu_in: bool, seed: int, weight_bits: int = 8) -> tuple[Tensor, Tensor]:
    """The PTQ pass on a one-layer graph: (weights, int32 bias) as they come out of the whole graph's."""
    one = LayerSpec("layer", spec.kind, spec.cin, spec.cout, spec.kernel, spec.stride, spec.relu6)
    g = _one_layer_ptq(one, relu_in, seed, weight_bits)
    n = g.nodes[0]
    return g[n.inputs[1]], g[n.inputs[2]]


def _one_layer_ptq(spec: LayerSpec, relu_in: bool, seed: int, weight_bits: int = 8) -> Graph:
    from tinyml.quantize.calibrate import Calibration
    from tinyml.quantize.policy import LayerBits, QuantPolicy
    from tinyml.quantize.ptq import quantize_graph

    g = Graph(name="layer")
    shape = (1, spec.cin) if spec.kind == "fc" else (1, 1, 1, spec.cin)
    g.add_tensor(Tensor("input", shape, "float32"))
    g.inputs = ["input"]
    w, b = _random_layer(replace(spec, name=""), seed)
    attrs = {"fused_activation_function": "RELU6" if spec.relu6 else "NONE"}
    if spec.kind == "fc":
        attrs["keep_num_dims"] = False
    else:
        attrs.update(padding="SAME", stride_h=spec.stride, stride_w=spec.stride, dilation_h_factor=1,
                     dilation_w_factor=1, **({"depth_multiplier": 1} if spec.kind == "dw" else {}))
    op = {"conv": "CONV_2D", "dw": "DEPTHWISE_CONV_2D", "fc": "FULLY_CONNECTED"}[spec.kind]
    out = g.add_tensor(Tensor("output", (1,), "float32"))
    n = Node(op, ["input", _const(g, "w", w), _const(g, "b", b)], ["output"], attrs, name="layer")
    g.nodes.append(n)
    out.shape = inferred_shapes(g, n)[0]
    g.outputs = ["output"]
    ranges = {"input": NOMINAL[relu_in], "output": NOMINAL[spec.relu6]}
    return quantize_graph(g, Calibration(minmax=ranges, ranges=ranges),
                          QuantPolicy(default=LayerBits(weights=weight_bits), bias_correction=False))


def _const(g: Graph, name: str, value: np.ndarray, dtype: str = "float32") -> str:
    return g.add_tensor(Tensor(name, value.shape, dtype, data=np.asarray(value, dtype=dtype))).name
