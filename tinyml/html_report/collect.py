"""The data of a report page: one JSON-able dict per verb run.

Every figure comes from what the verb already computed: its `--json` result is
embedded unchanged (`result`), and the model's layers and memory plan come from
the same functions `analyze` uses (tinyml/report.py, the MemoryPlan). The page
(page.js) only draws; it computes nothing a reader would quote.

A page is a list of named sections; page.js has one renderer per name, so a
new verb (quantize, search) adds its sections without touching the others.
"""
from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from tinyml import __version__
from tinyml.report import layer_rows
from tinyml.schedule.lifetimes import live_profile

if TYPE_CHECKING:
    from tinyml.board import Board
    from tinyml.pipeline import Compiled

# (key of the verb's JSON, label, unit) shown as headline figures, per verb; absent keys are left out
_MEASURED = [("instructions", "instructions per inference (measured)", ""),
             ("cycles", "cycles per inference (measured)", ""),
             ("cycles_estimated", "cycles per inference (estimated from the instruction mix, not measured)", ""),
             ("ms_estimated", "time per inference at the board's clock (estimated)", "ms"), ("macs", "MACs", ""),
             ("arena_bytes", "arena", "B"), ("stack_bytes", "stack used by tinyml_run", "B"),
             ("ram_bytes", "RAM (arena + stack + model data)", "B"), ("flash_bytes", "flash", "B"),
             ("weights_bytes", "weights", "B"), ("tflm_arena_bytes", "TFLite Micro arena", "B")]
KEY_FIGURES: dict[str, list[tuple[str, str, str]]] = {
    "analyze": [("macs", "MACs", ""), ("weights_bytes", "weights", "B"), ("arena_bytes", "arena (planned)", "B"),
                ("arena_lower_bound", "lower bound (most bytes live at one step)", "B"),
                ("tflm_arena_bytes", "TFLite Micro arena", "B")],
    "validate": _MEASURED,
    "demo": [("device_accuracy", "accuracy on the simulated board", "%"),  # "%": a fraction shown in percent
             ("float_accuracy", "accuracy of the float model", "%")] + _MEASURED,
}

# the sections of each verb's page, in order (page.js draws each by name)
_MODEL = ["summary", "validation", "budget", "timeline", "costs", "graph"]
SECTIONS = {
    "analyze": [s for s in _MODEL if s != "validation"],
    "validate": _MODEL,
    "demo": _MODEL,
    "bench": ["bench"],
}


def build_page(kind: str, result: dict, compiled: Compiled | None = None, board: Board | None = None) -> dict:
    """Everything the page of `kind` shows; `result` is the verb's --json dict."""
    page: dict[str, Any] = {
        "kind": kind,
        "title": _title(kind, result, compiled),
        "generator": f"tinyml {__version__}",
        "sections": SECTIONS[kind],
        "result": result,
        "key_figures": [{"key": k, "label": label, "unit": unit} for k, label, unit in KEY_FIGURES.get(kind, [])
                        if result.get(k) is not None],
    }
    if compiled is not None:
        page["model"] = model_data(compiled, *layer_instructions(result))
    if board is not None:
        page["board"] = {"name": board.name, "title": board.title, "core": board.core, "clock_hz": board.clock_hz,
                         "ram_bytes": board.ram.size, "flash_bytes": board.flash.size}
        page["budgets"] = budgets(kind, result, board)
    if kind == "bench":
        page["bench"] = bench_data(result)
    return page


def _title(kind: str, result: dict, compiled: Compiled | None) -> str:
    if compiled is not None:
        where = f" on {result['board']}" if result.get("board") else ""
        return f"{compiled.graph.name}: {kind}{where}"
    models = sorted({r["model"] for r in result.get("runs", [])})
    return f"bench: {', '.join(models[:4])}{' ...' if len(models) > 4 else ''}"


def layer_instructions(result: dict) -> tuple[list | None, str | None]:
    """Per-layer instructions the verb's result holds, and where they come from: measured in QEMU
    (`per_layer_instructions`) or predicted by tinyml.cost (analyze's `instructions_estimate`)."""
    if result.get("per_layer_instructions"):
        return result["per_layer_instructions"], "measured (QEMU, profiled build)"
    rows = result.get("layers") or []
    if rows and all(r.get("instructions_estimate") is not None for r in rows):
        return [r["instructions_estimate"] for r in rows], "predicted by tinyml.cost (an estimate, not a measurement)"
    return None, None


