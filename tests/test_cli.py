"""The CLI's conventions: --help everywhere, --json, one-line errors, exit codes 0/1/2."""
from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tinyml import zoo
from tinyml.cli import build_parser, main
from tinyml.commands import validate as validate_cmd
from tinyml.sim.runner import RunResult

VERBS = sorted(build_parser()._subparsers._group_actions[0].choices)  # noqa: SLF001


def test_the_documented_verbs_exist() -> None:
    assert {"analyze", "generate", "validate", "build", "boards", "flash", "bench", "demo"} <= set(VERBS)


@pytest.mark.parametrize("verb", VERBS)
def test_every_verb_has_help(verb: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        main([verb, "--help"])
    assert e.value.code == 0
    assert "usage: tinyml" in capsys.readouterr().out


@pytest.mark.parametrize("verb", ["analyze", "generate", "validate", "build"])
def test_a_missing_model_is_one_line_and_exit_2(verb: str, tmp_path: Path) -> None:
    args = [sys.executable, "-m", "tinyml.cli", verb, str(tmp_path / "nope.tflite")]
    if verb in ("generate", "build"):
        args += ["-o", str(tmp_path / "out")]
    if verb == "build":
        args += ["--board", "stm32f405"]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
    assert not (tmp_path / "out").exists()


def test_validate_host_reports_the_design_fields(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = str(zoo.path("ds_cnn_kws"))
    assert main(["validate", model, "--target", "host", "--inputs", "4", "--json", "-"]) == 0
    report = json.loads(capsys.readouterr().out)
    for key in ("board", "target", "inputs", "bit_exact", "mismatched_outputs", "instructions", "arena_bytes",
                "stack_bytes", "ram_bytes", "flash_bytes", "weights_bytes", "macs"):
        assert key in report, key
    assert report["target"] == "host" and report["inputs"] == 4 and report["bit_exact"] is True
    assert report["instructions"] is None and report["macs"] > 2_000_000


def test_validate_reads_inputs_from_npy(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = str(zoo.path("op_fc"))
    from tinyml.pipeline import compile_model

    g = compile_model(model).graph
    shape = g[g.inputs[0]].shape
    np.save(tmp_path / "x.npy", np.random.default_rng(0).integers(-128, 128, (3, *shape), dtype=np.int8))
    assert main(["validate", model, "--target", "host", "--inputs", str(tmp_path / "x.npy"), "--json", "-"]) == 0
    assert json.loads(capsys.readouterr().out)["inputs"] == 3


def test_validate_exits_1_when_an_output_differs(monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """A target that gets one output byte wrong must fail the check, not pass quietly."""
    real = validate_cmd.make_runner

    class OffByOne:
        def __init__(self, inner):  # noqa: ANN001
            self.inner, self.target = inner, inner.target

        def run(self, inputs):  # noqa: ANN001, ANN202
            r = self.inner.run(inputs)
            first = r.outputs[-1][0].copy()
            first.reshape(-1)[0] ^= 1
            r.outputs[-1][0] = first
            return RunResult(r.outputs)

    monkeypatch.setattr(validate_cmd, "make_runner", lambda *a: (OffByOne(real(*a)[0]), None))
    assert main(["validate", str(zoo.path("op_fc")), "--target", "host", "--inputs", "3", "--json", "-"]) == 1
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    assert report["bit_exact"] is False and report["mismatched_outputs"] == 1
    assert "differ from TFLite Micro" in captured.err


def test_generate_writes_a_library_that_compiles_standalone(tmp_path: Path) -> None:
    out = tmp_path / "lib"
    assert main(["generate", str(zoo.path("io_hostile_names")), "-o", str(out)]) == 0
    names = {p.name for p in out.iterdir()}
    assert {"tinyml_model.c", "tinyml_model.h", "tinyml_weights.c", "tinyml_weights.h"} <= names
    for src in ("tinyml_model.c", "tinyml_weights.c"):
        subprocess.run(["cc", "-std=c99", "-Wall", "-Wextra", "-Werror", "-c", str(out / src),
                        "-o", str(tmp_path / f"{src}.o")], check=True)


def test_outputs_get_the_usual_permissions(tmp_path: Path) -> None:
    """Atomic writes go through mkstemp/mkdtemp (0600/0700); what lands must be shareable as open() makes it."""
    from tinyml.fsutil import atomic_directory, write_text_atomic

    old = os.umask(0o022)
    try:
        f = write_text_atomic(tmp_path / "r.json", "{}")
        with atomic_directory(tmp_path / "lib") as d:
            (d / "x.c").write_text("")
    finally:
        os.umask(old)
    assert stat.S_IMODE(f.stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "lib").stat().st_mode) == 0o755
