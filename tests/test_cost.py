"""tinyml.cost: the estimate API on zoo graphs, its fit to QEMU counts, and `analyze --board`."""
from __future__ import annotations

import json
import re
from importlib.resources import files
from pathlib import Path

import pytest

from tinyml import zoo
from tinyml.board import load_board
from tinyml.cli import main
from tinyml.cost import estimate
from tinyml.cost.model import fit_classes, layer_instructions, load_coefficients
from tinyml.ir import Graph
from tinyml.pipeline import compile_model, load_graph, prepared_graph, read_model_bytes
from tinyml.schedule.lifetimes import build_buffers, lower_bound
from tinyml.schedule.memory import plan_memory
from tinyml.schedule.patches import PatchOptions


def graph(name: str) -> Graph:
    return load_graph(read_model_bytes(zoo.path(name)))


def copy(g: Graph) -> Graph:
    return Graph(dict(g.tensors), list(g.nodes), list(g.inputs), list(g.outputs), g.name)


@pytest.mark.parametrize("name", ["ds_cnn_kws", "fc_autoencoder_ad", "micro_speech", "op_concat_channels"])
def test_exact_layer_by_layer_arena_is_the_planners(name: str) -> None:
    g = graph(name)
    c = estimate(g, "stm32f405", "exact", patches="off")
    assert c.arena_bytes == plan_memory(copy(g)).arena_bytes
    assert c.patches is None and c.schedule is not None


def test_exact_auto_is_what_generate_plans() -> None:
    path = zoo.path("mobilenet_v1_025_vww")
    c = estimate(load_graph(read_model_bytes(path)), "stm32f405", "exact")
    compiled = compile_model(path, PatchOptions.parse("auto"))
    assert c.arena_bytes == compiled.plan.arena_bytes
    assert c.patches == compiled.patches.chosen.label
    assert [x.op for x in c.layers] == [n.op for n in compiled.graph.nodes]


def test_a_transformer_is_priced_as_generate_builds_it() -> None:
    """prepared_graph fuses attention as generate does: same layers, same arena."""
    path = zoo.path("vit_attn_16x16")
    g, _ = prepared_graph(read_model_bytes(path), path.stem)
    c = estimate(g, "stm32f405", "exact", patches="off")
    compiled = compile_model(path)
    assert "ATTENTION" in [x.op for x in c.layers]
    assert [x.op for x in c.layers] == [n.op for n in compiled.graph.nodes]
    assert c.arena_bytes == compiled.plan.arena_bytes


def test_a_composite_op_keeps_its_kernels_prices_and_fits_the_rest() -> None:
    """ATTENTION-like classes: "kern/out" takes the fitted kernel's price, "glue" gets its own."""
    samples = {"kern": [({"out": n}, 3.0 * n, 1.0) for n in range(1, 7)],
               "comp": [({"kern/out": a, "glue": b}, 3.0 * a + 5.0 * b, 1.0) for a, b in ((4, 1), (9, 2), (2, 7), (30, 3))]}
    coef = fit_classes(samples, [({"const": 1.0}, 100.0, 1.0)] * 2)
    assert coef["classes"]["comp"] == pytest.approx({"glue": 5.0})
    assert layer_instructions("comp", {"kern/out": 10, "glue": 2}, coef) == pytest.approx(40.0)


def test_estimate_leaves_the_graph_alone() -> None:
    g = graph("resnet8")
    before = [id(n) for n in g.nodes]
    estimate(g, "stm32f405", "exact", patches="off")
    estimate(g, "stm32f405", "fast")
    assert [id(n) for n in g.nodes] == before


@pytest.mark.parametrize("name", ["resnet8", "ds_cnn_kws", "mobilenet_v1_025_person", "io_two_outputs"])
def test_fast_layer_by_layer_arena_is_at_least_the_lower_bound(name: str) -> None:
    g = graph(name)
    fast = estimate(g, "stm32f405", "fast", patches="off")
    assert fast.arena_bytes >= lower_bound(build_buffers(copy(g)), len(g.nodes) + 1)
    assert fast.arena_bytes >= plan_memory(copy(g)).lower_bound


