"""Every layer shape class of the zoo and the wild sample, through our kernels in QEMU, beside CMSIS-NN.

A shape class is what selects and specializes a kernel: the op, kernel size
(1-10 each way, so 1-D convolutions appear as Nx1 and 1xN), strides, depth
multiplier, 1-3 input channels, channel counts that are not multiples of 4,
broadcasting for element-wise ops. For each class found in the cached zoo
models and ../shared/models/wild/, one representative layer (the one with MACs
closest to REPRESENTATIVE_MACS among those that fit the board) is cut out as a one-layer .tflite, compiled
with the default options, run in QEMU on the board (default stm32f405, a
Cortex-M4) and checked bit for bit against TFLite Micro. Printed: instructions
per MAC (per output element for ops without MACs) and, where
../shared/notes/baseline-wild.md has one, TFLite Micro + CMSIS-NN's pooled
figure for the same kind of layer (measured the same way, 46 real models).
Whole-call overhead is included, as in a real model.

A benchmark, not a test: it prints a table and writes JSON.
Usage: python benchmarks/shape_classes.py [--board B] [--json out.json] [--only SUBSTRING] [--wild DIR]
"""
from __future__ import annotations

import argparse
import copy
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

from tinyml import zoo
from tinyml.errors import TinymlError
from tinyml.frontend.tflite_writer import write_tflite
from tinyml.ir import Graph, Node
from tinyml.oracle import TflmOracle, random_inputs
from tinyml.ops import get_op
from tinyml.pipeline import compile_model, load_graph, read_model_bytes
from tinyml.sim.qemu import board_runner
from tinyml.validation import compare

WILD = Path(__file__).resolve().parents[2] / "shared" / "models" / "wild"
OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "MAX_POOL_2D", "AVERAGE_POOL_2D", "ADD", "SUB", "MUL")
REPRESENTATIVE_MACS = 300_000
MAX_ACTIVATION_BYTES = 64_000  # a representative's input + output, so it fits the board's RAM
# TFLite Micro + CMSIS-NN instructions per MAC, pooled over 46 real models (baseline-wild.md), Cortex-M4
CMSIS_NN = {"conv_1x1": 2.18, "conv_first": 3.70, "conv_kxk": 2.01, "dw_3x3": 8.20, "dw_other": 9.53,
            "fc": 2.26}


def shape_class(g: Graph, n: Node) -> tuple[str, str | None] | None:
    """(class name, CMSIS-NN kind) of a layer, None for ops the benchmark does not cover."""
    if n.op not in OPS:
        return None
    a = n.attrs
    if n.op in ("CONV_2D", "DEPTHWISE_CONV_2D"):
        x, wt = g[n.inputs[0]], g[n.inputs[1]]
        kh, kw = wt.shape[1], wt.shape[2]
        stride = f"s{a.get('stride_h', 1)}x{a.get('stride_w', 1)}"
        dil = "_dil" if a.get("dilation_h_factor", 1) != 1 or a.get("dilation_w_factor", 1) != 1 else ""
        cin = x.shape[3]
        if n.op == "CONV_2D":
            groups = "_grouped" if wt.shape[3] != cin else ""
            chans = f"cin{cin}" if cin <= 3 else ("cin%4" if cin % 4 else "cin4k")
            chans += "_cout%4" if wt.shape[0] % 4 else ""
            kind = "conv_first" if cin <= 4 else "conv_1x1" if (kh, kw) == (1, 1) else "conv_kxk"
            return f"conv_{kh}x{kw}_{stride}_{chans}{groups}{dil}", kind
        m = wt.shape[3] // cin
        chans = ("_c%4" if cin % 4 else "_c4k") + (f"_dm{m}" if m > 1 else "") + ("_cin1" if cin == 1 else "")
        return f"dw_{kh}x{kw}_{stride}{chans}{dil}", "dw_3x3" if (kh, kw) == (3, 3) else "dw_other"
    if n.op == "FULLY_CONNECTED":
        depth, units = g[n.inputs[1]].shape[1], g[n.inputs[1]].shape[0]
        return f"fc_depth{'4k' if depth % 4 == 0 else '%4'}_units{'4k' if units % 4 == 0 else '%4'}", "fc"
    if n.op.endswith("POOL_2D"):
        return (f"{n.op.split('_')[0].lower()}pool_{a.get('filter_height')}x{a.get('filter_width')}"
                f"_s{a.get('stride_h')}x{a.get('stride_w')}"), None
    shapes = [g[i].shape for i in n.inputs if i is not None]
    const = any(g[i].is_const for i in n.inputs if i is not None)
    how = "const" if const else "same" if len(set(shapes)) == 1 else "broadcast"
    return f"{n.op.lower()}_{how}", None


def one_layer(g: Graph, n: Node) -> bytes | None:
    """The layer alone as a .tflite (None when it carries a legalization-only attribute)."""
    if "explicit_padding" in n.attrs:
        return None
    sub = Graph(name="layer")
    for name in dict.fromkeys([i for i in n.inputs if i is not None] + n.outputs):
        sub.tensors[name] = copy.deepcopy(g[name])
    sub.nodes = [Node(n.op, list(n.inputs), list(n.outputs), dict(n.attrs))]
    sub.inputs = [i for i in dict.fromkeys(n.inputs) if i is not None and not g[i].is_const]
    sub.outputs = list(n.outputs)
    if any(sub[i].dtype != "int8" for i in sub.inputs + sub.outputs):
        return None
    return write_tflite(sub)


