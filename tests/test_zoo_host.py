"""Every zoo model: the generated C, compiled for this PC, equals TFLite Micro bit for bit."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tinyml import zoo
from tinyml.codegen.emit import generate
from tinyml.oracle import TflmOracle, random_inputs
from tinyml.pipeline import compile_model
from tinyml.reference import reference_outputs
from tinyml.schedule.patches import PatchOptions
from tinyml.sim.host import HostRunner
from tinyml.validation import compare, first_divergence

N_INPUTS = 20


def _check(name: str, tmp_path: Path, sanitize: bool, n: int, patches: PatchOptions | None = None) -> None:
    c = compile_model(zoo.path(name), patches)
    inputs = random_inputs(c.graph, n, seed=7)
    expected = TflmOracle(c.model_bytes).run_batch(inputs)
    lib = generate(c.graph, c.plan, tmp_path / "lib")
    got = HostRunner(lib, sanitize=sanitize).run(inputs).outputs
    cmp = compare(expected, got)
    where = first_divergence(c.graph, c.model_bytes, inputs[0]) if not cmp.bit_exact else None
    assert cmp.bit_exact, f"{name}: {cmp.details}; first divergent layer {where}"


@pytest.mark.parametrize("name", zoo.names())
def test_generated_c_matches_tflite_micro(name: str, tmp_path: Path) -> None:
    _check(name, tmp_path, sanitize=False, n=N_INPUTS)


@pytest.mark.parametrize("name", zoo.names())
def test_default_patch_schedule_matches_tflite_micro(name: str, tmp_path: Path) -> None:
    """What the CLI builds by default (`--patch auto`): patch-based wherever it lowers the peak."""
    _check(name, tmp_path, sanitize=False, n=5, patches=PatchOptions("auto"))


@pytest.mark.slow
@pytest.mark.parametrize("name", zoo.names())
def test_generated_c_is_clean_under_sanitizers(name: str, tmp_path: Path) -> None:
    _check(name, tmp_path, sanitize=True, n=3)


@pytest.mark.parametrize("name", zoo.names("mlperf") + zoo.names("io"))
def test_numpy_reference_matches_tflite_micro(name: str) -> None:
    """The project's own oracle agrees with TFLite Micro where both apply."""
    c = compile_model(zoo.path(name))
    inputs = random_inputs(c.graph, 5, seed=3)
    expected = TflmOracle(c.model_bytes).run_batch(inputs)
    for sample, exp in zip(inputs, expected):
        for e, o in zip(exp, reference_outputs(c.graph, sample)):
            np.testing.assert_array_equal(np.asarray(o).reshape(-1), np.asarray(e).reshape(-1))


@pytest.mark.parametrize("name", zoo.names())
def test_arena_never_exceeds_tflite_micro(name: str) -> None:
    c = compile_model(zoo.path(name))
    tflm = TflmOracle(c.model_bytes).arena_bytes()
    assert c.plan.lower_bound <= c.plan.arena_bytes <= tflm
