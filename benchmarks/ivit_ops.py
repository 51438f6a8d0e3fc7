"""I-ViT's integer-only ops (issue 15 part 2): error against float, and the accuracy difference of
`--integer-only` on trained transformers.

ops: each op's error against its float function on int8 inputs, next to TFLite's int8 formulation
where one exists (SOFTMAX; the LayerNorm pattern is measured on the trained models' LayerNorms):
SHIFTMAX vs softmax on attention-like rows, SHIFTGELU vs erf-GELU on every input code, ILAYERNORM
vs LayerNorm on random rows, BATCH_MATMUL (int8, dyadic requantization) vs the float product.

accuracy: the zoo's transformer architectures trained on labelled offline data (the zoo's own
vit_tiny_8x8 / kwt_tiny have random weights): the ViT (8x8 input, patch 4, dim 16) on scikit-learn
digits, the KWT (32 frames of 32 log-mel bins) on the synthesized keywords (tinyml/search/kws.py);
converted to int8 by TensorFlow; held-out top-1 of the float model, of the int8 file (our numpy
reference, bit-exact with TFLite Micro) and of its --integer-only rewrite (numpy reference, the
oracle the generated C matches in QEMU), and the mean error of each LayerNorm against float.

A benchmark, not a test: prints tables, writes JSON.
Usage: nice -n 5 python benchmarks/ivit_ops.py [--json out.json] [--skip-accuracy]
"""
from __future__ import annotations

import argparse
import json

import numpy as np
from rich.console import Console
from rich.table import Table
from scipy.special import erf

from tinyml.ir import Graph, Node, Quant, Tensor
from tinyml.reference import reference_outputs, run_reference
from tinyml.zoo.transformer import batched


def _graph(op: str, inputs: list[Tensor], out: Tensor, attrs: dict) -> Graph:
    g = Graph(name=op.lower())
    for t in [*inputs, out]:
        g.tensors[t.name] = t
    g.nodes.append(Node(op, [t.name for t in inputs], [out.name], attrs, name=op.lower()))
    g.inputs, g.outputs = [t.name for t in inputs if not t.is_const], [out.name]
    return g


def _act(name: str, shape: tuple[int, ...], scale: float, zp: int) -> Tensor:
    return Tensor(name, shape, "int8", Quant([scale], [zp]))


def _codes(real: np.ndarray, scale: float, zp: int) -> np.ndarray:
    return np.clip(np.round(real / scale) + zp, -128, 127).astype(np.int8)


def _deq(codes: np.ndarray, t: Tensor) -> np.ndarray:
    return (np.asarray(codes, np.float64) - t.quant.zp) * float(t.quant.scale[0])


def softmax_rows(rng: np.random.Generator) -> list[dict]:
    rows = []
    for depth, spread, scale in ((5, 2.0, 0.05), (17, 3.0, 0.08), (65, 3.0, 0.1), (65, 6.0, 0.2)):
        real = rng.normal(0, spread, (256, depth))
        scale = float(np.float32(scale))
        x = _codes(real, scale, 0)
        xr = _deq(x, _act("x", (1,), scale, 0))
        want = np.exp(xr - xr.max(-1, keepdims=True))
        want /= want.sum(-1, keepdims=True)
        errs = {}
        for op, attrs in (("SHIFTMAX", {"beta": 1.0}), ("SOFTMAX", {"beta": 1.0})):
            g = _graph(op, [_act("x", x.shape, scale, 0)], _act("y", x.shape, 1 / 256, -128), attrs)
            got = _deq(reference_outputs(g, [x])[0], g["y"])
            errs[op] = (float(np.max(np.abs(got - want))), float(np.mean(np.abs(got - want))))
        rows.append({"op": "SHIFTMAX", "case": f"rows of {depth}, logits N(0,{spread:g}), scale {scale:g}",
                     "max_abs": errs["SHIFTMAX"][0], "mean_abs": errs["SHIFTMAX"][1],
                     "tflite_max_abs": errs["SOFTMAX"][0], "tflite_mean_abs": errs["SOFTMAX"][1], "unit": "probability"})
    return rows


