"""Sub-byte kernels vs int8: measured instructions per layer class (QEMU, Cortex-M4).

For each layer class one int8 layer with random weights is built as a graph,
then the same layer with its weights re-quantized to 4 and 2 bits (same
shapes, same activations), and with 4-bit activations in and out (`a4`,
weights 8 and 4 bits: `--acts 4`). Each is compiled for the board, profiled per layer
in QEMU (the layer's own instructions, not the firmware around it), and checked
bit for bit against its oracle (TFLite Micro for native INT4 conv/FC files, the
numpy reference otherwise). Printed: instructions and the ratio to int8, and
the layer's weight bytes in flash.

Usage: python benchmarks/subbyte_kernels.py [--board stm32f405] [--bits 4,2] [--acts 4] [--json FILE]
Default JSON: benchmarks/results/subbyte_kernels.json
"""
from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from tinyml.bench import measure, prepare
from tinyml.board import load_board
from tinyml.frontend import bits_meta
from tinyml.frontend.tflite_writer import write_tflite
from tinyml.fsutil import write_text_atomic
from tinyml.ir import Graph, Node, Quant, Tensor

RESULTS = Path(__file__).parent / "results" / "subbyte_kernels.json"

# name -> (op, input HxWxC, kernel, stride, output channels): the shapes of small vision/KWS models
LAYERS = {
    "conv1x1": ("CONV_2D", (16, 16, 32), 1, 1, 32),
    "conv3x3": ("CONV_2D", (16, 16, 16), 3, 1, 32),
    "conv3x3_s2": ("CONV_2D", (16, 16, 16), 3, 2, 32),
    "conv_small": ("CONV_2D", (32, 32, 3), 3, 2, 16),
    "fc": ("FULLY_CONNECTED", (1, 1, 256), 1, 1, 64),
    "dw3x3": ("DEPTHWISE_CONV_2D", (16, 16, 32), 3, 1, 32),
}


def _q(scale: float | np.ndarray, zp: int = 0, axis: int = 0) -> Quant:
    scale = np.atleast_1d(np.asarray(scale, np.float32))
    return Quant(scale, np.full(scale.size, zp), axis)


