"""QuantMCU's value-driven precision per patch (issue 14): the decision pass and its quantize option."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from tinyml.cli import main
from tinyml.pipeline import load_graph
from tinyml.quantize.patch_precision import requantized

sys.path.insert(0, str(Path(__file__).parent))
from test_subbyte import chain_cnn_onnx  # noqa: E402


def test_requantized_keeps_the_4_bit_grid_and_clips_beyond_it() -> None:
    zp, clip = -5, 14.0  # step 2 int8 steps
    grid = zp + 2 * np.arange(-8, 8)
    assert np.array_equal(requantized(grid.astype(np.int8), zp, clip), grid)
    assert requantized(np.array([127, -128], np.int8), zp, clip).tolist() == [zp + 14, zp - 16]
    assert requantized(np.array([zp + 3], np.int8), zp, clip).tolist() == [zp + 4]  # 1.5 steps -> 2 (to even)
    # one-sided (never below the zero point, e.g. after ReLU): 16 levels above it, step clip / 15
    ramp = np.array([-128, -127, -100, 0, 127], np.int8)
    assert requantized(ramp, -128, 255.0, one_sided=True).tolist() == [-128, -128, -94, 8, 127]


def _decide(tmp: Path, x: np.ndarray) -> dict:
    tmp.mkdir()
    (tmp / "m.onnx").write_bytes(chain_cnn_onnx(8))
    np.savez(tmp / "c.npz", x=x)
    assert main(["quantize", str(tmp / "m.onnx"), "--calib", str(tmp / "c.npz"), "-o", str(tmp / "q.tflite"),
                 "--patch-precision", "value", "--patch-grid", str(tmp / "g.png"), "--json", str(tmp / "r.json")]) == 0
    return json.loads((tmp / "r.json").read_text())["patch_precision"]


def test_patch_precision_keeps_the_patch_that_saw_an_outlier_at_8_bits(tmp_path: Path) -> None:
    """A bright top-right corner on one calibration input turns that corner's patch from 4 to 8
    bits; the model written keeps 8-bit activations; the grid is drawn."""
    x = np.random.default_rng(0).uniform(0, 1, (16, 3, 16, 16)).astype(np.float32)
    clean = _decide(tmp_path / "clean", x)
    x[0, :, :3, -3:] = 6.0
    r = _decide(tmp_path / "spot", x)
    assert clean["stage"] == r["stage"]
    grid = np.array(r["bits_grid"])
    assert np.array(clean["bits_grid"])[0, -1] == 4 and grid[0, -1] == 8
    assert grid.shape == tuple(r["grid"]) and set(grid.ravel()) <= {4, 8}
    assert r["outlier_patches"] == int((grid == 8).sum()) < grid.size
    assert r["low_tensors"] and r["bops"] < r["bops_8bit"] and r["agreement_estimated"] >= 0.99
    assert (tmp_path / "spot" / "g.png").read_bytes()[:4] == b"\x89PNG"
    g = load_graph((tmp_path / "spot" / "q.tflite").read_bytes())
    assert all(t.bits == 8 for t in g.activations())


def test_patch_grid_without_the_decision_is_bad_input(tmp_path: Path) -> None:
    (tmp_path / "m.onnx").write_bytes(chain_cnn_onnx(8))
    np.savez(tmp_path / "c.npz", x=np.zeros((2, 3, 16, 16), np.float32))
    assert main(["quantize", str(tmp_path / "m.onnx"), "--calib", str(tmp_path / "c.npz"), "-o",
                 str(tmp_path / "q.tflite"), "--patch-grid", str(tmp_path / "g.png")]) == 2
    assert not (tmp_path / "g.png").exists()