@pytest.mark.parametrize("name", ["mobilenet_v1_025_vww", "mobilenet_v2_035_96"])
def test_fast_patch_rule_lands_near_the_search(name: str) -> None:
    g = graph(name)
    fast, off = estimate(g, "stm32f405", "fast"), estimate(g, "stm32f405", "fast", patches="off")
    exact = estimate(g, "stm32f405", "exact")
    assert fast.patches and exact.patches  # both run a patch stage
    assert fast.arena_bytes < 0.8 * off.arena_bytes
    assert abs(fast.arena_bytes / exact.arena_bytes - 1) < 0.15
    assert fast.instructions_estimate > off.instructions_estimate  # the halo is recomputed


@pytest.mark.parametrize("name", ["resnet8", "fc_autoencoder_ad", "op_add", "mobilenet_v2_035_96"])
def test_flash_covers_the_weights_and_fits_reports_it(name: str) -> None:
    c = estimate(graph(name), "stm32f405")
    assert c.code_estimate_bytes > 0 and c.flash_bytes > c.weights_bytes
    assert c.peak_sram_bytes == c.arena_bytes + c.stack_estimate_bytes
    assert c.fits_flash == (c.flash_bytes <= c.flash_available_bytes)
    d = c.describe()
    assert json.loads(json.dumps(d))["instructions_estimate"] == c.instructions_estimate
    assert len(d["layers"]) == len(c.layers)


def test_bigger_inputs_and_wider_layers_cost_more() -> None:
    small, big = estimate(graph("mobilenet_v2_035_96"), "stm32f405"), estimate(graph("mobilenet_v2_035_144"), "stm32f405")
    assert big.instructions_estimate > 1.5 * small.instructions_estimate
    assert big.macs > small.macs and big.weights_bytes == small.weights_bytes
    coef = load_coefficients()
    for cls, c in coef["classes"].items():
        terms = {k: 100.0 for k in c}
        wider = {k: 200.0 if k != "call" else 100.0 for k in c}
        assert layer_instructions(cls, wider, coef) >= layer_instructions(cls, terms, coef), cls


def test_bad_mode_and_fixed_schedule_in_fast_mode_are_refused() -> None:
    g = graph("op_add")
    with pytest.raises(ValueError):
        estimate(g, "stm32f405", "slow")
    with pytest.raises(ValueError):
        estimate(g, "stm32f405", "fast", patches=PatchOptions.parse("0:2x2"))


def test_coefficients_say_where_they_come_from() -> None:
    coef = load_coefficients()
    assert coef["core"] == load_board(coef["board"]).core
    assert re.match(r"\d{4}-\d\d-\d\d", coef["fitted_utc"])
    assert {"conv_gemm", "dw_3x3_s1", "dw_3x3_s2", "conv_first", "fc_asm", "pool", "copy_strided"} <= set(coef["classes"])


# -- measured in QEMU ---------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("name", ["resnet8", "mobilenet_v1_025_vww", "fc_autoencoder_ad", "mobilenet_v2_035_96", "ds_cnn_kws",
                                  "micro_speech"])
def test_prediction_is_within_the_targets_of_the_measured_count(name: str, tmp_path: Path) -> None:
    from tinyml.sim.qemu import board_runner
    from tinyml.validation import load_inputs

    compiled = compile_model(zoo.path(name), PatchOptions.parse("auto"))
    measured = board_runner("stm32f405", "qemu", compiled, tmp_path).run(load_inputs(compiled.graph, 1, 0))
    g = graph(name)
    fast, exact = estimate(g, "stm32f405", "fast"), estimate(g, "stm32f405", "exact")
    assert abs(fast.instructions_estimate / measured.instructions - 1) <= 0.10
    assert abs(exact.instructions_estimate / measured.instructions - 1) <= 0.05
    assert exact.arena_bytes == compiled.plan.arena_bytes