def gelu_rows() -> list[dict]:
    rows = []
    for s_in, s_out, zp_out in ((0.02, 0.012, -114), (0.04, 0.022, -120), (0.08, 0.042, -124)):  # GELU range fits
        x = np.arange(-128, 128, dtype=np.int8)
        g = _graph("SHIFTGELU", [_act("x", x.shape, s_in, 0)], _act("y", x.shape, s_out, zp_out), {})
        xr = _deq(x, g["x"])
        want = 0.5 * xr * (1 + erf(xr / np.sqrt(2)))
        err = np.abs(_deq(reference_outputs(g, [x])[0], g["y"]) - want) / s_out
        ideal = np.abs(_deq(_codes(want, s_out, zp_out), g["y"]) - want) / s_out
        rows.append({"op": "SHIFTGELU", "case": f"all codes, input scale {s_in:g} (range +-{128 * s_in:.2g})",
                     "max_abs": float(err.max()), "mean_abs": float(err.mean()),
                     "tflite_max_abs": float(ideal.max()), "tflite_mean_abs": float(ideal.mean()),
                     "unit": "output codes (reference column: float GELU rounded once)"})
    return rows


def layernorm_rows(rng: np.random.Generator) -> list[dict]:
    rows = []
    for c, s_in in ((16, 0.05), (64, 0.05), (64, 0.4)):
        real = rng.normal(0.3, 1.0, (256, c)) * rng.uniform(0.2, 2.0, (256, 1))
        x = _codes(real, s_in, 0)
        gamma = rng.uniform(0.5, 1.5, c).astype(np.float32)
        beta = rng.normal(0, 0.2, c).astype(np.float32)
        s_out = 0.04
        g = _graph("ILAYERNORM", [_act("x", x.shape, s_in, 0), Tensor("gamma", (c,), "float32", data=gamma),
                                  Tensor("beta", (c,), "float32", data=beta)], _act("y", x.shape, s_out, 0),
                   {"epsilon": 1e-5})
        xr = _deq(x, g["x"])
        want = (xr - xr.mean(-1, keepdims=True)) / np.sqrt(xr.var(-1, keepdims=True) + 1e-5) * gamma + beta
        err = np.abs(_deq(reference_outputs(g, [x])[0], g["y"]) - want) / s_out
        ideal = np.abs(_deq(_codes(want, s_out, 0), g["y"]) - want) / s_out
        rows.append({"op": "ILAYERNORM", "case": f"{c} channels, input scale {s_in:g}", "max_abs": float(err.max()),
                     "mean_abs": float(err.mean()), "tflite_max_abs": float(ideal.max()),
                     "tflite_mean_abs": float(ideal.mean()), "unit": "output codes (reference column: float rounded once)"})
    return rows


def matmul_rows(rng: np.random.Generator) -> list[dict]:
    a = rng.integers(-128, 128, (1, 2, 64, 16)).astype(np.int8)
    b = rng.integers(-128, 128, (1, 2, 16, 64)).astype(np.int8)
    g = _graph("BATCH_MATMUL", [_act("a", a.shape, 0.05, 3), _act("b", b.shape, 0.04, -2)],
               _act("y", (1, 2, 64, 64), 2.5, 1), {"adj_x": False, "adj_y": False})
    want = np.matmul(_deq(a, g["a"]), _deq(b, g["b"]))
    err = np.abs(_deq(reference_outputs(g, [a, b])[0], g["y"]) - want) / 2.5
    return [{"op": "BATCH_MATMUL", "case": "[64x16].[16x64] x 2 heads", "max_abs": float(err.max()),
             "mean_abs": float(err.mean()), "tflite_max_abs": None, "tflite_mean_abs": None, "unit": "output codes"}]


# -- accuracy on trained models --------------------------------------------------

def _train(tf, build, x, y, xt, yt, epochs: int) -> tuple[object, float]:
    model = build(batched(tf))
    model.compile(optimizer=tf.keras.optimizers.Adam(3e-3), loss=tf.keras.losses.SparseCategoricalCrossentropy(
        from_logits=True), metrics=["accuracy"])
    model.fit(x, y, batch_size=32, epochs=epochs, verbose=0)
    acc = 100.0 * float(np.mean(np.argmax(model.predict(xt, verbose=0), -1) == yt))
    single = build(tf)
    single.set_weights(model.get_weights())
    return single, acc