def layer_graph(name: str, bits: int, seed: int = 0, act_bits: int = 8) -> Graph:
    """One layer of class `name`, activations at `act_bits` (input and output), weights at `bits`
    (per channel; FC per tensor, as TFLite Micro's INT4 FULLY_CONNECTED takes). Graph inputs and
    outputs stay 8-bit: 4-bit activations reach the layer through an ADD (x + x) before it and
    leave through one after it."""
    op, (h, w, cin), k, stride, cout = LAYERS[name]
    rng = np.random.default_rng(seed)
    qmax = (1 << (bits - 1)) - 1
    g = Graph(name=f"{name}_w{bits}" + (f"a{act_bits}" if act_bits < 8 else ""))
    a = 16 if act_bits == 4 else 1  # 4-bit activations: 16x the step, zero points within [-8, 7]
    if op == "FULLY_CONNECTED":
        x = Tensor("xa", (1, cin), "int8", _q(0.05 * a, -3 // a), bits=act_bits)
        wshape, axis, ch = (cout, cin), 0, cout
        out_shape = (1, cout)
        attrs = {"fused_activation_function": "RELU", "weights_format": "DEFAULT", "keep_num_dims": False}
    else:
        x = Tensor("xa", (1, h, w, cin), "int8", _q(0.05 * a, -3 // a), bits=act_bits)
        oh, ow = -(-h // stride), -(-w // stride)
        if op == "CONV_2D":
            wshape, axis, ch = (cout, k, k, cin), 0, cout
        else:
            wshape, axis, ch = (1, k, k, cout), 3, cout
        out_shape = (1, oh, ow, cout)
        attrs = {"padding": "SAME", "stride_h": stride, "stride_w": stride, "fused_activation_function": "RELU",
                 "dilation_h_factor": 1, "dilation_w_factor": 1}
        if op == "DEPTHWISE_CONV_2D":
            attrs["depth_multiplier"] = 1
    codes = rng.integers(-qmax, qmax + 1, wshape).astype(np.int8)
    per_tensor = op == "FULLY_CONNECTED"
    wscale = np.float32(0.02 * 127 / qmax) if per_tensor else (rng.uniform(0.01, 0.03, ch) * 127 / qmax)
    g.add_tensor(x)
    g.add_tensor(Tensor("w", wshape, "int8", _q(wscale, 0, axis), codes, bits=bits))
    bscale = 0.05 * a * np.atleast_1d(wscale).astype(np.float64)
    g.add_tensor(Tensor("b", (ch,), "int32", _q(bscale.astype(np.float32)),
                        rng.integers(-2000, 2000, ch).astype(np.int32)))
    # the output scale follows the weight scale, so every width requantizes with the same multipliers
    g.add_tensor(Tensor("ya", out_shape, "int8", _q(0.1 * a * 127 / qmax, -20 // a if a > 1 else -20), bits=act_bits))
    g.nodes.append(Node(op, ["xa", "w", "b"], ["ya"], attrs, "layer"))
    return boundary(g, x, g["ya"], act_bits)


def boundary(g: Graph, x: Tensor, y: Tensor, act_bits: int) -> Graph:
    """Graph input `x` and output `y` as they are (8-bit), or through ADDs doubling them (4-bit)."""
    if act_bits == 8:
        g.inputs, g.outputs = [x.name], [y.name]
        return g
    g.add_tensor(Tensor("x", x.shape, "int8", _q(0.05, -3)))
    g.add_tensor(Tensor("y", y.shape, "int8", _q(float(y.quant.scale[0]) * 2 / 16, -20)))
    attrs = {"fused_activation_function": "NONE"}
    g.nodes.insert(0, Node("ADD", ["x", "x"], [x.name], attrs, "to_4bit"))
    g.nodes.append(Node("ADD", [y.name, y.name], ["y"], attrs, "to_8bit"))
    g.inputs, g.outputs = ["x"], ["y"]
    return g


def run(board_name: str, bits_list: list[int], con: Console, acts: list[int] = ()) -> list[dict]:
    board = load_board(board_name)
    rows = []
    variants = [(8, 8), *((b, 8) for b in bits_list), *((b, a) for a in acts for b in (8, 4))]
    with tempfile.TemporaryDirectory(prefix="tinyml-subbyte-") as tmp:
        for name in LAYERS:
            base = None
            for bits, act in variants:
                tag = f"w{bits}" + (f"a{act}" if act < 8 else "")
                path = Path(tmp) / f"{name}_{tag}.tflite"
                path.write_bytes(write_tflite(layer_graph(name, bits, act_bits=act)))
                m = prepare(f"{name}_{tag}", path, 1, 0)
                r = measure(m, board, "optimized", True, Path(tmp) / f"{name}_{tag}")
                layer = next(x for x in r["per_layer"] if x["op"] == LAYERS[name][0])
                g = m.compiled.graph
                node = next((x for x in g.nodes if x.op == LAYERS[name][0]), None)
                wbytes = g[node.inputs[1]].nbytes if node else 0
                row = {"layer": name, "op": LAYERS[name][0], "board": board_name, "weight_bits": bits, "act_bits": act,
                       "instructions": layer["instructions"], "macs": layer["macs"], "weight_bytes": wbytes,
                       "bit_exact": r["bit_exact"], "oracle": "numpy reference" if bits_meta.has_entry(g) else "TFLite Micro"}
                row["arena_bytes"] = r.get("arena_bytes")
                base = row if (bits, act) == (8, 8) else base
                row["ratio_to_int8"] = row["instructions"] / base["instructions"]
                rows.append(row)
                con.print(f"{name:<12} {tag:<5}: {row['instructions']:>10,} instr  x{row['ratio_to_int8']:.3f}"
                          f"  {wbytes:>6,} B  {'bit-exact' if row['bit_exact'] else 'MISMATCH'}")
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--board", default="stm32f405")
    ap.add_argument("--bits", default="4,2", help="sub-byte weight widths to compare with int8")
    ap.add_argument("--acts", default="4", help="sub-byte activation widths (weights 8 and 4), '' for none")
    ap.add_argument("--json", default=str(RESULTS))
    args = ap.parse_args()
    con = Console()
    rows = run(args.board, [int(b) for b in args.bits.split(",")], con, [int(a) for a in args.acts.split(",") if a])
    t = Table(title=f"sub-byte weights/activations vs int8, layer instructions measured in QEMU ({args.board})")
    for col in ("layer", "w bits", "a bits", "instructions", "instr/MAC", "x int8", "weight bytes", "arena", "bit-exact"):
        t.add_column(col, justify="right" if col != "layer" else "left")
    for r in rows:
        t.add_row(r["layer"], str(r["weight_bits"]), str(r["act_bits"]), f"{r['instructions']:,}",
                  f"{r['instructions'] / max(r['macs'], 1):.2f}", f"{r['ratio_to_int8']:.3f}",
                  f"{r['weight_bytes']:,}", f"{r['arena_bytes'] or 0:,}", "yes" if r["bit_exact"] else "NO")
    con.print(t)
    write_text_atomic(Path(args.json), json.dumps({"board": args.board, "rows": rows}, indent=1) + "\n")
    con.print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
