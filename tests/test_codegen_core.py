"""The pieces every kernel relies on: requantization arithmetic, C name safety, atomic output."""
from __future__ import annotations

import re
import subprocess
from importlib.resources import files
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tinyml.codegen.cnames import c_array, c_comment, c_ident
from tinyml.fixedpoint import multiply_by_quantized_multiplier, quantize_multiplier, rdbpot, srdhm
from tinyml.fsutil import atomic_directory
from tinyml.sim.host import compiler

I32 = st.integers(-(2**31), 2**31 - 1)


def py_srdhm(a: int, b: int) -> int:
    """gemmlowp's definition with Python integers (independent of the numpy version)."""
    if a == b == -(2**31):
        return 2**31 - 1
    ab = a * b
    nudge = (1 << 30) if ab >= 0 else 1 - (1 << 30)
    q = abs(ab + nudge) // (1 << 31)
    return q if ab + nudge >= 0 else -q


def py_rdbpot(x: int, e: int) -> int:
    """Round x / 2**e half away from zero, from the rational value."""
    if e == 0:
        return x
    num, den = abs(x), 1 << e
    q, r = divmod(num, den)
    q += 1 if 2 * r >= den else 0
    return q if x >= 0 else -q


@given(I32, I32)
def test_srdhm_matches_definition(a: int, b: int) -> None:
    assert int(srdhm(a, b)) == py_srdhm(a, b)


@given(I32, st.integers(0, 31))
def test_rdbpot_rounds_half_away_from_zero(x: int, e: int) -> None:
    assert int(rdbpot(x, e)) == py_rdbpot(x, e)


@given(st.floats(1e-9, 1e3, allow_nan=False))
def test_quantize_multiplier_represents_the_real_value(m: float) -> None:
    q, shift = quantize_multiplier(m)
    assert 2**30 <= q < 2**31
    assert abs(q * 2.0 ** (shift - 31) - m) <= m * 2**-30


def test_fixedpoint_header_agrees_with_numpy(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    xs = np.concatenate([rng.integers(-(2**31), 2**31, 3000), [-(2**31), 2**31 - 1, 0, -1, 1]]).astype(np.int64)
    qs = rng.integers(2**30, 2**31, xs.size).astype(np.int64)
    shifts = rng.integers(-31, 8, xs.size).astype(np.int64)
    expected = multiply_by_quantized_multiplier(xs, qs, shifts)
    header = files("tinyml.firmware_templates") / "library" / "tinyml_fixedpoint.h"
    (tmp_path / "tinyml_fixedpoint.h").write_text(header.read_text())
    (tmp_path / "main.c").write_text(
        '#include <stdio.h>\n#include "tinyml_fixedpoint.h"\n'
        "int main(void){ long long x, q; int s;\n"
        '  while (scanf("%lld %lld %d", &x, &q, &s) == 3) printf("%d\\n", (int)tm_requant((int32_t)x, (int32_t)q, s));\n'
        "  return 0; }\n"
    )
    exe = tmp_path / "fp"
    subprocess.run([compiler(), "-std=c99", "-O2", "-Wall", "-Wextra", "-Werror", "-fsanitize=undefined",
                    "-fno-sanitize-recover=all", "-o", str(exe), str(tmp_path / "main.c")], check=True)
    stdin = "\n".join(f"{x} {q} {s}" for x, q, s in zip(xs, qs, shifts))
    out = subprocess.run([str(exe)], input=stdin, capture_output=True, text=True, check=True)
    assert out.stderr == ""
    assert [int(v) for v in out.stdout.split()] == expected.tolist()


NASTY = ['a"b', "back\\slash", "new\nline", "end */ start /*", "??/ trigraph", "\u00e9\u4e2d\x00\x7f", "*/", "\\"]


@pytest.mark.parametrize("text", NASTY)
def test_names_are_safe_in_c(text: str, tmp_path: Path) -> None:
    ident = c_ident(text)
    assert re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", ident)
    src = tmp_path / "n.c"
    src.write_text(f"/* {c_comment(text)} */\nint {ident} = 1;\nint main(void) {{ return {ident} - 1; }}\n")
    subprocess.run([compiler(), "-std=c99", "-Wall", "-Wextra", "-Werror", "-Wcomment", "-Wtrigraphs",
                    "-o", str(tmp_path / "n"), str(src)], check=True)
    assert subprocess.run([str(tmp_path / "n")]).returncode == 0


@settings(max_examples=20, deadline=None)
@given(st.lists(st.floats(width=32, allow_nan=False, allow_infinity=False), min_size=1, max_size=40))
def test_float_constants_survive_c_exactly(values: list[float]) -> None:
    import tempfile

    arr = np.array(values, dtype=np.float32)
    with tempfile.TemporaryDirectory() as d:
        src = Path(d) / "f.c"
        src.write_text("#include <stdio.h>\n#include <string.h>\n#include <stdint.h>\n"
                       f"static const float v[{arr.size}] = {{\n{c_array(arr)}\n}};\n"
                       "int main(void){ unsigned i; for (i = 0; i < sizeof v / sizeof v[0]; i++) {"
                       " uint32_t u; memcpy(&u, &v[i], 4); printf(\"%u\\n\", u); } return 0; }\n")
        subprocess.run([compiler(), "-std=c99", "-Wall", "-Wextra", "-Werror", "-o", f"{d}/f", str(src)],
                       check=True)
        out = subprocess.run([f"{d}/f"], capture_output=True, text=True, check=True).stdout.split()
    assert [int(u) for u in out] == arr.view(np.uint32).tolist()


def test_atomic_directory_keeps_old_output_on_failure(tmp_path: Path) -> None:
    dest = tmp_path / "out"
    with atomic_directory(dest) as d:
        (d / "a.txt").write_text("first")
    with pytest.raises(RuntimeError):
        with atomic_directory(dest) as d:
            (d / "a.txt").write_text("half")
            raise RuntimeError("boom")
    assert (dest / "a.txt").read_text() == "first"
    with atomic_directory(dest) as d:
        (d / "b.txt").write_text("second")
    assert sorted(p.name for p in dest.iterdir()) == ["b.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["out"]
