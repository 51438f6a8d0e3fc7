"""`tinyml analyze MODEL [--board B]`: per-layer costs (tinyml.cost), the memory plan, TFLite Micro's arena,
and whether the model fits a board."""
from __future__ import annotations

import argparse
import itertools
from dataclasses import replace
from pathlib import Path

from rich.console import Console
from rich.table import Table

from tinyml.board import Board, load_board
from tinyml.commands._common import (add_json_arg, add_patch_args, add_report_arg, add_transformer_args,
                                     integer_only_summary, patch_options, patch_summary,
                                     write_json, write_report)
from tinyml.cost import Cost, estimate
from tinyml.errors import DoesNotFit
from tinyml.ir import Graph
from tinyml.pipeline import Compiled, prepared_graph, read_model_bytes
from tinyml.report import summary
from tinyml.schedule.patches import BudgetExceeded, PatchOptions


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("analyze", help="per-layer MACs, weights and memory; arena vs TFLite Micro",
                       description="Print per-layer rows (op, shapes, MACs, weight bytes, live bytes), "
                                   "totals, and TFLite Micro's arena for the same model.")
    p.add_argument("model", help=".tflite file")
    p.add_argument("--timeline", metavar="PNG", help="draw the memory timeline to this PNG file")
    p.add_argument("--no-tflm", action="store_true", help="skip measuring TFLite Micro's arena")
    p.add_argument("--board", metavar="B", help="say whether the model fits this board's SRAM and flash (exit 2 "
                                                "if not); with --patch auto, search a patch schedule whose arena fits "
                                                "its SRAM when layer by layer does not (`tinyml boards` lists them)")
    add_patch_args(p)
    add_transformer_args(p)
    add_json_arg(p)
    add_report_arg(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    model_bytes = read_model_bytes(args.model)
    g, rewrites = prepared_graph(model_bytes, Path(args.model).stem, args.integer_only, args.attention_block)
    board = load_board(args.board) if args.board else None
    cost = costed(g, board, patch_options(args))
    sched = cost.schedule
    data = summary(sched.graph, sched.plan)
    for row, layer in zip(data["layers"], cost.layers):
        row["instructions_estimate"] = layer.instructions
        row["shape_class"] = layer.shape_class
    data["patches"] = sched.describe()
    data["integer_only"] = rewrites
    data["cost"] = {k: v for k, v in cost.describe().items() if k != "layers"}
    data["tflm_arena_bytes"] = None
    if not args.no_tflm:
        from tinyml.oracle import arena_bytes_isolated

        data["tflm_arena_bytes"] = arena_bytes_isolated(model_bytes)
    if args.timeline:
        from tinyml.plots import memory_timeline

        ps = sched.chosen
        data["timeline_png"] = str(memory_timeline(
            sched.graph, sched.plan, args.timeline,
            stages=[(st.span, f"patch stage {st.label}") for st in ps.stages] if ps else None,
            baseline_arena=sched.baseline.arena_bytes if ps else None))
    verdict = board_verdict(cost) if board else None
    if args.json != "-":
        print_summary(data)
        if rewrites is not None:
            Console().print(integer_only_summary(rewrites))
        if patch_summary(sched):
            Console().print(patch_summary(sched))
        for line in verdict or ():
            Console().print(line)
    write_json(args.json, data)
    write_report(args, "analyze", data, Compiled(sched.graph, sched.plan, model_bytes, sched))
    if board and not cost.fits_sram:
        raise DoesNotFit(f"SRAM of {board.name}", cost.arena_bytes, cost.sram_available_bytes,
                         f"activation arena; RAM {board.ram.size:,} B less the minimum stack {board.min_stack_bytes:,} B "
                         f"and the stack guard")
    if board and not cost.fits_flash:
        raise DoesNotFit(f"flash of {board.name}", cost.flash_bytes, cost.flash_available_bytes,
                         f"weights {cost.weights_bytes:,} B + code ~{cost.code_estimate_bytes:,} B (estimate); flash "
                         f"{board.flash.size:,} B less ~{board.flash.size - cost.flash_available_bytes:,} B of firmware")
    return 0


def costed(g: Graph, board: Board | None, options: PatchOptions) -> Cost:
    """tinyml.cost's exact estimate; on a board whose SRAM layer by layer (or the default schedule)
    overflows, `--patch auto` searches again with the board's SRAM as the budget."""
    cost = estimate(g, board, "exact", options)
    if board is None or cost.fits_sram or options.mode != "auto" or options.sram_budget is not None:
        return cost
    budget = cost.sram_available_bytes
    try:
        return estimate(g, board, "exact", replace(options, sram_budget=budget))
    except BudgetExceeded as e:
        raise DoesNotFit(f"SRAM of {board.name}", e.needed, budget,
                         f"activation arena; no patch schedule fits: {e.args[0].split(': ', 1)[-1]}") from None


def board_verdict(cost: Cost) -> list[str]:
    """Needed vs available on the board, one line per memory."""
    def mark(ok: bool) -> str:
        return "[green]fits[/green]" if ok else "[red]does not fit[/red]"

    return [
        f"{cost.board} SRAM: arena {cost.arena_bytes:,} B of {cost.sram_available_bytes:,} B available "
        f"(+ stack ~{cost.stack_estimate_bytes:,} B, estimate, inside the board's minimum stack): {mark(cost.fits_sram)}",
        f"{cost.board} flash: ~{cost.flash_bytes:,} B (weights {cost.weights_bytes:,} B + code ~"
        f"{cost.code_estimate_bytes:,} B, estimate) of {cost.flash_available_bytes:,} B available: {mark(cost.fits_flash)}",
        f"instructions per inference ~{cost.instructions_estimate:,} (estimate fitted on {cost.core}; "
        f"`tinyml validate --board` measures them)",
    ]


def print_summary(data: dict) -> None:
    con = Console()
    t = Table(title=f"{data['model']}: {len(data['layers'])} layers", title_justify="left")
    for col in ("#", "op", "input", "output", "MACs", "weights B", "live B", "instr ~"):
        t.add_column(col, justify="right" if col not in ("op", "input", "output") else "left")
    for r in _collapse_patches(data["layers"]):
        t.add_row(str(r["index"]), r["op"], " ".join(_shape(s) for s in r["inputs"]), _shape(r["output"]),
                  f"{r['macs']:,}", f"{r['weight_bytes']:,}",
                  f"{r['live_bytes']:,}", f"{r['instructions_estimate']:,}")
    con.print(t)
    tflm = data.get("tflm_arena_bytes")
    con.print(f"MACs {data['macs']:,} | weights {data['weights_bytes']:,} B | arena {data['arena_bytes']:,} B "
              f"(lower bound {data['arena_lower_bound']:,} B)"
              + (f" | state {data['state_bytes']:,} B" if data.get("state_bytes") else "")
              + (f" | TFLite Micro arena {tflm:,} B" if tflm else "")
              + f" | instructions ~{data['cost']['instructions_estimate']:,} (instr ~: estimates, docs/cost_model.md)")


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
                    "live_bytes": max(x["live_bytes"] for x in group),
                    "instructions_estimate": sum(x["instructions_estimate"] for x in group)})
    return out


def _shape(dims: list[int]) -> str:
    return "x".join(map(str, dims)) or "scalar"
