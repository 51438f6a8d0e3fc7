"""`--report FILE.html`: the page loads in a real browser (Debian's Chromium driven by Playwright),
draws what the plan holds, shows the same figures as --json, and keeps untrusted names inert.

Screenshots of each report kind are saved to $TINYML_ARTIFACTS (or pytest's tmp dir); the path is printed.
"""
from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tinyml.cli import main
from tinyml.commands._common import patch_options
from tinyml.html_report.writer import embed_json, render
from tinyml.pipeline import compile_model

CHROMIUM = "/usr/bin/chromium"
# what works in a container without a GPU, a sandbox or a network
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
HTML_HOSTILE = ['</script><img src=x onerror="window.__pwned=1">', "<!--<script>", "<b>bold</b>&amp;", "]]>"]


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    """One headless Chromium for the module (./dev.sh installs it; Playwright cannot download its own here)."""
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).exists(), f"{CHROMIUM} missing: install Debian's chromium (./dev.sh setup)"
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = Path(os.environ["TINYML_ARTIFACTS"]) if os.environ.get("TINYML_ARTIFACTS") else \
        tmp_path_factory.mktemp("report-screenshots")
    d.mkdir(parents=True, exist_ok=True)
    return d


class Page:
    """A loaded report and the console errors it raised."""

    def __init__(self, browser, path: Path):
        self.errors: list[str] = []
        self.requests: list[str] = []
        self.page = browser.new_page(viewport={"width": 1400, "height": 900})
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type in ("error", "warning") else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("request", lambda r: self.requests.append(r.url))
        self.page.goto(path.as_uri())

    def texts(self, selector: str) -> list[str]:
        return self.page.locator(selector).all_text_contents()

    def shot(self, artifacts: Path, name: str) -> Path:
        out = artifacts / f"{name}.png"
        self.page.screenshot(path=str(out), full_page=True)
        print(f"screenshot: {out}")
        return out


def open_report(browser, path: Path) -> Page:
    page = Page(browser, path)
    assert page.errors == []
    assert page.requests == [path.as_uri()], "the report fetched something besides itself"
    return page


def run_verb(tmp_path: Path, argv: list[str], name: str, exit_code: int = 0) -> tuple[dict, Path]:
    html, js = tmp_path / f"{name}.html", tmp_path / f"{name}.json"
    assert main([*argv, "--json", str(js), "--report", str(html)]) == exit_code
    return json.loads(js.read_text()), html


def plan_buffers(path: Path, *flags: str) -> int:
    """Buffers in the plan of this model as the verb compiles it (the timeline draws one rectangle each)."""
    import argparse

    ns = argparse.Namespace(patch="auto", max_overhead=None, sram_budget=None, effort=1.0,
                            input_mode="streamed" if "streamed" in flags else "arena")
    return len(compile_model(path, patch_options(ns)).plan.buffers)


def assert_figures_match(page: Page, data: dict) -> None:
    """Every figure shown with a data-key is the --json value of that key, formatted as the CLI does."""
    keys = page.page.eval_on_selector_all("[data-key]", "els => els.map(e => [e.dataset.key, e.textContent])")
    assert keys
    for key, text in keys:
        v = data[key]
        shown = ({True: "yes", False: "no"}[v] if isinstance(v, bool)
                 else f"{v:.2f}" if isinstance(v, float) else f"{v:,}")
        assert text == shown, key


def column(page: Page, section: str, col: str) -> list[str]:
    """The cells of one column of a section's main table."""
    return page.texts(f"#{section} > .tablewrap tbody td[data-col='{col}']")


def ints(cells: list[str]) -> list[int]:
    return [int(c.replace(",", "")) for c in cells]


# ---- without a browser ------------------------------------------------------------

def test_embedded_json_cannot_close_its_script_element() -> None:
    text = embed_json({"name": "</script><script>alert(1)</script><!-- & -->"})
    assert "<" not in text and ">" not in text and "&" not in text
    assert json.loads(text)["name"] == "</script><script>alert(1)</script><!-- & -->"


def test_the_page_references_nothing_outside_itself() -> None:
    html = render({"title": "<t>", "generator": "g", "sections": [], "kind": "analyze", "result": {},
                   "key_figures": []})
    assert "<title>&lt;t&gt;</title>" in html
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//)""", html)
    assert "default-src 'none'" in html


# ---- in the browser ------------------------------------------------------------

