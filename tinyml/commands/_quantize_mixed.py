"""`tinyml quantize --bits ... --flash-budget ...`: sub-byte and mixed precision (issue 12 part 3).

Parsing stays free of PyTorch; `run_mixed` imports tinyml.train (the `train`
extra) only when widths other than uniform int8 are asked for.
"""
from __future__ import annotations

import argparse
import re
from dataclasses import dataclass

from rich.console import Console
from rich.table import Table

from tinyml.errors import TinymlError

WIDTHS = {"w": (8, 4, 2), "a": (8, 4)}


@dataclass
class Plan:
    w_bits: tuple[int, ...]  # candidates (one: uniform)
    a_bits: tuple[int, ...]
    flash: int | None
    sram: int | None
    instructions: int | None

    @property
    def mixed(self) -> bool:
        return len(self.w_bits) > 1 or len(self.a_bits) > 1


def _bytes(text: str | None, option: str) -> int | None:
    if text is None:
        return None
    m = re.fullmatch(r"\s*(\d+)\s*([kKmM]?)\s*", str(text))
    if not m:
        raise TinymlError(f"{option} {text!r}: a whole number of bytes, optionally with k or M (1024, 1024^2)")
    return int(m.group(1)) * {"": 1, "k": 1024, "m": 1 << 20}[m.group(2).lower()]


def _widths(part: str, kind: str) -> tuple[int, ...]:
    if part == "mixed":
        return WIDTHS[kind]
    if part.isdigit() and int(part) in WIDTHS[kind]:
        return (int(part),)
    raise TinymlError(f"--bits: {'weight' if kind == 'w' else 'activation'} width {part!r}: one of "
                      f"{', '.join(map(str, WIDTHS[kind]))} or mixed")


def parse_plan(args: argparse.Namespace) -> Plan | None:
    """The widths and budgets asked for; None for the plain int8 path (no budgets, no sub-byte)."""
    spec = str(args.bits).strip().lower()
    w, _, a = spec.partition("/")
    plan = Plan(_widths(w, "w"), _widths(a or "8", "a"), _bytes(args.flash_budget, "--flash-budget"),
                _bytes(args.sram_budget, "--sram-budget"), _bytes(args.instr_budget, "--instr-budget"))
    budgets = plan.flash is not None or plan.sram is not None or plan.instructions is not None
    if budgets and spec == "8":  # a budget without widths: let the ILP choose the weights
        plan.w_bits = WIDTHS["w"]
    if args.finetune < 0 or args.probes < 1:
        raise TinymlError("--finetune takes a number of epochs >= 0, --probes a count >= 1")
    if (plan.w_bits, plan.a_bits) == ((8,), (8,)) and not budgets and not args.pareto and not args.finetune \
            and args.board is None:
        return None
    return plan


