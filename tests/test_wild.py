"""Every model of the wild sample (../shared/models/wild/, real files from public repositories):
supported ones analyze (with the timeline picture, with and without a streamed input) and
validate bit-exactly against TFLite Micro on the host and, slow-marked, in QEMU on a board they
fit; the others are refused in one line, exit 2, naming each unsupported op. docs/wild.md is the
table these rows check.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from tinyml.cli import main

WILD = Path(__file__).parents[1].parent / "shared" / "models" / "wild"

# model -> the board its QEMU validation runs on (the smallest that holds it)
SUPPORTED = {
    "ambiq_har_conv1d": "stm32f405",
    "ambiq_nnse_lstm_16x8_int16": "stm32f405",
    "armkws_basic_lstm_quantized_small": "stm32f405",
    "armkws_ds_cnn_l_quantized": "stm32f405",
    "efinix_mediapipe_face_detection": "stm32f746g-disco",
    "efinix_yolo_person_detect": "stm32f405",
    "mltk_keyword_spotting_pacman_v3": "stm32f405",
    "mltk_rock_paper_scissors_int8": "stm32f405",
    "mww_v2_vad_streaming": "stm32f405",
    "openmv_palm_detection_full_192": "mps2-an386",
    "tinyengine_ptq_mnist_lenet-300-100": "stm32f405",
    "tinymaix_cifar10_q": "stm32f405",
    "tinymaix_mnist_resnet_q": "stm32f405",
}
# float32 outputs from libm (expf/logf): newlib's and glibc's differ in the last bit now and then, so
# in QEMU they must be within the producer's stated tolerance (docs/ops.md), on the host bit-exact
LIBM_OUTPUTS = {"tinyengine_ptq_mnist_lenet-300-100"}
# model -> what the one-line refusal must say (each unsupported op named, "at node" after it)
REFUSED: dict[str, list[str]] = {}  # every sample model runs today; a refused file gets its expected words here


def _model(name: str) -> str:
    path = WILD / f"{name}.tflite"
    assert path.is_file(), f"{path} is missing: CI checks ../shared out beside the clone"
    return str(path)


def test_every_sample_model_has_a_row() -> None:
    assert sorted(p.stem for p in WILD.glob("*.tflite")) == sorted([*SUPPORTED, *REFUSED])


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("name", sorted(SUPPORTED))
def test_analyze_draws_its_timeline(name: str, stream: bool, tmp_path: Path) -> None:
    png = tmp_path / "timeline.png"
    extra = ["--input", "streamed"] if stream else []
    assert main(["analyze", _model(name), "--no-tflm", "--timeline", str(png), *extra]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("name", sorted(SUPPORTED))
def test_host_validation_is_bit_exact(name: str, capsys) -> None:
    assert main(["validate", _model(name), "--target", "host", "--inputs", "5"]) == 0
    assert "bit-exact" in capsys.readouterr().out


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(SUPPORTED))
def test_qemu_validation_is_bit_exact(name: str, capsys) -> None:
    assert main(["validate", _model(name), "--board", SUPPORTED[name], "--inputs", "2"]) == 0
    out = capsys.readouterr().out
    assert "bit-exact" in out or (name in LIBM_OUTPUTS and "within the stated float tolerance" in out)


def _ops_renamed(name: str, builtin: str, to: str, tmp_path: Path) -> tuple[str, int]:
    """A sample file with every `builtin` operator turned into `to` (options dropped): a model whose
    ops we lack, built from a real file so the refusal is tested even when every sample runs."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as s

    m = s.ModelT.InitFromObj(s.Model.GetRootAs(Path(_model(name)).read_bytes(), 0))
    old, new = getattr(s.BuiltinOperator, builtin), getattr(s.BuiltinOperator, to)
    codes = [i for i, c in enumerate(m.operatorCodes) if c.builtinCode == old]
    for i in codes:
        m.operatorCodes[i].builtinCode, m.operatorCodes[i].deprecatedBuiltinCode = new, min(new, 127)
    renamed = [op for op in m.subgraphs[0].operators if op.opcodeIndex in codes]
    for op in renamed:
        op.builtinOptionsType, op.builtinOptions = 0, None
    b = flatbuffers.Builder(0)
    b.Finish(m.Pack(b), file_identifier=b"TFL3")
    path = tmp_path / f"{name}_{to}.tflite"
    path.write_bytes(bytes(b.Output()))
    return str(path), len(renamed)


# refused sample files, and one real file whose CONV_2Ds became GELU (no kernel here runs it), so the
# refusal path is tested even while every sample model runs
REFUSAL_CASES = [*(("file", name) for name in sorted(REFUSED)), ("renamed", "tinymaix_mnist_resnet_q")]


@pytest.mark.parametrize("verb", [["analyze", "--no-tflm"], ["validate", "--target", "host"]])
@pytest.mark.parametrize("case", REFUSAL_CASES, ids=lambda c: f"{c[0]}-{c[1]}")
def test_refusal_is_one_line_naming_each_op(case: tuple[str, str], verb: list[str], tmp_path: Path,
                                            capsys) -> None:
    kind, name = case
    count = 1
    if kind == "file":
        path, expected = _model(name), REFUSED[name]
    else:
        path, count = _ops_renamed(name, "CONV_2D", "GELU", tmp_path)
        expected = ["unsupported op GELU"]
    assert count >= 1
    assert main([verb[0], path, *verb[1:]]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "malformed" not in err
    for words in expected:
        assert words in err, err
    assert err.count("unsupported op") == count and err.count(" at node ") == count, err  # each node named


def test_run_time_shaped_fill_is_checked_by_tflite_micro_on_the_folded_file(capsys) -> None:
    """TFLite Micro refuses armkws_basic_lstm_quantized_small as written (FILL takes a shape computed at
    run time); tinyml folds the static chain, and the oracle is TFLite Micro on the file with those FILLs
    folded (tinyml/oracle_rewrite.py): every other operator still runs in TFLite Micro."""
    from tinyml.errors import BadModel
    from tinyml.oracle import TflmOracle, model_oracle, random_inputs

    data = Path(_model("armkws_basic_lstm_quantized_small")).read_bytes()
    plain = TflmOracle(data)
    with pytest.raises(BadModel, match="cannot load"):
        plain.run(random_inputs(plain, 1)[0])
    oracle = model_oracle(data)
    assert "FILL" in oracle.name and oracle.model != data and len(oracle.model) > len(data) // 2
    assert main(["validate", _model("armkws_basic_lstm_quantized_small"), "--target", "host", "--inputs", "3"]) == 0
    out = capsys.readouterr().out
    assert "bit-exact" in out and "run-time-shaped FILLs folded" in out.replace("\n", "")