def test_analyze_report_draws_the_plan_and_the_json_figures(browser, artifacts: Path, tmp_path: Path,
                                                             zoo_path: Callable[[str], Path]) -> None:
    model = zoo_path("ds_cnn_kws")
    data, html = run_verb(tmp_path, ["analyze", str(model)], "analyze")
    page = open_report(browser, html)
    assert page.page.locator("#timeline rect.buf").count() == plan_buffers(model)
    assert_figures_match(page, data)
    assert ints(column(page, "costs", "macs")) == [r["macs"] for r in data["layers"]]
    assert ints(column(page, "costs", "live_bytes")) == [r["live_bytes"] for r in data["layers"]]
    # per-layer instructions are tinyml.cost's predictions, and the page says they are
    assert ints(column(page, "costs", "instructions")) == [r["instructions_estimate"] for r in data["layers"]]
    assert "predicted by tinyml.cost" in page.page.locator("#costs").text_content()
    assert column(page, "graph", "op") == [r["op"] for r in data["layers"]]
    assert page.page.locator("#peak").count() == 1
    assert f"arena {data['arena_bytes']:,} B" in page.page.locator("#timeline").text_content()
    page.shot(artifacts, "analyze")


def test_hovering_a_tensor_shows_its_name_bytes_and_lifetime(browser, tmp_path: Path,
                                                             zoo_path: Callable[[str], Path]) -> None:
    _, html = run_verb(tmp_path, ["analyze", str(zoo_path("ds_cnn_kws")), "--no-tflm"], "hover")
    page = open_report(browser, html)
    page.page.mouse.move(0, 0)
    assert page.page.locator("#tip").is_hidden()
    buffers = json.loads(page.page.locator("#report-data").text_content())["model"]["memory"]["buffers"]
    i, b = max(((i, b) for i, b in enumerate(buffers) if b["kind"] == "tensor"), key=lambda x: x[1]["bytes"])
    page.page.locator(f"#timeline rect.buf[data-i='{i}']").hover()
    tip = page.page.locator("#tip")
    assert tip.is_visible()
    assert b["tensors"][0] in tip.text_content()
    assert f"{b['bytes']:,} B" in tip.text_content()
    assert f"live steps {b['first']}-{b['last']}" in tip.text_content()
    page.page.locator("#costs tbody tr").nth(3).hover()
    assert page.page.locator("#step-cursor").get_attribute("data-step") == "3"


def test_clicking_a_column_header_sorts_the_table(browser, tmp_path: Path, zoo_path: Callable[[str], Path]) -> None:
    _, html = run_verb(tmp_path, ["analyze", str(zoo_path("ds_cnn_kws")), "--no-tflm"], "sort")
    page = open_report(browser, html)
    before = ints(column(page, "costs", "macs"))
    assert before != sorted(before, reverse=True)
    header = page.page.locator("#costs th[data-col='macs']")
    header.click()
    assert ints(column(page, "costs", "macs")) == sorted(before, reverse=True)
    assert header.get_attribute("aria-sort") == "descending"
    header.click()
    assert ints(column(page, "costs", "macs")) == sorted(before)
    page.page.locator("#costs th[data-col='index']").click()
    page.page.locator("#costs th[data-col='index']").click()
    assert ints(column(page, "costs", "index")) == list(range(len(before)))


def test_hostile_tensor_names_stay_text_with_patch_stage_and_streamed_input(
        browser, artifacts: Path, tmp_path: Path, zoo_path: Callable[[str], Path]) -> None:
    from tinyml.zoo.convert import rename_tensors

    model = tmp_path / "hostile.tflite"
    model.write_bytes(rename_tensors(zoo_path("io_hostile_names").read_bytes(),
                                     lambda i, old: old + HTML_HOSTILE[i % len(HTML_HOSTILE)]))
    data, html = run_verb(tmp_path, ["analyze", str(model), "--no-tflm", "--input", "streamed"], "hostile")
    page = open_report(browser, html)
    assert page.page.evaluate("window.__pwned") is None
    assert page.page.locator("img, iframe, object, embed, b").count() == 0
    assert page.page.locator("script").count() == 2
    names = json.loads(page.page.locator("#report-data").text_content())["model"]["layers"]
    assert column(page, "costs", "tensor") == [r["tensor"] for r in names]
    assert any("</script>" in r["tensor"] for r in names) and any("\n" in r["tensor"] for r in names)
    assert page.page.locator("#timeline rect.buf").count() == plan_buffers(model, "streamed")
    assert page.page.locator("#timeline rect.stage").count() == len(data["patches"]["stages"]) >= 1
    assert page.page.locator("#timeline rect.streamed").count() == 1
    assert page.page.locator("#graph .badge.patch").count() == sum(1 for r in data["layers"] if r["patch"]) > 0
    reads_input = [r for r in data["layers"] if r["op"] == "READ_WINDOW" and r["inputs"] == [data["inputs"][0]["shape"]]]
    assert page.page.locator("#graph .badge.stream").count() == len(reads_input) > 0
    page.shot(artifacts, "analyze-streamed-hostile")


