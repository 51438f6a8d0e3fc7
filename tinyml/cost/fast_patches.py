"""A cheap patch rule for fast estimates: the arena and extra work of running a prefix per patch.

No graph is rewritten and nothing is placed. For every split point k that ends a prefix of
window and pointwise layers, and every n x n grid, the patch extent of each prefix tensor is
walked back from the split (receptive fields: (e - 1) * stride + kernel), and

  arena ~ max(live bytes after the stage (layer by layer),
              max over stage layers of: the whole input + the whole split tensor + that layer's
              patch input(s) and output)
  extra MACs = each stage layer's recomputed halo, n^2 * e_out^2 / (H * W) - 1 of its MACs

The rule keeps what `--patch auto` keeps: extra MACs within the overhead bound (20 %), a gain of
at least 5 % of the arena, and (with a budget) the fewest extra MACs that fit. It errs high on
arena (no row reuse, no in-place merges inside a patch), so it ranks and bounds, it does not plan.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from tinyml.ir import Graph, Node
from tinyml.ops.quantized import window
from tinyml.schedule.inplace import ALIGN

STAGE_FAMILIES = ("conv", "dw", "mac16", "pool", "eltwise", "lut")
MAX_GRID = 8
MAX_BANDS, MAX_COLUMNS_DOWN = 16, 4  # the search's reusing grids (schedule/patches/candidates.py)
MIN_GAIN = 0.05
MAX_OVERHEAD = 0.20


@dataclass(frozen=True)
class PatchGuess:
    split: int  # index of the last stage layer
    rows: int  # a rows x cols grid
    cols: int
    reuse: bool  # patches run column by column, each reusing the rows of the one above
    arena_bytes: int
    recompute: dict[int, float]  # stage layer -> factor on its work (>= 1)
    copy_bytes: int  # window reads and writes per inference
    extra_macs: int

    @property
    def label(self) -> str:
        """As PatchOptions writes it: `r` for full-width bands reusing rows, `v` for columns of them."""
        return f"{self.split}:{self.rows}x{self.cols}{('v' if self.cols > 1 else 'r') if self.reuse else ''}"


def _geometry(g: Graph, n: Node) -> tuple[int, int, int] | None:
    """(kernel rows, stride rows, pad top) of a window layer, None for a pointwise one."""
    if n.op in ("CONV_2D", "DEPTHWISE_CONV_2D"):
        wt = g[n.inputs[1]]
        w = window(g, n, wt.shape[1], wt.shape[2])
        return (w.k_h - 1) * w.dil_h + 1, w.stride_h, w.pad_top
    if n.op in ("AVERAGE_POOL_2D", "MAX_POOL_2D"):
        w = window(g, n, int(n.attrs.get("filter_height", 1)), int(n.attrs.get("filter_width", 1)), dilated=False)
        return w.k_h, w.stride_h, w.pad_top
    return None


def _aligned(n: float) -> int:
    return int(math.ceil(n / ALIGN)) * ALIGN


def stage_prefix(g: Graph, classes: list[str]) -> int:
    """How many leading layers could run per patch (4-D activations, window or pointwise kernels)."""
    k = 0
    for n, cls in zip(g.nodes, classes):
        y = g[n.outputs[0]]
        if len(n.outputs) != 1 or len(y.shape) != 4 or cls.split("_", 1)[0] not in STAGE_FAMILIES:
            break
        if any(t is not None and not g[t].is_const and len(g[t].shape) != 4 for t in n.inputs):
            break
        k += 1
    return k


@dataclass(frozen=True)
class _Layer:
    """What the rule reads of a stage layer, computed once per call."""

    out: str
    height: int
    nbytes: int
    geometry: tuple[int, int, int] | None
    inputs: tuple[tuple[str, int, int], ...]  # (name, height, bytes) of activation inputs
    scratch_per_input: float  # kernel workspace per input byte of a patch (depthwise: one channel's plane)


def _layers(g: Graph, count: int) -> list[_Layer]:
    def nbytes(t: str) -> int:
        x = g[t]
        return (math.prod(x.shape) * x.bits + 7) // 8

    out = []
    for n in g.nodes[:count]:
        ins = tuple((t, g[t].shape[1], nbytes(t)) for t in n.inputs if t is not None and not g[t].is_const)
        y = n.outputs[0]
        plane = 1 / g[y].shape[-1] if n.op == "DEPTHWISE_CONV_2D" else 0.0
        out.append(_Layer(y, g[y].shape[1], nbytes(y), _geometry(g, n), ins, plane))
    return out


def guess(g: Graph, classes: list[str], live: list[int], macs: list[int], base_arena: int,
          sram_budget: int | None = None, max_overhead: float | None = MAX_OVERHEAD) -> PatchGuess | None:
    """The rule's pick (see the module doc), or None when layer by layer is kept."""
    prefix = stage_prefix(g, classes)
    layers = _layers(g, prefix)
    total_macs = max(sum(macs), 1)
    inputs = {t for t in g.inputs if not g[t].streamed}
    held = sum(_aligned(g[t].nbytes) for t in inputs)
    target = sram_budget + 1 if sram_budget is not None else base_arena * (1 - MIN_GAIN)
    best: PatchGuess | None = None
    after = [0] * (len(live) + 1)  # after[k]: most bytes live at steps k.. (layer by layer)
    for t in range(len(live) - 1, -1, -1):
        after[t] = max(after[t + 1], live[t])
    def better(c: PatchGuess, best: PatchGuess | None) -> bool:
        if max_overhead is not None and c.extra_macs > max_overhead * total_macs:
            return False
        if sram_budget is not None:
            return c.arena_bytes <= sram_budget and (best is None or c.extra_macs < best.extra_macs)
        return c.arena_bytes < target and \
            (best is None or (c.arena_bytes, c.extra_macs) < (best.arena_bytes, best.extra_macs))

    def priced(c: PatchGuess) -> PatchGuess:
        extra = sum(macs[i] * (f - 1) for i, f in c.recompute.items())
        return PatchGuess(c.split, c.rows, c.cols, c.reuse, c.arena_bytes, c.recompute, c.copy_bytes, int(extra))

    for k in range(prefix):
        rest = after[k + 1]
        if rest >= target or layers[k].nbytes >= max((b for _, _, b in layers[k].inputs), default=0):
            continue  # what runs after the stage needs more; or a split where the tensors do not shrink
        for n in range(2, min(MAX_GRID, layers[k].height) + 1):
            c = priced(_candidate(layers, k, n, n, False, rest, held, inputs))
            if max_overhead is not None and c.extra_macs > max_overhead * total_macs:
                break  # finer grids only recompute more
            if better(c, best):
                best = c
            if c.arena_bytes <= rest:
                break  # the stage no longer sets the peak: finer grids only cost more
    if best is None:
        return None
    # At the best split only (the rule stays cheap): bands carried down the image, in up to
    # MAX_COLUMNS_DOWN columns, reusing rows (no recomputation down; halo rows kept per layer). Their
    # extra MACs do not depend on the bands, and the arena only falls with more: the most bands stand
    # for them all. Taken only for a lower arena: on a tie the square grid's recompute stands in for
    # what reuse costs beside (more, smaller patch layers, halo copies: person and ResNet-8 measure
    # +13-15 % over layer by layer with the search's reusing grids).
    k = best.split
    rows = min(MAX_BANDS, layers[k].height)
    for cols in range(1, min(MAX_COLUMNS_DOWN, layers[k].height) + 1):
        c = priced(_candidate(layers, k, rows, cols, True, after[k + 1], held, inputs))
        if c.arena_bytes < best.arena_bytes and better(c, best):
            best = c
    return best


