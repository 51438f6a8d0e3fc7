"""Value-driven precision per patch (QuantMCU, DATE 2024) for one patch stage, from calibration data.

The pass decides, for a patch schedule's stage (tinyml/schedule/patches), which patches may run
their activations at 4 bits and at which layers; no labels, no retraining:

1. Outlier test (QuantMCU's value-driven patch classification). Per stage tensor, each patch's
   peak is the largest |x - zp| in its computed region over all calibration inputs; the 4-bit clip
   `T` is the `quantile` of those peaks (a per-value percentile would flag every patch: with
   thousands of values per patch, one of them always passes it). A patch whose peak exceeds T at
   any stage tensor is an outlier patch and stays 8-bit everywhere.
2. Per-layer bits for the other patches (value-driven bit-width selection): each stage tensor's
   score is the entropy its values lose at 4 bits (over the non-outlier regions) per bit operation
   the consumers save; tensors are taken in ascending score while the 8-bit model's top-1 still
   agrees with the simulated mixed one on at least `1 - tolerance` of the calibration inputs (the
   threshold on the score is thus searched; agreement needs no labels).

The simulation is the int8 numpy reference with the chosen tensors re-quantized to 4 bits (step
k = T / 7 of the int8 step around the zero point, or T / 15 above it for tensors never below it) where any patch computing a pixel runs 4-bit: halo
pixels count as 4-bit, so it errs on the pessimistic side. It is an estimate, labelled so; the
generated code does not run mixed-width patches (docs/quantmcu.md says why).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tinyml.ir import Graph
from tinyml.ops import get_op
from tinyml.schedule.patches.grid import grid_regions
from tinyml.schedule.patches.stage import find_stage

LOW_BITS = 4  # the 4-bit activation kernels (docs/dsp_kernels.md); 2-bit activations have none


@dataclass
class PatchPrecision:
    """The decision for one stage: a rows x cols grid over the split tensor."""

    split: str
    rows: int
    cols: int
    tensors: list[str]  # stage tensors, in execution order
    clip: dict[str, float]  # 4-bit clip T per tensor, int8 steps from the zero point
    outlier: np.ndarray  # [rows, cols] bool
    low: list[str]  # tensors non-outlier patches run at LOW_BITS
    scores: dict[str, float]  # entropy lost per bit operation saved (x 1e6)
    agreement: float  # simulated top-1 agreement with 8 bits on the calibration inputs
    bops8: int  # the stage's bit operations, every patch at 8-bit activations
    bops: int  # with this decision
    one_sided: dict[str, bool]  # tensors never below their zero point: 4-bit codes [0, 15] above it

    def bits(self, tensor: str) -> np.ndarray:
        """[rows, cols] activation bits of `tensor` per patch."""
        low = LOW_BITS if tensor in self.low else 8
        return np.where(self.outlier, 8, low)

    def grid(self) -> np.ndarray:
        """[rows, cols] the narrowest activation width each patch runs anywhere in the stage."""
        return np.min([self.bits(t) for t in self.tensors], axis=0) if self.tensors else np.full(
            (self.rows, self.cols), 8)

    def describe(self) -> dict:
        return {"split": self.split, "grid": [self.rows, self.cols], "outlier_patches": int(self.outlier.sum()),
                "patches": self.rows * self.cols, "bits_grid": self.grid().tolist(), "low_tensors": self.low,
                "clip": self.clip, "scores": self.scores, "agreement_estimated": self.agreement,
                "bops_8bit": self.bops8, "bops": self.bops,
                "bops_reduction": self.bops8 / self.bops if self.bops else None}


def _entropy(values: np.ndarray) -> float:
    """Shannon entropy (bits) of the integer values' histogram."""
    if values.size == 0:
        return 0.0
    _, counts = np.unique(values, return_counts=True)
    p = counts / counts.sum()
    return float(-(p * np.log2(p)).sum())


