"""QuantMCU per-patch precision (issue 14): the decision on real models and what it is worth.

1. A MobileNetV2-style network (stride-2 stem, inverted residual blocks, width 8-32) trained for a
   bounded time on Fashion-MNIST upsampled to 96x96 (torch, 1 thread), exported to ONNX and
   quantized to int8 by tinyml; 2. the zoo's mobilenet_v2_035_96 (its own int8 file), calibrated on
   the same Fashion-MNIST images (label-free; its accuracy on them means nothing, only agreement).
For each: the patch scheduler's first stage (--patch auto), the decision of
tinyml/quantize/patch_precision.py on 64 calibration images, bit operations of the stage as the
paper counts them (MACs x weight bits x activation bits over every patch's computed region),
and accuracy on held-out test images: int8 (= the uniform 8-bit patch schedule, which is bit-exact
with layer-by-layer int8) and the per-patch mixed widths *simulated* by the numpy reference
(labelled estimate: the generated code does not run mixed patches, docs/quantmcu.md).

Usage: nice -n 5 python benchmarks/quantmcu.py [--seconds 150] [--test 1000] [--json FILE]
Default JSON: benchmarks/results/quantmcu.json
"""
from __future__ import annotations

import argparse
import gzip
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from tinyml.fsutil import write_text_atomic

RESULTS = Path(__file__).parent / "results" / "quantmcu.json"
FASHION = Path("/usr/share/datasets/fashion-mnist")
SIZE = 96


def fashion(split: str, n: int) -> tuple[np.ndarray, np.ndarray]:
    """`n` images [n, 28, 28] in [0, 1] and labels of the train or t10k split."""
    with gzip.open(FASHION / f"{split}-images-idx3-ubyte.gz") as f:
        x = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28, 28)[:n]
    with gzip.open(FASHION / f"{split}-labels-idx1-ubyte.gz") as f:
        y = np.frombuffer(f.read(), np.uint8, offset=8)[:n]
    return x.astype(np.float32) / 255.0, y.astype(np.int64)


def upsample(x: np.ndarray, size: int = SIZE) -> np.ndarray:
    idx = np.arange(size) * x.shape[1] // size
    return x[:, idx][:, :, idx]


def train_mbv2(seconds: float, seed: int = 0) -> bytes:
    """A small MobileNetV2-style net trained for `seconds` on Fashion-MNIST at 96x96; ONNX bytes."""
    import torch
    from torch import nn

    torch.set_num_threads(1)
    torch.manual_seed(seed)

    def block(cin: int, cout: int, stride: int, expand: int) -> nn.Module:
        mid = cin * expand
        return nn.Sequential(nn.Conv2d(cin, mid, 1), nn.ReLU6(), nn.Conv2d(mid, mid, 3, stride, 1, groups=mid),
                             nn.ReLU6(), nn.Conv2d(mid, cout, 1))

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.stem = nn.Sequential(nn.Conv2d(1, 8, 3, 2, 1), nn.ReLU6())
            self.b1, self.b2 = block(8, 8, 2, 2), block(8, 8, 1, 3)
            self.b3, self.b4 = block(8, 16, 2, 3), block(16, 16, 1, 3)
            self.b5 = block(16, 32, 2, 3)
            self.head = nn.Linear(32, 10)

        def forward(self, x):
            x = self.b1(self.stem(x))
            x = x + self.b2(x)
            x = self.b3(x)
            x = x + self.b4(x)
            x = self.b5(x)
            return self.head(x.mean(dim=(2, 3)))

    net = Net()
    x, y = fashion("train", 20000)
    opt = torch.optim.Adam(net.parameters(), 3e-3)
    start, step = time.time(), 0
    rng = np.random.default_rng(seed)
    while time.time() - start < seconds:
        i = rng.integers(0, len(x), 64)
        xb = torch.from_numpy(upsample(x[i])[:, None])
        loss = nn.functional.cross_entropy(net(xb), torch.from_numpy(y[i]))
        opt.zero_grad()
        loss.backward()
        opt.step()
        step += 1
    net.eval()
    with tempfile.TemporaryDirectory() as tmp:
        p = Path(tmp) / "m.onnx"
        torch.onnx.export(net, torch.zeros(1, 1, SIZE, SIZE), str(p), dynamo=False, opset_version=13)
        return p.read_bytes()


