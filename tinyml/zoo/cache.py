"""Build zoo models once and share them between runs and pytest-xdist workers.

A model is stored as `<name>-<key>.tflite`, where the key hashes everything
that decides its bytes: the builder's and the converter helper's source, the
parameters and the TensorFlow version. Writers take a per-model file lock and
publish by rename, so concurrent workers build a model once and readers never
see a partial file.
"""
from __future__ import annotations

import fcntl
import hashlib
import importlib.metadata
import inspect
import os
import tempfile
from pathlib import Path

from tinyml.zoo.registry import ZooModel


def cache_dir() -> Path:
    env = os.environ.get("TINYML_ZOO_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "tinyml" / "zoo"


def _installed(*dists: str) -> str:
    for d in dists:
        try:
            return f"{d}={importlib.metadata.version(d)}"
        except importlib.metadata.PackageNotFoundError:
            continue
    return "none"


def cache_key(model: ZooModel) -> str:
    from tinyml.zoo import convert

    h = hashlib.sha256()
    parts = [
        model.name, model.group, repr(sorted(model.params.items())), model.io,
        repr(model.per_channel), model.data, repr(model.scales), repr(model.samples),
        inspect.getsource(model.build), inspect.getsource(convert),
        inspect.getsource(model.postprocess) if model.postprocess else "",
        _installed("tensorflow", "tensorflow-cpu"), _installed("keras"),
    ]
    if model.converter is not None:  # only then: the other models' keys stay what they were
        parts.append(inspect.getsource(inspect.getmodule(model.converter)))
    for p in parts:
        h.update(p.encode())
        h.update(b"\0")
    return h.hexdigest()[:16]


def cached_path(model: ZooModel) -> Path:
    return cache_dir() / f"{model.name}-{cache_key(model)}.tflite"


def ensure_built(model: ZooModel) -> Path:
    """The model's cached file, building it first if no worker has yet."""
    dest = cached_path(model)
    if dest.exists():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    with open(dest.parent / f".{model.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not dest.exists():  # another worker may have built it meanwhile
            from tinyml.zoo.convert import build_tflite

            data = (model.converter or build_tflite)(model)
            fd, tmp = tempfile.mkstemp(prefix=f".{model.name}.", suffix=".tmp", dir=dest.parent)
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                os.replace(tmp, dest)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
    return dest
