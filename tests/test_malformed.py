"""Hostile and broken model files end in one TinymlError, never anything else.

Every case runs the whole analysis path a CLI verb runs (read, legalize,
support and shape checks, memory plan, per-layer report), because a file
that parses can still break a later pass; an op module that raises instead
of rejecting the model (OpCrashed) fails the test too. Each case runs under a SIGALRM
watchdog and tracemalloc, so a hang or a huge allocation fails the test
instead of the machine. Mutations use fixed seeds: a failure reproduces.
"""
from __future__ import annotations

import random
import signal
import subprocess
import sys
import tracemalloc
from collections import Counter
from collections.abc import Iterator

import numpy as np
import pytest

from test_frontend import edit, model
from tinyml.errors import OpCrashed, TinymlError
from tinyml.pipeline import load_graph
from tinyml.report import summary
from tinyml.schedule.memory import plan_memory

SECONDS_PER_CASE = 5
MAX_PEAK_BYTES = 256 * 1024 * 1024


class Hang(Exception):
    pass


def analyze(data: bytes) -> None:
    """What `tinyml analyze` does with a model file, minus printing and the oracle."""
    g = load_graph(data)
    summary(g, plan_memory(g))


def outcome(data: bytes) -> str:
    """'ok', or 'error' for a one-line TinymlError; anything else is raised as AssertionError."""
    def alarm(signum, frame):
        raise Hang()

    old = signal.signal(signal.SIGALRM, alarm)
    tracemalloc.start()
    signal.setitimer(signal.ITIMER_REAL, SECONDS_PER_CASE)
    try:
        analyze(data)
        result = "ok"
    except OpCrashed as e:
        raise AssertionError(f"an op module raised instead of rejecting the model: {e}") from None
    except TinymlError as e:
        assert "\n" not in str(e) and str(e), f"not a one-line message: {str(e)!r}"
        result = "error"
    except Hang:
        raise AssertionError(f"no result within {SECONDS_PER_CASE} s") from None
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert peak <= MAX_PEAK_BYTES, f"allocated {peak:,} bytes"
    return result


def run_cases(cases: Iterator[tuple[str, bytes]]) -> Counter:
    """Run every case; fail with the first one that ends in anything but ok/TinymlError."""
    seen: Counter = Counter()
    for label, data in cases:
        try:
            seen[outcome(data)] += 1
        except AssertionError as e:
            raise AssertionError(f"{label}: {e}") from None
        except Exception as e:  # noqa: BLE001 - this is exactly what the test looks for
            raise AssertionError(f"{label}: {type(e).__name__}: {e}") from e
    return seen


# -- whole files that are not models -----------------------------------------

def test_empty_short_and_foreign_files():
    real = model("cnn")
    cases = [b"", b"\0", b"TFL3", b"\0\0\0\0TFL3", real[:4] + b"TFL2" + real[8:],
             b"\x89PNG\r\n\x1a\n" + bytes(64), b"PK\x03\x04" + bytes(100), b"hello world\n" * 20,
             bytes(4096), b"\xff" * 4096]
    for data in cases:
        assert outcome(data) == "error", data[:16]


def test_random_bytes():
    rng = random.Random(7)
    cases = []
    for k in range(200):
        body = bytearray(rng.randbytes(rng.choice([12, 16, 64, 500, 4000])))
        if k % 2:  # get past the identifier check with a plausible root offset
            body[0:4] = (rng.randrange(8, len(body)) & ~3).to_bytes(4, "little")
            body[4:8] = b"TFL3"
        cases.append((f"random file {k}", bytes(body)))
    assert run_cases(iter(cases))["error"] == 200


# -- truncations ---------------------------------------------------------------

@pytest.mark.parametrize("name,step", [("torch_like", 1), ("cnn", 7)])
def test_every_truncation_is_rejected(name, step):
    data = model(name)
    # Only the flatbuffer builder's trailing zero padding may be cut without loss.
    meaningful = len(data.rstrip(b"\0"))
    cuts = range(0, meaningful, step)
    seen = run_cases((f"{name}[:{n}]", data[:n]) for n in cuts)
    assert seen["error"] == len(cuts)


