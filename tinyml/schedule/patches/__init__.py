"""Patch-based inference as a graph transform (MCUNetV2's idea, our own search).

CNNs peak in SRAM early, where feature maps are large. Running the first
stage patch by patch keeps only one patch's feature maps alive; the stage's
output (the *split* tensor) is filled window by window and the rest of the
network runs layer by layer.

Here a patch schedule is an ordinary graph: for each cell of a rows x cols
grid over the split tensor, the region every stage tensor must provide is
computed backwards (receptive fields through conv, depthwise and pooling
with their stride, dilation and padding; element-wise ops pass regions
through; a tensor read by several stage nodes provides the union and a
consumer that needs less reads a crop). The stage's nodes are then cloned
per patch onto tensors shaped like those regions, each window op carrying
`explicit_padding` only where its region touches the image border, plus
READ_WINDOW / WRITE_WINDOW copies (tinyml/ops/window.py). The memory planner,
emitter, reference interpreter and runners need no special case, and the
reference interpreter on the rewritten graph is the patch oracle.

With `reuse`, what a patch shares with the previous one is kept rather
than recomputed: columns within a row of patches, or rows from one
full-width band to the next (then no MAC is repeated at all).

`choose_schedule` searches split points and grids with the real planner,
pruned by lower bounds, and never returns a schedule whose arena is not
strictly below layer by layer.

The package, in pipeline order: regions.py (a region and a window op's
receptive field), stage.py (which nodes run per patch), grid.py (every
patch's regions), rewrite.py (the graph rewrite), estimate.py (the
instruction estimate), candidates.py and search.py (the search), options.py
(what the CLI asks for).
"""
from __future__ import annotations

from tinyml.schedule.patches.grid import axis_plan, grid_regions
from tinyml.schedule.patches.options import PatchOptions, replay, resolve_split, schedule_patches
from tinyml.schedule.patches.regions import Region, input_span, window_need
from tinyml.schedule.patches.rewrite import (
    PatchSchedule, PatchSpec, StageReport, add_stage, apply_patches, graph_macs, stage_spans,
)
from tinyml.schedule.patches.search import BudgetExceeded, SearchResult, choose_schedule, search
from tinyml.schedule.patches.stage import NotPatchable, Stage, find_stage, patchable

__all__ = [
    "BudgetExceeded", "NotPatchable", "PatchOptions", "PatchSchedule", "PatchSpec", "Region", "SearchResult",
    "Stage", "StageReport", "add_stage", "apply_patches", "axis_plan", "choose_schedule", "find_stage",
    "graph_macs", "grid_regions", "input_span", "patchable", "replay", "resolve_split", "schedule_patches",
    "search", "stage_spans", "window_need",
]
