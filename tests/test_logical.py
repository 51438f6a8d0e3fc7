"""LOGICAL_AND/OR/NOT and CAST against TFLite Micro (numpy reference and host C), in the masking
patterns real models use them: comparisons combined, negated and cast back to numbers."""
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


def _run(g: Graph, frames: list[list[np.ndarray]], tmp_path: Path) -> None:
    data = write_tflite(g)
    path = tmp_path / "m.tflite"
    path.write_bytes(data)
    c = compile_model(path)
    expected = TflmOracle(data).run_batch(frames)
    lib = generate(c.graph, c.plan, tmp_path / "lib")
    got = HostRunner(lib).run(frames).outputs
    for k in range(len(g.outputs)):  # every output takes more than one value over the frames
        assert len(np.unique(np.concatenate([e[k].ravel() for e in expected]))) > 1, g.outputs[k]
    for e, x, o in zip(expected, frames, got):
        ref = reference_outputs(c.graph, x)
        for k, want in enumerate(e):
            assert np.array_equal(ref[k], want), ("reference", g.outputs[k])
            assert np.array_equal(o[k].reshape(want.shape), want), ("host C", g.outputs[k])


def _casts(g: Graph, src: str, pairs: list[tuple[str, str]]) -> None:
    for dtype, name in pairs:
        g.add_tensor(Tensor(name, g[src].shape, dtype))
        g.nodes.append(Node("CAST", [src], [name], {"in_data_type": g[src].dtype.upper(),
                                                    "out_data_type": dtype.upper()}))
        g.outputs.append(name)


@pytest.mark.parametrize("op", ["LOGICAL_AND", "LOGICAL_OR"])
def test_masks_combined_negated_and_cast(op: str, tmp_path: Path) -> None:
    g = Graph(name="mask")
    for name, shape, scale, zp in [("a", (2, 3, 4), 0.05, 1), ("b", (2, 3, 4), 0.04, -3), ("p", (1, 3, 1), 0.1, 0),
                                   ("q", (1, 3, 1), 0.1, 2)]:
        g.add_tensor(Tensor(name, shape, "int8", Quant([scale], [zp])))
    for name, shape in [("c1", (2, 3, 4)), ("c2", (1, 3, 1)), ("m", (2, 3, 4)), ("nm", (2, 3, 4))]:
        g.add_tensor(Tensor(name, shape, "bool"))
    g.nodes += [Node("LESS", ["a", "b"], ["c1"]), Node("GREATER_EQUAL", ["p", "q"], ["c2"]),
                Node(op, ["c1", "c2"], ["m"]), Node("LOGICAL_NOT", ["m"], ["nm"])]
    g.inputs, g.outputs = ["a", "b", "p", "q"], ["m"]
    _casts(g, "nm", [("int8", "nm_i8"), ("float32", "nm_f32")])
    rng = np.random.default_rng(4)
    frames = [[rng.integers(-20, 21, g[i].shape).astype(np.int8) for i in g.inputs] for _ in range(3)]
    _run(g, frames, tmp_path)


def test_casts_between_integer_types(tmp_path: Path) -> None:
    g = Graph(name="cast")
    g.add_tensor(Tensor("x8", (3, 7), "int8", Quant([0.1], [0])))
    g.add_tensor(Tensor("x16", (3, 7), "int16", Quant([0.001], [0])))
    g.inputs, g.outputs = ["x8", "x16"], []
    _casts(g, "x8", [("int32", "a"), ("int16", "b"), ("float32", "c"), ("bool", "d")])
    _casts(g, "x16", [("int8", "e"), ("int32", "f"), ("float32", "h"), ("bool", "i")])
    _casts(g, "f", [("int8", "j"), ("int16", "k"), ("bool", "l"), ("float32", "m")])
    rng = np.random.default_rng(5)
    frames = [[rng.integers(-128, 128, (3, 7)).astype(np.int8), rng.integers(-32768, 32768, (3, 7)).astype(np.int16)]
              for _ in range(2)]
    frames[0][1][0, :3] = 0  # zeros for the casts to bool
    frames[0][0][0, :3] = 0
    _run(g, frames, tmp_path)


def test_cast_from_uint8_is_refused_by_name(tmp_path: Path) -> None:
    """TFLite Micro's CAST refuses uint8 in either direction; so do we."""
    g = Graph(name="u8")
    g.add_tensor(Tensor("x", (4,), "uint8", Quant([0.1], [128])))
    g.inputs, g.outputs = ["x"], []
    _casts(g, "x", [("int32", "y")])
    path = tmp_path / "m.tflite"
    path.write_bytes(write_tflite(g))
    with pytest.raises(UnsupportedOps) as e:
        compile_model(path)
    assert "unsupported op CAST (from uint8 to int32" in str(e.value)
