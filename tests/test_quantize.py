"""`tinyml quantize`: float models (ONNX, float .tflite, Keras, PyTorch exports) to int8 .tflite.

Oracles: ONNX's own reference evaluator for the float import, TFLite Micro for
the int8 result (bit-exact through `tinyml validate --target host`), TFLite's
quantization spec for the parameters, plain numpy for calibration ranges, and
TensorFlow's converter for accuracy.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tinyml.cli import main
from tinyml.frontend.tflite import load_tflite

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

RNG = np.random.default_rng(7)


def _init(name: str, a: np.ndarray) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(a, np.float32), name)


def small_cnn_onnx() -> bytes:
    """NCHW 1x2x8x8 -> Conv+BN+Relu -> depthwise -> Add (residual) -> Clip(0,6) -> MaxPool -> Concat -> GAP -> Gemm -> Softmax."""
    r = np.random.default_rng(3)
    inits = [
        _init("w1", r.normal(0, 0.4, (6, 2, 3, 3))), _init("b1", r.normal(0, 0.1, 6)),
        _init("g", r.uniform(0.5, 1.5, 6)), _init("be", r.normal(0, 0.1, 6)),
        _init("mu", r.normal(0, 0.1, 6)), _init("var", r.uniform(0.5, 2, 6)),
        _init("wd", r.normal(0, 0.4, (6, 1, 3, 3))), _init("bd", r.normal(0, 0.1, 6)),
        _init("w2", r.normal(0, 0.3, (4, 6, 1, 1))),
        _init("wf", r.normal(0, 0.3, (5, 10))), _init("bf", r.normal(0, 0.1, 5)),
        _init("lo", np.array(0.0)), _init("hi", np.array(6.0)),
    ]
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["c1", "g", "be", "mu", "var"], ["bn"], epsilon=1e-5),
        helper.make_node("Relu", ["bn"], ["r1"]),
        helper.make_node("Conv", ["r1", "wd", "bd"], ["dw"], pads=[1, 1, 1, 1], group=6),
        helper.make_node("Add", ["dw", "r1"], ["res"]),
        helper.make_node("Clip", ["res", "lo", "hi"], ["r6"]),
        helper.make_node("MaxPool", ["r6"], ["mp"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Conv", ["mp", "w2"], ["pw"]),
        helper.make_node("Concat", ["mp", "pw"], ["cat"], axis=1),
        helper.make_node("GlobalAveragePool", ["cat"], ["gap"]),
        helper.make_node("Flatten", ["gap"], ["flat"], axis=1),
        helper.make_node("Gemm", ["flat", "wf", "bf"], ["fc"], transB=1),
        helper.make_node("Softmax", ["fc"], ["y"], axis=-1),
    ]
    graph = helper.make_graph(nodes, "small_cnn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 5])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 15)])
    onnx.checker.check_model(model)
    return model.SerializeToString()


@pytest.fixture(scope="module")
def onnx_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    p = tmp_path_factory.mktemp("onnx") / "small_cnn.onnx"
    p.write_bytes(small_cnn_onnx())
    return p


@pytest.fixture(scope="module")
def calib(tmp_path_factory: pytest.TempPathFactory) -> Path:
    p = tmp_path_factory.mktemp("calib") / "calib.npy"
    np.save(p, RNG.uniform(0, 1, (48, 2, 8, 8)).astype(np.float32))
    return p


@pytest.fixture(scope="module")
def quantized(onnx_model: Path, calib: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("out") / "q.tflite"
    assert main(["quantize", str(onnx_model), "--calib", str(calib), "-o", str(out), "--json",
                 str(out.with_suffix(".json"))]) == 0
    return out


# ---- import ------------------------------------------------------------------
def test_onnx_import_matches_onnx_reference_evaluator(onnx_model: Path) -> None:
    from onnx.reference import ReferenceEvaluator

    from tinyml.frontend.float_model import load_float_model
    from tinyml.quantize.evaluate import float_outputs
    from tinyml.quantize.prepare import prepare_float

    x = RNG.uniform(-1, 1, (5, 2, 8, 8)).astype(np.float32)
    g, fmt = load_float_model(onnx_model)
    prepare_float(g)
    ref = ReferenceEvaluator(onnx_model.read_bytes())
    expected = np.concatenate([ref.run(None, {"x": x[i:i + 1]})[0] for i in range(len(x))])
    assert fmt == "onnx"
    np.testing.assert_allclose(float_outputs(g, x), expected, rtol=1e-5, atol=1e-6)
    assert [n.op for n in g.nodes][:2] == ["TRANSPOSE", "CONV_2D"] and "MUL" not in {n.op for n in g.nodes}  # BN folded


# ---- the int8 result -----------------------------------------------------------
def test_quantized_onnx_is_bit_exact_with_tflite_micro_on_the_host(quantized: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(quantized), "--target", "host", "--inputs", "10", "--json", "-"]) == 0
    assert json.loads(capsys.readouterr().out)["bit_exact"] is True


def test_our_eval_engine_agrees_with_tflite_micro(quantized: Path) -> None:
    from tinyml.oracle import TflmOracle
    from tinyml.pipeline import load_graph
    from tinyml.quantize.evaluate import quantize_input, run_int8

    data = quantized.read_bytes()
    g = load_graph(data)
    x = RNG.uniform(0, 1, (30, 2, 8, 8)).astype(np.float32)
    tflm = TflmOracle(data).run_batch([[c[None]] for c in quantize_input(g, x)])
    np.testing.assert_array_equal(run_int8(g, x), np.stack([t[0].reshape(-1) for t in tflm]))


def test_parameters_follow_tflite_int8_spec(quantized: Path) -> None:
    g = load_tflite(quantized.read_bytes())
    assert g[g.inputs[0]].dtype == "int8" and g[g.outputs[0]].dtype == "int8"
    for n in g.nodes:
        if n.op in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"):
            w, b, x = g[n.inputs[1]], g[n.inputs[2]], g[n.inputs[0]]
            axis = 3 if n.op == "DEPTHWISE_CONV_2D" else 0
            assert w.dtype == "int8" and w.quant.axis == axis and w.quant.scale.size == w.shape[axis]
            assert not w.quant.zero_point.any() and w.data.min() >= -127
            assert b.dtype == "int32" and not b.quant.zero_point.any()
            np.testing.assert_allclose(b.quant.scale, x.quant.s * w.quant.scale.astype(np.float64), rtol=1e-6)
        if n.op == "SOFTMAX":
            y = g[n.outputs[0]]
            assert (float(y.quant.s), y.quant.zp) == (1 / 256, -128)
        if n.op in ("MAX_POOL_2D", "CONCATENATION", "TRANSPOSE", "RESHAPE"):
            q = g[n.outputs[0]].quant
            for i in n.inputs[:None if n.op == "CONCATENATION" else 1]:
                assert (g[i].quant.s, g[i].quant.zp) == (q.s, q.zp), n.op
    assert {"CONCATENATION", "MAX_POOL_2D", "DEPTHWISE_CONV_2D", "ADD", "MEAN", "SOFTMAX"} <= {n.op for n in g.nodes}


def test_json_report_has_the_layers_and_calibration(quantized: Path) -> None:
    r = json.loads(quantized.with_suffix(".json").read_text())
    assert r["format"] == "onnx" and r["calibration"] == "minmax" and r["calibration_samples"] == 48
    assert all(l["activation_bits"] == 8 for l in r["layers"])
    assert r["weight_bytes"] < r["float_weight_bytes"] / 2


def test_float_tflite_input_quantizes_and_validates(onnx_model: Path, calib: Path, tmp_path: Path) -> None:
    """A float .tflite (written from the imported ONNX graph) goes through the ordinary reader."""
    from tinyml.frontend.float_model import load_float_model
    from tinyml.frontend.tflite_writer import write_tflite

    g, _ = load_float_model(onnx_model)
    (tmp_path / "f.tflite").write_bytes(write_tflite(g))
    out = tmp_path / "q.tflite"
    assert main(["quantize", str(tmp_path / "f.tflite"), "--calib", str(calib), "-o", str(out),
                 "--calibration", "mse"]) == 0
    assert main(["validate", str(out), "--target", "host", "--inputs", "5"]) == 0


# ---- calibration ---------------------------------------------------------------------
def _range(method: str, values: np.ndarray) -> tuple[float, float]:
    from tinyml.quantize.calibrate import BINS, mse_range, percentile_range
    from tinyml.quantize.policy import QuantPolicy

    lo, hi = float(values.min()), float(values.max())
    counts = np.histogram(values, bins=BINS, range=(lo, hi))[0]
    choose = percentile_range if method == "percentile" else mse_range
    return choose(counts, lo, hi, QuantPolicy(calibration=method, percentile=99.9))


def test_percentile_clips_a_rare_outlier() -> None:
    v = np.concatenate([np.random.default_rng(0).normal(0, 1, 100_000), [60.0]])
    lo, hi = _range("percentile", v)
    assert hi == pytest.approx(np.percentile(v, 99.9), rel=0.02)
    assert lo == pytest.approx(np.percentile(v, 0.1), rel=0.02)


def test_mse_clips_heavy_tails_and_beats_minmax_in_squared_error() -> None:
    from tinyml.quantize.scales import fake_quantize

    v = np.random.default_rng(1).laplace(0, 1, 200_000)
    lo, hi = _range("mse", v)
    assert v.min() < lo < 0 < hi < v.max()
    err = lambda a, b: float(np.mean((fake_quantize(v, a, b, 8) - v) ** 2))  # noqa: E731
    assert err(lo, hi) < 0.8 * err(float(v.min()), float(v.max()))


def test_minmax_calibration_records_the_data_range() -> None:
    from tinyml.quantize.calibrate import calibrate
    from tinyml.quantize.policy import QuantPolicy
    from tinyml.quantize.prepare import prepare_float

    g = _onnx_graph()
    prepare_float(g)
    x = RNG.uniform(-2, 3, (20, 2, 8, 8)).astype(np.float32)
    cal = calibrate(g, x, QuantPolicy())
    assert cal.ranges[g.inputs[0]] == (float(x.min()), float(x.max()))
    softmax = next(n for n in g.nodes if n.op == "SOFTMAX")
    lo, hi = cal.ranges[softmax.outputs[0]]
    assert 0 <= lo < hi <= 1


def _onnx_graph():
    from tinyml.frontend.onnx_reader import load_onnx

    return load_onnx(small_cnn_onnx())


def test_bias_correction_removes_the_mean_output_shift() -> None:
    """With coarse weights, each conv's mean output per channel drifts; correction brings it back."""
    from tinyml.quantize import QuantPolicy, quantize_float_graph
    from tinyml.quantize.evaluate import quantize_input, with_batch
    from tinyml.quantize.float_ref import run_float
    from tinyml.reference import run_reference

    x = RNG.uniform(0, 1, (64, 2, 8, 8)).astype(np.float32)
    shifts = {}
    for correction in (False, True):
        g = _onnx_graph()
        q = quantize_float_graph(g, x, QuantPolicy(bias_correction=correction))
        conv = next(n for n in q.int8_graph.nodes if n.op == "CONV_2D")
        values = run_reference(with_batch(q.int8_graph, len(x)), [quantize_input(q.int8_graph, x)])
        yq = q.int8_graph[conv.outputs[0]].quant
        int8_mean = ((values[conv.outputs[0]].astype(np.float64) - yq.zp) * yq.s).mean(axis=(0, 1, 2))
        float_values: dict[str, np.ndarray] = {}
        run_float(q.float_graph, [x], lambda n, a, y: float_values.setdefault(n.outputs[0], y))
        shifts[correction] = np.abs(int8_mean - float_values[conv.outputs[0]].mean(axis=(0, 1, 2))).mean()
    assert shifts[True] < shifts[False]


