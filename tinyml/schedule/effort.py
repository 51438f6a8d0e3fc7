"""How hard the compile-time searches try: one factor on all their evaluation budgets.

The memory planner's local search and repack, the node-order search and the
patch search each stop after a fixed number of evaluations (placements,
candidate orders, candidate schedules), never after a wall-clock time, so a
plan is the same on every machine and every run. `--effort` scales those
counts: `default` (1) keeps `analyze` and `generate` within a few seconds on
the models we ship for; `high` (4) and larger numbers search longer and keep
the best result found, which is never worse than the default's first
candidates (greedy-by-size placement, the importer's order).
"""
from __future__ import annotations

LEVELS = {"low": 0.25, "default": 1.0, "high": 4.0}
DEFAULT = LEVELS["default"]
MAX_EFFORT = 1000.0


def parse_effort(text: str | float) -> float:
    """`low`, `default`, `high` or a positive factor; raises ValueError with a one-line reason."""
    if isinstance(text, (int, float)):
        value = float(text)
    elif text.strip().lower() in LEVELS:
        return LEVELS[text.strip().lower()]
    else:
        try:
            value = float(text)
        except ValueError:
            raise ValueError(f"expected low, default, high or an effort factor such as 2, got {text!r}") from None
    if not 0 < value <= MAX_EFFORT:
        raise ValueError(f"effort must be above 0 and at most {MAX_EFFORT:g}, got {text!r}")
    return value


def scaled(budget: int, effort: float) -> int:
    """`budget` evaluations at this effort (at least one)."""
    return max(1, round(budget * effort))
