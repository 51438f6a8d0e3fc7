"""`tinyml quantize MODEL --calib DATA -o OUT.tflite`: a float model to a fully int8 .tflite."""
from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from tinyml.commands._common import add_json_arg, write_json
from tinyml.commands._quantize_mixed import parse_plan
from tinyml.errors import TinymlError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "quantize", help="float model (Keras, .tflite, ONNX) -> int8 .tflite, calibrated on your data",
        description="Post-training quantization on tinyml's IR: per-channel symmetric int8 weights, per-tensor "
                    "asymmetric int8 activations calibrated on DATA, int32 biases with bias correction. Writes a "
                    "standard fully-int8 .tflite (int8 input and output) that TFLite Micro and every tinyml verb "
                    "run. Exit 2 on bad input.")
    p.add_argument("model", help="float model: .tflite, .onnx, .keras, .h5 or a SavedModel directory "
                                 "(Keras needs TensorFlow, ONNX the onnx package)")
    p.add_argument("--calib", required=True, metavar="DATA",
                   help="calibration inputs: .npy [N, ...] or .npz with array 'x' (float, as the float model takes them)")
    p.add_argument("-o", "--output", metavar="OUT.tflite",
                   help="where to write the quantized model (required for plain int8; with --bits or budgets, omit it to only evaluate)")
    p.add_argument("--eval", metavar="DATA", help=".npz with inputs 'x' and integer labels 'y': report top-1 "
                                                  "accuracy of the float and the int8 model")
    p.add_argument("--calibration", choices=["minmax", "percentile", "mse"], default="minmax",
                   help="activation ranges: minmax (default, as TensorFlow's converter), percentile (clip the tails), "
                        "mse (the clip with the least squared quantization error)")
    p.add_argument("--percentile", type=float, default=99.99, metavar="P",
                   help="with --calibration percentile: clip at the (100-P)-th and P-th percentiles (default 99.99)")
    p.add_argument("--no-bias-correction", dest="bias_correction", action="store_false",
                   help="do not compensate the output shift caused by rounding the weights")
    p.add_argument("--bits", default="8", metavar="W[/A]",
                   help="weight[/activation] widths: 8 (default), 4, 2, W/A (e.g. 4/8, 4/4), or 'mixed' (weights 8/4/2 "
                        "per layer chosen by Hessian traces and an ILP; 'mixed/mixed' also picks 8/4-bit activations)")
    p.add_argument("--flash-budget", metavar="BYTES", help="packed weight bytes at most (e.g. 12000 or 12k = 12288); "
                                                           "implies --bits mixed")
    p.add_argument("--sram-budget", metavar="BYTES", help="arena bytes at most (the memory planner's); implies mixed")
    p.add_argument("--instr-budget", metavar="N", help="instructions per inference at most (tinyml.cost estimate); "
                                                       "implies mixed")
    p.add_argument("--board", metavar="BOARD", help="board for the cost model (default: the one it was fitted on)")
    p.add_argument("--finetune", type=int, default=0, metavar="EPOCHS",
                   help="quantization-aware fine-tuning on the calibration data (labels: its 'y', else the float "
                        "model's own predictions)")
    p.add_argument("--probes", type=int, default=32, metavar="N", help="Hutchinson probes per layer (default 32)")
    p.add_argument("--sensitivity", choices=("measured", "hessian"), default="measured",
                   help="the ILP's cost of each layer width: its loss increase measured on the calibration data "
                        "(default) or HAWQ-V3's Hessian trace x perturbation")
    p.add_argument("--pareto", metavar="PNG", help="also quantize uniform int8/int4/int2 and the ILP at several flash "
                                                  "budgets; table, JSON and this accuracy-vs-flash plot")
    p.add_argument("--patch-precision", choices=("off", "value"), default="off",
                   help="value: decide per patch of the first patch stage which activations may be 4-bit "
                        "(QuantMCU: outlier patches stay 8-bit; reported, the written model stays 8-bit)")
    p.add_argument("--patch-grid", metavar="PNG", help="with --patch-precision value: draw each patch's bits")
    add_json_arg(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import numpy as np

    # Hostile weights can overflow float arithmetic; that is reported as one line, never as warnings.
    with np.errstate(all="ignore"):
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    from tinyml.frontend.float_model import load_float_model
    from tinyml.fsutil import write_bytes_atomic
    from tinyml.quantize import QuantPolicy, quantize_float_graph
    from tinyml.quantize.data import load_calibration, load_labelled

    if args.output is not None and Path(args.output).suffix != ".tflite":
        raise TinymlError(f"-o {args.output}: the output is a .tflite file")
    if args.patch_grid and args.patch_precision != "value":
        raise TinymlError("--patch-grid draws the bits --patch-precision value decides: add it")
    policy = QuantPolicy(calibration=args.calibration, percentile=args.percentile,
                         bias_correction=args.bias_correction)
    policy.check()
    plan = parse_plan(args)
    if plan is None and args.output is None:
        raise TinymlError("-o OUT.tflite is required")
    g, fmt = load_float_model(args.model)
    shape = g[g.inputs[0]].shape
    calib = load_calibration(args.calib, shape)
    labelled = load_labelled(args.eval, shape, g[g.outputs[0]].size) if args.eval else None
    quiet = args.json == "-"
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=Console(stderr=True), transient=True, disable=quiet) as bar:
        tasks: dict[str, int] = {}

        def progress(phase: str, done: int, total: int) -> None:
            if phase not in tasks:
                tasks[phase] = bar.add_task(phase, total=total)
            bar.update(tasks[phase], completed=done)

        if plan is None:
            result = quantize_float_graph(g, calib, policy, progress)
            mixed = None
        else:
            from tinyml.commands._quantize_mixed import run_mixed

            result, mixed = run_mixed(args, plan, g, calib, policy, labelled, progress)
        report = describe(args, fmt, policy, result) if result is not None else {"model": str(args.model),
                                                                                  "format": fmt, "accuracy": None}
        if result is not None and args.output is not None:
            write_bytes_atomic(args.output, result.tflite)
        report["mixed"] = mixed
        if args.patch_precision == "value" and result is not None:
            from tinyml.commands._quantize_patch import patch_precision

            report["patch_precision"] = patch_precision(result.tflite, calib, args.patch_grid)
        if labelled is not None and result is not None:
            report["accuracy"] = evaluate(result, *labelled, lambda done, total: progress("evaluating", done, total))
    if not quiet:
        if result is not None:
            print_report(report)
        if report.get("patch_precision"):
            pp = report["patch_precision"]
            Console().print(f"patch precision (stage {pp['stage']}): {pp['outlier_patches']} of {pp['patches']} "
                            f"patches stay 8-bit, {len(pp['low_tensors'])} tensors 4-bit elsewhere; bit operations "
                            f"{pp['bops_8bit']:,} -> {pp['bops']:,} (estimated); bits per patch "
                            f"{pp['bits_grid']}")
        if mixed is not None:
            from tinyml.commands._quantize_mixed import print_mixed

            print_mixed(mixed)
    write_json(args.json, report)
    return 0