# -- byte-level mutations of real models ------------------------------------------

def byte_mutants(data: bytes, n: int, seed: int) -> Iterator[tuple[str, bytes]]:
    """Flips, random bytes, corrupted 32-bit offsets/lengths, inserted and removed runs."""
    rng = random.Random(seed)
    for k in range(n):
        d = bytearray(data)
        kind = k % 5
        for _ in range(rng.randint(1, 3)):
            p = rng.randrange(len(d) - 4)
            if kind == 0:
                d[p] ^= 1 << rng.randrange(8)
            elif kind == 1:
                d[p] = rng.randrange(256)
            elif kind == 2:
                p &= ~3
                word = int.from_bytes(d[p:p + 4], "little")
                new = rng.choice([0, 0xFFFFFFFF, 0x7FFFFFFF, 0x80000000, len(d), len(d) - 4,
                                  word + rng.choice([-8, -4, -2, 2, 4, 8]), word * 2, word >> 1])
                d[p:p + 4] = (new & 0xFFFFFFFF).to_bytes(4, "little")
            elif kind == 3:
                del d[p:p + rng.randint(1, 16)]
            else:
                d[p:p] = rng.randbytes(rng.randint(1, 16))
        yield f"byte mutant {k} (kind {kind}, seed {seed})", bytes(d)


@pytest.mark.parametrize("name", ["cnn", "torch_like", "cnn_float_io"])
def test_byte_mutants(name):
    data = model(name)
    seen = run_cases(byte_mutants(data, 400, seed=len(name)))
    assert sum(seen.values()) == 400 and seen["error"] > 200, seen


# -- structurally valid files with hostile contents ----------------------------------

EXTREMES = [-(2**31), -7, -1, 0, 1, 2, 3, 5, 127, 255, 4096, 2**20, 2**31 - 1]


def _mutate_field(m, s, rng: random.Random) -> str:
    """Change one semantic field of the model in place; returns what was changed."""
    sg = m.subgraphs[0]
    t = rng.choice(sg.tensors)
    op = rng.choice(sg.operators)
    choice = rng.randrange(15)
    if choice == 0 and t.shape is not None and len(t.shape):
        t.shape[rng.randrange(len(t.shape))] = rng.choice(EXTREMES)
    elif choice == 1:
        t.shape = [rng.choice([1, 2, 3, 16]) for _ in range(rng.choice([0, 1, 2, 3, 4, 5, 9]))]
    elif choice == 2:
        t.type = rng.randrange(25)
    elif choice == 3:
        t.buffer = rng.choice([0, 1, len(m.buffers) - 1, len(m.buffers), 2**31])
    elif choice == 4 and t.quantization is not None and t.quantization.scale is not None:
        t.quantization.scale = np.array([rng.choice([0.0, -1.0, float("nan"), float("inf"), 1e-30, 1e30])]
                                        * len(t.quantization.scale), np.float32)
    elif choice == 5 and t.quantization is not None and t.quantization.zeroPoint is not None:
        t.quantization.zeroPoint = np.array([rng.choice([-129, 128, 255, 2**40, -5])]
                                            * len(t.quantization.zeroPoint), np.int64)
    elif choice == 6 and t.quantization is not None:
        t.quantization.quantizedDimension = rng.choice([-1, 1, 2, 3, 4, 100])
    elif choice == 7 and op.inputs is not None and len(op.inputs):
        op.inputs[rng.randrange(len(op.inputs))] = rng.choice([-1, -2, 0, len(sg.tensors) - 1, len(sg.tensors)])
    elif choice == 8 and op.outputs is not None and len(op.outputs):
        op.outputs[0] = rng.choice([0, len(sg.tensors) - 1, len(sg.tensors), -1])
    elif choice == 9:
        op.opcodeIndex = rng.choice([0, len(m.operatorCodes) - 1, len(m.operatorCodes)])
    elif choice == 10:
        code = rng.choice(m.operatorCodes)
        code.builtinCode = code.deprecatedBuiltinCode = rng.randrange(127)
    elif choice == 11 and op.builtinOptions is not None:
        fields = [k for k, v in vars(op.builtinOptions).items() if isinstance(v, (int, float))]
        if fields:
            setattr(op.builtinOptions, rng.choice(fields), rng.choice(EXTREMES[1:-1]))
    elif choice == 12:
        rng.shuffle(sg.operators)
    elif choice == 13:
        b = rng.choice(m.buffers)
        if b.data is not None and len(b.data):
            b.data = b.data[:rng.randrange(len(b.data))]
    else:
        sg.outputs = [rng.choice([0, len(sg.tensors) - 1, len(sg.tensors)])]
    return f"field change {choice}"