def _ln_errors(g: Graph, samples: list) -> float:
    """Mean |error| (in output codes) of the graph's LayerNorms against float LayerNorm of their int8 input."""
    errs = []
    for x in samples:
        vals = run_reference(g, x)
        for n in g.nodes:
            if n.op == "ILAYERNORM":
                xi, yo = g[n.inputs[0]], g[n.outputs[0]]
                r = _deq(vals[xi.name], xi)
                want = (r - r.mean(-1, keepdims=True)) / np.sqrt(r.var(-1, keepdims=True) + n.attrs["epsilon"]) \
                    * g[n.inputs[1]].data + g[n.inputs[2]].data
                errs.append(np.abs(_deq(vals[yo.name], yo).reshape(want.shape) - want).mean() / float(yo.quant.scale[0]))
    return float(np.mean(errs))


def accuracy_rows(console: Console) -> list[dict]:
    from tinyml.pipeline import load_graph
    from tinyml.quantize.evaluate import quantize_input
    from tinyml.search.kws import WORDS, keyword_arrays
    from tinyml.zoo.default_model import _tensorflow, digits, tf_int8
    from tinyml.zoo.transformer import keyword_transformer, tiny_vit

    tf = _tensorflow()
    tf.keras.utils.set_random_seed(15)
    x, y, xt, yt = digits()
    kx, ky = keyword_arrays()
    order = np.random.default_rng(15).permutation(len(kx))
    cut = int(0.8 * len(kx))
    tasks = [
        ("vit_tiny_8x8 on digits", lambda t: tiny_vit(t, image=8, patch=4, dim=16, heads=2, depth=1, classes=10),
         x, y, xt, yt, 60),
        ("kwt (32x32, dim 16, depth 2) on keywords",
         lambda t: keyword_transformer(t, frames=32, features=32, dim=16, heads=2, depth=2, classes=len(WORDS)),
         kx[order[:cut], ..., 0], ky[order[:cut]], kx[order[cut:], ..., 0], ky[order[cut:]], 30),
    ]
    rows = []
    for name, build, xtr, ytr, xte, yte, epochs in tasks:
        console.print(f"training {name} ({epochs} epochs)...")
        model, float_acc = _train(tf, build, xtr, ytr, xte, yte, epochs)
        data = tf_int8(tf, model, xtr[:200])
        accs, ln = {}, {}
        for label, rewrites in (("int8", None), ("integer_only", {})):
            g = load_graph(data, rewrites)
            codes = quantize_input(g, xte)
            out = np.stack([reference_outputs(g, [c[None]])[0].reshape(-1) for c in codes])
            accs[label] = 100.0 * float(np.mean(np.argmax(out, -1) == yte))
            if rewrites is not None:
                ln = {"rewrites": dict(rewrites), "ln_err_codes": _ln_errors(g, [[c[None]] for c in codes[:20]])}
        rows.append({"task": name, "test_samples": len(yte), "float_top1": float_acc, "int8_top1": accs["int8"],
                     "integer_only_top1": accs["integer_only"], **ln})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--skip-accuracy", action="store_true", help="only the per-op errors (no training)")
    args = ap.parse_args()
    console = Console()
    rng = np.random.default_rng(0)
    ops = softmax_rows(rng) + gelu_rows() + layernorm_rows(rng) + matmul_rows(rng)
    t = Table(title="I-ViT ops: error against float (numpy reference = the generated C, bit for bit)")
    for col in ("op", "case", "max |err|", "mean |err|", "TFLite int8 / ideal max", "mean", "unit"):
        t.add_column(col)
    fmt = lambda v: "-" if v is None else f"{v:.4f}"  # noqa: E731
    for r in ops:
        t.add_row(r["op"], r["case"], fmt(r["max_abs"]), fmt(r["mean_abs"]), fmt(r["tflite_max_abs"]),
                  fmt(r["tflite_mean_abs"]), r["unit"])
    console.print(t)
    acc = [] if args.skip_accuracy else accuracy_rows(console)
    if acc:
        t = Table(title="--integer-only: held-out top-1 (%)")
        for col in ("task", "test", "float", "int8 (TFLite Micro)", "integer-only", "LayerNorm err (codes)", "rewrites"):
            t.add_column(col)
        for r in acc:
            t.add_row(r["task"], str(r["test_samples"]), f"{r['float_top1']:.2f}", f"{r['int8_top1']:.2f}",
                      f"{r['integer_only_top1']:.2f}", f"{r['ln_err_codes']:.3f}", str(r["rewrites"]))
        console.print(t)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"ops": ops, "accuracy": acc}, f, indent=1)


if __name__ == "__main__":
    main()
