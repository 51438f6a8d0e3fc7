"""The fitted instruction and code-size model: layer terms, coefficients, least squares.

A layer's instructions are a linear function of its counts (Op.cost_terms): a
coefficient per count and shape class, fitted to QEMU counts of our own kernels
(benchmarks/fit_cost_model.py writes coefficients.json). A class without data
of its own uses its family's coefficients (the class name up to the first '_'),
and a family without data uses "other". An op that runs other kernels in turn (ATTENTION) may
name a count "<class>/<count>": that count takes that class's (or family's) coefficient when the
class is fitted; the rest get coefficients of the op's own, fitted on what the priced ones leave.
"""
from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import numpy as np

from tinyml.ir import Graph
from tinyml.ops import get_op

COEFFICIENTS_PATH = Path(__file__).with_name("coefficients.json")
Terms = dict[str, float]


def layer_terms(g: Graph) -> list[tuple[str, Terms]]:
    """(shape class, counts) of every node of g, in order."""
    return [get_op(n.op).cost_terms(g, n) for n in g.nodes]


@lru_cache(maxsize=4)
def load_coefficients(path: Path = COEFFICIENTS_PATH) -> dict:
    return json.loads(Path(path).read_text())


def family(cls: str) -> str:
    return cls.split("_", 1)[0]


def layer_instructions(cls: str, terms: Terms, coef: dict) -> float:
    """Predicted instructions of one layer (0 for a layer that runs nothing)."""
    if not terms:
        return 0.0
    table = coef["classes"]

    def coefficients(name: str) -> dict:
        return table.get(name) or table.get(family(name)) or table["other"]

    c = coefficients(cls)

    def one(k: str, v: float) -> float:
        if k in c or "/" not in k:
            return c.get(k, 0.0) * v
        return (_priced(k, table) or 0.0) * v

    return max(0.0, sum(one(k, v) for k, v in terms.items()))


def _priced(count: str, classes: dict) -> float | None:
    """The coefficient of a "<class>/<count>" term from that kernel class (or its family), if fitted."""
    sub, _, name = count.partition("/")
    c = classes.get(sub) or classes.get(family(sub))
    return c.get(name) if c else None


def flash_features(g: Graph, terms: list[tuple[str, Terms]]) -> Terms:
    """What the code and constants beyond the weights grow with: kernel calls in tinyml_run, distinct
    kernels per class (specialized per shape, with their tables: `kernels_<class>`), per-channel
    constants of weighted layers, depthwise weights and the small conv layers' weights (both stored
    widened to int16)."""
    kernels = set()
    f = {"const": 1.0, "calls": 0.0, "channels": 0.0, "dw_weights": 0.0, "wide_weights": 0.0}
    for n, (cls, t) in zip(g.nodes, terms):
        if not t:
            continue
        f["calls"] += t.get("call", 0)
        consts = [g[i] for i in n.inputs[1:] if i is not None and g[i].is_const]
        if consts:
            f["channels"] += g[n.outputs[0]].shape[-1] if g[n.outputs[0]].shape else 1
        kernels.add((cls, *(c.shape for c in consts)))
        if family(cls) == "dw":
            f["dw_weights"] += g[n.inputs[1]].nbytes
        elif "wide_steps" in t:
            f["wide_weights"] += g[n.inputs[1]].nbytes
    for cls, *_ in kernels:
        key = f"kernels_{cls}"
        f[key] = f.get(key, 0.0) + 1
    return f


def code_bytes(features: Terms, coef: dict) -> float:
    """Model library flash beyond the weights: code, per-channel constants, widened weights. A kernel
    class without a fitted size takes its family's mean, else the mean of all kernels."""
    flash = coef["flash"]
    kernel_sizes = {k: v for k, v in flash.items() if k.startswith("kernels_")}

    def size(key: str) -> float:
        if key in flash or not key.startswith("kernels_"):
            return flash.get(key, 0.0)
        fam = [v for k, v in kernel_sizes.items() if family(k[len("kernels_"):]) == family(key[len("kernels_"):])]
        pool = fam or list(kernel_sizes.values())
        return sum(pool) / len(pool) if pool else 0.0

    return max(0.0, sum(size(k) * v for k, v in features.items()))


