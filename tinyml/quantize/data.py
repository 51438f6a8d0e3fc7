"""Calibration and evaluation data from .npy/.npz files, checked against the model's input.

Files come from users: any problem (missing key, pickled objects, wrong
shape, NaN) is a one-line TinymlError, exit 2.
"""
from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from tinyml.errors import TinymlError, show


def _load(path: str | Path, what: str, keys: tuple[str, ...]) -> dict[str, np.ndarray]:
    p = Path(path)
    if p.suffix not in (".npy", ".npz"):
        raise TinymlError(f"{what} {show(str(p))}: expected a .npy or .npz file")
    try:
        loaded = np.load(p, allow_pickle=False)
        if isinstance(loaded, np.ndarray):
            if keys != ("x",):
                raise TinymlError(f"{what} {show(str(p))}: needs an .npz with arrays 'x' and 'y'")
            return {"x": loaded}
        with loaded as z:
            missing = [k for k in keys if k not in z.files]
            if missing:
                raise TinymlError(f"{what} {show(str(p))}: the .npz has no "
                                  f"{', '.join(repr(k) for k in missing)} array (it has {', '.join(z.files) or 'none'})")
            return {k: np.asarray(z[k]) for k in keys}
    except TinymlError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise TinymlError(f"{what} {show(str(p))}: cannot read it ({show(str(e), 120)})") from None


def _inputs(x: np.ndarray, shape: tuple[int, ...], what: str) -> np.ndarray:
    trailing = tuple(shape[1:])
    if x.dtype.kind not in "fiub":
        raise TinymlError(f"{what}: inputs have dtype {x.dtype}, expected numbers")
    if x.shape == trailing:
        x = x[None]
    if x.shape[1:] != trailing or x.shape[0] < 1:
        raise TinymlError(f"{what}: inputs have shape {list(x.shape)}, the model takes [N, "
                          f"{', '.join(map(str, trailing))}]")
    x = x.astype(np.float32)
    if not np.all(np.isfinite(x)):
        raise TinymlError(f"{what}: inputs contain NaN or infinity")
    return x


def load_calibration(path: str | Path, shape: tuple[int, ...]) -> np.ndarray:
    """Float inputs [N, ...] from an .npy of inputs or an .npz with 'x'."""
    return _inputs(_load(path, "--calib", ("x",))["x"], shape, f"--calib {show(str(path))}")


def load_labelled(path: str | Path, shape: tuple[int, ...], classes: int) -> tuple[np.ndarray, np.ndarray]:
    """(inputs, integer labels) from an .npz with 'x' and 'y'."""
    d = _load(path, "--eval", ("x", "y"))
    what = f"--eval {show(str(path))}"
    x = _inputs(d["x"], shape, what)
    y = d["y"]
    if y.dtype.kind not in "iu" or y.shape != (len(x),):
        raise TinymlError(f"{what}: 'y' must hold one integer label per input ({len(x)}), "
                          f"got {y.dtype} {list(y.shape)}")
    if len(y) and (y.min() < 0 or y.max() >= classes):
        raise TinymlError(f"{what}: labels {int(y.min())}..{int(y.max())} do not fit the model's {classes} outputs")
    return x, y.astype(np.int64)