def model_data(c: Compiled, instructions: list | None = None, source: str | None = None) -> dict:
    """Layers in execution order and the memory plan, as analyze computes them."""
    g, plan = c.graph, c.plan
    group = {t: b.key for b in plan.buffers for t in b.tensors}  # tensor -> the buffer that holds it
    made_by = {t: i for i, n in enumerate(g.nodes) for t in n.outputs}
    layers = []
    for row, n in zip(layer_rows(g, plan), g.nodes):
        d = asdict(row)
        out = n.outputs[0] if n.outputs else None
        ins = [t for t in n.inputs if t is not None]
        d["tensor"] = out
        d["bits"] = g[out].bits if out else None
        d["weight_bits"] = sorted({g[t].bits for t in ins if g[t].is_const})
        d["from"] = [made_by.get(t) for t in ins if not g[t].is_const]  # producer layers; None: a graph input
        d["in_place"] = out in group and any(group.get(t) == group[out] for t in ins)
        d["streamed_input"] = any(g[t].streamed for t in ins)
        d["instructions"] = instructions[row.index] if instructions and len(instructions) == len(g.nodes) else None
        layers.append(d)
    steps = len(g.nodes) + 1
    live = live_profile(plan.buffers, steps)
    heads = {b.key: i for i, b in enumerate(plan.buffers) if b.base is None}
    buffers = [{
        "key": b.key,
        "kind": "scratch" if b.key.startswith("@scratch") else "segment" if b.base else "tensor",
        "tensors": b.tensors,  # a segment's are its head's (buffers[head])
        "head": heads[b.base] if b.base else i,
        "bytes": b.size, "offset": b.offset, "first": b.first, "last": b.last,
    } for i, b in enumerate(plan.buffers)]
    chosen = c.patches.chosen if c.patches else None
    readers: dict[str, list[int]] = {}
    for i, n in enumerate(g.nodes):
        for t in n.inputs:
            if t is not None and g[t].streamed:
                readers.setdefault(t, []).append(i)
    return {
        "name": g.name,
        "layers": layers,
        "instructions_source": source if any(x["instructions"] is not None for x in layers) else None,
        "memory": {
            "arena_bytes": plan.arena_bytes,
            "lower_bound": plan.lower_bound,
            "strategy": plan.strategy,
            "steps": steps,
            "live_bytes": live,
            "peak_step": live.index(max(live)) if live else 0,
            "buffers": buffers,
            "stages": [{"label": st.label, "first": st.span[0], "last": st.span[1]} for st in chosen.stages]
            if chosen else [],
            "arena_layer_by_layer": c.patches.baseline.arena_bytes if chosen else None,
            "streamed": [{"tensor": t, "bytes": g[t].nbytes, "first": min(s), "last": max(s)}
                         for t, s in readers.items()],
        },
    }


def budgets(kind: str, result: dict, board: Board) -> list[dict]:
    """The board's RAM and flash against what the model uses: measured when the verb ran firmware,
    else the planned arena and the weights alone (labelled as such)."""
    ram, flash = result.get("ram_bytes"), result.get("flash_bytes")
    rows = [
        {"what": "RAM", "budget": board.ram.size, "used": ram, "key": "ram_bytes",
         "source": "measured: arena + stack tinyml_run used + model data"} if ram is not None else
        {"what": "RAM", "budget": board.ram.size, "used": result["arena_bytes"], "key": "arena_bytes",
         "source": "planned arena only (stack and other data not counted)"},
        {"what": "flash", "budget": board.flash.size, "used": flash, "key": "flash_bytes",
         "source": "measured: linker map"} if flash is not None else
        {"what": "flash", "budget": board.flash.size, "used": result["weights_bytes"], "key": "weights_bytes",
         "source": "weights only (code not counted)"},
    ]
    return [r for r in rows if r["used"] is not None]


# (key of a bench run, column label); the runs themselves are the bench JSON's
BENCH_COLUMNS = [("model", "model"), ("board", "board"), ("kernels", "kernels"), ("bit_exact", "bit-exact"),
                 ("macs", "MACs"), ("instructions", "instructions"), ("instructions_per_mac", "instr/MAC"),
                 ("cycles_estimated", "cycles (est.)"), ("ms_estimated", "ms (est.)"),
                 ("instructions_vs_anchor", "vs anchor"), ("ram_bytes", "RAM B"), ("arena_bytes", "arena B"),
                 ("arena_lower_bound", "lower bound B"), ("stack_bytes", "stack B"),
                 ("tflm_arena_bytes", "TFLM arena B"), ("ram_vs_tflm_arena", "RAM/TFLM arena"),
                 ("flash_bytes", "flash B"), ("weights_bytes", "weights B"), ("error", "error")]


def bench_data(result: dict) -> dict:
    return {"columns": [{"key": k, "label": label} for k, label in BENCH_COLUMNS],
            "anchor_source": result.get("anchor_source")}
