"""TensorFlow Lite Micro as the bit-exact oracle for int8 models.

TFLite Micro requantizes with gemmlowp double rounding, which desktop TFLite
does not always do, so every correctness check compares against this
interpreter (the `tflite-micro` package). Importing this module is cheap: the
package is imported on first use.

The interpreter reports its diagnostics (allocation failures, the arena
breakdown) on the C-level stderr, not through Python, so calls into it run
with file descriptor 2 redirected to a temporary file; that redirection is
process-wide, so do not drive two oracles from different threads at once.
"""
from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tinyml.errors import BadModel, TinymlError

if TYPE_CHECKING:
    from tinyml.ir import Graph
    from tinyml.reference import ReferenceOracle

# TFLite TensorType enum value -> dtype name used by tinyml.ir.
_TENSOR_TYPES = {
    0: "float32", 2: "int32", 3: "uint8", 4: "int64", 6: "bool", 7: "int16", 9: "int8",
}
_ARENA_ALIGN = 16  # TFLite Micro aligns both ends of the arena to 16 bytes
_MAX_ARENA = 1 << 30
_QUANTIZE_OPCODE = 114  # BuiltinOperator.QUANTIZE
_RESOURCE_TYPE = 13  # TensorType.RESOURCE: a handle, no data


@dataclass(frozen=True)
class IoSpec:
    """One model input or output as TFLite Micro sees it."""

    index: int  # tensor index in subgraph 0
    name: str
    shape: tuple[int, ...]
    dtype: str  # tinyml.ir dtype name
    scale: float | None
    zero_point: int | None


@dataclass(frozen=True)
class ArenaUsage:
    """TFLite Micro's arena use as its RecordingMicroAllocator reports it.

    `head` is the non-persistent part (the activation plan and kernels' scratch
    buffers); `tail` the persistent part (per-tensor and per-node structs,
    kernels' op data). The host build has 64-bit pointers, so `tail` is larger
    than on a Cortex-M; `head` is pointer-size independent.
    """

    total: int
    head: int
    tail: int


@dataclass(frozen=True)
class _InputSource:
    """What random_inputs needs to know about one graph input."""

    shape: tuple[int, ...]
    dtype: str
    # Quantization of the QUANTIZE that consumes a float input, if any:
    # (scale, zero_point, quantized dtype name).
    next_quant: tuple[float, int, str] | None


@functools.cache
def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None)


@contextmanager
def captured_fd(fd: int = 2) -> Iterator[list[str]]:
    """Redirect a C-level file descriptor; the yielded list receives its lines on exit.

    Native libraries (TFLite Micro, the TF converter) write diagnostics
    straight to fds 1/2, bypassing sys.stdout/sys.stderr.
    """
    lines: list[str] = []
    libc = _libc()
    with tempfile.TemporaryFile() as sink:
        libc.fflush(None)
        saved = os.dup(fd)
        os.dup2(sink.fileno(), fd)
        try:
            yield lines
        finally:
            libc.fflush(None)
            os.dup2(saved, fd)
            os.close(saved)
            sink.seek(0)
            lines.extend(sink.read().decode("utf-8", "replace").splitlines())


def _tflm() -> Any:
    try:
        from tflite_micro import runtime
    except ImportError as e:  # pragma: no cover - depends on the environment
        from tinyml.errors import ToolMissing

        raise ToolMissing("the TFLite Micro oracle needs the 'tflite-micro' package "
                          "(pip install 'tinyml[oracle]')") from e
    return runtime


def _schema() -> Any:
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated

    return schema_py_generated


def _last_message(lines: list[str], fallback: str) -> str:
    useful = [ln.strip() for ln in lines if ln.strip() and not ln.startswith("Too many buffers")]
    return useful[-1] if useful else fallback


def _align_up(n: int) -> int:
    return (n + _ARENA_ALIGN - 1) // _ARENA_ALIGN * _ARENA_ALIGN