# -- fitting (benchmarks/fit_cost_model.py) ------------------------------------------------------
MIN_SAMPLES_PER_TERM = 2  # fewer layers than this per coefficient: the class is fitted on its first MAIN_TERMS
MAIN_TERMS = ("macs", "in", "taps", "bytes", "out", "call")


def least_squares(rows: list[tuple[Terms, float, float]]) -> dict[str, float]:
    """Non-negative coefficients of y ~ sum(c_k * terms_k) over (terms, y, weight) rows.

    Terms whose coefficient comes out negative are dropped and the rest refitted: a
    kernel does not get cheaper with more work.
    """
    keys = sorted({k for t, _, _ in rows for k in t})
    while keys:
        a = np.array([[t.get(k, 0.0) for k in keys] for t, _, _ in rows], np.float64)
        y = np.array([v for _, v, _ in rows], np.float64)
        w = np.array([w for _, _, w in rows], np.float64)
        c, *_ = np.linalg.lstsq(a * w[:, None], y * w, rcond=None)
        if (c >= 0).all():
            return {k: float(v) for k, v in zip(keys, c)}
        keys.pop(int(np.argmin(c)))
    return {}


def fit_classes(samples: dict[str, list[tuple[Terms, float, float]]],
                flash_rows: list[tuple[Terms, float, float]]) -> dict:
    """Coefficients per class (with enough layers), per family (pooled) and for code bytes.

    Rows are (terms, measured, weight); the fit script weighs a layer by 1 / sqrt(its instructions x
    its network's), between the layer's relative error and its network's. A family's pooled fit
    weighs every layer by its relative error instead.
    """
    classes: dict[str, dict] = {}
    pooled: dict[str, list] = {"other": []}
    composite = {cls for cls, rows in samples.items() if any("/" in k for t, _, _ in rows for k in t)}
    for cls, rows in samples.items():
        rows = [r for r in rows if r[0]]
        if not rows or cls in composite:
            continue
        # a family stands in for kernels it has no data of: fitted on relative errors per layer (the
        # kernels it pools differ in size; none may dominate)
        pooled.setdefault(family(cls), []).extend((t, y, 1.0 / max(y, 1.0)) for t, y, _ in rows)
        if len(rows) >= MIN_SAMPLES_PER_TERM * len({k for t, _, _ in rows for k in t}):
            classes[cls] = least_squares(rows)
        else:  # few layers: the kernel's own cost per unit of its main counts (the family's is another kernel's)
            main = [k for k in MAIN_TERMS if k in rows[0][0]][:min(len(rows), 2)]
            classes[cls] = least_squares([({k: t.get(k, 0.0) for k in main}, y, w) for t, y, w in rows])
    for fam, rows in pooled.items():
        if fam not in classes and rows:
            classes[fam] = least_squares(rows)
    for cls in composite:
        classes[cls] = _fit_composite(samples[cls], classes)
    if "other" not in classes or not classes["other"]:  # no unclassified layer measured: element-wise costs
        classes["other"] = classes.get("eltwise") or {"call": 60.0, "out": 4.0}
    counts = {cls: len(rows) for cls, rows in samples.items()}
    return {"classes": classes, "layers_per_class": counts, "flash": least_squares(flash_rows)}


def _fit_composite(rows: list[tuple[Terms, float, float]], classes: dict) -> dict[str, float]:
    """An op that runs other kernels (ATTENTION): counts a fitted kernel class prices keep that price;
    the others get coefficients of the op's own, fitted on what the priced ones leave of each layer."""
    rest = []
    for t, y, w in rows:
        prices = {k: p for k in t if "/" in k and (p := _priced(k, classes)) is not None}
        rest.append(({k: v for k, v in t.items() if k not in prices}, y - sum(p * t[k] for k, p in prices.items()), w))
    rest = [r for r in rest if r[0]]
    if not rest:
        return {}
    if len(rest) >= MIN_SAMPLES_PER_TERM * len({k for t, _, _ in rest for k in t}):
        return least_squares(rest)
    main = [k for m in MAIN_TERMS for k in rest[0][0] if k.rpartition("/")[2] == m][:min(len(rest), 2)]
    return least_squares([({k: t.get(k, 0.0) for k in main}, y, w) for t, y, w in rest])

