"""DIV on int8 against TFLite Micro on every pair of int8 codes (numpy reference and host C).

TFLite Micro's DivElementwise shifts past 31 bits for small dividends over large divisors (undefined in
C; its host build shifts by e & 31): every code pair, zero divisors included, covers those cases."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tinyml.codegen.emit import generate
from tinyml.frontend.tflite_writer import write_tflite
from tinyml.ir import Graph, Node, Quant, Tensor
from tinyml.oracle import TflmOracle
from tinyml.pipeline import compile_model
from tinyml.reference import reference_outputs
from tinyml.sim.host import HostRunner

ALL_PAIRS = (np.repeat(np.arange(-128, 128), 256).astype(np.int8), np.tile(np.arange(-128, 128), 256).astype(np.int8))


def _div_model(a_q, b_q, y_q, shapes=((65536,), (65536,)), act: str = "NONE") -> bytes:
    g = Graph(name="div")
    g.add_tensor(Tensor("a", shapes[0], "int8", Quant(*a_q)))
    g.add_tensor(Tensor("b", shapes[1], "int8", Quant(*b_q)))
    out = np.broadcast_shapes(*shapes)
    g.add_tensor(Tensor("y", out, "int8", Quant(*y_q)))
    g.nodes.append(Node("DIV", ["a", "b"], ["y"], {"fused_activation_function": act}))
    g.inputs, g.outputs = ["a", "b"], ["y"]
    return write_tflite(g)


def _check(data: bytes, x: list[np.ndarray], tmp_path: Path) -> None:
    path = tmp_path / "div.tflite"
    path.write_bytes(data)
    c = compile_model(path)
    expected = TflmOracle(data).run_batch([x])[0][0]
    assert len(np.unique(expected)) > 10
    assert np.array_equal(reference_outputs(c.graph, x)[0], expected)
    lib = generate(c.graph, c.plan, tmp_path / "lib")
    assert np.array_equal(HostRunner(lib).run([x]).outputs[0][0].reshape(expected.shape), expected)


@pytest.mark.parametrize("quant", [
    (([0.05], [3]), ([0.04], [-2]), ([0.1], [1]), "NONE"),
    (([0.02], [0]), ([0.1], [10]), ([0.03], [-5]), "RELU"),
    (([0.5], [-10]), ([0.003], [0]), ([2.0], [0]), "NONE"),
    (([0.1], [0]), ([0.001], [0]), ([0.5], [0]), "RELU6"),
])
def test_div_every_code_pair_matches_tflm(quant, tmp_path: Path) -> None:
    a_q, b_q, y_q, act = quant
    _check(_div_model(a_q, b_q, y_q, act=act), list(ALL_PAIRS), tmp_path)


def test_div_broadcasts(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    x = [rng.integers(-128, 128, (2, 3, 8)).astype(np.int8), rng.integers(-128, 128, (1, 3, 1)).astype(np.int8)]
    _check(_div_model(([0.05], [3]), ([0.02], [-7]), ([0.2], [4]), shapes=((2, 3, 8), (1, 3, 1))), x, tmp_path)
