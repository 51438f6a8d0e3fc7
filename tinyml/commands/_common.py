"""Argument and output helpers shared by the verbs."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from tinyml.fsutil import write_text_atomic


def add_json_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", metavar="FILE", help="also write the result as JSON to FILE ('-' for stdout)")


def add_report_arg(p: argparse.ArgumentParser, default: str | None = None) -> None:
    p.add_argument("--report", metavar="HTML", default=default,
                   help="also write a self-contained HTML report (graph, memory timeline, per-layer costs) to HTML"
                        + (f" (default {default})" if default else ""))


def write_report(args: argparse.Namespace, kind: str, result: dict, compiled=None, board=None) -> None:
    """--report: the page of this verb's --json result (tinyml/html_report); board: a Board or its name."""
    if not getattr(args, "report", None):
        return
    from tinyml.board import load_board
    from tinyml.html_report import build_page, write_page

    board = board or getattr(args, "board", None)
    write_page(args.report, build_page(kind, result, compiled, load_board(board) if isinstance(board, str) else board))


def write_json(dest: str | None, data: Any) -> None:
    """Write `data` to dest atomically ('-' = stdout)."""
    if not dest:
        return
    text = json.dumps(data, indent=2, default=_jsonable) + "\n"
    if dest == "-":
        sys.stdout.write(text)
        return
    write_text_atomic(dest, text)


def _jsonable(o: Any) -> Any:
    if hasattr(o, "tolist"):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serializable: {type(o).__name__}")


def add_patch_args(p: argparse.ArgumentParser) -> None:
    """--patch, --max-overhead, --sram-budget: how the first stage is scheduled (tinyml/schedule/patches/);
    --effort: how long the planners search (tinyml/schedule/effort.py)."""
    g = p.add_argument_group("patch-based inference")
    g.add_argument("--patch", default="auto", metavar="auto|off|SPLIT:ROWSxCOLS[r|v]",
                   help="auto (default): run early stages patch by patch when that lowers the peak SRAM; "
                        "off: layer by layer; SPLIT:ROWSxCOLS: patches up to layer SPLIT (the index `analyze "
                        "--patch off` prints, or a tensor name) on a ROWSxCOLS grid; a trailing r reuses the "
                        "columns neighbouring patches share (on Nx1 bands: the rows of the band above), a trailing "
                        "v runs the grid column by column, each patch keeping the rows of the one above; join stages with + (e.g. 7:3x8r+11:2x2)")
    g.add_argument("--max-overhead", type=_fraction, metavar="FRACTION",
                   help="most extra MACs (recomputed patch overlap) auto may add, and most extra instructions "
                        "by its cost estimate, e.g. 0.2 or 20%% (default 20%%; no bound with --sram-budget)")
    g.add_argument("--input", dest="input_mode", choices=["arena", "streamed"], default="arena",
                   help="arena (default): the input is held whole in the arena, as TFLite Micro does; streamed: "
                        "the patch stage reads it window by window through tinyml_read_input() (see "
                        "tinyml_model.h), so it takes no arena space")
    g.add_argument("--sram-budget", type=_byte_count, metavar="BYTES",
                   help="pick the cheapest schedule whose activation arena fits BYTES; exit 2 with the "
                        "smallest reachable peak if none does")
    p.add_argument("--effort", type=_effort, default="default", metavar="low|default|high|FACTOR",
                   help="how long the memory-plan, node-order and patch searches try: a factor on their "
                        "evaluation budgets (low 0.25, default 1, high 4); deterministic, the best plan found "
                        "is kept")


def add_transformer_args(p: argparse.ArgumentParser) -> None:
    """--integer-only: passes/integer_only.py (I-ViT's ops for SOFTMAX on attention, GELU, LayerNorm);
    --attention-block: schedule/attention.py (query rows per attention step)."""
    p.add_argument("--attention-block", type=int, default=None, metavar="ROWS",
                   help="compute attention ROWS query rows at a time so the score matrix is never whole "
                        "(default: the longest of 4, 8, 16, 32 or all rows whose arena is the smallest; 0: layer "
                        "by layer, the whole [heads x T x T] scores in the arena)")
    p.add_argument("--integer-only", action="store_true",
                   help="replace the LayerNorm pattern, SOFTMAX on attention scores and GELU by I-ViT's integer-only "
                        "ILAYERNORM, SHIFTMAX and SHIFTGELU (no longer bit-exact with TFLite Micro: validate "
                        "compares with their numpy reference and reports how far outputs moved)")


def integer_only_summary(rewrites: dict[str, int] | None) -> str | None:
    """One line naming what --integer-only replaced."""
    if rewrites is None:
        return None
    done = ", ".join(f"{v} {k}" for k, v in sorted(rewrites.items()) if v)
    return f"integer-only: {done or 'nothing to replace'}"


def patch_options(args: argparse.Namespace):  # -> tinyml.schedule.patches.PatchOptions
    """The parsed patch arguments; a malformed --patch is a one-line error (exit 2)."""
    from tinyml.errors import TinymlError
    from tinyml.schedule.patches import PatchOptions

    try:
        return PatchOptions.parse(args.patch, args.max_overhead, args.sram_budget, args.input_mode == "streamed",
                                  args.effort)
    except ValueError as e:
        raise TinymlError(f"--patch: {e}") from None


def _effort(text: str) -> float:
    from tinyml.schedule.effort import parse_effort

    try:
        return parse_effort(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _fraction(text: str) -> float:
    try:
        v = float(text[:-1]) / 100 if text.endswith("%") else float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a fraction: {text!r}") from None
    if not 0 <= v < 100:
        raise argparse.ArgumentTypeError(f"overhead {text!r} out of range")
    return v


def _byte_count(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a byte count: {text!r}") from None
    if v <= 0:
        raise argparse.ArgumentTypeError(f"budget must be positive, got {v}")
    return v


def patch_summary(result) -> str | None:  # result: tinyml.schedule.patches.SearchResult | None
    """One line on the patch schedule for human output (None when patches were off)."""
    if result is None or result.mode == "off":
        return None
    base = result.baseline.arena_bytes
    ps = result.chosen
    if result.error:
        return f"patches: none, the search failed ({result.error}); layer by layer ({base:,} B)"
    if ps is None:
        return f"patches: none, layer by layer has the lowest arena ({base:,} B; {result.candidates} schedules searched)"
    d = ps.describe()
    parts = [f"layers {st['stage_layers'][0]}-{st['split_layer']} per patch on a {st['grid'][0]}x{st['grid'][1]} grid "
             f"of the {'x'.join(map(str, st['split_shape'][1:]))} split tensor" for st in d["stages"]]
    line = (f"patches ({ps.label}): {'; '.join(parts)}: arena {ps.plan.arena_bytes:,} B vs {base:,} B layer by layer "
            f"({base / ps.plan.arena_bytes:.2f}x less), MACs +{100 * ps.overhead:.1f}% (+{ps.extra_macs:,})")
    if ps.streamed:
        line += (f"; input streamed ({d['streamed_input_bytes']:,} B outside the arena; with the input in the "
                 f"arena this schedule needs {d['arena_bytes_input_in_arena']:,} B)")
    return line
