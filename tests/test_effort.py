"""`--effort`: one factor on the searches' evaluation budgets; plans stay reproducible and never
worse than greedy-by-size at any effort."""
from __future__ import annotations

import math
import subprocess
import sys
from copy import deepcopy

import pytest

from tinyml import zoo
from tinyml.pipeline import load_graph, read_model_bytes
from tinyml.schedule.effort import parse_effort, scaled
from tinyml.schedule.lifetimes import build_buffers
from tinyml.schedule.memory import place_greedy_by_size, plan_memory


@pytest.mark.parametrize("text, value", [("low", 0.25), ("default", 1.0), ("HIGH", 4.0), ("2", 2.0), ("0.5", 0.5)])
def test_levels_and_factors_parse(text: str, value: float) -> None:
    assert parse_effort(text) == value


@pytest.mark.parametrize("text", ["0", "-1", "fast", "nan", "inf", "1e9"])
def test_nonsense_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="effort"):
        parse_effort(text)


def test_budgets_scale_and_never_vanish() -> None:
    assert scaled(400, 4.0) == 1600 and scaled(400, 0.25) == 100 and scaled(3, 0.01) == 1
    assert not math.isnan(parse_effort(1.5))


def test_a_bad_effort_is_exit_2_without_a_traceback(tmp_path) -> None:
    proc = subprocess.run([sys.executable, "-m", "tinyml.cli", "analyze", str(zoo.path("op_fc")), "--no-tflm",
                           "--effort", "forever"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "effort" in proc.stderr and "Traceback" not in proc.stderr


def test_every_effort_is_reproducible_and_no_worse_than_greedy() -> None:
    g = load_graph(read_model_bytes(zoo.path("resnet8")))
    greedy = place_greedy_by_size(build_buffers(deepcopy(g)))
    for effort in (0.25, 1.0, 4.0):
        first, again = plan_memory(deepcopy(g), effort=effort), plan_memory(deepcopy(g), effort=effort)
        assert first.arena_bytes == again.arena_bytes and first.offsets == again.offsets
        assert first.lower_bound <= first.arena_bytes <= greedy