def semantic_mutants(data: bytes, n: int, seed: int) -> Iterator[tuple[str, bytes]]:
    rng = random.Random(seed)
    for k in range(n):
        changes: list[str] = []

        def mutate(m, s):
            for _ in range(rng.randint(1, 2)):
                changes.append(_mutate_field(m, s, rng))

        try:
            mutant = edit(data, mutate)
        except (OverflowError, ValueError, TypeError, IndexError):  # the writer refused the value
            continue
        yield f"semantic mutant {k} ({', '.join(changes)}, seed {seed})", mutant


@pytest.mark.parametrize("name", ["cnn", "torch_like"])
def test_semantic_mutants(name):
    seen = run_cases(semantic_mutants(model(name), 250, seed=11))
    assert seen["error"] > 100, seen


# -- the command line --------------------------------------------------------------

def _cli_cases(tmp_path) -> list:
    real = model("cnn")
    mutant = next(m for _, m in semantic_mutants(real, 50, seed=3) if outcome(m) == "error")
    files = {"empty.tflite": b"", "random.tflite": random.Random(1).randbytes(3000),
             "truncated.tflite": real[: len(real) // 2], "png.tflite": b"\x89PNG\r\n\x1a\n" + bytes(100),
             "mutant.tflite": mutant}
    paths = []
    for name, data in files.items():
        p = tmp_path / name
        p.write_bytes(data)
        paths.append(p)
    return paths + [tmp_path / "missing.tflite"]


def test_cli_exits_2_with_one_line(tmp_path):
    for path in _cli_cases(tmp_path):
        r = subprocess.run([sys.executable, "-m", "tinyml.cli", "analyze", str(path), "--no-tflm"],
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 2, (path.name, r.stderr)
        assert "Traceback" not in r.stderr + r.stdout
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and "error" in lines[0], (path.name, r.stderr)


def test_shared_offsets_cannot_multiply_work():
    """60,000 operators that all point at one table with 200,000 inputs: 1.2e10 index checks
    if each were read in full, rejected by the reader's work budget instead."""
    import flatbuffers
    from tensorflow.lite.python import schema_py_generated as s

    b = flatbuffers.Builder(0)
    s.OperatorCodeStart(b)
    s.OperatorCodeAddBuiltinCode(b, s.BuiltinOperator.ADD)
    code = s.OperatorCodeEnd(b)
    s.ModelStartOperatorCodesVector(b, 1)
    b.PrependUOffsetTRelative(code)
    codes = b.EndVector()
    inputs = b.CreateNumpyVector(np.full(200_000, -1, np.int32))
    s.OperatorStart(b)
    s.OperatorAddInputs(b, inputs)
    op = s.OperatorEnd(b)
    s.SubGraphStartOperatorsVector(b, 60_000)
    for _ in range(60_000):
        b.PrependUOffsetTRelative(op)
    ops = b.EndVector()
    s.SubGraphStart(b)
    s.SubGraphAddOperators(b, ops)
    sg = s.SubGraphEnd(b)
    s.ModelStartSubgraphsVector(b, 1)
    b.PrependUOffsetTRelative(sg)
    sgs = b.EndVector()
    s.ModelStart(b)
    s.ModelAddVersion(b, 3)
    s.ModelAddSubgraphs(b, sgs)
    s.ModelAddOperatorCodes(b, codes)
    b.Finish(s.ModelEnd(b), file_identifier=b"TFL3")
    data = bytes(b.Output())
    assert outcome(data) == "error"
    with pytest.raises(TinymlError, match="far more data than it holds"):
        analyze(data)