def _parse(model: bytes) -> Any:
    """The model as the schema's object tree; BadModel when it does not parse."""
    if len(model) < 8 or model[4:8] != b"TFL3":
        raise BadModel("not a TFLite flatbuffer (missing the 'TFL3' identifier)")
    schema = _schema()
    try:
        m = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(model, 0))
    except Exception as e:  # any decoding failure of a hostile buffer
        detail = (str(e).splitlines() or [type(e).__name__])[0][:120]
        raise BadModel(f"malformed TFLite flatbuffer: {detail}") from None
    if not m.subgraphs or m.subgraphs[0].tensors is None:
        raise BadModel("TFLite model has no subgraph with tensors")
    return m


def _tensor_name(t: Any) -> str:
    raw = t.name if t.name is not None else b""
    return raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)


def _io_spec(m: Any, index: int) -> IoSpec:
    sg = m.subgraphs[0]
    if not 0 <= index < len(sg.tensors):
        raise BadModel(f"model I/O refers to tensor {index}, which does not exist")
    t = sg.tensors[index]
    dtype = _TENSOR_TYPES.get(t.type)
    if dtype is None:
        raise BadModel(f"model I/O tensor {index} has unsupported type {t.type}")
    q = t.quantization
    scale = zp = None
    if q is not None and q.scale is not None and len(q.scale) == 1:
        scale, zp = float(q.scale[0]), int(q.zeroPoint[0]) if q.zeroPoint is not None else 0
    shape = tuple(int(d) for d in t.shape) if t.shape is not None else ()
    return IoSpec(index, _tensor_name(t), shape, dtype, scale, zp)


def _model_bytes(model: bytes | bytearray | memoryview | str | Path) -> bytes:
    if isinstance(model, (str, Path)):
        try:
            return Path(model).read_bytes()
        except OSError as e:
            raise BadModel(f"cannot read model {model}: {e.strerror}") from None
    return bytes(model)


# sha256 of the model -> its arena usage: allocation is deterministic, so one
# measurement per process is enough.
_ARENA_CACHE: dict[str, ArenaUsage] = {}
_MIN_ARENA_CACHE: dict[str, int] = {}


