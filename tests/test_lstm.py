"""UNIDIRECTIONAL_SEQUENCE_LSTM (int8 activations, int16 cell state) against TFLite Micro, stream after stream.

TF's converter segfaults calibrating a Keras LSTM (NOTES.md), so the models are written by hand with
tinyml/frontend/tflite_writer.py: random symmetric int8 gate weights, int32 biases at input x weight
scale, an int8 hidden state and an int16 cell state (power-of-two scale) as variable tensors, in the
layouts and options TFLite Micro runs (batch- and time-major, with and without cell clip)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tinyml.codegen.emit import generate
from tinyml.errors import BadModel, UnsupportedOps
from tinyml.frontend.tflite_writer import write_tflite
from tinyml.ir import Graph, Node, Quant, Tensor
from tinyml.oracle import TflmOracle, random_inputs
from tinyml.pipeline import compile_model
from tinyml.reference import reference_sequence
from tinyml.sim.host import HostRunner

FRAMES = 6


def lstm_model(batch: int, steps: int, n_in: int, n_state: int, time_major: bool = False, cell_clip: float = 0.0,
               seed: int = 0, cell_log2: int = -11, peephole: bool = False, wide: bool = False) -> bytes:
    """One LSTM layer as .tflite bytes (TFLite Micro's standard LSTM: 8 weights, 4 biases, 2 states);
    `wide`: 16x8 mode (int16 activations with zero points 0, int64 biases)."""
    rng = np.random.default_rng(seed)
    g = Graph(name="lstm")
    act, bias_t, codes = ("int16", "int64", 256.0) if wide else ("int8", "int32", 1.0)
    sx, sh = float(rng.uniform(0.015, 0.03)) / codes, float(rng.uniform(0.006, 0.01)) / codes
    x_shape = (steps, batch, n_in) if time_major else (batch, steps, n_in)
    y_shape = (steps, batch, n_state) if time_major else (batch, steps, n_state)
    g.add_tensor(Tensor("x", x_shape, act, Quant([sx], [0 if wide else int(rng.integers(-10, 10))])))
    names: list[str | None] = ["x"]
    for k in range(8):
        depth = n_in if k < 4 else n_state
        sw = float(rng.uniform(0.01, 0.03)) * (1.0 if k < 4 else 2.0)
        w = rng.integers(-127, 128, (n_state, depth)).astype(np.int8)
        names.append(g.add_tensor(Tensor(f"w{k}", (n_state, depth), "int8", Quant([sw], [0]), w)).name)
    for k in range(3):
        names.append(g.add_tensor(Tensor(f"peep{k}", (n_state,), "int16", Quant([2 ** -10], [0]),
                                         rng.integers(-300, 300, n_state).astype(np.int16))).name if peephole else None)
    for k in range(4):
        s_b = sx * g[f"w{k}"].quant.s
        b = rng.integers(-int(0.5 / s_b), int(0.5 / s_b) + 1, n_state).astype(bias_t)
        names.append(g.add_tensor(Tensor(f"b{k}", (n_state,), bias_t, Quant([s_b], [0]), b)).name)
    names += [None, None]  # projection
    h_zp = 0 if wide else int(rng.integers(-20, 20))
    g.add_tensor(Tensor("h", (batch, n_state), act, Quant([sh], [h_zp]), state=True,
                        init=np.full((batch, n_state), h_zp, g["x"].np_dtype)))
    g.add_tensor(Tensor("c", (batch, n_state), "int16", Quant([2.0 ** cell_log2], [0]), state=True,
                        init=np.zeros((batch, n_state), np.int16)))
    names += ["h", "c", None, None, None, None]
    g.add_tensor(Tensor("y", y_shape, act, Quant([sh], [h_zp])))
    g.nodes.append(Node("UNIDIRECTIONAL_SEQUENCE_LSTM", names, ["y"], {
        "fused_activation_function": "TANH", "cell_clip": cell_clip, "proj_clip": 0.0, "time_major": time_major}))
    g.inputs, g.outputs = ["x"], ["y"]
    return write_tflite(g)


CASES = {
    "batch1_steps4": dict(batch=1, steps=4, n_in=8, n_state=6),
    "batch2_steps3_clip": dict(batch=2, steps=3, n_in=5, n_state=7, cell_clip=3.0, seed=1),
    "time_major_b3": dict(batch=3, steps=5, n_in=6, n_state=4, time_major=True, seed=2),
    "time_major_clip_cell2^-13": dict(batch=1, steps=2, n_in=12, n_state=10, time_major=True, cell_clip=1.5,
                                      seed=3, cell_log2=-13),
    "steps1_units16": dict(batch=1, steps=1, n_in=20, n_state=16, seed=4, cell_log2=-10),
    "16x8_batch2_steps4": dict(batch=2, steps=4, n_in=7, n_state=5, seed=6, wide=True),
    "16x8_time_major_clip": dict(batch=1, steps=3, n_in=9, n_state=12, time_major=True, cell_clip=2.5, seed=8,
                                 wide=True),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_lstm_matches_tflm_stream(case: str, tmp_path: Path) -> None:
    data = lstm_model(**CASES[case])
    path = tmp_path / "lstm.tflite"
    path.write_bytes(data)
    c = compile_model(path)
    (node,) = [n for n in c.graph.nodes if n.op == "UNIDIRECTIONAL_SEQUENCE_LSTM"]
    assert c.graph[node.inputs[18]].state and c.graph[node.inputs[19]].state
    frames = random_inputs(c.graph, FRAMES, seed=7)
    expected = TflmOracle(data).run_batch(frames)
    assert len({e[0].tobytes() for e in expected}) == FRAMES  # the state carries over: outputs vary
    assert len(np.unique(np.concatenate([e[0].ravel() for e in expected]))) > 20  # not saturated
    got = reference_sequence(c.graph, frames)
    assert all(np.array_equal(e[0], o[0]) for e, o in zip(expected, got))
    lib = generate(c.graph, c.plan, tmp_path / "lib")
    result = HostRunner(lib).run(frames)
    assert all(np.array_equal(e[0], o[0]) for e, o in zip(expected, result.outputs))


def test_lstm_with_peephole_is_refused_by_name(tmp_path: Path) -> None:
    """TFLite Micro's LSTM kernel refuses peephole (and projection, layer norm, CIFG) tensors; so do we."""
    path = tmp_path / "peephole.tflite"
    path.write_bytes(lstm_model(1, 2, 4, 4, peephole=True))
    with pytest.raises(UnsupportedOps) as e:
        compile_model(path)
    assert "UNIDIRECTIONAL_SEQUENCE_LSTM (has peephole tensors" in str(e.value)
    with pytest.raises(BadModel):
        TflmOracle(path.read_bytes()).run_batch([[np.zeros((1, 2, 4), np.int8)]])


@pytest.mark.slow
def test_lstm_qemu_stream_is_bit_exact(tmp_path: Path, capsys) -> None:
    """Batch 2, time-major, cell clip: the firmware's stream equals TFLite Micro's frame after frame."""
    from tinyml.cli import main

    path = tmp_path / "lstm.tflite"
    path.write_bytes(lstm_model(2, 3, 6, 8, time_major=True, cell_clip=2.0, seed=5))
    assert main(["validate", str(path), "--board", "mps2-an386", "--inputs", "3"]) == 0
    assert "bit-exact" in capsys.readouterr().out