def test_validate_host_report_shows_bit_exactness_and_tflm(browser, artifacts: Path, tmp_path: Path,
                                                            zoo_path: Callable[[str], Path]) -> None:
    data, html = run_verb(tmp_path, ["validate", str(zoo_path("ds_cnn_kws")), "--target", "host", "--inputs", "3"],
                          "validate-host")
    assert data["bit_exact"] and data["tflm_arena_bytes"] > 0
    page = open_report(browser, html)
    assert page.page.locator("#verdict").text_content() == "bit-exact with TensorFlow Lite Micro over 3 inputs"
    assert f"{data['tflm_arena_bytes']:,} B" in page.page.locator("#validation").text_content()
    assert_figures_match(page, data)
    page.shot(artifacts, "validate-host")


def test_a_mismatch_report_says_so(browser, artifacts: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                   zoo_path: Callable[[str], Path]) -> None:
    """The report is written when validation fails (exit 1), and leads with the mismatch."""
    from tinyml.commands import validate as validate_cmd
    from tinyml.sim.runner import RunResult

    real = validate_cmd.make_runner

    class FlipsOneByte:
        def __init__(self, inner):  # noqa: ANN001
            self.inner, self.target = inner, inner.target

        def run(self, inputs):  # noqa: ANN001, ANN202
            r = self.inner.run(inputs)
            r.outputs[0][0] = r.outputs[0][0].copy()
            r.outputs[0][0].reshape(-1)[0] ^= 1
            return RunResult(r.outputs)

    monkeypatch.setattr(validate_cmd, "make_runner", lambda *a: (FlipsOneByte(real(*a)[0]), None))
    data, html = run_verb(tmp_path, ["validate", str(zoo_path("op_fc")), "--target", "host", "--inputs", "2"],
                          "validate-mismatch", exit_code=1)
    page = open_report(browser, html)
    assert page.page.locator("#verdict.bad").text_content() == "1 of 2 output sets differ from TensorFlow Lite Micro"
    assert data["mismatch_details"][0] in page.page.locator("#validation").text_content()
    page.shot(artifacts, "validate-mismatch")


@pytest.mark.slow
def test_validate_board_report_shows_measured_use_against_the_budgets(browser, artifacts: Path, tmp_path: Path,
                                                                       zoo_path: Callable[[str], Path]) -> None:
    from tinyml.board import load_board

    data, html = run_verb(tmp_path, ["validate", str(zoo_path("ds_cnn_kws")), "--board", "stm32f405",
                                     "--inputs", "2"], "validate-board")
    page = open_report(browser, html)
    assert_figures_match(page, data)
    budget = page.page.locator("#budget").text_content()
    board = load_board("stm32f405")
    assert f"{data['ram_bytes']:,} of {board.ram.size:,} B" in budget
    assert f"{data['flash_bytes']:,} of {board.flash.size:,} B" in budget
    page.shot(artifacts, "validate-board")


@pytest.mark.slow
def test_bench_report_holds_every_run(browser, artifacts: Path, tmp_path: Path) -> None:
    data, html = run_verb(tmp_path, ["bench", "ds_cnn_kws", "op_conv_3to5_s2_same", "--boards", "stm32f405",
                                     "--per-layer", "--inputs", "1"], "bench")
    page = open_report(browser, html)
    assert_figures_match(page, data)
    runs = data["runs"]
    assert column(page, "bench", "model") == [r["model"] for r in runs]
    assert ints(column(page, "bench", "instructions")) == [r["instructions"] for r in runs]
    page.page.locator("#bench > .tablewrap th[data-col='instructions']").click()
    assert ints(column(page, "bench", "instructions")) == sorted((r["instructions"] for r in runs), reverse=True)
    assert page.page.locator("#bench details").count() == len(runs)
    page.shot(artifacts, "bench")


def test_an_unwritable_report_path_is_one_line_and_exit_2(tmp_path: Path, zoo_path: Callable[[str], Path],
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "file").write_text("")
    argv = ["analyze", str(zoo_path("op_relu")), "--no-tflm", "--report", str(tmp_path / "file" / "r.html")]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("tinyml analyze: error: cannot write the report") and "\n" not in err