def quantize_onnx(onnx: bytes, calib: np.ndarray) -> bytes:
    from tinyml.frontend.onnx_reader import load_onnx
    from tinyml.quantize import quantize_float_graph
    from tinyml.quantize.policy import QuantPolicy

    return quantize_float_graph(load_onnx(onnx), calib, QuantPolicy()).tflite


def as_input(g, images: np.ndarray, lo: float) -> list[list[np.ndarray]]:
    """Images in [0, 1] -> the graph's int8 input (NCHW or NHWC, channels repeated), range [lo, 1]."""
    x = g[g.inputs[0]]
    v = images * (1 - lo) + lo
    q = np.clip(np.round(v / float(x.quant.s)) + x.quant.zp, -128, 127).astype(np.int8)
    nhwc = x.shape[-1] in (1, 3) and x.shape[1] == SIZE
    c = x.shape[-1] if nhwc else x.shape[1]
    q = np.repeat(q[..., None], c, axis=3) if nhwc else np.repeat(q[:, None], c, axis=1)
    return [[v[None]] for v in q]


def study(name: str, tflite: bytes, cal_imgs: np.ndarray, test: tuple[np.ndarray, np.ndarray], lo: float,
          quantile: float) -> dict:
    from tinyml.pipeline import load_graph
    from tinyml.quantize.patch_precision import _run, decide, plot_grid
    from tinyml.schedule.patches import schedule_patches
    from tinyml.schedule.patches.options import PatchOptions

    g = load_graph(tflite)
    res = schedule_patches(g, PatchOptions())
    st = res.chosen.stages[0]
    t0 = time.time()
    pp = decide(g, st.spec.split, st.spec.rows, st.spec.cols, as_input(g, cal_imgs, lo),
                quantile=quantile, reuse=st.spec.reuse, vertical=st.spec.vertical)
    secs = time.time() - t0
    plot_grid(pp, cal_imgs[0], RESULTS.parent / f"quantmcu_{name}_q{round(quantile * 100)}_grid.png")
    imgs, labels = test
    ins = as_input(g, imgs, lo)
    from tinyml.quantize.patch_precision import _Stage

    masks = _Stage(g, st.spec.split, st.spec.rows, st.spec.cols, st.spec.reuse, st.spec.vertical).masks
    normal = {(i, j) for i in range(pp.rows) for j in range(pp.cols) if not pp.outlier[i, j]}
    fake = {t: (masks(t, normal), int(g[t].quant.zp), pp.clip[t], pp.one_sided[t]) for t in pp.low}
    top8 = np.array([int(np.argmax(_run(g, x, {})[g.outputs[0]])) for x in ins])
    topm = np.array([int(np.argmax(_run(g, x, fake)[g.outputs[0]])) for x in ins])
    d = pp.describe()
    d.pop("clip")
    d.pop("one_sided", None)
    d.pop("scores")
    return {"model": name, "quantile": quantile, "stage": st.label, "schedule_arena_bytes": res.chosen.plan.arena_bytes if res.chosen.plan
            else None, "decide_seconds": secs, **d,
            "accuracy_int8": float((top8 == labels).mean() * 100), "accuracy_mixed_simulated": float((topm == labels).mean() * 100),
            "agreement_test": float((top8 == topm).mean() * 100), "test_images": int(len(labels))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=150, help="training time of the Fashion-MNIST model")
    ap.add_argument("--test", type=int, default=1000, help="held-out test images")
    ap.add_argument("--quantiles", default="0.75,0.95", help="outlier clip quantiles of the patches' peaks")
    ap.add_argument("--json", default=str(RESULTS))
    args = ap.parse_args()
    from tinyml import zoo

    cal, _ = fashion("train", 20064)
    cal = upsample(cal[20000:])  # not among the training images
    tx, ty = fashion("t10k", args.test)
    test = (upsample(tx), ty)
    rows = []
    onnx = train_mbv2(args.seconds)
    q = quantize_onnx(onnx, cal[:, None])
    for qt in (float(v) for v in args.quantiles.split(",")):
        rows.append(study("mbv2_fashion96", q, cal, test, 0.0, qt))
        print(json.dumps(rows[-1], default=float))
        rows.append(study("mobilenet_v2_035_96", zoo.path("mobilenet_v2_035_96").read_bytes(), cal, test, -1.0, qt))
        print(json.dumps(rows[-1], default=float))
    write_text_atomic(Path(args.json), json.dumps({"rows": rows}, indent=1, default=float) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
