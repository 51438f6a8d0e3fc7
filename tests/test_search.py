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


def test_supernet_subnets_export_exactly_the_lowered_float_graph(tiny):
    """Weights extracted (BN folded) into lower.float_graph give the supernet's own outputs: SAME padding,
    kernel transforms, sliced channels and residuals all agree with the IR the PTQ pass quantizes."""
    import torch

    from tinyml.quantize.float_ref import run_float
    from tinyml.search.lower import float_graph
    from tinyml.search.supernet import Supernet, to_nhwc

    torch.manual_seed(0)
    net = Supernet(tiny, (8, 1.0), DIGITS)
    x = torch.rand(8, 1, 8, 8)
    net.train()
    for _ in range(3):
        net(x, tiny.sample(random.Random(0), (8, 1.0)))  # BN statistics away from their defaults
    with torch.no_grad():
        for t in net.parameters():
            t.add_(0.05 * torch.randn_like(t))  # kernel transforms away from the identity
    net.eval()
    rng = random.Random(4)
    for a in [tiny.largest((8, 1.0)), tiny.smallest((8, 1.0))] + [tiny.sample(rng, (8, 1.0)) for _ in range(3)]:
        with torch.no_grad():
            ref = net(x, a).numpy()
        w = net.export_weights(a)
        g = float_graph(a, tiny, DIGITS, lambda spec: w[spec.name])
        got = np.concatenate([run_float(g, [to_nhwc(x[i:i + 1])])[0] for i in range(len(x))])
        np.testing.assert_allclose(got, ref, atol=1e-4, rtol=1e-4)