def run_mixed(args: argparse.Namespace, plan: Plan, g, calib, policy, labelled, progress):
    """Sensitivities, the allocation (ILP or uniform), optional fine-tuning, the written model, the report."""
    from tinyml.quantize import write_quantized
    from tinyml.quantize.allocate import Budgets
    from tinyml.quantize.prepare import prepare_float
    from tinyml.train.mixed import Sensitivity, finetuned
    from tinyml.train.report import configuration, layer_rows, sweep

    prepare_float(g)
    s = Sensitivity.measure(g, calib, policy, plan.w_bits, plan.a_bits, probes=args.probes, board=args.board,
                            progress=progress, method=args.sensitivity)
    budgets = Budgets(plan.flash, plan.sram, plan.instructions)
    if args.board is not None and budgets.sram is None:
        from tinyml.cost import estimate

        budgets.sram = estimate(s.int8, args.board, mode="fast", patches="off").sram_available_bytes
    if plan.mixed:
        alloc, q = s.solve(budgets)
        label = "ILP"
    else:
        alloc = s.uniform(plan.w_bits[0], plan.a_bits[0])
        q = s.quantize(alloc)
        label = f"uniform W{plan.w_bits[0]}A{plan.a_bits[0]}"
        _check_uniform(s, alloc, q, budgets)
    final = s
    if args.finetune:
        final = finetuned(s, alloc, args.finetune, progress)
        q = final.quantize(alloc)
        label += f" + QAT {args.finetune} epochs"
    report = {"bits": args.bits, "weight_candidates": list(plan.w_bits), "activation_candidates": list(plan.a_bits),
              "budgets": {"flash": budgets.flash, "sram": budgets.sram, "instructions": budgets.instructions},
              "probes": args.probes, "solver": "CBC (PuLP)", "sensitivity": args.sensitivity,
              "hessian_labels": "the float model's top-1 on the calibration inputs",
              "instructions_note": "estimate: tinyml.cost's int8 layer model x per-op, per-width factor "
                                           "(bitcost.INSTR_FACTOR, ACT4_FACTOR)",
              "layers": layer_rows(s, alloc)}

    def bar(done: int, total: int) -> None:
        progress("evaluating", done, total)

    report["chosen"] = configuration(final, label, alloc, q, labelled, bar)
    if args.pareto:
        from tinyml.plots import pareto

        rows = [configuration(s, name, a, None, labelled, bar) for name, a in sweep(s)]
        report["configs"] = rows + [report["chosen"]] if args.finetune else rows
        report["pareto_png"] = str(pareto(report["configs"], args.pareto, f"{g.name}: accuracy vs weight flash"))
    result = None
    if args.output is not None:
        result = write_quantized(final.g, q, final.calibration(alloc), final.policy(alloc))
    return result, report


def _check_uniform(s, alloc, q, budgets) -> None:
    """Uniform widths: the budgets are checked, not optimised; say what would fit."""
    low = s.limits()
    over = []
    if budgets.flash is not None and alloc.weight_bytes > budgets.flash:
        over.append(f"weights take {alloc.weight_bytes} bytes > --flash-budget {budgets.flash}")
    if budgets.sram is not None and s.arena(q) > budgets.sram:
        over.append(f"the arena takes {s.arena(q)} bytes > SRAM budget {budgets.sram}")
    if budgets.instructions is not None and alloc.instructions > budgets.instructions:
        over.append(f"about {alloc.instructions} instructions > --instr-budget {budgets.instructions}")
    if over:
        raise TinymlError("; ".join(over) + f" (smallest reachable: {low['flash']} bytes of weights, "
                          f"{low['sram']} bytes of arena; try --bits mixed)")


def print_mixed(r: dict) -> None:
    con = Console()
    t = Table(title=f"per-layer widths ({r['chosen']['label']})")
    for col in ("node", "op", "W", "A", "weight trace", "act. trace", "bytes", "instr. (est.)"):
        t.add_column(col, justify="left" if col in ("node", "op") else "right")
    for layer in r["layers"]:
        at = layer["activation_trace"]
        t.add_row(layer["node"][-32:], layer["op"], str(layer["weight_bits"]), str(layer["activation_bits"]),
                  f"{layer['weight_trace']:.3g}", "-" if at is None else f"{at:.3g}", f"{layer['weight_bytes']:,}",
                  f"{layer['instructions_estimate']:,}")
    con.print(t)
    rows = r.get("configs") or [r["chosen"]]
    t = Table(title="configurations (accuracy: integer reference; arena: memory planner; instructions: estimate)")
    for col in ("configuration", "weight bytes", "arena bytes", "instr. (est.)", "accuracy %"):
        t.add_column(col, justify="left" if col == "configuration" else "right")
    for c in rows:
        acc = "-" if c["accuracy"] is None else f"{c['accuracy']:.2f}"
        t.add_row(c["label"], f"{c['weight_bytes']:,}", f"{c['arena_bytes']:,}", f"{c['instructions_estimate']:,}", acc)
    con.print(t)
    if r.get("pareto_png"):
        con.print(f"Pareto plot: {r['pareto_png']}")
