"""The model zoo: every model converts, holds the ops it is meant to exercise,
is int8 where it should be, runs in TFLite Micro, and the benchmark networks
have their published sizes.

Models are parsed here with LiteRT's schema module, and MACs are computed from
tensor shapes in this file, independently of tinyml's frontend and op costs.
"""
from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from tinyml import zoo
from tinyml.oracle import random_inputs
from tinyml.zoo.cache import cache_key

import ai_edge_litert.schema_py_generated as fb  # noqa: E402

OP_NAMES = {v: k for k, v in vars(fb.BuiltinOperator).items() if not k.startswith("_")}
TYPE_NAMES = {v: k.lower() for k, v in vars(fb.TensorType).items() if not k.startswith("_")}

# Published multiply-accumulate counts (MLPerf Tiny / TFLite Micro benchmark tables).
PUBLISHED_MACS = {
    "resnet8": 12.5e6,
    "mobilenet_v1_025_vww": 7.49e6,
    "mobilenet_v1_025_person": 7.16e6,
    "ds_cnn_kws": 2.66e6,
    "fc_autoencoder_ad": 0.26e6,
}
# Ops that compute on int32 shape values when Keras leaves the batch dynamic.
SHAPE_OPS = {"SHAPE", "STRIDED_SLICE", "PACK"}


class Parsed:
    """A zoo model's subgraph 0 as plain Python values."""

    def __init__(self, data: bytes):
        m = fb.ModelT.InitFromObj(fb.Model.GetRootAsModel(data, 0))
        sg = m.subgraphs[0]
        self.tensors = sg.tensors
        self.inputs, self.outputs = list(sg.inputs), list(sg.outputs)
        self.const = {i for i, t in enumerate(sg.tensors)
                      if m.buffers[t.buffer].data is not None and len(m.buffers[t.buffer].data)}
        self.ops = []
        for op in sg.operators:
            code = m.operatorCodes[op.opcodeIndex]
            name = OP_NAMES[max(code.builtinCode, code.deprecatedBuiltinCode)]
            self.ops.append((name, [int(i) for i in op.inputs], [int(o) for o in op.outputs]))

    def shape(self, i: int) -> list[int]:
        return [int(d) for d in self.tensors[i].shape]

    def dtype(self, i: int) -> str:
        return TYPE_NAMES[self.tensors[i].type]

    def macs(self) -> int:
        """Multiply-accumulates of CONV_2D, DEPTHWISE_CONV_2D and FULLY_CONNECTED."""
        total = 0
        for name, ins, outs in self.ops:
            out = int(np.prod(self.shape(outs[0])))
            w = self.shape(ins[1]) if len(ins) > 1 else []
            if name == "CONV_2D":  # filter OHWI: each output sums KH*KW*I products
                total += out * w[1] * w[2] * w[3]
            elif name == "DEPTHWISE_CONV_2D":  # filter 1HWC: KH*KW products per output
                total += out * w[1] * w[2]
            elif name == "FULLY_CONNECTED":  # weights [units, depth]
                total += out * w[1]
        return total


@pytest.fixture(scope="module")
def parsed(zoo_bytes):
    cache: dict[str, Parsed] = {}

    def get(name: str) -> Parsed:
        if name not in cache:
            cache[name] = Parsed(zoo_bytes(name))
        return cache[name]

    return get


ALL = zoo.names()


def test_catalogue_is_grouped_and_names_are_unique() -> None:
    assert len(ALL) == len(set(ALL))
    assert sorted(sum((zoo.names(g) for g in zoo.GROUPS), [])) == sorted(ALL)
    assert set(zoo.names("mlperf")) == set(PUBLISHED_MACS)
    for group in ("ops", "io", "edge", "arch", "transformer"):
        assert zoo.names(group), group
    with pytest.raises(ValueError):
        zoo.names("nonsense")
    with pytest.raises(KeyError):
        zoo.get("nonsense")


@pytest.mark.parametrize("name", ALL)
def test_model_holds_the_ops_it_exercises(name: str, parsed, zoo_path, record_property) -> None:
    data = zoo_path(name).read_bytes()
    assert data[4:8] == b"TFL3"
    ops = [op for op, _, _ in parsed(name).ops]
    record_property("ops", " ".join(dict.fromkeys(ops)))
    missing = zoo.get(name).exercises - set(ops)
    assert not missing, f"{name}: converter did not emit {sorted(missing)} (got {ops})"