def requantized(x: np.ndarray, zp: int, clip: float, one_sided: bool = False) -> np.ndarray:
    """int8 values at 4 bits, back in int8 steps (what a 4-bit tensor of scale k x s holds): codes
    [-8, 7] around the zero point, step k = clip / 7 int8 steps; `one_sided` (a tensor never below
    its zero point, e.g. after ReLU) codes [0, 15] above it, step clip / 15, as a 4-bit zero point of
    -8 gives. k is at least 1."""
    k = max(clip / (15.0 if one_sided else 7.0), 1.0)
    q = np.clip(np.round((x.astype(np.float64) - zp) / k), 0 if one_sided else -8, 15 if one_sided else 7)
    return np.clip(np.round(q * k) + zp, -128, 127).astype(np.int8)


class _Stage:
    """The stage's tensors, their per-patch regions and the consumers' MACs per patch."""

    def __init__(self, g: Graph, split: str, rows: int, cols: int, reuse: bool, vertical: bool):
        self.g = g
        stage = find_stage(g, split)
        self.nodes = [g.nodes[i] for i in stage.nodes]
        self.tensors = [n.outputs[0] for n in self.nodes if len(g[n.outputs[0]].shape) == 4]
        self.patches = grid_regions(g, stage, rows, cols, reuse, vertical)
        self.cells = [p.cell for p in self.patches]

    def masks(self, t: str, cells: set[tuple[int, int]]) -> np.ndarray:
        """[H, W] bool: pixels of `t` some patch in `cells` computes."""
        shape = self.g[t].shape
        m = np.zeros(shape[1:3], bool)
        for p in self.patches:
            if p.cell in cells and t in p.computed:
                r = p.computed[t]
                m[r.r0:r.r1, r.c0:r.c1] = True
        return m

    def bops(self, bits: dict[str, np.ndarray]) -> int:
        """Bit operations: per MAC node and patch, MACs over its computed region x weight bits x
        input activation bits (stage sources and 8-bit tensors: 8)."""
        total = 0
        for n in self.nodes:
            y = self.g[n.outputs[0]]
            macs = get_op(n.op).macs(self.g, n)
            if not macs or len(y.shape) != 4 or len(n.inputs) < 2 or n.inputs[1] is None:
                continue
            wbits = self.g[n.inputs[1]].bits
            per_px = macs / (y.shape[1] * y.shape[2])
            for p in self.patches:
                r = p.computed.get(n.outputs[0])
                if r is None:
                    continue
                a = bits[n.inputs[0]][p.cell] if n.inputs[0] in bits else 8
                total += int(round(per_px * r.h * r.w)) * wbits * int(a)
        return total


