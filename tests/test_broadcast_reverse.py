"""BROADCAST_TO and REVERSE_V2 against TFLite Micro (numpy reference and host C), int8 and int16."""
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


def _check(op: str, dtype: str, in_shape, param: list[int], out_shape, tmp_path: Path) -> None:
    g = Graph(name="move")
    g.add_tensor(Tensor("x", in_shape, dtype, Quant([0.01], [0])))
    g.add_tensor(Tensor("p", (len(param),), "int32", data=np.array(param, np.int32)))
    g.add_tensor(Tensor("y", out_shape, dtype, Quant([0.01], [0])))
    g.nodes.append(Node(op, ["x", "p"], ["y"]))
    g.inputs, g.outputs = ["x"], ["y"]
    data = write_tflite(g)
    path = tmp_path / "m.tflite"
    path.write_bytes(data)
    c = compile_model(path)
    info = np.iinfo(dtype)
    x = [np.random.default_rng(2).integers(info.min, info.max + 1, in_shape).astype(dtype)]
    expected = TflmOracle(data).run_batch([x])[0][0]
    assert np.array_equal(reference_outputs(c.graph, x)[0], expected)
    got = HostRunner(generate(c.graph, c.plan, tmp_path / "lib")).run([x]).outputs[0][0]
    assert np.array_equal(got.reshape(expected.shape), expected)


@pytest.mark.parametrize("dtype", ["int8", "int16"])
@pytest.mark.parametrize("case", [((3, 1), [2, 3, 4]), ((1, 4, 1, 2), [3, 4, 5, 2]), ((5,), [2, 1, 5])])
def test_broadcast_to_matches_tflm(dtype: str, case, tmp_path: Path) -> None:
    in_shape, shape = case
    _check("BROADCAST_TO", dtype, in_shape, shape, tuple(shape), tmp_path)


@pytest.mark.parametrize("dtype", ["int8", "int16"])
@pytest.mark.parametrize("case", [((2, 3, 4), [1]), ((2, 3, 4), [-1]), ((6, 5), [0])])
def test_reverse_v2_matches_tflm(dtype: str, case, tmp_path: Path) -> None:
    shape, axes = case
    _check("REVERSE_V2", dtype, shape, axes, shape, tmp_path)


def test_reverse_v2_over_two_axes_is_refused_by_name(tmp_path: Path) -> None:
    """TFLite Micro's REVERSE_V2 fails on more than one axis; we name the op."""
    from tinyml.errors import UnsupportedOps

    with pytest.raises(UnsupportedOps) as e:
        _check("REVERSE_V2", "int8", (2, 3, 4), [0, 2], (2, 3, 4), tmp_path)
    assert "unsupported op REVERSE_V2 (2 axes" in str(e.value)