def _candidate(layers: list[_Layer], k: int, rows: int, cols: int, reuse: bool, rest: int, held: int,
               inputs: set[str]) -> PatchGuess:
    """Extents walked back from split layer k on a rows x cols grid; with `reuse`, the patches of a
    column follow each other down, so rows are computed once (the first patch of a column computes
    its whole receptive field, the arena's worst) and each window layer keeps its halo rows."""
    split = layers[k]
    ext_h = {split.out: math.ceil(split.height / rows)}  # rows and columns of each tensor a patch needs
    ext_w = {split.out: math.ceil(split.height / cols)}
    recompute: dict[int, float] = {}
    largest = 0.0
    halo = 0.0
    copy = float(split.nbytes)
    for i in range(k, -1, -1):
        layer = layers[i]
        if layer.out not in ext_h:
            continue  # feeds nothing the split needs
        size = layer.height  # planes taken as square (any aspect: the share of it a patch covers)
        eh, ew = ext_h[layer.out], ext_w[layer.out]
        eh, ew = (eh if eh < size else size), (ew if ew < size else size)
        # rows computed over a row of patches: the halo repeats at the n - 1 inner edges only (the outer
        # ones are the plane's border); the same down a column, unless rows are reused
        across = ((cols - 1) * ew + size / cols) / size
        down = 1.0 if reuse else ((rows - 1) * eh + size / rows) / size
        recompute[i] = (across if across > 1.0 else 1.0) * (down if down > 1.0 else 1.0)
        patch = layer.nbytes * (eh / size) * (ew / size)
        geo = layer.geometry
        eh_in, ew_in = (eh, ew) if geo is None else ((eh - 1) * geo[1] + geo[0], (ew - 1) * geo[1] + geo[0])
        for t, height, nbytes in layer.inputs:
            a, b = (eh_in if eh_in < height else height), (ew_in if ew_in < height else height)
            if a > ext_h.get(t, 0):
                ext_h[t] = a
            if b > ext_w.get(t, 0):
                ext_w[t] = b
            part = nbytes * (a / height) * (b / height)
            patch += part + layer.scratch_per_input * part
            if reuse and geo is not None and geo[0] > geo[1]:
                halo += nbytes * ((geo[0] - geo[1]) / height) * (b / height)
            if t in inputs:
                copy += nbytes * max(1.0, ((cols - 1) * b + height / cols) / height) if reuse else rows * cols * part
        if patch > largest:
            largest = patch
    worst = held + _aligned(split.nbytes) + _aligned(largest + halo)
    return PatchGuess(k, rows, cols, reuse, max(rest, worst), recompute, int(copy), 0)
