"""Per-layer costs and memory figures computed from the IR and the plan.

These are planned figures (what the schedule will use), not measurements;
`validate` and `bench` add the measured ones beside them.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

from tinyml.ir import Graph
from tinyml.ops import get_op
from tinyml.schedule.memory import MemoryPlan


@dataclass
class LayerRow:
    index: int
    op: str
    name: str
    inputs: list[list[int]]
    output: list[int]
    macs: int
    weight_bytes: int
    live_bytes: int
    patch: dict | None = None  # {"stage", "row", "col"} of the patch this node computes (patch schedules)


def layer_rows(g: Graph, plan: MemoryPlan) -> list[LayerRow]:
    rows = []
    for i, n in enumerate(g.nodes):
        op = get_op(n.op)
        ins = [g[t] for t in n.inputs if t is not None]
        rows.append(LayerRow(
            index=i,
            op=n.op,
            name=n.name,
            inputs=[list(t.shape) for t in ins if not t.is_const],
            output=list(g[n.outputs[0]].shape) if n.outputs else [],
            macs=op.macs(g, n),
            weight_bytes=sum(t.nbytes for t in ins if t.is_const),
            live_bytes=plan.live_bytes(i),
            patch=({"stage": n.attrs.get("stage", 0), "row": n.attrs["patch"][0], "col": n.attrs["patch"][1]}
                   if "patch" in n.attrs else None),
        ))
    return rows


def weights_bytes(g: Graph) -> int:
    used = {t for n in g.nodes for t in n.inputs if t is not None}
    return sum(g[t].nbytes for t in used if g[t].is_const)


def summary(g: Graph, plan: MemoryPlan) -> dict:
    rows = layer_rows(g, plan)
    return {
        "model": g.name,
        "layers": [asdict(r) for r in rows],
        "macs": sum(r.macs for r in rows),
        "weights_bytes": weights_bytes(g),
        "arena_bytes": plan.arena_bytes,
        "arena_lower_bound": plan.lower_bound,
        "state_bytes": plan.state_bytes,
        "inputs": [{"name": t, "shape": list(g[t].shape), "dtype": g[t].dtype} for t in g.inputs],
        "outputs": [{"name": t, "shape": list(g[t].shape), "dtype": g[t].dtype} for t in g.outputs],
    }
