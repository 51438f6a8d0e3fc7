"""Compare a generated model, run on some target, with TFLite Micro.

The comparison is exact (bit for bit). A model that keeps state across
inferences (streaming, recurrent) runs the inputs in order as one stream on
both sides, from its initial state, so frame k's output depends on frames
0..k-1 exactly as on the device. When outputs differ, the numpy
reference and TFLite Micro's per-tensor values locate the first layer where
they part ways, which is where a kernel bug lives.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tinyml.errors import BadModel
from tinyml.ir import Graph
from tinyml.pipeline import Compiled
from tinyml.report import weights_bytes
from tinyml.sim.runner import RunResult


@dataclass
class Comparison:
    samples: int
    mismatched_outputs: int  # (sample, output tensor) pairs that are not identical
    mismatched_elements: int
    max_abs_diff: float
    first_divergence: dict | None = None
    details: list[str] = field(default_factory=list)
    outside_tolerance: int = 0  # differing (sample, output) pairs beyond the output's stated float tolerance

    @property
    def bit_exact(self) -> bool:
        return self.mismatched_outputs == 0

    @property
    def within_tolerance(self) -> bool:
        """Bit-exact, or every difference is on a float output within the tolerance its producer states."""
        return self.outside_tolerance == 0


def load_inputs(g: Graph, spec: str | int | None, seed: int = 0) -> list[list[np.ndarray]]:
    """`spec` is a count (random inputs) or a .npy/.npz file of real inputs."""
    if spec is None or isinstance(spec, int) or str(spec).isdigit():
        from tinyml.oracle import random_inputs

        n = int(spec) if spec is not None else 20
        if n <= 0:
            raise BadModel("--inputs must be a positive count or a .npy/.npz file")
        return random_inputs(g, n, seed)
    return _inputs_from_file(g, Path(str(spec)))


def _inputs_from_file(g: Graph, path: Path) -> list[list[np.ndarray]]:
    try:
        loaded = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise BadModel(f"cannot read inputs from {path}: {e}") from None
    arrays = [loaded[k] for k in loaded.files] if hasattr(loaded, "files") else [loaded]
    if len(arrays) != len(g.inputs):
        raise BadModel(f"{path} holds {len(arrays)} arrays; the model has {len(g.inputs)} inputs")
    per_input = []
    for name, arr in zip(g.inputs, arrays):
        t = g[name]
        if arr.size % t.size:
            raise BadModel(f"{path}: {arr.size} values do not split into inputs of shape {t.shape}")
        per_input.append(arr.reshape((-1, *t.shape)))
    counts = {len(a) for a in per_input}
    if len(counts) != 1:
        raise BadModel(f"{path}: inputs have different sample counts {sorted(counts)}")
    return [[a[k].astype(g[n].np_dtype) for n, a in zip(g.inputs, per_input)] for k in range(counts.pop())]


def output_tolerances(g: Graph) -> list[tuple[float, float] | None]:
    """Per graph output, the (atol, rtol) its producer states (Op.float_tolerance), else None: exact."""
    from tinyml.ops import get_op

    producers = {t: n for n in g.nodes for t in n.outputs}
    return [get_op(producers[o].op).float_tolerance(g, producers[o]) if o in producers else None
            for o in g.outputs]


def compare(expected: list[list[np.ndarray]], got: list[list[np.ndarray]],
            tolerances: list[tuple[float, float] | None] | None = None) -> Comparison:
    bad = elems = outside = 0
    worst = 0.0
    details = []
    for k, (exp_row, got_row) in enumerate(zip(expected, got, strict=True)):
        for i, (e, o) in enumerate(zip(exp_row, got_row, strict=True)):
            e = np.asarray(e).reshape(-1)
            o = np.asarray(o).reshape(-1)
            diff = e != o if e.dtype.kind != "f" else ~((e == o) | (np.isnan(e) & np.isnan(o)))
            if diff.any():
                bad += 1
                elems += int(diff.sum())
                gap = np.abs(e[diff].astype(np.float64) - o[diff].astype(np.float64))
                worst = max(worst, float(np.max(gap)))
                tol = tolerances[i] if tolerances else None
                ok = tol is not None and bool(np.all(gap <= tol[0] + tol[1] * np.abs(e[diff].astype(np.float64))))
                outside += not ok
                if len(details) < 5:
                    details.append(f"sample {k} output {i}: {int(diff.sum())} of {diff.size} elements differ"
                                   + (" (within the stated float tolerance)" if ok else ""))
    return Comparison(len(expected), bad, elems, worst, None, details, outside)


def first_divergence(g: Graph, model_bytes: bytes, sample: list[np.ndarray],
                     before: list[list[np.ndarray]] | None = None) -> dict | None:
    """The first layer whose numpy-reference output differs from TFLite Micro's (None when the
    reference is itself the oracle: a file TFLite Micro cannot run as written).

    `before`: the frames a stateful model ran first (both sides replay them from the initial state).
    """
    from tinyml.frontend import bits_meta
    from tinyml.oracle import TflmOracle
    from tinyml.reference import initial_state, run_reference

    if bits_meta.has_entry(g):
        return None
    state = initial_state(g)
    for frame in before or []:
        run_reference(g, frame, state)
    ours = run_reference(g, sample, state)
    theirs = TflmOracle(model_bytes).tensors(sample, before or [])
    for i, n in enumerate(g.nodes):
        for t in n.outputs:
            if t in theirs and t in ours and not np.array_equal(np.asarray(theirs[t]).reshape(-1),
                                                                   ours[t].reshape(-1)):
                return {"layer": i, "op": n.op, "tensor": t}
    return None


def validation_report(c: Compiled, inputs: list[list[np.ndarray]], result: RunResult,
                      expected: list[list[np.ndarray]], target: str, board: str | None) -> dict:
    """The design.md JSON fields; device-only figures stay None on the host."""
    from tinyml.ops import get_op

    tolerances = output_tolerances(c.graph)
    cmp = compare(expected, result.outputs, tolerances)
    if not cmp.within_tolerance:
        k = next(k for k, (e, o) in enumerate(zip(expected, result.outputs))
                 if not compare([e], [o], tolerances).within_tolerance)
        # a stateful model's frame k depends on frames 0..k-1: both sides replay them
        cmp.first_divergence = first_divergence(c.graph, c.model_bytes, inputs[k],
                                                inputs[:k] if c.graph.states() else None)
        if cmp.first_divergence is not None:
            cmp.first_divergence["sample"] = k
    return {
        "board": board,
        "target": target,
        "inputs": cmp.samples,
        "bit_exact": cmp.bit_exact,
        "within_float_tolerance": cmp.within_tolerance,
        "mismatched_outputs": cmp.mismatched_outputs,
        "mismatched_elements": cmp.mismatched_elements,
        "max_abs_diff": cmp.max_abs_diff,
        "first_divergence": cmp.first_divergence,
        "mismatch_details": cmp.details,
        "instructions": result.instructions,
        "cycles": result.cycles,
        # estimated from the executed instruction mix (sim/cycles.py), not measured
        "cycles_estimated": result.extra.get("cycles_estimated"),
        "ms_estimated": result.extra.get("ms_estimated"),
        "estimate_clock_hz": result.extra.get("estimate_clock_hz"),
        "arena_bytes": c.plan.arena_bytes,
        "state_bytes": c.plan.state_bytes,
        "stack_bytes": result.stack_bytes,
        "ram_bytes": result.extra.get("ram_bytes"),
        "firmware_ram_bytes": result.extra.get("firmware_ram_bytes"),
        "flash_bytes": result.extra.get("flash_bytes"),
        "weights_bytes": weights_bytes(c.graph),
        "macs": sum(get_op(n.op).macs(c.graph, n) for n in c.graph.nodes),
        "per_layer_instructions": result.per_layer,
    }
