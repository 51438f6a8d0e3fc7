"""One Ray session per process: a local Ray by default, a running cluster with `--ray-address`.

Candidate pricing and subnet evaluation are Ray tasks; the workers need tinyml
(and, for evaluation, torch) installed where they run.
"""
from __future__ import annotations

import os
from typing import Any

from tinyml.errors import TinymlError


def ray_session(address: str | None = None, num_cpus: int | None = None) -> Any:
    """`ray`, initialised once: connected to `address` ('auto' or host:port) or a local instance."""
    import ray

    if ray.is_initialized():
        return ray
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    # Ray nices its workers (15) so the driver stays responsive; on a shared machine that starves the
    # evaluation the driver waits for (a local run only: a cluster keeps its own settings).
    if not address:
        os.environ.setdefault("RAY_worker_niceness", "0")
    try:
        if address:
            ray.init(address=address, log_to_driver=False)
        else:
            ray.init(num_cpus=num_cpus or os.cpu_count() or 1, include_dashboard=False, log_to_driver=False,
                     configure_logging=False)
    except (ConnectionError, RuntimeError, ValueError) as e:
        raise TinymlError(f"cannot start or reach Ray{' at ' + address if address else ''}: "
                          f"{str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    return ray
