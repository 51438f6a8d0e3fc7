"""ADD_N on int8 against TFLite Micro (numpy reference and host C), 2 to 4 inputs."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tinyml.codegen.emit import generate
from tinyml.errors import UnsupportedOps
from tinyml.frontend.tflite_writer import write_tflite
from tinyml.ir import Graph, Node, Quant, Tensor
from tinyml.oracle import TflmOracle
from tinyml.pipeline import compile_model
from tinyml.reference import reference_outputs
from tinyml.sim.host import HostRunner


def _model(count: int, q, y_q, shape=(4, 64)) -> bytes:
    g = Graph(name="add_n")
    for k in range(count):
        g.add_tensor(Tensor(f"x{k}", shape, "int8", Quant(*(q[k] if isinstance(q, list) else q))))
    g.add_tensor(Tensor("y", shape, "int8", Quant(*y_q)))
    g.nodes.append(Node("ADD_N", [f"x{k}" for k in range(count)], ["y"]))
    g.inputs, g.outputs = [f"x{k}" for k in range(count)], ["y"]
    return write_tflite(g)


@pytest.mark.parametrize("count,q,y_q", [(3, ([0.05], [3]), ([0.1], [-2])), (2, ([0.02], [-20]), ([0.05], [7])),
                                         (4, ([0.1], [0]), ([0.3], [0]))])
def test_add_n_matches_tflm(count: int, q, y_q, tmp_path: Path) -> None:
    data = _model(count, q, y_q)
    path = tmp_path / "m.tflite"
    path.write_bytes(data)
    c = compile_model(path)
    rng = np.random.default_rng(count)
    frames = [[rng.integers(-128, 128, (4, 64)).astype(np.int8) for _ in range(count)] for _ in range(2)]
    expected = TflmOracle(data).run_batch(frames)
    got = HostRunner(generate(c.graph, c.plan, tmp_path / "lib")).run(frames).outputs
    for e, x, o in zip(expected, frames, got):
        assert np.array_equal(reference_outputs(c.graph, x)[0], e[0])
        assert np.array_equal(o[0].reshape(e[0].shape), e[0])


def test_add_n_with_unlike_inputs_is_refused(tmp_path: Path) -> None:
    """TFLite Micro's Prepare requires one scale and zero point for all inputs."""
    path = tmp_path / "m.tflite"
    path.write_bytes(_model(2, [([0.05], [3]), ([0.05], [4])], ([0.1], [0])))
    with pytest.raises(UnsupportedOps) as e:
        compile_model(path)
    assert "unsupported op ADD_N (inputs with different scales" in str(e.value)
