"""Attention in blocks of query rows (issue 15 part 3, schedule/attention.py + ops/attention.py):
bit-exact with the layer-by-layer graph (numpy reference, generated C, TFLite Micro) and the
score matrix never whole, so the arena of the zoo's vit_attn_16x16 drops by more than 2x."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tinyml.codegen.emit import generate
from tinyml.oracle import random_inputs
from tinyml.pipeline import compile_model, load_graph
from tinyml.reference import reference_outputs
from tinyml.schedule.attention import fuse_attention
from tinyml.schedule.memory import plan_memory
from tinyml.sim.host import HostRunner


@pytest.mark.parametrize("name, integer_only, block, fused", [
    ("vit_tiny_8x8", False, 8, 1), ("kwt_tiny", False, 4, 2), ("kwt_tiny", True, 5, 2),
    ("vit_attn_16x16", False, 7, 2), ("vit_attn_16x16", True, 65, 2)])
def test_fused_attention_equals_the_layer_by_layer_reference(name: str, integer_only: bool, block: int, fused: int,
                                                             zoo_bytes) -> None:
    data = zoo_bytes(name)
    plain, g = load_graph(data, {} if integer_only else None), load_graph(data, {} if integer_only else None)
    assert fuse_attention(g, block) == fused
    ops = [n.op for n in g.nodes]
    assert "BATCH_MATMUL" not in ops and "TRANSPOSE" not in ops, ops  # heads split and merged by strides
    for x in random_inputs(plain, 3, seed=block):
        assert np.array_equal(reference_outputs(plain, x)[0], reference_outputs(g, x)[0])


def test_block_zero_keeps_layer_by_layer(zoo_bytes) -> None:
    g = load_graph(zoo_bytes("vit_tiny_8x8"))
    assert fuse_attention(g, 0) == 0 and "ATTENTION" not in [n.op for n in g.nodes]


@pytest.mark.parametrize("integer_only, block", [(False, 8), (True, 7)])
def test_fused_attention_c_bit_exact_and_arena_halved(integer_only: bool, block: int, zoo_path, tmp_path: Path) -> None:
    """Generated C (host, sanitizers) equals the oracle (TFLite Micro, or the integer-only numpy
    reference), with at most half the layer-by-layer arena."""
    from tinyml.oracle import model_oracle

    path = zoo_path("vit_attn_16x16")
    layers = compile_model(path, integer_only=integer_only, attention_block=0)
    c = compile_model(path, integer_only=integer_only, attention_block=block)
    assert "ATTENTION" in [n.op for n in c.graph.nodes]
    assert 2 * c.plan.arena_bytes <= layers.plan.arena_bytes, (c.plan.arena_bytes, layers.plan.arena_bytes)
    inputs = random_inputs(c.graph, 3, seed=5)
    want = model_oracle(c.model_bytes, integer_only).run_batch(inputs)
    got = HostRunner(generate(c.graph, c.plan, tmp_path / "lib"), sanitize=True).run(inputs).outputs
    assert all(np.array_equal(np.asarray(a).reshape(-1), np.asarray(b).reshape(-1)) for w, o in zip(want, got)
               for a, b in zip(w, o))


def test_attention_output_takes_the_query_buffer(zoo_path) -> None:
    """Token overwriting: the planner puts each ATTENTION output over its Q (same strides)."""
    c = compile_model(zoo_path("vit_attn_16x16"))
    offsets = c.plan.offsets
    att = [n for n in c.graph.nodes if n.op == "ATTENTION"]
    assert att and all(offsets[n.outputs[0]] == offsets[n.inputs[0]] for n in att)


@pytest.mark.slow
def test_fused_attention_halves_measured_sram_in_qemu(zoo_path, tmp_path: Path) -> None:
    """On a Cortex-M4 in QEMU: bit-exact with TFLite Micro both ways, and the measured arena plus
    stack of the blocked schedule at most half of layer by layer's (measured 10,948 vs 38,308 B)."""
    from tinyml.oracle import TflmOracle
    from tinyml.sim.qemu import board_runner
    from tinyml.validation import compare

    ram = {}
    for block in (0, 8):
        c = compile_model(zoo_path("vit_attn_16x16"), attention_block=block)
        inputs = random_inputs(c.graph, 2, seed=9)
        result = board_runner("mps2-an386", "qemu", c, tmp_path / str(block)).run(inputs)
        assert compare(TflmOracle(c.model_bytes).run_batch(inputs), result.outputs).bit_exact
        ram[block] = c.plan.arena_bytes + result.stack_bytes
    assert 2 * ram[8] <= ram[0], ram


def test_cost_model_prices_attention_as_the_kernels_it_runs(zoo_bytes) -> None:
    """ATTENTION's "<class>/<count>" terms take the softmax and table coefficients and get their own
    for the rest (no BATCH_MATMUL of the zoo runs unfused to fit `matmul` on): the fused layers' estimate
    matches their QEMU counts (benchmarks/results/cost_measurements.json), where the unfitted class alone
    priced them at almost nothing."""
    import json

    from tinyml.cost.model import layer_instructions, layer_terms, load_coefficients

    runs = json.loads((Path(__file__).parents[1] / "benchmarks/results/cost_measurements.json").read_text())["runs"]
    measured = next(r for r in runs if r["model"] == "vit_attn_16x16" and r["schedule"] == "off")
    coef = load_coefficients()
    g = load_graph(zoo_bytes("vit_attn_16x16"))
    fuse_attention(g)
    assert [n.op for n in g.nodes] == measured["ops"]
    per_layer = [layer_instructions(c, t, coef) for c, t in layer_terms(g)]
    att = sum(p for p, n in zip(per_layer, g.nodes) if n.op == "ATTENTION")
    att_measured = sum(m for m, op in zip(measured["per_layer"], measured["ops"]) if op == "ATTENTION")
    assert abs(att / att_measured - 1) < 0.10, (att, att_measured)
    assert att > 0.5 * sum(per_layer)


def test_block_choice_is_the_longest_at_the_smallest_arena(zoo_bytes) -> None:
    """vit_attn_16x16: blocks of 4..32 rows plan the same arena (the peak is elsewhere), whole heads
    (65 rows) a larger one, so the default takes 32 (QEMU: 6.6 M instructions vs 7.4 M at 8)."""
    from tinyml.schedule.attention import choose_block

    g = load_graph(zoo_bytes("vit_attn_16x16"))
    assert choose_block(g) == 32
    arenas = {}
    for block in (8, 32, 65):
        trial = load_graph(zoo_bytes("vit_attn_16x16"))
        fuse_attention(trial, block)
        arenas[block] = plan_memory(trial).arena_bytes
    assert arenas[8] == arenas[32] < arenas[65], arenas
    assert choose_block(load_graph(zoo_bytes("resnet8"))) == 0
