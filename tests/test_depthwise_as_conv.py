"""A one-channel depthwise convolution with depth multiplier > 1 runs as the CONV_2D it is, bit-exactly.

The models are written as real DEPTHWISE_CONV_2D .tflite files (TFLite Micro
runs them as depthwise); our import turns them into CONV_2D, whose generated
C must give TFLite Micro's bytes on the host (sanitized) and in QEMU (DSP).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tinyml.codegen.emit import generate
from tinyml.frontend.tflite_writer import write_tflite
from tinyml.ir import Graph, Node, Quant, Tensor
from tinyml.oracle import TflmOracle, random_inputs
from tinyml.pipeline import compile_model, load_graph
from tinyml.sim.host import HostRunner
from tinyml.validation import compare

# (input H, W, multiplier, kernel H, W, stride, padding, per-channel): the first is a keyword
# spotting front end (49 frames x 10 MFCCs, 10x8 kernel, stride 2, multiplier 8)
CASES = [(49, 10, 8, 10, 8, 2, "SAME", True), (9, 7, 4, 3, 3, 1, "VALID", False), (8, 8, 3, 3, 3, 2, "SAME", True)]


def depthwise_model(h: int, w: int, m: int, kh: int, kw: int, stride: int, padding: str, per_channel: bool) -> bytes:
    rng = np.random.default_rng(h * 100 + m)
    oh = -(-h // stride) if padding == "SAME" else (h - kh) // stride + 1
    ow = -(-w // stride) if padding == "SAME" else (w - kw) // stride + 1
    g = Graph()
    g.add_tensor(Tensor("x", (1, h, w, 1), "int8", Quant([0.04], [5])))
    g.add_tensor(Tensor("y", (1, oh, ow, m), "int8", Quant([0.09], [-7])))
    scales = rng.uniform(0.002, 0.01, m if per_channel else 1).astype(np.float32)
    wt = rng.integers(-127, 128, (1, kh, kw, m)).astype(np.int8)
    g.add_tensor(Tensor("w", wt.shape, "int8", Quant(scales, np.zeros(scales.size), 3), wt))
    g.add_tensor(Tensor("b", (m,), "int32", None, rng.integers(-3000, 3000, m).astype(np.int32)))
    g.nodes.append(Node("DEPTHWISE_CONV_2D", ["x", "w", "b"], ["y"],
                        dict(padding=padding, stride_h=stride, stride_w=stride, depth_multiplier=m,
                             dilation_h_factor=1, dilation_w_factor=1, fused_activation_function="RELU")))
    g.inputs, g.outputs = ["x"], ["y"]
    return write_tflite(g)


def _bytes_check(data: bytes, runner_for) -> None:  # noqa: ANN001
    inputs = random_inputs(data, 6, seed=5)
    expected = TflmOracle(data).run_batch(inputs)
    cmp = compare(expected, runner_for(data).run(inputs).outputs)
    assert cmp.bit_exact, cmp.details


@pytest.mark.parametrize("case", CASES)
def test_becomes_a_convolution_bit_exact_on_the_host(case: tuple, tmp_path: Path) -> None:
    data = depthwise_model(*case)
    g = load_graph(data)
    assert [n.op for n in g.nodes] == ["CONV_2D"]
    assert g[g.nodes[0].inputs[1]].shape == (case[2], case[3], case[4], 1)

    def host(model: bytes) -> HostRunner:
        c = load_graph(model)
        from tinyml.schedule.memory import plan_memory
        return HostRunner(generate(c, plan_memory(c), tmp_path / "lib"), sanitize=True)

    _bytes_check(data, host)


def test_multichannel_and_dilated_depthwise_stay_depthwise() -> None:
    g = load_graph(depthwise_model(9, 7, 1, 3, 3, 1, "SAME", True))
    assert [n.op for n in g.nodes] == ["DEPTHWISE_CONV_2D"]  # multiplier 1: the per-channel plane kernel


@pytest.mark.slow
def test_keyword_spotting_front_end_in_qemu(tmp_path: Path) -> None:
    """Bit-exact with the DSP kernels on a Cortex-M4, and at most 3.5 instructions per MAC (3.3 measured; 5.9 as a generic depthwise)."""
    from tinyml.ops import get_op
    from tinyml.sim.qemu import board_runner

    path = tmp_path / "kws_front.tflite"
    path.write_bytes(depthwise_model(*CASES[0]))
    c = compile_model(path)
    runner = board_runner("stm32f405", "qemu", c, tmp_path / "fw")
    inputs = random_inputs(c.graph, 3, seed=2)
    result = runner.run(inputs)
    assert compare(TflmOracle(c.model_bytes).run_batch(inputs), result.outputs).bit_exact
    macs = sum(get_op(n.op).macs(c.graph, n) for n in c.graph.nodes)
    assert result.instructions / macs <= 3.5, result.instructions / macs
