"""State kept across inferences (issue 19 group 4): resource variables read into state tensors, their
own RAM region, the order that keeps a read before its assignment, tinyml_reset(), and validation of
a whole stream frame after frame against TFLite Micro, on the real streaming wake-word model
(mww_v2_vad_streaming: VAR_HANDLE, READ_VARIABLE, ASSIGN_VARIABLE, CALL_ONCE, two subgraphs)."""
from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest

from tinyml.codegen.emit import generate
from tinyml.errors import UnsupportedOps
from tinyml.frontend.tflite import load_tflite
from tinyml.oracle import TflmOracle, random_inputs
from tinyml.pipeline import compile_model
from tinyml.reference import reference_outputs, reference_sequence
from tinyml.sim.host import CFLAGS, HostRunner, compiler, pack_inputs, unpack_outputs

MWW = Path(__file__).parents[1].parent / "shared" / "models" / "wild" / "mww_v2_vad_streaming.tflite"
FRAMES = 16


@pytest.fixture(scope="module")
def streaming():
    c = compile_model(MWW)
    frames = random_inputs(c.graph, FRAMES, seed=3)
    return c, frames, TflmOracle(c.model_bytes).run_batch(frames)


def test_variables_become_state_outside_the_arena(streaming) -> None:
    c, _, _ = streaming
    states = {t.name: t for t in c.graph.states()}
    # the four ring buffers, initial values from the init subgraph CALL_ONCE runs (all the zero point)
    assert {n: t.shape for n, t in states.items()} == {
        "stream/states": (1, 2, 1, 40), "stream_1/states": (1, 4, 1, 32),
        "stream_2/states": (1, 7, 1, 48), "stream_3/states": (1, 12, 1, 48)}
    assert all(np.all(t.init == -128) for t in states.values())
    assert c.plan.state_bytes == 80 + 128 + 336 + 576
    assert not set(states) & set(c.plan.offsets)
    assert not {"VAR_HANDLE", "CALL_ONCE"} & {n.op for n in c.graph.nodes}


def test_every_read_of_a_variable_runs_before_its_assignment(streaming) -> None:
    c, _, _ = streaming  # after legalization (reads in place) and the planner's reordering
    assert "READ_VARIABLE" not in {n.op for n in c.graph.nodes}  # each read only by a CONCATENATION
    for t in c.graph.states():
        touching = [n.op for n in c.graph.nodes if t.name in n.inputs]
        assert touching == ["CONCATENATION", "ASSIGN_VARIABLE"], (t.name, touching)


@pytest.mark.parametrize("reader_first", [True, False])
def test_a_read_stays_a_copy_when_its_reader_runs_after_the_assignment(reader_first: bool) -> None:
    from tinyml.ir import Graph, Node, Tensor
    from tinyml.passes.variables import read_variables_in_place

    g = Graph(inputs=["x"], outputs=["z", "w"])
    for name in ("x", "y", "z", "w"):
        g.add_tensor(Tensor(name, (1, 4), "int8"))
    g.add_tensor(Tensor("s", (1, 4), "int8", state=True, init=np.zeros((1, 4), np.int8)))
    read, assign = Node("READ_VARIABLE", ["s"], ["y"]), Node("ASSIGN_VARIABLE", ["s", "x"], [])
    use, other = Node("ABS", ["y"], ["z"]), Node("ABS", ["x"], ["w"])
    g.nodes = [read, use, assign, other] if reader_first else [read, other, assign, use]
    read_variables_in_place(g)
    assert (read in g.nodes) != reader_first
    assert use.inputs == (["s"] if reader_first else ["y"])


def test_the_reference_matches_tflm_frame_after_frame(streaming) -> None:
    c, frames, expected = streaming
    got = reference_sequence(c.graph, frames)
    assert all(np.array_equal(e[0], o[0]) for e, o in zip(expected, got))
    # the state matters: frames run each from the initial state give other outputs
    fresh = [reference_outputs(c.graph, x) for x in frames]
    assert any(not np.array_equal(e[0], f[0]) for e, f in zip(expected, fresh))


def test_generated_code_matches_tflm_and_reset_restarts_the_stream(streaming, tmp_path: Path) -> None:
    c, frames, expected = streaming
    lib = generate(c.graph, c.plan, tmp_path / "lib")
    text = (lib.path / "tinyml_model.c").read_text()
    assert "static uint8_t tinyml_state[TINYML_STATE_BYTES]" in text and "memset(" in text
    result = HostRunner(lib).run(frames)
    assert all(np.array_equal(e[0], o[0]) for e, o in zip(expected, result.outputs))
    # a driver that runs the stream, calls tinyml_reset() and runs it again: both halves equal TFLite Micro
    main = tmp_path / "twice.c"
    main.write_text("""#include <stdio.h>
#include "tinyml_model.h"
int main(void) {
    static unsigned char in[64][TINYML_INPUT0_BYTES];
    unsigned n = 0, k, pass;
    while (n < 64 && fread(in[n], 1, TINYML_INPUT0_BYTES, stdin) == TINYML_INPUT0_BYTES) n++;
    tinyml_init();
    for (pass = 0; pass < 2; pass++) {
        for (k = 0; k < n; k++) {
            const void *ins[1] = { in[k] };
            unsigned char out[TINYML_OUTPUT0_BYTES];
            void *outs[1] = { out };
            if (tinyml_invoke(ins, outs) != 0) return 1;
            fwrite(out, 1, TINYML_OUTPUT0_BYTES, stdout);
        }
        tinyml_reset();
    }
    return 0;
}
""")
    exe = tmp_path / "twice"
    subprocess.run([compiler(), *CFLAGS, f"-I{lib.path}", str(main), *map(str, sorted(lib.path.glob("*.c"))),
                    "-o", str(exe)], check=True, capture_output=True)
    out = subprocess.run([str(exe)], input=pack_inputs(lib.inputs, frames), capture_output=True, check=True).stdout
    twice = unpack_outputs(lib.outputs, out, 2 * FRAMES)
    assert all(np.array_equal(e[0], o[0]) for e, o in zip(expected + expected, twice))