def describe(args: argparse.Namespace, fmt: str, policy, result) -> dict:
    """The JSON report: what was written and every activation's calibrated parameters."""
    q, cal = result.int8_graph, result.calibration
    layers = []
    for n in q.nodes:
        y = q[n.outputs[0]]
        w = q[n.inputs[1]] if n.op in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED") else None
        lo, hi = cal.ranges.get(y.name, (None, None))
        layers.append({"node": n.name, "op": n.op, "weight_bits": w.bits if w is not None else None,
                       "weight_bytes": w.nbytes if w is not None else 0, "activation_bits": y.bits,
                       "range": [lo, hi] if lo is not None else None, "min_max": cal.minmax.get(y.name),
                       "scale": float(y.quant.s), "zero_point": y.quant.zp})
    x, out = q[q.inputs[0]], q[q.outputs[0]]
    float_weights = sum(t.size * 4 for t in result.float_graph.tensors.values() if t.is_const and t.dtype == "float32")
    return {
        "model": str(args.model), "format": fmt, "output": str(args.output), "output_bytes": len(result.tflite),
        "calibration": policy.calibration, "percentile": policy.percentile if policy.calibration == "percentile" else None,
        "bias_correction": policy.bias_correction, "calibration_samples": cal.samples,
        "input": {"name": x.name, "shape": list(x.shape), "dtype": x.dtype, "scale": float(x.quant.s), "zero_point": x.quant.zp},
        "output_tensor": {"name": out.name, "shape": list(out.shape), "dtype": out.dtype, "scale": float(out.quant.s),
                          "zero_point": out.quant.zp},
        "float_weight_bytes": float_weights,
        "weight_bytes": sum(t.nbytes for t in q.tensors.values() if t.is_const),
        "layers": layers, "accuracy": None,
    }


def evaluate(result, x, y, progress) -> dict:
    from tinyml.quantize.evaluate import accuracy, float_outputs, run_int8

    f, q = float_outputs(result.float_graph, x), run_int8(result.int8_graph, x, progress)
    agree = float((f.argmax(axis=1) == q.argmax(axis=1)).mean() * 100)
    fa, qa = accuracy(f, y), accuracy(q, y)
    return {"float": fa, "int8": qa, "delta": qa - fa, "top1_agreement": agree, "samples": int(len(y)),
            "int8_engine": "tinyml numpy reference (bit-exact with TFLite Micro)"}


def print_report(r: dict) -> None:
    con = Console()
    con.print(f"{r['model']} ({r['format']}) -> {r['output']}: {r['output_bytes']:,} bytes, "
              f"weights {r['float_weight_bytes']:,} -> {r['weight_bytes']:,} B")
    extra = f" at {r['percentile']}%" if r["percentile"] else ""
    con.print(f"calibration: {r['calibration']}{extra} on {r['calibration_samples']} inputs, bias correction "
              f"{'on' if r['bias_correction'] else 'off'}; input int8 scale {r['input']['scale']:.6g} "
              f"zero point {r['input']['zero_point']}")
    t = Table(title="int8 layers")
    for col in ("#", "op", "node", "w bits", "a bits", "range", "scale", "zp"):
        t.add_column(col, justify="right" if col in ("#", "w bits", "a bits", "scale", "zp") else "left")
    for i, l in enumerate(r["layers"]):
        rng = f"[{l['range'][0]:.4g}, {l['range'][1]:.4g}]" if l["range"] else "shared/fixed"
        t.add_row(str(i), l["op"], l["node"][:40], str(l["weight_bits"] or "-"), str(l["activation_bits"]), rng,
                  f"{l['scale']:.4g}", str(l["zero_point"]))
    con.print(t)
    a = r["accuracy"]
    if a:
        con.print(f"accuracy on {a['samples']} inputs: float {a['float']:.2f}%, int8 {a['int8']:.2f}% "
                  f"({a['delta']:+.2f} points), top-1 agreement {a['top1_agreement']:.2f}%")
