"""tinyml search: spaces as data, subnets lowered to the IR and priced by tinyml.cost (docs/search.md)."""
from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest

from tinyml.errors import TinymlError
from tinyml.search.costs import Budget, CostService, price
from tinyml.search.lower import Task, cost_graph, layer_plan
from tinyml.search.space import Arch, load_space, parse_space, shipped_spaces

DATA = Path(__file__).parent / "data"
TINY = DATA / "search_space_tiny.toml"
DIGITS = Task(channels=1, classes=10)


@pytest.fixture(scope="module")
def tiny():
    return load_space(TINY)


def test_space_samples_stay_inside_and_round_trip_through_json(tiny):
    rng = random.Random(3)
    archs = [tiny.sample(rng) for _ in range(50)]
    assert all(tiny.contains(a) for a in archs)
    assert len(set(archs)) > 10
    for a in archs[:10]:
        assert Arch.from_json(json.loads(json.dumps(a.to_json()))) == a
    big, small = tiny.largest((8, 1.0)), tiny.smallest((8, 0.5))
    assert big.depths == (1, 2, 2) and small.depths == (1, 1, 1)
    assert not tiny.contains(Arch(8, 1.0, ((( 7, 1),), ((3, 2),), ((3, 2),))))  # kernel 7 not in stage 0


def test_shipped_spaces_load():
    assert "mcunet" in shipped_spaces()
    s = load_space("mcunet")
    assert len(s.stages) == 5 and 28 in s.resolutions


@pytest.mark.parametrize("text, message", [
    ("resolutions = [8]\n[stem]\nchannels = 8\n", "stage"),
    ("resolutions = [8]\n[stem]\nchannels = 8\n[[stage]]\nchannels = 8\ndepth = [1]\nkernel = [4]\n", "kernel"),
    ("resolutions = [8]\n[stem]\nchannels = 8\n[[stage]]\nchannels = 8\ndepth = [0]\n", "depth"),
    ("resolutions = [8]\nwidth_multipliers = [-1]\n[stem]\nchannels = 8\n[[stage]]\nchannels = 8\ndepth = [1]\n",
     "width"),
    ("resolutions = [8\n", "TOML"),
])
def test_bad_spaces_are_one_line_errors(tmp_path, text, message):
    p = tmp_path / "bad.toml"
    p.write_text(text)
    with pytest.raises(TinymlError, match=message):
        load_space(p)
    with pytest.raises(TinymlError, match="unknown search space"):
        load_space("no-such-space")


def test_width_rounding_follows_the_divisor(tiny):
    assert tiny.channels(16, 0.5) == 8 and tiny.channels(24, 0.5) == 12 and tiny.channels(8, 0.25) == 4
    s = parse_space({"resolutions": [8], "stem": {"channels": 16}, "stage": [{"channels": 32, "depth": 1}]})
    assert s.channels(32, 0.35) == 16 and s.divisor == 8  # 11.2 -> 8 would lose more than 10 %: 16


def test_layer_plan_is_an_inverted_residual_network(tiny):
    a = Arch(8, 1.0, (((3, 1),), ((5, 2), (7, 4)), ((3, 2),)))
    plan = layer_plan(a, tiny, DIGITS)
    names = [s.name for s in plan]
    assert names[:4] == ["stem", "s0b0/dw", "s0b0/project", "s0b0/add"]  # expand 1: no expand conv
    assert "s1b0/add" not in names and "s1b1/add" in names  # stride 2 first block: no residual
    dw = {s.name: s for s in plan if s.kind == "dw"}
    assert (dw["s1b0/dw"].kernel, dw["s1b0/dw"].stride, dw["s1b0/dw"].cin) == (5, 2, 16)
    assert (dw["s1b1/dw"].kernel, dw["s1b1/dw"].cin) == (7, 64)
    assert plan[-1].kind == "fc" and plan[-1].cout == 10


def test_cost_graph_is_what_the_written_model_reads_back_as(tiny):
    """The graph the search prices equals the .tflite the PTQ pass writes, as every verb loads it."""
    from tinyml.cost import estimate
    from tinyml.frontend.tflite_writer import write_tflite
    from tinyml.pipeline import load_graph

    a = Arch(8, 0.5, (((5, 1),), ((7, 4), (3, 2)), ((5, 4),)))
    g = cost_graph(a, tiny, DIGITS)
    back = load_graph(write_tflite(g))
    assert [n.op for n in back.nodes] == [n.op for n in g.nodes]
    assert [back[n.outputs[0]].shape for n in back.nodes] == [g[n.outputs[0]].shape for n in g.nodes]
    mine, theirs = estimate(g, "stm32f405"), estimate(back, "stm32f405")
    assert (mine.arena_bytes, mine.weights_bytes, mine.instructions_estimate) == \
        (theirs.arena_bytes, theirs.weights_bytes, theirs.instructions_estimate)
    assert all(t.dtype in ("int8", "int32") for t in g.tensors.values())


def test_prices_grow_with_the_subnet_and_budgets_bind(tiny):
    roomy = Budget(128 * 1024, 1024 * 1024)
    small, big = tiny.smallest((8, 0.5)), tiny.largest((8, 1.0))
    cs, cb = price(small, tiny, DIGITS, "stm32f405", roomy), price(big, tiny, DIGITS, "stm32f405", roomy)
    assert cs.macs < cb.macs and cs.flash_bytes < cb.flash_bytes and cs.instructions < cb.instructions
    assert cs.sram_bytes <= cb.sram_bytes and cs.fits(roomy) and cb.fits(roomy)
    tight = Budget(cb.sram_bytes - 1, roomy.flash_bytes)
    assert not price(big, tiny, DIGITS, "stm32f405", tight).fits(tight) or \
        price(big, tiny, DIGITS, "stm32f405", tight).patches is not None  # fits only by running in patches
    assert not cb.fits(Budget(roomy.sram_bytes, cb.flash_bytes - 1))
    assert not cb.fits(Budget(roomy.sram_bytes, roomy.flash_bytes, instructions=cb.instructions - 1))
    exact = price(big, tiny, DIGITS, "stm32f405", roomy, mode="exact")
    assert exact.mode == "exact" and exact.macs == cb.macs


def test_cost_service_on_local_ray_matches_in_process_prices(tiny):
    budget = Budget(64 * 1024, 256 * 1024)
    rng = random.Random(1)
    archs = [tiny.sample(rng) for _ in range(40)]
    svc = CostService(tiny, DIGITS, "stm32f405", budget, batch=8)
    seen = []
    got = svc.costs(archs, progress=lambda done, total: seen.append((done, total)))
    assert got == [price(a, tiny, DIGITS, "stm32f405", budget) for a in archs]
    assert seen and seen[-1][0] == seen[-1][1] == len(set(archs))
    assert svc.costs(archs[:3]) == got[:3]  # cached
    assert np.all(np.array([c.flash_bytes for c in got]) > 3494)