def test_evolution_keeps_to_the_budget_and_climbs_the_score(tiny):
    from tinyml.search.evolve import AccuracyPredictor, Evolution, encode

    roomy = Budget(64 * 1024, 1024 * 1024)
    lo, hi = (price(a, tiny, DIGITS, "stm32f405", roomy).flash_bytes
              for a in (tiny.smallest((8, 1.0)), tiny.largest((8, 1.0))))
    budget = Budget(64 * 1024, (lo + hi) // 2)  # a flash budget between the smallest and largest subnets
    price_fn = lambda archs: [price(a, tiny, DIGITS, "stm32f405", budget) for a in archs]  # noqa: E731
    score = lambda archs: np.array([sum(k * e for s in a.stages for k, e in s) for a in archs], float)  # noqa: E731
    evo = Evolution(tiny, (8, 1.0), budget, price_fn, score, population=16, seed=1)
    ranked, history = evo.run(4)
    assert ranked and all(c.fits(budget) for _, _, c in ranked)
    assert history == sorted(history) and history[-1] >= history[0]
    everything = [tiny.largest((8, 1.0))]
    assert not price_fn(everything)[0].fits(budget)  # the budget binds: the largest subnet is out
    # the predictor learns a simple function of the encoding
    rng = random.Random(2)
    archs = [tiny.sample(rng, (8, 1.0)) for _ in range(60)]
    pred = AccuracyPredictor(tiny, seed=0)
    pred.fit(archs, list(score(archs)))
    assert np.corrcoef(pred.predict(archs), score(archs))[0, 1] > 0.9
    assert encode(archs[0], tiny).shape == encode(archs[1], tiny).shape


def test_state_refuses_other_settings(tmp_path):
    from tinyml.search.state import SearchState

    s = SearchState(tmp_path, {"task": "digits"})
    s.put("family", {"resolution": 8})
    assert SearchState(tmp_path, {"task": "digits"}).get("family") == {"resolution": 8}
    with pytest.raises(TinymlError, match="other settings"):
        SearchState(tmp_path, {"task": "fashion"})
    (tmp_path / "search_state.json").write_text("{")
    with pytest.raises(TinymlError, match="unreadable"):
        SearchState(tmp_path, {"task": "digits"})


@pytest.mark.parametrize("argv, message", [
    (["--task", "nope"], "unknown task"),
    (["--task", "digits", "--space", "nope"], "unknown search space"),
    (["--task", "digits", "--sram-budget", "12Q"], "not a byte count"),
    (["--task", "digits", "--time-budget", "0"], "time budget"),
    (["--task", str(DATA / "missing.npz")], "cannot read"),
])
def test_search_bad_input_is_one_line_exit_2(tmp_path, capsys, argv, message):
    from tinyml.cli import main

    try:
        code = main(["search", "--board", "stm32f405", "-o", str(tmp_path / "out"), *argv])
    except SystemExit as e:  # argparse's own errors
        code = e.code
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err


@pytest.mark.slow
def test_search_digits_end_to_end_in_qemu_and_resumes(tmp_path):
    """CI's small search: digits, the tiny space, a budget that binds; the delivered model is bit-exact in
    QEMU and its measured SRAM and flash are within the budget; a rerun resumes instead of starting over."""
    from tinyml.cli import main

    out = tmp_path / "search"
    argv = ["search", "--task", "digits", "--board", "stm32f405", "--space", str(TINY), "--sram-budget", "16K",
            "--flash-budget", "128K", "--time-budget", "1.5", "--predictor-samples", "24", "-o", str(out),
            "--json", str(tmp_path / "r.json")]
    assert main(argv) == 0
    r = json.loads((tmp_path / "r.json").read_text())
    d = r["delivered"]
    assert d["validation"]["bit_exact"] and d["validation"]["board"] == "stm32f405"
    assert d["validation"]["ram_bytes"] <= 16 * 1024 and d["validation"]["flash_bytes"] <= 128 * 1024
    assert d["int8_test_accuracy"] >= 80.0  # 1.5 minutes on a loaded 2-core machine: 88-95 % seen
    assert (out / "model.tflite").is_file() and (out / "pareto.png").stat().st_size > 10_000
    assert [x["op"] for x in r["layers"]][-1] == "FULLY_CONNECTED"
    # the user's own check, as the report prints it
    assert main(d["command"].split()[1:]) == 0
    # interrupted or not, a rerun with the same settings continues from the state file: nothing retrains
    state = json.loads((out / "search_state.json").read_text())
    assert {"family", "supernet", "samples", "evolution", "finalists", "delivered"} <= set(state["steps"])
    assert main(argv) == 0
    assert json.loads((tmp_path / "r.json").read_text())["delivered"] == d


def test_kws_features_put_a_tone_in_its_mel_band():
    from tinyml.search.kws import RATE, SIZE, log_mel, mel_filters

    fb = mel_filters()
    assert fb.shape == (SIZE, 321) and np.all(fb.sum(axis=1) > 0)
    t = np.arange(RATE) / RATE
    low, high = (log_mel(np.sin(2 * np.pi * f * t).astype(np.float32), fb) for f in (300.0, 3000.0))
    assert low.shape == (SIZE, SIZE)
    assert low.mean(0).argmax() < high.mean(0).argmax()  # the higher tone peaks in a higher band


def test_npz_tasks_load_scaled_and_split(tmp_path):
    from tinyml.search.tasks import load_task

    rng = np.random.default_rng(0)
    x = rng.integers(0, 255, (100, 12, 12)).astype(np.uint8)
    y = rng.integers(0, 3, 100)
    np.savez(tmp_path / "mine.npz", x=x, y=y)
    ds = load_task(str(tmp_path / "mine.npz"))
    assert ds.x_train.shape[1:] == (12, 12, 1) and ds.classes == 3
    assert len(ds.y_train) + len(ds.y_val) + len(ds.y_test) == 100
    assert 0.0 <= ds.x_train.min() and ds.x_train.max() <= 1.0
    np.savez(tmp_path / "bad.npz", x=x[:, :, :5], y=y)
    with pytest.raises(TinymlError, match="square"):
        load_task(str(tmp_path / "bad.npz"))
    np.savez(tmp_path / "bad2.npz", x=x, y=y.astype(np.float32))
    with pytest.raises(TinymlError, match="integer labels"):
        load_task(str(tmp_path / "bad2.npz"))


def test_fast_cost_graph_equals_the_ptq_pass_on_the_whole_graph():
    """cost_graph reuses each layer's quantized constants (cached); the result must be the PTQ pass's own."""
    from tinyml.search.lower import ptq_cost_graph

    space = load_space("mcunet")
    rng = random.Random(7)
    for a in [space.sample(rng) for _ in range(6)]:
        fast, ref = cost_graph(a, space, DIGITS), ptq_cost_graph(layer_plan(a, space, DIGITS), a.resolution, DIGITS)
        assert list(fast.tensors) == list(ref.tensors)
        for name, t in fast.tensors.items():
            r = ref[name]
            assert (t.dtype, t.shape, t.bits) == (r.dtype, r.shape, r.bits), name
            assert (t.data is None and r.data is None) or np.array_equal(t.data, r.data), name
            assert (t.quant is None) == (r.quant is None), name
            if t.quant is not None:
                assert np.array_equal(t.quant.scale, r.quant.scale) and t.quant.axis == r.quant.axis, name
                assert np.array_equal(t.quant.zero_point, r.quant.zero_point), name
