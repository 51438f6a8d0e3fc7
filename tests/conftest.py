"""Shared fixtures: zoo models and TFLite Micro oracles.

Only fixtures live here (nothing autouse, no hooks), so no test changes
behaviour by being collected next to them. Zoo builds are shared between
runs and pytest-xdist workers through the zoo's locked, atomic cache.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def zoo_path() -> Callable[[str], Path]:
    """name -> path of that zoo model's .tflite (built on first use)."""
    from tinyml import zoo

    return zoo.path


@pytest.fixture(scope="session")
def zoo_bytes(zoo_path: Callable[[str], Path]) -> Callable[[str], bytes]:
    """name -> the zoo model's flatbuffer bytes."""
    return lambda name: zoo_path(name).read_bytes()


@pytest.fixture(scope="session")
def tflm(zoo_bytes: Callable[[str], bytes]) -> Callable[[str], object]:
    """name -> a TflmOracle for that zoo model, one per model per session."""
    from tinyml.oracle import TflmOracle

    oracles: dict[str, TflmOracle] = {}

    def get(name: str) -> TflmOracle:
        if name not in oracles:
            oracles[name] = TflmOracle(zoo_bytes(name))
        return oracles[name]

    return get
