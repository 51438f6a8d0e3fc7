"""ELU on int8 against TFLite Micro on all 256 codes (numpy table from libm's expf, and host C)."""
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


@pytest.mark.parametrize("q", [((0.05, 3), (0.04, -30)), ((0.1, -20), (0.1, -100)), ((0.02, 0), (0.015, -60))])
def test_elu_every_code_matches_tflm(q, tmp_path: Path) -> None:
    (si, zi), (so, zo) = q
    g = Graph(name="elu")
    g.add_tensor(Tensor("x", (256,), "int8", Quant([si], [zi])))
    g.add_tensor(Tensor("y", (256,), "int8", Quant([so], [zo])))
    g.nodes.append(Node("ELU", ["x"], ["y"]))
    g.inputs, g.outputs = ["x"], ["y"]
    data = write_tflite(g)
    path = tmp_path / "elu.tflite"
    path.write_bytes(data)
    c = compile_model(path)
    x = [np.arange(-128, 128).astype(np.int8)]
    expected = TflmOracle(data).run_batch([x])[0][0]
    assert len(np.unique(expected)) > 50
    assert np.array_equal(reference_outputs(c.graph, x)[0], expected)
    got = HostRunner(generate(c.graph, c.plan, tmp_path / "lib")).run([x]).outputs[0][0]
    assert np.array_equal(got.reshape(expected.shape), expected)