@pytest.mark.parametrize("name", ALL)
def test_int8_everywhere_it_should_be(name: str, parsed) -> None:
    spec, p = zoo.get(name), parsed(name)
    io_dtype = {"int8": "int8", "uint8": "uint8", "float32": "float32", "int16": "int16"}[spec.io]
    act = "int16" if spec.group == "int16" else "int8"  # 16x8 mode: int16 activations, int8 weights
    for i in p.inputs + p.outputs:
        assert p.dtype(i) == io_dtype, f"{name}: I/O tensor {i} is {p.dtype(i)}"
    boundary = set(p.inputs) | set(p.outputs)
    # LayerNormalization's mean is negated in float by the converter (DEQUANTIZE -> NEG -> QUANTIZE): exact
    negated = {i for op, ins, outs in p.ops if op == "NEG" for i in ins + outs}
    for op, ins, outs in p.ops:
        for i in [i for i in ins if i >= 0 and i not in p.const] + outs:
            if i in boundary and op in ("QUANTIZE", "DEQUANTIZE"):
                continue  # the float / uint8 side of a boundary conversion
            if i in negated and p.dtype(i) == "float32":
                continue
            if p.tensors[i].isVariable:
                continue  # state kept across inferences has its op's own type (SVDF: int16)
            shape_value = op in SHAPE_OPS or (op == "RESHAPE" and ins[1:2] == [i])
            ok = {act, "int32"} if shape_value else {act}
            assert p.dtype(i) in ok, f"{name}: {op} tensor {i} is {p.dtype(i)}"
        if op in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"):
            w = p.tensors[ins[1]].quantization
            assert p.dtype(ins[1]) == "int8" and set(w.zeroPoint) == {0}
            channels = p.shape(ins[1])[3 if op == "DEPTHWISE_CONV_2D" else 0]
            assert len(w.scale) == (channels if spec.per_channel else 1), f"{name}: {op} scales"
            if len(ins) > 2 and ins[2] >= 0:
                assert p.dtype(ins[2]) == ("int64" if act == "int16" else "int32")


@pytest.mark.parametrize("name", PUBLISHED_MACS)
def test_benchmark_networks_have_published_mac_counts(name: str, parsed, record_property) -> None:
    macs = parsed(name).macs()
    record_property("macs", macs)
    assert macs == pytest.approx(PUBLISHED_MACS[name], rel=0.02)
    assert zoo.get(name).io == "int8"


@pytest.mark.parametrize("name", ALL)
def test_model_runs_in_tflite_micro(name: str, tflm, parsed, record_property) -> None:
    oracle, p = tflm(name), parsed(name)
    usage = oracle.arena_usage()
    record_property("tflm_arena_bytes", usage.total)
    record_property("macs", p.macs())
    activations = [i for i in range(len(p.tensors)) if i not in p.const]
    biggest = max(int(np.prod(p.shape(i))) * (4 if p.dtype(i) in ("float32", "int32") else 1)
                  for i in activations)
    assert usage.total == usage.head + usage.tail and usage.head >= biggest
    outputs = oracle.run(random_inputs(oracle, 1, seed=0)[0])
    assert [(y.dtype.name, list(y.shape)) for y in outputs] == \
        [(p.dtype(i), p.shape(i)) for i in p.outputs]


def test_hostile_names_reach_the_file(parsed) -> None:
    names = [t.name.decode("utf-8") for t in parsed("io_hostile_names").tensors]
    joined = "".join(names)
    for piece in ('"', "\\", "\n", "*/", "??/", "\x00"):
        assert piece in joined, repr(piece)


def test_nchw_model_transposes_at_both_ends(parsed) -> None:
    p = parsed("io_pytorch_nchw")
    assert p.ops[0][0] == "TRANSPOSE" and p.ops[-1][0] == "TRANSPOSE"
    assert p.shape(p.inputs[0]) == [1, 3, 16, 16]


def test_cache_key_follows_what_decides_the_bytes() -> None:
    spec = zoo.get("op_relu")
    assert cache_key(spec) == cache_key(spec)
    assert cache_key(replace(spec, params={**spec.params, "shape": (7, 5, 4)})) != cache_key(spec)
    assert cache_key(replace(spec, io="uint8")) != cache_key(spec)


_BUILD_ONCE = """
import os, sys, time
from pathlib import Path
import tinyml.zoo.convert as convert
from tinyml import zoo

def fake_build(spec):
    with open(os.environ["BUILD_LOG"], "a") as f:
        f.write(f"{os.getpid()}\\n")
    time.sleep(0.5)
    return b"\\0\\0\\0\\0TFL3 fake " + spec.name.encode()

convert.build_tflite = fake_build
sys.stdin.read()  # start together
print(zoo.path("op_relu"))
"""


def test_concurrent_workers_build_a_model_once_and_atomically(tmp_path: Path) -> None:
    env = {**os.environ, "TINYML_ZOO_CACHE": str(tmp_path / "cache"), "BUILD_LOG": str(tmp_path / "log")}
    procs = [subprocess.Popen([sys.executable, "-c", _BUILD_ONCE], env=env, text=True,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE) for _ in range(3)]
    outs = [p.communicate("", timeout=120)[0].strip() for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert len(set(outs)) == 1
    assert Path(outs[0]).read_bytes() == b"\0\0\0\0TFL3 fake op_relu"
    assert len((tmp_path / "log").read_text().split()) == 1  # built by one worker only
    leftovers = [f.name for f in (tmp_path / "cache").iterdir() if f.name.endswith(".tmp")]
    assert leftovers == []