class TflmOracle:
    """One .tflite model loaded into TensorFlow Lite Micro's host interpreter."""

    name = "TFLite Micro"

    def __init__(self, model: bytes | bytearray | memoryview | str | Path):
        self.model = _model_bytes(model)
        self._m = _parse(self.model)
        sg = self._m.subgraphs[0]
        self.inputs = [_io_spec(self._m, int(i)) for i in (sg.inputs if sg.inputs is not None else [])]
        self.outputs = [_io_spec(self._m, int(i)) for i in (sg.outputs if sg.outputs is not None else [])]
        self.digest = hashlib.sha256(self.model).hexdigest()
        # state kept across Invoke(): resource variables or variable tensors (streaming, recurrent)
        self.stateful = any(t.isVariable or t.type == _RESOURCE_TYPE
                            for s in self._m.subgraphs or [] for t in s.tensors or [])
        # Generous: every tensor (weights included) twice, so even the
        # keep-everything configuration fits on the first try.
        total = sum(_align_up(self._tensor_nbytes(t)) + 256 for t in sg.tensors)
        self._arena_guess = _align_up(max(2 * total + 64 * 1024, 256 * 1024))
        self._runner: Any = None
        self._keeper: Any = None

    # -- public API -----------------------------------------------------

    def run(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        """One inference; inputs and outputs in the model's I/O dtypes."""
        if self._runner is None:
            self._runner = self._interpreter(preserve=False)
        return self._invoke(self._runner, inputs)

    def run_batch(self, batch: list[list[np.ndarray]]) -> list[list[np.ndarray]]:
        """One inference per entry of `batch`, in order; a stateful model runs it as one
        stream from a freshly loaded interpreter (its initial state), frame after frame."""
        if self.stateful:
            self._runner = None
        return [self.run(inputs) for inputs in batch]

    def tensors(self, inputs: list[np.ndarray],
                before: list[list[np.ndarray]] | None = None) -> dict[int | str, np.ndarray]:
        """Every activation tensor after one inference, for per-layer comparison.

        Keys are the tensor's index in subgraph 0 and, when the name is unique
        in the model, also its name. Constants and resource handles are left
        out (read them from the model). A stateful model runs from its initial
        state (a fresh interpreter), after the frames `before` when given.
        """
        if self._keeper is None or self.stateful:
            self._keeper = self._interpreter(preserve=True)
        for frame in before or []:
            self._invoke(self._keeper, frame)
        self._invoke(self._keeper, inputs)
        sg = self._m.subgraphs[0]
        names = [_tensor_name(t) for t in sg.tensors]
        out: dict[int | str, np.ndarray] = {}
        for i in self._activation_indices():
            value = np.array(self._keeper.GetTensor(i, 0)["tensor_data"], copy=True)
            out[i] = value
            if names.count(names[i]) == 1:
                out[names[i]] = value
        return out

    def arena_usage(self) -> ArenaUsage:
        """The arena TFLite Micro uses for this model (cached per model)."""
        cached = _ARENA_CACHE.get(self.digest)
        if cached is None:
            if self._runner is None:
                self._runner = self._interpreter(preserve=False)
            with captured_fd() as lines:
                self._runner.print_allocations()
            cached = _ARENA_CACHE[self.digest] = self._read_usage(lines)
        return cached

    def arena_bytes(self) -> int:
        """Total arena bytes TFLite Micro allocates for this model (host build)."""
        return self.arena_usage().total

    def min_arena_size(self) -> int:
        """The smallest `arena_size` with which TFLite Micro loads this model.

        At least arena_bytes(): Prepare also needs temporary memory (the
        memory planner's scratch) that is released before the recorder's
        final count. Found by bisection over 16-byte steps in a child process,
        because TFLite Micro can crash when an allocation fails by a few
        bytes; cached per model.
        """
        cached = _MIN_ARENA_CACHE.get(self.digest)
        if cached is None:
            lo, hi = self.arena_bytes() // _ARENA_ALIGN, self._arena_guess // _ARENA_ALIGN
            while lo < hi:  # invariant: hi * 16 loads; a crash counts as "does not load"
                bounds = _bisect_in_child(self.model, lo, hi)
                if bounds == (lo, hi):
                    raise TinymlError("could not measure TFLite Micro's minimum arena size")
                lo, hi = bounds
            cached = _MIN_ARENA_CACHE[self.digest] = hi * _ARENA_ALIGN
        return cached

    # -- internals ------------------------------------------------------

    @staticmethod
    def _tensor_nbytes(t: Any) -> int:
        n = int(np.prod(t.shape, dtype=np.int64)) if t.shape is not None else 1
        return max(n, 1) * 8  # widest element type TFLite Micro supports here

    def _activation_indices(self) -> list[int]:
        sg = self._m.subgraphs[0]
        buffers = self._m.buffers or []

        def is_const(t: Any) -> bool:
            b = t.buffer
            return 0 < b < len(buffers) and buffers[b].data is not None and len(buffers[b].data) > 0

        return [i for i, t in enumerate(sg.tensors) if not is_const(t) and t.type != _RESOURCE_TYPE]

    def _read_usage(self, lines: list[str]) -> ArenaUsage:
        text = "\n".join(lines)
        found = {}
        for part in ("total", "head", "tail"):
            match = re.search(rf"Arena allocation {part} (\d+) bytes", text)
            if match is None:
                raise TinymlError("TFLite Micro did not report its arena allocation")
            found[part] = int(match.group(1))
        return ArenaUsage(**found)

    def _try_load(self, arena_size: int, preserve: bool) -> tuple[Any, list[str]]:
        rt = _tflm()
        config = (rt.InterpreterConfig.kPreserveAllTensors if preserve
                  else rt.InterpreterConfig.kAllocationRecording)
        with captured_fd() as lines:
            try:
                interp = rt.Interpreter.from_bytes(
                    self.model, arena_size=arena_size, intrepreter_config=config)
            except Exception as e:  # hostile models fail in the Python wrapper too
                interp, err = None, e
        if interp is None:
            lines.append(str(err))
        return interp, lines

    def _interpreter(self, preserve: bool) -> Any:
        """A loaded interpreter; grows the arena when allocation is what failed.

        The arena size stays a multiple of 16 so TFLite Micro's alignment loss,
        and with it the reported usage, does not depend on the size asked for.
        """
        while True:
            interp, lines = self._try_load(self._arena_guess, preserve)
            if interp is not None:
                return interp
            out_of_memory = any("allocate" in ln and "memory" in ln for ln in lines)
            if not out_of_memory or self._arena_guess * 4 > _MAX_ARENA:
                raise BadModel("TFLite Micro cannot load the model: "
                               + _last_message(lines, "allocation failed"))
            self._arena_guess *= 4

    def _invoke(self, interp: Any, inputs: list[np.ndarray]) -> list[np.ndarray]:
        if len(inputs) != len(self.inputs):
            raise TinymlError(f"model has {len(self.inputs)} inputs, got {len(inputs)}")
        for i, (x, spec) in enumerate(zip(inputs, self.inputs)):
            x = np.asarray(x)
            if x.dtype.name != spec.dtype or tuple(x.shape) != spec.shape:
                raise TinymlError(f"input {i}: model wants {spec.dtype}{list(spec.shape)}, "
                                  f"got {x.dtype.name}{list(x.shape)}")
            interp.set_input(np.ascontiguousarray(x), i)
        with captured_fd() as lines:
            try:
                interp.invoke()
                err = None
            except RuntimeError as e:
                err = e
        if err is not None:
            raise BadModel("TFLite Micro failed to run the model: " + _last_message(lines, str(err)))
        return [np.array(interp.get_output(i), copy=True) for i in range(len(self.outputs))]


# Bisects over arena sizes in 16-byte units, printing each probe before and
# after it so the parent can resume past a probe that crashed the process.
_BISECT_CHILD = """
import os, sys
from tflite_micro import runtime
data = sys.stdin.buffer.read()
lo, hi = int(sys.argv[1]), int(sys.argv[2])
os.dup2(os.open(os.devnull, os.O_WRONLY), 2)
while lo < hi:
    mid = (lo + hi) // 2
    print("probe", mid, flush=True)
    try:
        runtime.Interpreter.from_bytes(data, arena_size=mid * 16)
        hi = mid
    except Exception:
        lo = mid + 1
    print("bounds", lo, hi, flush=True)
"""


def model_oracle(model: bytes | bytearray | memoryview | str | Path,
                 integer_only: bool = False) -> "TflmOracle | ReferenceOracle":
    """The oracle for a model file: TFLite Micro, unless the file records sub-byte widths TFLite
    cannot express (a `tinyml_bits` entry, frontend/bits_meta.py), whose arithmetic only the
    numpy reference has (it is itself checked against TFLite Micro where the two overlap).
    A file TFLite Micro refuses only for FILLs with run-time shapes runs in TFLite Micro with
    those FILLs folded (oracle_rewrite.py). With `integer_only`, the numpy reference of the graph
    passes/integer_only.py rewrote (TFLite has none of its ops)."""
    from tinyml.frontend import bits_meta
    from tinyml.pipeline import load_graph
    from tinyml.reference import ReferenceOracle

    data = _model_bytes(model)
    g = load_graph(data, {} if integer_only else None)
    if integer_only or bits_meta.has_entry(g):
        return ReferenceOracle(g)
    oracle = TflmOracle(data)
    try:
        oracle._runner = oracle._interpreter(preserve=False)
    except BadModel:  # refused as written: a FILL whose shape it computes at run time (oracle_rewrite.py)?
        from tinyml.oracle_rewrite import fold_run_time_fills

        rewritten = fold_run_time_fills(data, g)
        if rewritten is None:
            raise
        folded = TflmOracle(rewritten)
        folded.name = "TFLite Micro, on the file with its run-time-shaped FILLs folded (oracle_rewrite.py)"
        return folded
    return oracle


def _bisect_in_child(model: bytes, lo: int, hi: int) -> tuple[int, int]:
    """Run the bisection in a fresh interpreter; returns the bounds it reached."""
    proc = subprocess.run([sys.executable, "-c", _BISECT_CHILD, str(lo), str(hi)],
                          input=model, capture_output=True, timeout=600)
    for line in proc.stdout.decode().splitlines():
        word, *nums = line.split()
        if word == "bounds":
            lo, hi = int(nums[0]), int(nums[1])
        elif word == "probe":
            lo = max(lo, int(nums[0]) + 1)  # stays if the probe's "bounds" follows
    return lo, hi


def _sources_from_model(model: bytes) -> list[_InputSource]:
    m = _parse(model)
    sg = m.subgraphs[0]
    codes = m.operatorCodes or []
    sources = []
    for spec in (_io_spec(m, int(i)) for i in (sg.inputs if sg.inputs is not None else [])):
        nxt = None
        for op in sg.operators or []:
            if op.inputs is None or spec.index not in [int(k) for k in op.inputs]:
                continue
            if op.opcodeIndex >= len(codes):
                continue
            code = codes[op.opcodeIndex]
            if max(code.builtinCode, code.deprecatedBuiltinCode) == _QUANTIZE_OPCODE and op.outputs is not None:
                q = _io_spec(m, int(op.outputs[0]))
                if q.scale is not None:
                    nxt = (q.scale, q.zero_point, q.dtype)
            break
        sources.append(_InputSource(spec.shape, spec.dtype, nxt))
    return sources


def _sources_from_graph(g: "Graph") -> list[_InputSource]:
    consumers = g.consumers()
    sources = []
    for name in g.inputs:
        t = g[name]
        nxt = None
        for node in consumers.get(name, []):
            q = g[node.outputs[0]]
            if node.op == "QUANTIZE" and q.quant is not None and not q.quant.per_channel:
                nxt = (q.quant.s, q.quant.zp, q.dtype)
        sources.append(_InputSource(t.shape, t.dtype, nxt))
    return sources


_INT_RANGES = {"int8": (-128, 127), "uint8": (0, 255), "int16": (-32768, 32767),
               "int32": (-1000, 1000), "int64": (-1000, 1000)}


def _random_value(src: _InputSource, rng: np.random.Generator) -> np.ndarray:
    if src.dtype in _INT_RANGES:
        lo, hi = _INT_RANGES[src.dtype]
        return rng.integers(lo, hi, size=src.shape, endpoint=True).astype(src.dtype)
    if src.dtype == "bool":
        return rng.integers(0, 1, size=src.shape, endpoint=True).astype(bool)
    if src.dtype == "float32":
        lo, hi = -1.0, 1.0
        if src.next_quant is not None and src.next_quant[2] in _INT_RANGES:
            scale, zp, qtype = src.next_quant
            qlo, qhi = _INT_RANGES[qtype]
            lo, hi = scale * (qlo - zp), scale * (qhi - zp)
        return rng.uniform(lo, hi, size=src.shape).astype(np.float32)
    raise TinymlError(f"cannot make random inputs of type {src.dtype}")


def random_inputs(model: "Graph | TflmOracle | bytes | str | Path", n: int,
                  seed: int = 0) -> list[list[np.ndarray]]:
    """`n` random input lists for `model`, reproducible from `seed`.

    Integer inputs cover their whole range. Float inputs cover the real range
    that the QUANTIZE consuming them can represent, else [-1, 1]. The first k
    of n samples equal the k samples of a shorter call with the same seed.
    """
    from tinyml.ir import Graph

    if isinstance(model, Graph):
        sources = _sources_from_graph(model)
    else:
        sources = _sources_from_model(model.model if isinstance(model, TflmOracle)
                                      else _model_bytes(model))
    rng = np.random.default_rng(seed)
    return [[_random_value(s, rng) for s in sources] for _ in range(n)]


_ARENA_CHILD = """
import sys
from tinyml.oracle import TflmOracle
print("arena", TflmOracle(sys.stdin.buffer.read()).arena_bytes())
"""


def arena_bytes_isolated(model: bytes, timeout_s: float = 120.0) -> int | None:
    """TFLite Micro's arena for an untrusted model, measured in a child process.

    TFLite Micro can crash the whole process on a hostile model that passed
    our checks; here a crash or a hang only costs the figure (None).
    """
    try:
        proc = subprocess.run([sys.executable, "-c", _ARENA_CHILD], input=model, capture_output=True,
                              timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return None
    for line in proc.stdout.decode(errors="replace").splitlines():
        if line.startswith("arena "):
            return int(line.split()[1])
    return None