# -- analyze --board ----------------------------------------------------------------
def small_board(tmp_path: Path, ram_bytes: int) -> Path:
    """stm32f405 with SRAM1+SRAM2 cut to `ram_bytes` in all (SRAM2 to 4 KB)."""
    src = (files("tinyml.boards") / "stm32f405.toml").read_text()
    sram1 = ram_bytes - 0x1000
    for old, new in (("size = 0x1C000", f"size = {sram1:#x}"), ("origin = 0x2001C000", f"origin = {0x20000000 + sram1:#x}"),
                     ("size = 0x4000                # 16 KiB", "size = 0x1000                #")):
        assert old in src
        src = src.replace(old, new)
    out = tmp_path / "tiny.toml"
    out.write_text(src)
    return out


def test_analyze_board_says_it_fits(capsys) -> None:
    assert main(["analyze", str(zoo.path("ds_cnn_kws")), "--no-tflm", "--board", "stm32f405"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "stm32f405 SRAM: arena 8,736 B of 126,944 B available" in out and "does not fit" not in out
    assert "stm32f405 flash:" in out


def test_analyze_board_too_small_exits_2_with_needed_and_available(tmp_path: Path, capsys) -> None:
    board = small_board(tmp_path, 12 * 1024)  # 8,160 B for the arena besides the 4 KB stack and the guard
    model = str(zoo.path("ds_cnn_kws"))
    assert main(["analyze", model, "--no-tflm", "--board", str(board)]) == 2  # auto: no schedule fits either
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "needs 8,736 bytes" in err and "has 8,160 bytes" in err and "no patch schedule fits" in err
    assert main(["analyze", model, "--no-tflm", "--board", str(board), "--patch", "off",
                 "--json", str(tmp_path / "a.json")]) == 2
    assert "needs 8,736 bytes, board has 8,160 bytes" in capsys.readouterr().err
    assert json.loads((tmp_path / "a.json").read_text())["cost"]["fits_sram"] is False


@pytest.mark.slow
def test_analyze_board_that_needs_patches_gets_them_from_auto(tmp_path: Path, capsys) -> None:
    board = small_board(tmp_path, 48 * 1024)  # layer by layer: 55,632 B; patches: 38,784 B
    model = str(zoo.path("mobilenet_v1_025_vww"))
    assert main(["analyze", model, "--no-tflm", "--board", str(board), "--patch", "off"]) == 2
    assert "does not fit" in capsys.readouterr().err
    assert main(["analyze", model, "--no-tflm", "--board", str(board), "--json", "-"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["patches"]["chosen"] and data["cost"]["fits_sram"]
    assert data["arena_bytes"] <= data["cost"]["sram_available_bytes"] < data["patches"]["arena_bytes_layer_by_layer"]


@pytest.mark.slow
def test_analyze_board_below_the_default_schedule_gets_a_budgeted_one(tmp_path: Path, capsys) -> None:
    # MobileNetV2 0.35/96: `--patch auto` alone picks a schedule of ~35.4 KB; a search bounded by
    # 35,000 B (MACs no object) reaches ~34.8 KB: only the board's SRAM as the budget finds it
    model = str(zoo.path("mobilenet_v2_035_96"))
    assert main(["analyze", model, "--no-tflm", "--json", "-"]) == 0
    default = json.loads(capsys.readouterr().out)
    board = small_board(tmp_path, 35_000 + 4096 + 32)  # 35,000 B for the arena besides the stack and the guard
    assert main(["analyze", model, "--no-tflm", "--board", str(board), "--json", "-"]) == 0
    fitted = json.loads(capsys.readouterr().out)
    assert fitted["cost"]["sram_available_bytes"] == 35_000 < default["arena_bytes"]
    assert fitted["cost"]["fits_sram"] and fitted["arena_bytes"] <= 35_000
    assert fitted["patches"]["schedule"] != default["patches"]["schedule"]