def collect(models: list[Path]) -> dict[str, dict]:
    """Class name -> the representative layer's model bytes, CMSIS-NN kind, and the models it occurs in."""
    classes: dict[str, dict] = {}
    for path in models:
        try:
            g = load_graph(read_model_bytes(path))
        except TinymlError:
            continue
        for n in g.nodes:
            got = shape_class(g, n)
            if got is None:
                continue
            name, kind = got
            macs = get_op(n.op).macs(g, n) or int(np.prod(g[n.outputs[0]].shape))
            act = sum(g[t].nbytes for t in [*n.inputs, *n.outputs] if t is not None and not g[t].is_const)
            score = (act > MAX_ACTIVATION_BYTES, abs(macs - REPRESENTATIVE_MACS))
            entry = classes.setdefault(name, {"kind": kind, "models": set(), "layer": None, "score": None})
            entry["models"].add(path.name.split("-")[0].removesuffix(".tflite"))
            if entry["score"] is None or score < entry["score"]:
                data = one_layer(g, n)
                if data is not None:
                    entry.update(layer=data, score=score)
    return {k: v for k, v in classes.items() if v["layer"] is not None}


def measure(data: bytes, board: str) -> dict:
    with tempfile.TemporaryDirectory(prefix="tinyml-shape-") as tmp:
        path = Path(tmp) / "layer.tflite"
        path.write_bytes(data)
        c = compile_model(path)
        inputs = random_inputs(c.graph, 1, seed=3)
        result = board_runner(board, "qemu", c, Path(tmp) / "fw").run(inputs)
        exact = compare(TflmOracle(data).run_batch(inputs), result.outputs).bit_exact
    macs = sum(get_op(n.op).macs(c.graph, n) for n in c.graph.nodes)
    out_elems = int(np.prod(c.graph[c.graph.outputs[0]].shape))
    return {"instructions": result.instructions, "macs": macs, "output_elements": out_elems,
            "instructions_per_mac": result.instructions / macs if macs else None,
            "instructions_per_output": result.instructions / out_elems,
            "cycles_estimated": result.extra.get("cycles_estimated"), "bit_exact": exact,
            "ops_after_import": [n.op for n in c.graph.nodes], "arena_bytes": c.plan.arena_bytes}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--board", default="stm32f405")
    ap.add_argument("--json", type=Path, default=Path("benchmarks/results/shape_classes.json"))
    ap.add_argument("--only", default="", help="measure only classes whose name contains this")
    ap.add_argument("--wild", type=Path, default=WILD)
    args = ap.parse_args()
    cached = [zoo.path(n) for n in zoo.names()]
    models = [p for p in cached if p.exists()] + sorted(args.wild.glob("*.tflite"))
    classes = collect(models)
    rows = []
    names = sorted(k for k in classes if args.only in k)
    print(f"{len(classes)} shape classes in {len(models)} models; measuring {len(names)} on {args.board}",
          file=sys.stderr)
    for i, name in enumerate(names):
        e = classes[name]
        try:
            r = measure(e["layer"], args.board)
        except TinymlError as err:
            r = {"error": str(err)}
        cm = CMSIS_NN.get(e["kind"]) if e["kind"] else None
        ours = r.get("instructions_per_mac")
        rows.append({"class": name, "cmsis_nn_kind": e["kind"], "cmsis_nn_instructions_per_mac": cm,
                     "slower_than_cmsis_nn": ours > cm if ours is not None and cm is not None else None,
                     "models": sorted(e["models"]), **r})
        print(f"[{i + 1}/{len(names)}] {name}", file=sys.stderr)
    print(f"{'class':<44} {'MACs':>9} {'instr':>10} {'instr/MAC':>9} {'CMSIS-NN':>8} {'instr/out':>9}  exact")
    for r in rows:
        if "error" in r:
            print(f"{r['class']:<44} error: {r['error'][:70]}")
            continue
        per_mac = f"{r['instructions_per_mac']:.2f}" if r["instructions_per_mac"] else "-"
        cm = f"{r['cmsis_nn_instructions_per_mac']:.2f}" if r["cmsis_nn_instructions_per_mac"] else "-"
        flag = " SLOWER" if r["slower_than_cmsis_nn"] else ""
        print(f"{r['class']:<44} {r['macs']:>9,} {r['instructions']:>10,} {per_mac:>9} {cm:>8} "
              f"{r['instructions_per_output']:>9.2f}  {'yes' if r['bit_exact'] else 'NO'}{flag}")
    slower = [r["class"] for r in rows if r.get("slower_than_cmsis_nn")]
    print(f"\n{len(rows)} classes; slower than CMSIS-NN per MAC: {len(slower)} {slower}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"board": args.board, "classes": rows,
                                     "cmsis_nn_source": "../shared/notes/baseline-wild.md (pooled, 46 models)"},
                                    indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
