"""Sub-byte weight kernels vs int8: measured instructions per layer class (QEMU, Cortex-M4).

For each layer class one int8 layer with random weights is built as a graph,
then the same layer with its weights re-quantized to 4 and 2 bits (same
shapes, same activations). Each is compiled for the board, profiled per layer
in QEMU (the layer's own instructions, not the firmware around it), and checked
bit for bit against its oracle (TFLite Micro for native INT4 conv/FC files, the
numpy reference otherwise). Printed: instructions and the ratio to int8, and
the layer's weight bytes in flash.

Usage: python benchmarks/subbyte_kernels.py [--board stm32f405] [--bits 4,2] [--json FILE]
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


def layer_graph(name: str, bits: int, seed: int = 0) -> Graph:
    """One layer of class `name`, int8 activations, weights at `bits` (per channel; FC per tensor,
    as TFLite Micro's INT4 FULLY_CONNECTED takes)."""
    op, (h, w, cin), k, stride, cout = LAYERS[name]
    rng = np.random.default_rng(seed)
    qmax = (1 << (bits - 1)) - 1
    g = Graph(name=f"{name}_w{bits}")
    if op == "FULLY_CONNECTED":
        x = Tensor("x", (1, cin), "int8", _q(0.05, -3))
        wshape, axis, ch = (cout, cin), 0, cout
        out_shape = (1, cout)
        attrs = {"fused_activation_function": "RELU", "weights_format": "DEFAULT", "keep_num_dims": False}
    else:
        x = Tensor("x", (1, h, w, cin), "int8", _q(0.05, -3))
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
    bscale = 0.05 * np.atleast_1d(wscale).astype(np.float64)
    g.add_tensor(Tensor("b", (ch,), "int32", _q(bscale.astype(np.float32)),
                        rng.integers(-2000, 2000, ch).astype(np.int32)))
    # the output scale follows the weight scale, so every width requantizes with the same multipliers
    g.add_tensor(Tensor("y", out_shape, "int8", _q(0.1 * 127 / qmax, -20)))
    g.nodes.append(Node(op, ["x", "w", "b"], ["y"], attrs, "layer"))
    g.inputs, g.outputs = ["x"], ["y"]
    return g


def run(board_name: str, bits_list: list[int], con: Console) -> list[dict]:
    board = load_board(board_name)
    rows = []
    with tempfile.TemporaryDirectory(prefix="tinyml-subbyte-") as tmp:
        for name in LAYERS:
            base = None
            for bits in [8, *bits_list]:
                path = Path(tmp) / f"{name}_w{bits}.tflite"
                path.write_bytes(write_tflite(layer_graph(name, bits)))
                m = prepare(f"{name}_w{bits}", path, 1, 0)
                r = measure(m, board, "optimized", True, Path(tmp) / f"{name}_{bits}")
                layer = next(x for x in r["per_layer"] if x["op"] == LAYERS[name][0])
                g = m.compiled.graph
                wbytes = g[g.nodes[0].inputs[1]].nbytes if g.nodes else 0
                row = {"layer": name, "op": LAYERS[name][0], "board": board_name, "weight_bits": bits,
                       "instructions": layer["instructions"], "macs": layer["macs"], "weight_bytes": wbytes,
                       "bit_exact": r["bit_exact"], "oracle": "numpy reference" if bits_meta.has_entry(g) else "TFLite Micro"}
                base = row if bits == 8 else base
                row["ratio_to_int8"] = row["instructions"] / base["instructions"]
                rows.append(row)
                con.print(f"{name:<12} w{bits}: {row['instructions']:>10,} instr  x{row['ratio_to_int8']:.3f}"
                          f"  {wbytes:>6,} B  {'bit-exact' if row['bit_exact'] else 'MISMATCH'}")
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--board", default="stm32f405")
    ap.add_argument("--bits", default="4,2", help="sub-byte widths to compare with int8")
    ap.add_argument("--json", default=str(RESULTS))
    args = ap.parse_args()
    con = Console()
    rows = run(args.board, [int(b) for b in args.bits.split(",")], con)
    t = Table(title=f"sub-byte weights vs int8, layer instructions measured in QEMU ({args.board})")
    for col in ("layer", "bits", "instructions", "x int8", "weight bytes", "bit-exact"):
        t.add_column(col, justify="right" if col != "layer" else "left")
    for r in rows:
        t.add_row(r["layer"], str(r["weight_bits"]), f"{r['instructions']:,}", f"{r['ratio_to_int8']:.3f}",
                  f"{r['weight_bytes']:,}", "yes" if r["bit_exact"] else "NO")
    con.print(t)
    write_text_atomic(Path(args.json), json.dumps({"board": args.board, "rows": rows}, indent=1) + "\n")
    con.print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
