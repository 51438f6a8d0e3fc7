"""Comparisons (LESS ... NOT_EQUAL) and SELECT_V2 against TFLite Micro: numpy reference and host C.

Models are written with tinyml/frontend/tflite_writer.py (the converter folds or floats these ops in
small Keras graphs); scales and zero points differ between operands so the rescaling matters, and
the codes are drawn from a narrow range so equal values occur."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tinyml.codegen.emit import generate
from tinyml.errors import BadModel, UnsupportedOps
from tinyml.frontend.tflite_writer import write_tflite
from tinyml.ir import Graph, Node, Quant, Tensor
from tinyml.oracle import TflmOracle
from tinyml.ops.elementwise import COMPARISONS
from tinyml.pipeline import compile_model
from tinyml.reference import reference_outputs
from tinyml.sim.host import HostRunner


def _graph(inputs: dict[str, tuple[tuple[int, ...], str, float, int]]) -> Graph:
    g = Graph(name="cmp")
    for name, (shape, dtype, scale, zp) in inputs.items():
        g.add_tensor(Tensor(name, shape, dtype, Quant([scale], [zp])))
    g.inputs = list(inputs)
    return g


def _check(g: Graph, tmp_path: Path, frames: int = 4) -> None:
    data = write_tflite(g)
    path = tmp_path / "m.tflite"
    path.write_bytes(data)
    c = compile_model(path)
    rng = np.random.default_rng(1)
    batch = []
    for _ in range(frames):
        batch.append([rng.integers(-8, 9, g[i].shape).astype(g[i].np_dtype) for i in c.graph.inputs])
    expected = TflmOracle(data).run_batch(batch)
    flat = np.concatenate([e[0].ravel().astype(np.int64) for e in expected])
    assert len(np.unique(flat)) > 1  # both outcomes (or several selected values) occur
    for e, x in zip(expected, batch):
        assert np.array_equal(e[0], reference_outputs(c.graph, x)[0])
    lib = generate(c.graph, c.plan, tmp_path / "lib")
    got = HostRunner(lib).run(batch).outputs
    assert all(np.array_equal(e[0], o[0].reshape(e[0].shape)) for e, o in zip(expected, got))


@pytest.mark.parametrize("kind", sorted(COMPARISONS))
@pytest.mark.parametrize("shapes", [((2, 3, 4), (2, 3, 4)), ((2, 3, 4), (1, 3, 1))])
def test_comparison_int8_matches_tflm(kind: str, shapes, tmp_path: Path) -> None:
    # b's scale is twice a's: a code of a equals one of b where a - zp_a = 2 (b - zp_b)
    g = _graph({"a": (shapes[0], "int8", 0.05, 4), "b": (shapes[1], "int8", 0.1, 0)})
    g.add_tensor(Tensor("y", shapes[0], "bool"))
    g.nodes.append(Node(kind, ["a", "b"], ["y"]))
    g.outputs = ["y"]
    _check(g, tmp_path)


def test_select_v2_int16_picks_by_an_int8_comparison(tmp_path: Path) -> None:
    g = _graph({"a": ((3, 5), "int8", 0.02, 1), "b": ((3, 5), "int8", 0.02, -1),
                "x": ((3, 5), "int16", 0.001, 0), "z": ((3, 5), "int16", 0.001, 0)})
    g.add_tensor(Tensor("c", (3, 5), "bool"))
    g.add_tensor(Tensor("y", (3, 5), "int16", Quant([0.001], [0])))
    g.nodes += [Node("GREATER", ["a", "b"], ["c"]), Node("SELECT_V2", ["c", "x", "z"], ["y"])]
    g.outputs = ["y"]
    _check(g, tmp_path)


def test_select_v2_broadcasts_all_three(tmp_path: Path) -> None:
    g = _graph({"p": ((2, 1, 4), "int8", 0.02, 0), "q": ((2, 1, 4), "int8", 0.03, 5),
                "x": ((1, 3, 4), "int8", 0.05, 1), "z": ((2, 3, 1), "int8", 0.05, 1)})
    g.add_tensor(Tensor("c", (2, 1, 4), "bool"))
    g.add_tensor(Tensor("y", (2, 3, 4), "int8", Quant([0.05], [1])))
    g.nodes += [Node("LESS_EQUAL", ["p", "q"], ["c"]), Node("SELECT_V2", ["c", "x", "z"], ["y"])]
    g.outputs = ["y"]
    _check(g, tmp_path)


@pytest.mark.parametrize("op", ["LESS", "SELECT"])
def test_what_tflm_refuses_is_refused_by_name(op: str, tmp_path: Path) -> None:
    """LESS on int16 and SELECT (v1): TFLite Micro cannot run them, we name them (int16 GREATER, which it
    answers false whatever the inputs, is refused by the same check)."""
    dtype = "int16" if op == "LESS" else "int8"
    g = _graph({"a": ((4,), dtype, 0.01, 0), "b": ((4,), dtype, 0.01, 0)})
    g.add_tensor(Tensor("c", (4,), "bool"))
    g.nodes.append(Node("GREATER" if op == "SELECT" else "LESS", ["a", "b"], ["c"]))
    out = "c"
    if op == "SELECT":
        g.add_tensor(Tensor("y", (4,), dtype, Quant([0.01], [0])))
        g.nodes.append(Node("SELECT", ["c", "a", "b"], ["y"]))
        out = "y"
    g.outputs = [out]
    path = tmp_path / "m.tflite"
    path.write_bytes(write_tflite(g))
    with pytest.raises(UnsupportedOps) as e:
        compile_model(path)
    assert f"unsupported op {op}" in str(e.value)
    with pytest.raises(BadModel):
        TflmOracle(path.read_bytes()).run_batch([[np.zeros(4, g["a"].np_dtype)] * 2])


@pytest.mark.parametrize("op", ["MAXIMUM", "MINIMUM"])
def test_maximum_minimum_int16_pick_codes(op: str, tmp_path: Path) -> None:
    """TFLite Micro's int16 MAXIMUM/MINIMUM compare raw codes, any scales (no rescaling), with broadcast."""
    g = _graph({"a": ((2, 3, 4), "int16", 0.001, 0), "b": ((1, 3, 1), "int16", 0.002, 0)})
    g.add_tensor(Tensor("y", (2, 3, 4), "int16", Quant([0.001], [0])))
    g.nodes.append(Node(op, ["a", "b"], ["y"]))
    g.outputs = ["y"]
    _check(g, tmp_path)
