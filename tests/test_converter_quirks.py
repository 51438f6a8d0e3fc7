"""Real files as other converters and exporters write them (issue 19's held-out check): each quirk is an
edit of a sample model that TFLite Micro still runs; we must analyze it and match TFLite Micro bit for bit.

Quirks: constants deduplicated into shared buffers, only the deprecated 8-bit opcode field set (old
converters), every activation with its own empty buffer, an extra subgraph nothing calls, quantization
tables holding only min/max, no description/metadata/signatures, shape signatures with a dynamic batch,
high operator versions, per-tensor quantization with a stray quantized_dimension, per-channel tables with
one zero point, the input QUANTIZE removed (int8 in, float out), and one tensor listed twice as an output."""
from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest

from test_frontend import edit
from tinyml.cli import main
from tinyml.oracle import TflmOracle, random_inputs
from tinyml.pipeline import compile_model
from tinyml.reference import reference_sequence

WILD = Path(__file__).parents[1].parent / "shared" / "models" / "wild"


def share_buffers(m, s):
    seen: dict[bytes, int] = {}
    for sg in m.subgraphs:
        for t in sg.tensors:
            b = m.buffers[t.buffer]
            if b.data is not None and len(b.data):
                t.buffer = seen.setdefault(bytes(b.data), t.buffer)


def deprecated_codes_only(m, s):
    for c in m.operatorCodes:
        if c.builtinCode < 127:
            c.deprecatedBuiltinCode, c.builtinCode = c.builtinCode, 0


def own_empty_buffers(m, s):
    for sg in m.subgraphs:
        for t in sg.tensors:
            if t.buffer == 0:
                m.buffers.append(s.BufferT())
                t.buffer = len(m.buffers) - 1


def extra_subgraph(m, s):
    m.subgraphs.append(copy.deepcopy(m.subgraphs[0]))
    m.subgraphs[-1].name = b"unused"


def min_max_only_quantization(m, s):
    for sg in m.subgraphs:
        for t in sg.tensors:
            if t.quantization is None:
                t.quantization = s.QuantizationParametersT()
                t.quantization.min, t.quantization.max = [0.0], [1.0]


def bare_model(m, s):
    m.description, m.metadata, m.signatureDefs = None, None, None


def dynamic_batch_signature(m, s):
    for t in m.subgraphs[0].tensors:
        if t.shape is not None and len(t.shape) and t.shapeSignature is None:
            t.shapeSignature = [-1] + list(t.shape[1:])


def high_op_versions(m, s):
    for c in m.operatorCodes:
        c.version = 7


def stray_quantized_dimension(m, s):
    for t in m.subgraphs[0].tensors:
        if t.quantization is not None and t.quantization.scale is not None and len(t.quantization.scale) == 1:
            t.quantization.quantizedDimension = 3


def one_zero_point_per_channel(m, s):
    for t in m.subgraphs[0].tensors:
        q = t.quantization
        if q is not None and q.scale is not None and len(q.scale) > 1:
            q.zeroPoint = [0]


def int8_input_float_output(m, s):
    sg = m.subgraphs[0]
    first = sg.operators[0]
    code = m.operatorCodes[first.opcodeIndex]
    assert max(code.builtinCode, code.deprecatedBuiltinCode) == s.BuiltinOperator.QUANTIZE
    sg.inputs, sg.operators = [first.outputs[0]], sg.operators[1:]


def output_listed_twice(m, s):
    m.subgraphs[0].outputs = list(m.subgraphs[0].outputs) * 2


QUIRKS = {  # edit -> the sample it applies to
    share_buffers: "mww_v2_vad_streaming", deprecated_codes_only: "mww_v2_vad_streaming",
    own_empty_buffers: "mww_v2_vad_streaming", extra_subgraph: "ambiq_har_conv1d",
    min_max_only_quantization: "mww_v2_vad_streaming", bare_model: "tinymaix_mnist_resnet_q",
    dynamic_batch_signature: "tinymaix_mnist_resnet_q", high_op_versions: "mww_v2_vad_streaming",
    stray_quantized_dimension: "tinymaix_mnist_resnet_q", one_zero_point_per_channel: "tinymaix_mnist_resnet_q",
    int8_input_float_output: "tinyengine_ptq_mnist_lenet-300-100", output_listed_twice: "mww_v2_vad_streaming",
}


@pytest.mark.parametrize("quirk", list(QUIRKS), ids=lambda f: f.__name__)
def test_quirk_runs_bit_exact(quirk, tmp_path: Path) -> None:
    data = edit((WILD / f"{QUIRKS[quirk]}.tflite").read_bytes(), quirk)
    path = tmp_path / "quirk.tflite"
    path.write_bytes(data)
    assert main(["analyze", str(path), "--no-tflm"]) == 0
    c = compile_model(path)
    frames = random_inputs(c.graph, 3, seed=2)
    expected = TflmOracle(data).run_batch(frames)
    got = reference_sequence(c.graph, frames)
    assert len(got[0]) == len(expected[0])
    for e, o in zip(expected, got):
        for a, b in zip(e, o):
            tol = 1e-5 if a.dtype == np.float32 else 0  # the lenet's LOG_SOFTMAX runs in float (docs/ops.md)
            assert np.allclose(a, b, atol=tol, rtol=0) if tol else np.array_equal(a, b)


def test_output_listed_twice_validates_on_host(tmp_path: Path, capsys) -> None:
    """TFLite Micro fills both entries; the generated library does too."""
    path = tmp_path / "twice.tflite"
    path.write_bytes(edit((WILD / "mww_v2_vad_streaming.tflite").read_bytes(), output_listed_twice))
    assert main(["validate", str(path), "--target", "host", "--inputs", "3"]) == 0
    assert "bit-exact" in capsys.readouterr().out
