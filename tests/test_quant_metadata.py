"""Quantization metadata as converters in the wild write it: TFLite Micro's verdict is ours.

Each case edits a converted model the way an older converter or a PyTorch exporter
writes it. TFLite Micro (the oracle) either runs the file, and then the generated C
compiled for this PC and the numpy references equal it bit for bit, or it refuses
the file, and then tinyml refuses it too, in one line.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from test_frontend import edit, model
from tinyml.codegen.emit import generate
from tinyml.errors import BadModel, TinymlError
from tinyml.oracle import TflmOracle, random_inputs
from tinyml.pipeline import compile_model
from tinyml.reference import reference_outputs
from tinyml.sim.host import HostRunner


def _ops(m, s, op: str) -> list:
    code = getattr(s.BuiltinOperator, op)
    return [o for o in m.subgraphs[0].operators
            if max(m.operatorCodes[o.opcodeIndex].builtinCode, m.operatorCodes[o.opcodeIndex].deprecatedBuiltinCode) == code]


def _bias_dimension_beyond_rank(m, s) -> None:
    for op in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"):
        for o in _ops(m, s, op):
            m.subgraphs[0].tensors[o.inputs[2]].quantization.quantizedDimension = 3


def _weight_scales(op: str, change):
    def fn(m, s) -> None:
        q = m.subgraphs[0].tensors[_ops(m, s, op)[0].inputs[1]].quantization
        q.scale = change([float(x) for x in q.scale])
    return fn


def _negative_and_tiny(scales: list[float]) -> list[float]:
    return [-scales[0]] + scales[1:-1] + [1e-30]


def _zero_points(op: str, tensor: int, values: list[int]):
    def fn(m, s) -> None:
        m.subgraphs[0].tensors[_ops(m, s, op)[0].inputs[tensor]].quantization.zeroPoint = values
    return fn


CASES = {
    "bias_without_zero_points": ("cnn", _zero_points("CONV_2D", 2, [])),
    "filter_with_one_zero_point": ("cnn", _zero_points("DEPTHWISE_CONV_2D", 1, [0])),
    "filter_without_zero_points": ("cnn", _zero_points("CONV_2D", 1, [])),
    "bias_quantized_dimension_3": ("cnn", _bias_dimension_beyond_rank),
    "conv_scale_negative_and_tiny": ("cnn", _weight_scales("CONV_2D", _negative_and_tiny)),
    "depthwise_scale_negative_and_tiny": ("cnn", _weight_scales("DEPTHWISE_CONV_2D", _negative_and_tiny)),
    "conv_scales_zero": ("cnn", _weight_scales("CONV_2D", lambda v: [0.0] * len(v))),
    "per_tensor_conv_scale_negative": ("cnn_uint8_per_tensor", _weight_scales("CONV_2D", lambda v: [-x for x in v])),
    "per_tensor_fc_scale_negative": ("cnn_uint8_per_tensor",
                                     _weight_scales("FULLY_CONNECTED", lambda v: [-x for x in v])),
}


def _oracle(data: bytes) -> tuple[list, list | None]:
    """Inputs and TFLite Micro's outputs, or None for outputs when it refuses the model."""
    oracle = TflmOracle(data)
    inputs = random_inputs(oracle, 10, seed=5)
    try:
        return inputs, oracle.run_batch(inputs)
    except BadModel:  # TFLite Micro's AllocateTensors (each kernel's Prepare) refused it
        return inputs, None


@pytest.mark.parametrize("case", list(CASES))
def test_we_run_what_tflite_micro_runs_bit_exactly(case: str, tmp_path: Path) -> None:
    base, change = CASES[case]
    data = edit(model(base), change)
    path = tmp_path / "m.tflite"
    path.write_bytes(data)
    inputs, expected = _oracle(data)
    if expected is None:
        with pytest.raises(TinymlError) as e:
            compile_model(path, None)
        assert "\n" not in str(e.value)
        return
    c = compile_model(path, None)
    got = HostRunner(generate(c.graph, c.plan, tmp_path / "lib"), sanitize=False).run(inputs).outputs
    for x, ours, theirs in zip(inputs, got, expected):
        for a, b in zip(ours, theirs):
            np.testing.assert_array_equal(a, b)
        for a, b in zip(reference_outputs(c.graph, x), theirs):
            np.testing.assert_array_equal(a, b)


def test_the_cases_cover_both_verdicts() -> None:
    """Some edits TFLite Micro runs, one it refuses: the test above checks both sides."""
    verdicts = set()
    for base, change in CASES.values():
        verdicts.add("refuses" if _oracle(edit(model(base), change))[1] is None else "runs")
    assert verdicts == {"runs", "refuses"}


@pytest.mark.slow
@pytest.mark.parametrize("case", ["conv_scale_negative_and_tiny", "depthwise_scale_negative_and_tiny"])
def test_dsp_kernels_take_negative_and_zero_multipliers_in_qemu(case: str, tmp_path: Path) -> None:
    """The Cortex-M4 DSP kernels requantize with the same signed multipliers, bit for bit."""
    from tinyml.cli import main

    base, change = CASES[case]
    path = tmp_path / "m.tflite"
    path.write_bytes(edit(model(base), change))
    assert main(["validate", str(path), "--board", "stm32f405", "--inputs", "3"]) == 0