# ---- bad input: one line, exit 2 -------------------------------------------------------
def _cli(args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tinyml.cli", "quantize", *args], capture_output=True, text=True,
                          timeout=120)


@pytest.mark.parametrize("case", ["unknown_format", "garbage_onnx", "garbage_tflite", "calib_shape", "calib_no_x",
                                  "calib_nan", "calib_pickle", "eval_labels", "eval_no_y", "int8_model", "out_suffix",
                                  "unsupported_op", pytest.param("garbage_keras", marks=pytest.mark.slow)])
def test_bad_input_is_one_line_and_exit_2(case: str, onnx_model: Path, calib: Path, quantized: Path,
                                          tmp_path: Path) -> None:
    model, data, extra, out = str(onnx_model), str(calib), [], str(tmp_path / "o.tflite")
    if case == "unknown_format":
        (tmp_path / "m.pb").write_bytes(b"xx")
        model = str(tmp_path / "m.pb")
    elif case == "garbage_onnx":
        (tmp_path / "m.onnx").write_bytes(b"\x08\x07garbage" * 10)
        model = str(tmp_path / "m.onnx")
    elif case == "garbage_keras":
        (tmp_path / "m.keras").write_bytes(b"PK\x03\x04 not a zip archive")
        model = str(tmp_path / "m.keras")
    elif case == "garbage_tflite":
        (tmp_path / "m.tflite").write_bytes(b"\0\0\0\0TFL3" + b"\xff" * 40)
        model = str(tmp_path / "m.tflite")
    elif case == "calib_shape":
        np.save(tmp_path / "c.npy", np.zeros((4, 8, 8, 2), np.float32))  # NHWC where the model takes NCHW
        data = str(tmp_path / "c.npy")
    elif case == "calib_no_x":
        np.savez(tmp_path / "c.npz", inputs=np.zeros((4, 2, 8, 8)))
        data = str(tmp_path / "c.npz")
    elif case == "calib_nan":
        np.save(tmp_path / "c.npy", np.full((4, 2, 8, 8), np.nan, np.float32))
        data = str(tmp_path / "c.npy")
    elif case == "calib_pickle":
        np.save(tmp_path / "c.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
        data = str(tmp_path / "c.npy")
    elif case == "eval_labels":
        np.savez(tmp_path / "e.npz", x=np.zeros((3, 2, 8, 8), np.float32), y=np.array([0, 1, 9]))
        extra = ["--eval", str(tmp_path / "e.npz")]
    elif case == "eval_no_y":
        np.savez(tmp_path / "e.npz", x=np.zeros((3, 2, 8, 8), np.float32))
        extra = ["--eval", str(tmp_path / "e.npz")]
    elif case == "int8_model":
        model = str(quantized)
    elif case == "out_suffix":
        out = str(tmp_path / "o.bin")
    elif case == "unsupported_op":
        m = onnx.load_model_from_string(small_cnn_onnx())
        m.graph.node[2].op_type = "Selu"
        (tmp_path / "m.onnx").write_bytes(m.SerializeToString())
        model = str(tmp_path / "m.onnx")
    proc = _cli([model, "--calib", data, "-o", out, *extra])
    assert proc.returncode == 2, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert not Path(out).exists()


# ---- Keras and PyTorch on real data (slow: trains) -------------------------------------------
@pytest.fixture(scope="module")
def digits_keras(tmp_path_factory: pytest.TempPathFactory):
    from tinyml.zoo.default_model import _build, _tensorflow, digits

    tf = _tensorflow()
    tf.keras.utils.set_random_seed(5)
    x_train, y_train, x_test, y_test = digits()
    model = _build(tf)
    model.compile(optimizer=tf.keras.optimizers.Adam(2e-3), loss="sparse_categorical_crossentropy")
    model.fit(x_train, y_train, epochs=25, batch_size=32, verbose=0)
    d = tmp_path_factory.mktemp("digits")
    model.save(d / "digits.keras")
    calib = x_train[::4][:100]
    np.save(d / "calib.npy", calib)
    np.savez(d / "eval.npz", x=x_test, y=y_test)
    return tf, model, d, calib, x_test, y_test


@pytest.mark.slow
def test_keras_digits_accuracy_close_to_float_and_to_tensorflows_converter(digits_keras) -> None:
    from tinyml.pipeline import load_graph
    from tinyml.quantize.evaluate import accuracy, run_int8
    from tinyml.zoo.default_model import tf_int8

    tf, model, d, calib, x_test, y_test = digits_keras
    out = d / "q.tflite"
    assert main(["quantize", str(d / "digits.keras"), "--calib", str(d / "calib.npy"), "--eval",
                 str(d / "eval.npz"), "-o", str(out), "--json", str(d / "q.json")]) == 0
    acc = json.loads((d / "q.json").read_text())["accuracy"]
    assert acc["samples"] == len(y_test)
    assert acc["int8"] >= acc["float"] - 1.0  # stated bound: within 1 point of float on digits
    assert main(["validate", str(out), "--target", "host", "--inputs", "10"]) == 0

    theirs = accuracy(run_int8(load_graph(tf_int8(tf, model, calib)), x_test), y_test)
    assert acc["int8"] >= theirs - 0.3


@pytest.mark.slow
def test_pytorch_onnx_export_quantizes_bit_exactly(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)

    class Net(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.c1, self.b1 = torch.nn.Conv2d(1, 8, 3, padding=1), torch.nn.BatchNorm2d(8)
            self.dw, self.pw = torch.nn.Conv2d(8, 8, 3, padding=1, groups=8), torch.nn.Conv2d(8, 8, 1)
            self.c2 = torch.nn.Conv2d(16, 16, 3, stride=2, padding=1)
            self.fc = torch.nn.Linear(16 * 2 * 2, 10)

        def forward(self, x):
            x = torch.relu(self.b1(self.c1(x)))
            y = torch.nn.functional.relu6(self.pw(self.dw(x)))
            x = torch.cat([y + x, x], 1)
            x = torch.nn.functional.avg_pool2d(torch.nn.functional.max_pool2d(torch.relu(self.c2(x)), 1), 2)
            return torch.softmax(self.fc(x.view(x.size(0), -1)), -1)

    net = Net().eval()
    with torch.no_grad():
        net.b1.running_mean.uniform_(-0.2, 0.2)
        net.b1.running_var.uniform_(0.5, 2.0)
    x = torch.rand(32, 1, 8, 8)
    torch.onnx.export(net, x[:1], tmp_path / "net.onnx", dynamo=False, input_names=["x"], output_names=["y"])
    np.save(tmp_path / "c.npy", x.numpy())
    from tinyml.frontend.float_model import load_float_model
    from tinyml.quantize.evaluate import float_outputs
    from tinyml.quantize.prepare import prepare_float

    g, _ = load_float_model(tmp_path / "net.onnx")
    prepare_float(g)
    np.testing.assert_allclose(float_outputs(g, x.numpy()), net(x).detach().numpy(), rtol=1e-4, atol=1e-6)
    out = tmp_path / "q.tflite"
    assert main(["quantize", str(tmp_path / "net.onnx"), "--calib", str(tmp_path / "c.npy"), "-o", str(out),
                 "--calibration", "percentile"]) == 0
    assert main(["validate", str(out), "--target", "host", "--inputs", "10"]) == 0
