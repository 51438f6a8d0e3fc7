"""`tinyml analyze MODEL`: per-layer costs, the memory plan and TFLite Micro's arena."""
from __future__ import annotations

import argparse
import itertools

from rich.console import Console
from rich.table import Table

from tinyml.commands._common import (add_json_arg, add_patch_args, add_report_arg, patch_options, patch_summary,
                                     write_json, write_report)
from tinyml.pipeline import compile_model
from tinyml.report import summary


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("analyze", help="per-layer MACs, weights and memory; arena vs TFLite Micro",
                       description="Print per-layer rows (op, shapes, MACs, weight bytes, live bytes), "
                                   "totals, and TFLite Micro's arena for the same model.")
    p.add_argument("model", help=".tflite file")
    p.add_argument("--timeline", metavar="PNG", help="draw the memory timeline to this PNG file")
    p.add_argument("--no-tflm", action="store_true", help="skip measuring TFLite Micro's arena")
    add_patch_args(p)
    add_json_arg(p)
    add_report_arg(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    c = compile_model(args.model, patch_options(args))
    data = summary(c.graph, c.plan)
    data["patches"] = c.patches.describe() if c.patches else None
    data["tflm_arena_bytes"] = None
    if not args.no_tflm:
        from tinyml.oracle import arena_bytes_isolated

        data["tflm_arena_bytes"] = arena_bytes_isolated(c.model_bytes)
    if args.timeline:
        from tinyml.plots import memory_timeline

        ps = c.patches.chosen if c.patches else None
        data["timeline_png"] = str(memory_timeline(
            c.graph, c.plan, args.timeline,
            stages=[(st.span, f"patch stage {st.label}") for st in ps.stages] if ps else None,
            baseline_arena=c.patches.baseline.arena_bytes if ps else None))
    if args.json != "-":
        print_summary(data)
        if patch_summary(c.patches):
            Console().print(patch_summary(c.patches))
    write_json(args.json, data)
    write_report(args, "analyze", data, c)
    return 0


def print_summary(data: dict) -> None:
    con = Console()
    t = Table(title=f"{data['model']}: {len(data['layers'])} layers", title_justify="left")
    for col in ("#", "op", "input", "output", "MACs", "weights B", "live B"):
        t.add_column(col, justify="right" if col not in ("op", "input", "output") else "left")
    for r in _collapse_patches(data["layers"]):
        t.add_row(str(r["index"]), r["op"], " ".join(_shape(s) for s in r["inputs"]), _shape(r["output"]),
                  f"{r['macs']:,}", f"{r['weight_bytes']:,}",
                  f"{r['live_bytes']:,}")
    con.print(t)
    tflm = data.get("tflm_arena_bytes")
    con.print(f"MACs {data['macs']:,} | weights {data['weights_bytes']:,} B | arena {data['arena_bytes']:,} B "
              f"(lower bound {data['arena_lower_bound']:,} B)"
              + (f" | TFLite Micro arena {tflm:,} B" if tflm else ""))


def _collapse_patches(rows: list[dict]) -> list[dict]:
    """One table row per patch-based stage instead of one per patch node (JSON keeps them all)."""
    out: list[dict] = []
    for stage, group in itertools.groupby(rows, key=lambda r: r["patch"]["stage"] if r["patch"] else None):
        group = list(group)
        if stage is None:
            out.extend(group)
            continue
        first = group[0]["patch"]
        cells = {(x["patch"]["row"], x["patch"]["col"]) for x in group}
        out.append({"index": f"{group[0]['index']}-{group[-1]['index']}", "op": f"{len(cells)} PATCHES",
                    "inputs": group[0]["inputs"], "output": group[-1]["output"],
                    "macs": sum(x["macs"] for x in group),
                    "weight_bytes": sum(x["weight_bytes"] for x in group if x["patch"] == first),
                    "live_bytes": max(x["live_bytes"] for x in group)})
    return out


def _shape(dims: list[int]) -> str:
    return "x".join(map(str, dims)) or "scalar"
