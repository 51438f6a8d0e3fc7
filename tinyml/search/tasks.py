"""The datasets a search can train on offline: digits, Fashion-MNIST, keyword spotting, or the user's .npz.

Every task is images [N, H, W, C] float32 in [0, 1] (NHWC, as the delivered
model takes them) with integer labels, split into train / validation (the search
ranks subnets on it) / test (reported, never searched on).
"""
from __future__ import annotations

import gzip
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tinyml.errors import TinymlError

FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")  # Debian's dataset-fashion-mnist
TASKS = ("digits", "fashion", "kws")


@dataclass
class Dataset:
    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    classes: int
    labels: list[str]

    @property
    def channels(self) -> int:
        return int(self.x_train.shape[3])

    @property
    def resolution(self) -> int:
        return int(self.x_train.shape[1])

    def describe(self) -> dict:
        return {"name": self.name, "train": len(self.y_train), "val": len(self.y_val), "test": len(self.y_test),
                "shape": list(self.x_train.shape[1:]), "classes": self.classes}


def load_task(spec: str, limit: int | None = None, seed: int = 0) -> Dataset:
    """A task by name or a path to an .npz (x, y and optionally x_test, y_test); `limit` caps the training set."""
    if spec == "digits":
        ds = _digits(seed)
    elif spec == "fashion":
        ds = _fashion(seed)
    elif spec == "kws":
        from tinyml.search.kws import WORDS, keyword_arrays

        ds = split("kws", *keyword_arrays(), None, None, seed, WORDS)
    elif spec.endswith(".npz"):
        ds = _npz(Path(spec), seed)
    else:
        raise TinymlError(f"unknown task {spec!r}: one of {', '.join(TASKS)}, or an .npz file with x and y")
    if limit is not None and limit < len(ds.y_train):
        ds.x_train, ds.y_train = ds.x_train[:limit], ds.y_train[:limit]
    return ds


def split(name: str, x: np.ndarray, y: np.ndarray, x_test: np.ndarray | None, y_test: np.ndarray | None,
          seed: int, labels: list[str] | None = None, test_fraction: float = 0.2, val_fraction: float = 0.15) -> Dataset:
    """Shuffle once (seeded) and cut validation (and test, when none is given) from the training data."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(y))
    x, y = x[order], y[order]
    if x_test is None:
        n_test = int(len(y) * test_fraction)
        x_test, y_test, x, y = x[:n_test], y[:n_test], x[n_test:], y[n_test:]
    n_val = max(1, int(len(y) * val_fraction))
    classes = int(max(y.max(), y_test.max())) + 1
    return Dataset(name, x[n_val:], y[n_val:], x[:n_val], y[:n_val], x_test, y_test, classes,
                   labels or [str(i) for i in range(classes)])


def _digits(seed: int) -> Dataset:
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (d.images / 16.0).astype(np.float32)[..., None]
    return split("digits", x, d.target.astype(np.int64), None, None, seed)


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (gzipped): big-endian dims after a magic whose last byte is the rank."""
    with gzip.open(path, "rb") as f:
        data = f.read()
    rank = data[3]
    dims = np.frombuffer(data, ">u4", rank, 4).astype(int)
    return np.frombuffer(data, np.uint8, int(np.prod(dims)), 4 + 4 * rank).reshape(dims)


FASHION_LABELS = ["t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "boot"]


def _fashion(seed: int) -> Dataset:
    files = {k: FASHION_DIR / f"{k}-ubyte.gz" for k in ("train-images-idx3", "train-labels-idx1",
                                                        "t10k-images-idx3", "t10k-labels-idx1")}
    missing = [str(p) for p in files.values() if not p.is_file()]
    if missing:
        raise TinymlError(f"Fashion-MNIST not found ({missing[0]}): apt-get install dataset-fashion-mnist")
    img = lambda k: (read_idx(files[k]).astype(np.float32) / 255.0)[..., None]  # noqa: E731
    lab = lambda k: read_idx(files[k]).astype(np.int64)  # noqa: E731
    return split("fashion", img("train-images-idx3"), lab("train-labels-idx1"), img("t10k-images-idx3"),
                 lab("t10k-labels-idx1"), seed, FASHION_LABELS, val_fraction=5000 / 60000)


def _npz(path: Path, seed: int) -> Dataset:
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError) as e:
        raise TinymlError(f"cannot read {path}: {str(e).splitlines()[0]}") from None
    if "x" not in arrays or "y" not in arrays:
        raise TinymlError(f"{path}: needs arrays 'x' (images [N, H, W] or [N, H, W, C]) and 'y' (integer labels)")
    x, y = _images(arrays["x"], path, "x"), _labels(arrays["y"], path, "y")
    if len(x) != len(y):
        raise TinymlError(f"{path}: x has {len(x)} samples, y {len(y)}")
    xt = _images(arrays["x_test"], path, "x_test") if "x_test" in arrays else None
    yt = _labels(arrays["y_test"], path, "y_test") if "y_test" in arrays else None
    if (xt is None) != (yt is None) or (xt is not None and (len(xt) != len(yt) or xt.shape[1:] != x.shape[1:])):
        raise TinymlError(f"{path}: x_test and y_test must come together, matching x")
    if len(y) < 20 or len(np.unique(y)) < 2:
        raise TinymlError(f"{path}: need at least 20 samples of at least 2 classes")
    lo, hi = float(x.min()), float(x.max())  # one scaling for both: the test set is seen as the model will see it
    scale = 1.0 / (hi - lo) if hi > lo else 0.0
    norm = lambda a: ((a - lo) * scale).astype(np.float32)  # noqa: E731
    return split(path.stem, norm(x), y, None if xt is None else norm(xt), yt, seed)


def _images(a: np.ndarray, path: Path, key: str) -> np.ndarray:
    if a.ndim == 3:
        a = a[..., None]
    if a.ndim != 4 or a.shape[1] != a.shape[2] or a.shape[1] < 4 or a.shape[3] > 16 or a.size == 0:
        raise TinymlError(f"{path}: {key} must be square images [N, H, H] or [N, H, H, C] (C <= 16), "
                          f"got {list(a.shape)}")
    if not np.issubdtype(a.dtype, np.number):
        raise TinymlError(f"{path}: {key} must be numeric, got {a.dtype}")
    a = a.astype(np.float32)
    if not np.all(np.isfinite(a)):
        raise TinymlError(f"{path}: {key} holds NaN or infinity")
    return a


def _labels(a: np.ndarray, path: Path, key: str) -> np.ndarray:
    if a.ndim != 1 or not np.issubdtype(a.dtype, np.integer) or a.size == 0 or a.min() < 0 or a.max() > 1000:
        raise TinymlError(f"{path}: {key} must be integer labels 0..N [N] (at most 1000 classes)")
    return a.astype(np.int64)