def _run(g: Graph, x: list[np.ndarray], fake: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The int8 reference with each tensor in `fake` replaced where its mask holds by
    requantized() values (fake[t] = (mask, zp, clip, one_sided))."""
    values = {name: np.asarray(v, dtype=g[name].np_dtype).reshape(g[name].shape) for name, v in zip(g.inputs, x)}
    for n in g.nodes:
        args = [None if i is None else values[i] if i in values else g[i].data for i in n.inputs]
        for name, y in zip(n.outputs, get_op(n.op).reference(g, n, args)):
            y = np.asarray(y).astype(g[name].np_dtype, copy=False).reshape(g[name].shape)
            if name in fake:
                mask, zp, clip, one_sided = fake[name]
                y = np.where(mask[None, :, :, None], requantized(y, zp, clip, one_sided), y)
            values[name] = y
    return values


def decide(g: Graph, split: str, rows: int, cols: int, calibration: list[list[np.ndarray]],
           quantile: float = 0.75, tolerance: float = 0.01, reuse: bool = False,
           vertical: bool = False) -> PatchPrecision:
    """QuantMCU's decision for stage `split` (rows x cols, PatchSpec's reuse/vertical) of int8
    graph `g` on `calibration` (a list of input lists, int8 as the graph takes them)."""
    st = _Stage(g, split, rows, cols, reuse, vertical)
    runs = [_run(g, x, {}) for x in calibration]
    zp = {t: int(g[t].quant.zp) for t in st.tensors}
    signed = {t: np.concatenate([r[t] for r in runs]).astype(np.int64) - zp[t] for t in st.tensors}
    one_sided = {t: bool(signed[t].min(initial=0) >= 0) for t in st.tensors}
    dev = {t: np.abs(v) for t, v in signed.items()}
    peak = {t: {p.cell: int(dev[t][:, p.computed[t].r0:p.computed[t].r1, p.computed[t].c0:p.computed[t].c1].max(
        initial=0)) for p in st.patches if t in p.computed} for t in st.tensors}
    clip = {t: float(max(np.quantile(list(peak[t].values()), quantile), 7.0)) if peak[t] else 127.0
            for t in st.tensors}
    outlier = np.zeros((rows, cols), bool)
    for p in st.patches:
        outlier[p.cell] = any(peak[t].get(p.cell, 0) > clip[t] for t in st.tensors)
    normal = {c for c in st.cells if not outlier[c]}
    low_mask = {t: st.masks(t, normal) for t in st.tensors}

    def bits_of(low: list[str]) -> dict[str, np.ndarray]:
        return {t: np.where(outlier, 8, LOW_BITS if t in low else 8) for t in st.tensors}

    bops8 = st.bops(bits_of([]))
    scores = {}
    for t in st.tensors:
        v = np.concatenate([r[t] for r in runs])[:, low_mask[t]]
        loss = _entropy(v) - _entropy(requantized(v, zp[t], clip[t], one_sided[t]))
        saved = bops8 - st.bops(bits_of([t]))
        scores[t] = loss / saved * 1e6 if saved > 0 else float("inf")
    top8 = [int(np.argmax(r[g.outputs[0]])) for r in runs]

    def agreement(low: list[str]) -> float:
        fake = {t: (low_mask[t], zp[t], clip[t], one_sided[t]) for t in low}
        same = [int(np.argmax(_run(g, x, fake)[g.outputs[0]])) == y for x, y in zip(calibration, top8)]
        return float(np.mean(same)) if same else 1.0

    low: list[str] = []
    agree = 1.0
    for t in sorted((t for t in st.tensors if np.isfinite(scores[t]) and normal), key=scores.get):
        a = agreement(low + [t])
        if a < 1 - tolerance:
            break  # the threshold: every tensor scoring below t's goes to 4 bits
        low, agree = low + [t], a
    return PatchPrecision(split, rows, cols, st.tensors, clip, outlier, low, scores, agree, bops8,
                          st.bops(bits_of(low)), one_sided)


def plot_grid(pp: PatchPrecision, image: np.ndarray | None, path) -> None:
    """PNG of each patch's narrowest bits as a grid over the image (the split tensor's bands scaled
    to the image; `image` HxW or HxWxC, optional)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grid = pp.grid()
    fig, ax = plt.subplots(figsize=(4, 4))
    if image is not None:
        img = np.asarray(image, np.float64)
        img = img[..., 0] if img.ndim == 3 and img.shape[-1] == 1 else img
        ax.imshow((img - img.min()) / max(np.ptp(img), 1e-9), cmap="gray", extent=(0, pp.cols, pp.rows, 0))
    ax.imshow(np.where(grid == 8, 1.0, 0.0), cmap="coolwarm", alpha=0.45, vmin=0, vmax=1,
              extent=(0, pp.cols, pp.rows, 0))
    for (i, j), b in np.ndenumerate(grid):
        ax.text(j + 0.5, i + 0.5, str(b), ha="center", va="center", fontsize=12, color="black")
    ax.set_xticks(range(pp.cols + 1))
    ax.set_yticks(range(pp.rows + 1))
    ax.grid(color="white", linewidth=1)
    ax.set_title(f"activation bits per patch ({pp.rows}x{pp.cols}; 8 = outlier patch)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