def test_an_init_subgraph_that_computes_is_refused_by_name() -> None:
    from test_frontend import edit, opcode_index  # tests/ has no __init__.py

    def computed_init(m, s):
        m.subgraphs[1].operators[1].opcodeIndex = opcode_index(m, s, "ADD")

    with pytest.raises(UnsupportedOps) as e:
        load_tflite(edit(MWW.read_bytes(), computed_init))
    assert "CALL_ONCE (its init subgraph runs ADD)" in str(e.value) and "malformed" not in str(e.value)


# -- SVDF: int8 with int16 (or int8) state, the state a variable tensor the op updates in place ----------

def _svdf_int8_state(data: bytes) -> bytes:
    """The zoo SVDF with an int8 state (zero point 3) and int8 time weights, which TFLite Micro also runs."""
    from test_frontend import edit  # tests/ has no __init__.py

    def narrow(m, s):
        for t in m.subgraphs[0].tensors:
            name, buf = t.name, m.buffers[t.buffer]
            if name == b"svdf/weights_time":
                buf.data = list((np.frombuffer(bytes(buf.data), np.int16) >> 8).astype(np.int8).view(np.uint8))
            if name == b"svdf/bias":
                buf.data = list((np.frombuffer(bytes(buf.data), np.int32) >> 16).astype(np.int32).view(np.uint8))
            if name in (b"svdf/weights_time", b"svdf/state"):
                t.type = s.TensorType.INT8
            if name in (b"svdf/weights_time", b"svdf/state", b"svdf/bias"):
                t.quantization.scale = [t.quantization.scale[0] * (65536 if name == b"svdf/bias" else 256)]
            if name == b"svdf/state":
                t.quantization.zeroPoint = [3]

    return edit(data, narrow)


@pytest.mark.parametrize("variant", ["op_svdf_rank1", "op_svdf_rank2", "int8_state"])
def test_svdf_matches_tflm_frame_after_frame(variant: str, tmp_path: Path) -> None:
    from tinyml import zoo

    data = zoo.path("op_svdf_rank2" if variant == "int8_state" else variant).read_bytes()
    if variant == "int8_state":
        data = _svdf_int8_state(data)
    path = tmp_path / "svdf.tflite"
    path.write_bytes(data)
    c = compile_model(path)
    (node,) = [n for n in c.graph.nodes if n.op == "SVDF"]
    assert c.graph[node.inputs[4]].state and c.plan.state_bytes > 0
    frames = random_inputs(c.graph, FRAMES, seed=5)
    expected = TflmOracle(data).run_batch(frames)
    assert len({e[0].tobytes() for e in expected}) > FRAMES // 2  # not saturated: the outputs vary
    got = reference_sequence(c.graph, frames)
    assert all(np.array_equal(e[0], o[0]) for e, o in zip(expected, got))
    assert any(not np.array_equal(e[0], reference_outputs(c.graph, x)[0]) for e, x in zip(expected, frames))
    lib = generate(c.graph, c.plan, tmp_path / "lib")
    result = HostRunner(lib).run(frames)
    assert all(np.array_equal(e[0], o[0]) for e, o in zip(expected, result.outputs))


def test_first_divergence_replays_the_stream(streaming) -> None:
    """Per-layer comparison at frame k of a stream: both sides replay frames 0..k-1 first."""
    from tinyml.validation import first_divergence

    c, frames, _ = streaming
    assert first_divergence(c.graph, c.model_bytes, frames[9], frames[:9]) is None
    s = c.graph["stream_2/states"]
    saved = s.init
    try:
        s.init = np.full_like(saved, 5)  # our initial state now differs from TFLite Micro's
        found = first_divergence(c.graph, c.model_bytes, frames[0])
    finally:
        s.init = saved
    assert found is not None and found["op"] == "CONCATENATION"


def _no_handle_options(m, s):
    m.subgraphs[0].operators[1].builtinOptions, m.subgraphs[0].operators[1].builtinOptionsType = None, 0


def _init_out_of_range(m, s):
    m.subgraphs[0].operators[0].builtinOptions.initSubgraphIndex = 7


def _assign_other_size(m, s):
    m.subgraphs[0].operators[12].inputs = [26, 35]  # stream/states <- the 5-row concatenation


def _read_without_handle(m, s):
    del m.subgraphs[0].operators[1]


@pytest.mark.parametrize("corrupt, words", [
    (_no_handle_options, "malformed model: operator 1 (VAR_HANDLE) lacks its VarHandleOptions"),
    (_init_out_of_range, "malformed model: operator 0 (CALL_ONCE) runs subgraph 7 of 2"),
    (_assign_other_size, "resource variable stream/states is used with different types or sizes"),
    (_read_without_handle, "unsupported op READ_VARIABLE (of a resource no VAR_HANDLE makes)"),
])
def test_broken_variables_give_one_line(corrupt, words: str) -> None:
    from test_frontend import edit  # tests/ has no __init__.py

    from tinyml.errors import TinymlError

    with pytest.raises(TinymlError) as e:
        load_tflite(edit(MWW.read_bytes(), corrupt))
    assert words in str(e.value) and "\n" not in str(e.value)
