"""The quantization helpers against TFLite Micro, and the packages built by the tools that consume them.

Helpers: hand-built single-QUANTIZE models give libraries whose input and output carry chosen
scales, zero points and types; the generated tinyml_quantize_input / tinyml_dequantize_output,
compiled for this machine, are compared with TFLite Micro running one QUANTIZE (float -> type)
or DEQUANTIZE (type -> float) model with the same parameters. Packages: the CMake example is
configured and built with CMake + Ninja (for this machine, and for a Cortex-M4 run in QEMU: the
slow test), and its printed class is checked against TFLite Micro on the same floats; the helpers
are also compiled for the Cortex-M4 (FPv4) and compared in QEMU (slow).
"""
from __future__ import annotations

import configparser
import hashlib
import json
import re
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest

from test_oracle import _buffer, _model, _tensor, fb  # noqa: E402  (tests/ has no __init__.py)
from tinyml.cli import main
from tinyml.codegen.emit import generate
from tinyml.oracle import TflmOracle
from tinyml.pipeline import load_graph
from tinyml.schedule.memory import plan_memory

TYPES = {"int8": (fb.TensorType.INT8, np.int8), "uint8": (fb.TensorType.UINT8, np.uint8)}
N = 4096  # elements per tensor of the hand-built models

# (input type, scale, zero point) the quantize helper is checked with; the output side
# (int8 or uint8 with its own scale and zero point) checks the dequantize helper.
CASES = [
    ("int8", 0.0173, -7, "int8", 0.0419, 5),
    ("int8", 1 / 255, -128, "uint8", 0.1, 0),
    ("int8", 0.1, 0, "int8", 3.1e-5, -128),
    ("uint8", 0.0078125, 128, "int8", 12.5, 127),
    ("uint8", 3.7e-4, 255, "uint8", 0.9876543, 200),
    ("int8", 1234.5, 127, "int8", 0.00390625, -128),
]


def _quantize_op_model(t_in: str, s_in: float, z_in: int, t_out: str, s_out: float, z_out: int,
                       float_in: bool = False, float_out: bool = False, n: int = N) -> bytes:
    """One QUANTIZE (or DEQUANTIZE when float_out) over [1, n] elements."""
    ti = _tensor([1, n], fb.TensorType.FLOAT32, 1, name="x") if float_in else \
        _tensor([1, n], TYPES[t_in][0], 1, [s_in], [z_in], "x")
    to = _tensor([1, n], fb.TensorType.FLOAT32, 2, name="y") if float_out else \
        _tensor([1, n], TYPES[t_out][0], 2, [s_out], [z_out], "y")
    op = fb.BuiltinOperator.DEQUANTIZE if float_out else fb.BuiltinOperator.QUANTIZE
    return _model(op, [ti, to], [_buffer(None)] * 3, fb.BuiltinOptions.NONE, None, [0], [1])


HARNESS = r"""
#include <stdio.h>
#include <string.h>
#include "tinyml_model.h"
/* q: floats on stdin -> quantized input 0 on stdout; d: output-0 values on stdin -> floats on stdout */
int main(int argc, char **argv)
{
    static float f[TINYML_INPUT0_ELEMENTS > TINYML_OUTPUT0_ELEMENTS ? TINYML_INPUT0_ELEMENTS : TINYML_OUTPUT0_ELEMENTS];
    int quantize = argc > 1 && argv[1][0] == 'q';
    tinyml_init();
    if (quantize) {
        if (fread(f, sizeof(float), TINYML_INPUT0_ELEMENTS, stdin) != TINYML_INPUT0_ELEMENTS) return 3;
        if (tinyml_quantize_input(0, f) != 0) return 4;
        fwrite(tinyml_input(0), 1, TINYML_INPUT0_BYTES, stdout);
    } else {
        if (fread((void *)tinyml_output(0), 1, TINYML_OUTPUT0_BYTES, stdin) != TINYML_OUTPUT0_BYTES) return 3;
        if (tinyml_dequantize_output(0, f) != 0) return 4;
        fwrite(f, sizeof(float), TINYML_OUTPUT0_ELEMENTS, stdout);
    }
    return tinyml_quantize_input(TINYML_NUM_INPUTS, f) == 0 ? 5 : 0;  /* an index out of range is an error */
}
"""


def _helper_binary(model: bytes, out: Path) -> Path:
    """The generated library + HARNESS compiled for this machine."""
    g = load_graph(model)
    generate(g, plan_memory(g), out / "lib", model_sha256=hashlib.sha256(model).hexdigest())
    (out / "harness.c").write_text(HARNESS)
    exe = out / "harness"
    subprocess.run(["cc", "-std=c99", "-O2", "-Wall", "-Wextra", "-Werror", "-I", str(out / "lib"), str(out / "harness.c"),
                    str(out / "lib" / "tinyml_model.c"), str(out / "lib" / "tinyml_weights.c"), "-o", str(exe)],
                   check=True, capture_output=True, text=True)
    return exe


def _run(exe: Path, mode: str, data: bytes) -> bytes:
    return subprocess.run([str(exe), mode], input=data, capture_output=True, check=True).stdout


def _floats_to_test(scale: float, zp: int, lo: int, hi: int, rng: np.random.Generator) -> np.ndarray:
    """Random floats over the representable range and far beyond, the float neighbours of every
    rounding tie (k + 0.5) * scale, exact multiples, signed zeros and tiny values."""
    s = np.float32(scale)
    r_lo, r_hi = float(s) * (lo - zp), float(s) * (hi - zp)
    inside = rng.uniform(r_lo, r_hi, 8000)
    beyond = rng.uniform(-100, 100, 2000) * (r_hi - r_lo)
    huge = rng.uniform(-1, 1, 500) * float(s) * 1e9  # |x / scale| < 2^31: still defined in TFLite
    ties = (np.arange(lo - zp - 2, hi - zp + 2) + 0.5).astype(np.float32) * s
    neighbours = [np.nextafter(ties, np.float32(sign * np.inf)) for sign in (1, -1)]
    twice = [np.nextafter(n, np.float32(sign * np.inf)) for n, sign in zip(neighbours, (1, -1))]
    exact = np.arange(lo - zp - 2, hi - zp + 2).astype(np.float32) * s
    small = np.array([0.0, -0.0, 1e-45, -1e-45, 1e-30, -1e-30, float(s) * 0.5, -float(s) * 0.5])
    x = np.concatenate([inside, beyond, huge, ties, *neighbours, *twice, exact, small]).astype(np.float32)
    return x[np.abs(x / s) < 2.0 ** 31 - 256]


def _in_chunks(x: np.ndarray, fill: float) -> list[np.ndarray]:
    pad = (-len(x)) % N
    x = np.concatenate([x, np.full(pad, fill, dtype=x.dtype)])
    return [x[i:i + N] for i in range(0, len(x), N)]


@pytest.mark.parametrize("case", CASES, ids=[f"{c[0]}-{c[1]:g}-{c[2]}" for c in CASES])
def test_quantize_helper_is_bit_exact_with_tflite_micro(case, tmp_path: Path) -> None:
    t_in, s_in, z_in = case[:3]
    exe = _helper_binary(_quantize_op_model(*case), tmp_path)
    # TFLite Micro quantizes float to int8 but not to uint8: clamp(round(x / s) + z) over [0, 255]
    # is its int8 result with zero point z - 128, plus 128 (the same template, OutputT = uint8, in TFLite)
    shift = 128 if t_in == "uint8" else 0
    oracle = TflmOracle(_quantize_op_model("int8", s_in, z_in - shift, "int8", s_in, z_in - shift, float_in=True))
    info = np.iinfo(TYPES[t_in][1])
    x = _floats_to_test(s_in, z_in, int(info.min), int(info.max), np.random.default_rng(zlib.crc32(repr(case).encode())))
    assert len(x) > 10000
    for chunk in _in_chunks(x, 0.0):
        ours = np.frombuffer(_run(exe, "q", chunk.astype("<f4").tobytes()), dtype=TYPES[t_in][1])
        theirs = (oracle.run([chunk.reshape(1, N)])[0].reshape(-1).astype(np.int32) + shift).astype(TYPES[t_in][1])
        bad = np.flatnonzero(ours != theirs)
        assert bad.size == 0, f"{bad.size} mismatches, first x={chunk[bad[0]]!r}: ours {ours[bad[0]]}, TFLM {theirs[bad[0]]}"


@pytest.mark.parametrize("case", CASES, ids=[f"{c[3]}-{c[4]:g}-{c[5]}" for c in CASES])
def test_dequantize_helper_gives_tflite_micros_floats_for_every_value(case, tmp_path: Path) -> None:
    t_out, s_out, z_out = case[3:]
    exe = _helper_binary(_quantize_op_model(*case), tmp_path)
    oracle = TflmOracle(_quantize_op_model(t_out, s_out, z_out, t_out, s_out, z_out, float_out=True))
    info = np.iinfo(TYPES[t_out][1])
    q = np.resize(np.arange(info.min, info.max + 1), N).astype(TYPES[t_out][1])
    ours = np.frombuffer(_run(exe, "d", q.tobytes()), dtype="<f4")
    theirs = oracle.run([q.reshape(1, N)])[0].reshape(-1).astype(np.float32)
    assert np.array_equal(ours.view(np.uint32), theirs.view(np.uint32))


def test_quantize_helper_saturates_where_tflite_is_undefined(tmp_path: Path) -> None:
    """inf, NaN and |x / scale| >= 2^31: TFLite's float->int32 cast is undefined there (x86 TFLite
    Micro gives -128 for all of them, a Cortex-M saturates); the helper saturates, NaN -> zero point."""
    case = ("int8", 0.0173, -7, "int8", 0.0419, 5)
    exe = _helper_binary(_quantize_op_model(*case), tmp_path)
    x = np.array([np.inf, -np.inf, np.nan, -np.nan, 3.4e38, -3.4e38, 1e30, -1e30, 0.0173 * 2.0 ** 31,
                  -0.0173 * 2.0 ** 32], dtype=np.float32)
    ours = np.frombuffer(_run(exe, "q", _in_chunks(x, 0.0)[0].astype("<f4").tobytes()), dtype=np.int8)[:len(x)]
    assert ours.tolist() == [127, -128, -7, -7, 127, -128, 127, -128, 127, -128]


def test_float_io_is_copied_unchanged(zoo_path, tmp_path: Path) -> None:
    """A model that quantizes inside (io_float32): the macros say float, scale 1, zero point 0."""
    out = tmp_path / "pkg"
    assert main(["generate", str(zoo_path("io_float32")), "-o", str(out)]) == 0
    header = (out / "tinyml_model.h").read_text()
    for kind in ("INPUT0", "OUTPUT0"):
        assert f"#define TINYML_{kind}_TYPE TINYML_TYPE_FLOAT32" in header
        assert f"#define TINYML_{kind}_CTYPE float" in header
        assert f"#define TINYML_{kind}_SCALE 0x1.0000000000000p+0f" in header
        assert f"#define TINYML_{kind}_ZERO_POINT (0)" in header
    harness = tmp_path / "h.c"
    harness.write_text(r"""
#include <string.h>
#include "tinyml_model.h"
int main(void)
{
    static float x[TINYML_INPUT0_ELEMENTS], y[TINYML_OUTPUT0_ELEMENTS];
    unsigned k;
    for (k = 0; k < TINYML_INPUT0_ELEMENTS; k++) x[k] = (float)k * -0.37f + 1e-3f;
    if (tinyml_quantize_input(0, x) != 0 || memcmp(tinyml_input(0), x, sizeof x) != 0) return 1;
    if (tinyml_run() != 0 || tinyml_dequantize_output(0, y) != 0) return 2;
    return memcmp(tinyml_output(0), y, sizeof y) != 0 ? 3 : 0;
}
""")
    exe = tmp_path / "h"
    subprocess.run(["cc", "-std=c99", "-Wall", "-Wextra", "-Werror", "-I", str(out), str(harness),
                    str(out / "tinyml_model.c"), str(out / "tinyml_weights.c"), "-o", str(exe)], check=True)
    assert subprocess.run([str(exe)]).returncode == 0


def test_header_carries_the_quantization_the_version_and_the_models_hash(zoo_path, tmp_path: Path) -> None:
    model = zoo_path("io_two_outputs")
    assert main(["generate", str(model), "-o", str(tmp_path / "lib")]) == 0
    header = (tmp_path / "lib" / "tinyml_model.h").read_text()
    assert f'#define TINYML_MODEL_SHA256 "{hashlib.sha256(model.read_bytes()).hexdigest()}"' in header
    assert re.search(r'#define TINYML_VERSION "\d+\.\d+\.\d+"', header)
    oracle = TflmOracle(model.read_bytes())
    for kind, specs in (("INPUT", oracle.inputs), ("OUTPUT", oracle.outputs)):
        for i, spec in enumerate(specs):
            scale = re.search(rf"#define TINYML_{kind}{i}_SCALE (\S+)f", header).group(1)
            assert np.float32(float.fromhex(scale)) == np.float32(spec.scale)
            assert f"#define TINYML_{kind}{i}_ZERO_POINT ({spec.zero_point})" in header
            assert f"#define TINYML_{kind}{i}_ELEMENTS {int(np.prod(spec.shape))}u" in header
            assert f"#define TINYML_{kind}{i}_TYPE TINYML_TYPE_INT8" in header
    # the documented example at the top compiles as written
    example = re.search(r"\* Example:.*?\n \*\n(.*?)\n \*\n", header, re.S).group(1)
    body = "\n".join(line[4:] for line in example.splitlines())
    src = tmp_path / "example.c"
    src.write_text(f'#include <stdio.h>\nint main(void)\n{{\n{body.replace("#include", "//")}\n    return (int)best;\n}}\n')
    src.write_text('#include "tinyml_model.h"\n' + src.read_text())
    subprocess.run(["cc", "-std=c99", "-Wall", "-Werror", "-I", str(tmp_path / "lib"), str(src),
                    str(tmp_path / "lib" / "tinyml_model.c"), str(tmp_path / "lib" / "tinyml_weights.c"),
                    "-o", str(tmp_path / "example")], check=True)


# -- packages ----------------------------------------------------------------------

def _tflm_quantize(x: np.ndarray, dtype: str, scale: float, zp: int) -> np.ndarray:
    """TFLite Micro's QUANTIZE of x (uint8 through int8 with the zero point moved, as above)."""
    shift = 128 if dtype == "uint8" else 0
    m = _quantize_op_model("int8", scale, zp - shift, "int8", scale, zp - shift, float_in=True, n=x.size)
    q = TflmOracle(m).run([x.reshape(1, -1).astype(np.float32)])[0].astype(np.int32) + shift
    return q.astype(TYPES[dtype][1])


def tflm_class(model: Path, floats: list[np.ndarray]) -> int:
    """The class TFLite Micro computes from the example's floats: its QUANTIZE, the model, then the
    first maximum of output 0 (dequantizing keeps the order: the scale is positive)."""
    oracle = TflmOracle(model.read_bytes())
    inputs = [x.reshape(spec.shape) if spec.dtype == "float32" else
              _tflm_quantize(x, spec.dtype, spec.scale, spec.zero_point).reshape(spec.shape)
              for x, spec in zip(floats, oracle.inputs)]
    return int(np.argmax(oracle.run(inputs)[0].reshape(-1)))


def _package(model: Path, out: Path, *extra: str) -> Path:
    assert main(["generate", str(model), "-o", str(out), "--package", *extra]) == 0
    return out


def example_floats(example_dir: Path) -> list[np.ndarray]:
    """The sample input the example was built with, read back from its tinyml_example.h."""
    text = (example_dir / "tinyml_example.h").read_text()
    arrays = re.findall(r"tinyml_example_input\d+\[\w+\] = \{(.*?)\};", text, re.S)
    return [np.array([float.fromhex(v.strip().rstrip("f")) for v in a.split(",") if v.strip()], dtype=np.float32)
            for a in arrays]


def _cmake_build(src: Path, build: Path, *defs: str) -> None:
    for cmd in (["cmake", "-S", str(src), "-B", str(build), "-G", "Ninja", *defs], ["cmake", "--build", str(build)]):
        proc = subprocess.run(cmd, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]


def _printed_class(text: str) -> int:
    m = re.search(r"tinyml example: class (-?\d+)", text)
    assert m, text
    return int(m.group(1))


def test_package_layout_follows_each_tools_documented_fields(zoo_path, tmp_path: Path) -> None:
    out = _package(zoo_path("io_per_tensor"), tmp_path / "pkg")
    # PlatformIO library.json (docs.platformio.org/en/latest/manifests/library-json/): name is a slug of
    # a-z, digits and dashes (<= 50), version semver (<= 20), description <= 255; build.srcDir/includeDir
    # are folders of the library, build.flags reach the library's own sources, examples are globs.
    lj = json.loads((out / "library.json").read_text())
    assert re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", lj["name"]) and len(lj["name"]) <= 50
    assert re.fullmatch(r"\d+\.\d+\.\d+", lj["version"]) and len(lj["description"]) <= 255
    assert lj["frameworks"] == "*" and lj["platforms"] == "*"
    assert (out / lj["build"]["srcDir"] / lj["headers"]).is_file() and (out / lj["build"]["includeDir"]).is_dir()
    assert "-O2" in lj["build"]["flags"]
    assert all(list(out.glob(pattern)) for pattern in lj["examples"])
    ini = configparser.ConfigParser()
    ini.read(out / "examples/platformio/platformio.ini")
    assert (out / "examples/platformio" / ini["platformio"]["src_dir"]).resolve() == \
        (out / "examples/tinyml_classify").resolve()
    assert ini["env:example"]["lib_deps"] == "symlink://../.."
    # Arduino library.properties (arduino.github.io/arduino-cli/latest/library-specification/): the
    # required fields, a category from the fixed list, sources under src/, examples/<name>/<name>.ino
    props = dict(line.split("=", 1) for line in (out / "library.properties").read_text().splitlines() if "=" in line)
    for field in ("name", "version", "author", "maintainer", "sentence", "paragraph", "category", "url",
                  "architectures"):
        assert props.get(field), field
    assert re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9 _.\-]*", props["name"])
    assert props["category"] in ("Display", "Communication", "Signal Input/Output", "Sensors", "Device Control",
                                 "Timing", "Data Storage", "Data Processing", "Other")
    assert (out / "src" / props["includes"]).is_file()
    assert (out / "examples/tinyml_classify/tinyml_classify.ino").is_file()
    # Zephyr module: module.yml points at a CMake folder and a Kconfig file; the Kconfig has the DSP option
    yml = (out / "zephyr/module.yml").read_text()
    cmake_dir = re.search(r"^\s+cmake:\s*(\S+)", yml, re.M).group(1)
    kconfig = re.search(r"^\s+kconfig:\s*(\S+)", yml, re.M).group(1)
    assert (out / cmake_dir / "CMakeLists.txt").is_file() and (out / kconfig).is_file()
    kc = (out / kconfig).read_text()
    assert "config TINYML_MODEL\n" in kc and "config TINYML_MODEL_DSP\n" in kc
    zc = (out / cmake_dir / "CMakeLists.txt").read_text()
    assert "zephyr_library" in zc and "zephyr_library_compile_options(-O2)" in zc
    # every source the CMake and Zephyr files name exists
    for f in re.findall(r"\$\{CMAKE_CURRENT_LIST_DIR\}/(\S+\.c)", (out / "CMakeLists.txt").read_text()):
        assert (out / f).is_file(), f
    for variant in ("portable", "dsp"):
        for f in re.findall(r"/src/\$\{TINYML_MODEL_VARIANT\}/(\S+\.c)", zc):
            assert (out / "src" / variant / f).is_file()


def test_one_kind_writes_only_its_manifest(zoo_path, tmp_path: Path) -> None:
    out = _package(zoo_path("io_per_tensor"), tmp_path / "pkg", "zephyr")
    assert (out / "zephyr/module.yml").is_file() and (out / "examples/zephyr/src/main.c").is_file()
    for absent in ("CMakeLists.txt", "library.json", "library.properties", "examples/cmake"):
        assert not (out / absent).exists(), absent


@pytest.mark.parametrize("extra", [["--board", "stm32f405"], ["--package", "zephyr", "--board", "stm32f405"],
                                   ["--package", "cmake", "--board", "no-such-board"]])
def test_a_board_the_package_cannot_use_is_one_line_and_exit_2(extra: list[str], zoo_path, tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "tinyml.cli", "generate", str(zoo_path("io_per_tensor")),
                           "-o", str(tmp_path / "x"), *extra], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
    assert not (tmp_path / "x").exists()


def test_exactly_one_variant_compiles_and_dsp_needs_the_extension(zoo_path, tmp_path: Path) -> None:
    out = _package(zoo_path("io_per_tensor"), tmp_path / "pkg")
    sources = sorted(str(p) for p in (out / "src").rglob("*.c"))

    def compile_all(cc: str, *flags: str) -> subprocess.CompletedProcess:
        objs = tmp_path / f"obj{abs(hash(flags))}"
        objs.mkdir(exist_ok=True)
        procs = [subprocess.run([cc, "-std=c99", "-O2", "-Wall", "-Wextra", "-Werror", "-I", str(out / "src"), *flags,
                                 "-c", s, "-o", str(objs / f"{i}.o")], capture_output=True, text=True)
                 for i, s in enumerate(sources)]
        bad = [p for p in procs if p.returncode]
        return bad[0] if bad else subprocess.run(["sh", "-c", f"{cc.replace('gcc', 'nm')} {objs}/*.o"],
                                                 capture_output=True, text=True)

    host = compile_all("gcc")
    assert host.returncode == 0 and host.stdout.count(" T tinyml_run\n") == 1
    assert "#error" in compile_all("gcc", "-DTINYML_MODEL_DSP=1").stderr
    m4 = compile_all("arm-none-eabi-gcc", "-mcpu=cortex-m4", "-mthumb")
    assert m4.returncode == 0 and m4.stdout.count(" T tinyml_run\n") == 1
    m0 = compile_all("arm-none-eabi-gcc", "-mcpu=cortex-m0", "-mthumb", "-DTINYML_MODEL_DSP=1")
    assert "needs a core with the DSP extension" in m0.stderr


@pytest.mark.parametrize("name", ["resnet8", "io_uint8", "io_float32"])
def test_cmake_example_on_this_machine_prints_tflite_micros_class(name: str, zoo_path, tmp_path: Path) -> None:
    model = zoo_path(name)
    out = _package(model, tmp_path / "pkg", "cmake", "--patch", "off")  # the schedule is not what is tested here
    _cmake_build(out / "examples/cmake", tmp_path / "build")
    proc = subprocess.run([str(tmp_path / "build/tinyml_example")], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout
    assert hashlib.sha256(model.read_bytes()).hexdigest() in proc.stdout
    assert _printed_class(proc.stdout) == tflm_class(model, example_floats(out / "examples/cmake"))


def test_a_model_calling_libm_links_it_in_cmake(tmp_path: Path) -> None:
    """float32 LOG_SOFTMAX (a PyTorch export from the wild sample) calls expf/logf: the CMake library
    links `m` then, and the example builds and prints TFLite Micro's class; other packages do not."""
    model = Path(__file__).parents[1].parent / "shared/models/wild/tinyengine_ptq_mnist_lenet-300-100.tflite"
    out = _package(model, tmp_path / "pkg", "cmake")
    assert "target_link_libraries(tinyml_model PUBLIC m)" in (out / "CMakeLists.txt").read_text()
    _cmake_build(out / "examples/cmake", tmp_path / "build")
    proc = subprocess.run([str(tmp_path / "build/tinyml_example")], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout
    assert _printed_class(proc.stdout) == tflm_class(model, example_floats(out / "examples/cmake"))
    plain = _package(Path(__file__).parents[1].parent / "shared/models/wild/tinymaix_mnist_resnet_q.tflite",
                     tmp_path / "plain", "cmake")
    assert "PUBLIC m)" not in (plain / "CMakeLists.txt").read_text()


@pytest.mark.slow
@pytest.mark.parametrize("dsp", ["AUTO", "OFF"])
def test_cmake_example_on_a_cortex_m4_in_qemu_prints_tflite_micros_class(dsp: str, zoo_path, tmp_path: Path) -> None:
    model = zoo_path("resnet8")
    out = _package(model, tmp_path / "pkg", "cmake", "--board", "stm32f405")
    example = out / "examples/cmake"
    _cmake_build(example, tmp_path / "build", f"-DCMAKE_TOOLCHAIN_FILE={example / 'arm-none-eabi.cmake'}",
                 "-DTINYML_EXAMPLE_SEMIHOSTING=ON", f"-DTINYML_MODEL_DSP={dsp}")
    objs = {p.parent.name: p for p in (tmp_path / "build").rglob("tinyml_model.c.obj")}
    sizes = {v: int(subprocess.run(["arm-none-eabi-size", str(p)], capture_output=True, text=True,
                                   check=True).stdout.splitlines()[1].split()[0]) for v, p in objs.items()}
    assert (sizes["dsp"] > 0, sizes["portable"] > 0) == ((True, False) if dsp == "AUTO" else (False, True))
    proc = subprocess.run(["qemu-system-arm", "-M", "netduinoplus2", "-display", "none", "-monitor", "none",
                           "-serial", "stdio", "-semihosting-config", "enable=on,target=native",
                           "-kernel", str(tmp_path / "build/tinyml_example.elf")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert hashlib.sha256(model.read_bytes()).hexdigest() in proc.stdout
    assert _printed_class(proc.stdout) == tflm_class(model, example_floats(out / "examples/cmake"))


ARM_HARNESS = r"""
#include <string.h>
#include "tm_firmware.h"
#include "tinyml_model.h"
#include "test_data.h"   /* test_bits[TEST_COUNT]: float bit patterns, TEST_COUNT a multiple of the input size */

static void put_hex(const void *p, uint32_t n)
{
    const uint8_t *b = (const uint8_t *)p;
    for (uint32_t i = 0; i < n; i++) {
        tm_uart_putc((uint8_t)"0123456789abcdef"[b[i] >> 4]);
        tm_uart_putc((uint8_t)"0123456789abcdef"[b[i] & 15u]);
    }
}

int main(void)
{
    static float f[TINYML_INPUT0_ELEMENTS];
    tm_board_init();
    tm_uart_init();
    tinyml_init();
    tm_puts("Q ");
    for (uint32_t c = 0; c < TEST_COUNT; c += TINYML_INPUT0_ELEMENTS) {
        memcpy(f, &test_bits[c], sizeof f);
        if (tinyml_quantize_input(0, f) != 0) tm_exit(0, 2);
        put_hex(tinyml_input(0), TINYML_INPUT0_BYTES);
    }
    tm_puts("\r\nD ");
    for (uint32_t k = 0; k < TINYML_OUTPUT0_BYTES; k++)
        ((uint8_t *)(uintptr_t)tinyml_output(0))[k] = (uint8_t)k;
    if (tinyml_dequantize_output(0, f) != 0) tm_exit(0, 3);
    put_hex(f, TINYML_OUTPUT0_ELEMENTS * sizeof(float));
    tm_puts("\r\nEND\r\n");
    tm_exit(0, 0);
}
"""


@pytest.mark.slow
@pytest.mark.parametrize("case", [CASES[1], CASES[3]], ids=["int8-in-uint8-out", "uint8-in-int8-out"])
def test_helpers_on_a_cortex_m4_in_qemu_match_tflite_micro(case, tmp_path: Path) -> None:
    """The same comparison as above with the helpers compiled by arm-none-eabi-gcc (FPv4) and run in QEMU."""
    t_in, s_in, z_in, t_out, s_out, z_out = case
    model = tmp_path / "quantize.tflite"
    model.write_bytes(_quantize_op_model(*case))
    out = _package(model, tmp_path / "pkg", "cmake", "--board", "stm32f405")
    info = np.iinfo(TYPES[t_in][1])
    x = _floats_to_test(s_in, z_in, int(info.min), int(info.max), np.random.default_rng(zlib.crc32(repr(case).encode())))
    chunks = _in_chunks(x, 0.0)
    bits = np.concatenate(chunks).view(np.uint32)
    example = out / "examples/cmake"
    (example / "main.c").write_text(ARM_HARNESS)
    (example / "test_data.h").write_text(
        f"#define TEST_COUNT {bits.size}u\nstatic const uint32_t test_bits[TEST_COUNT] = {{\n"
        + ",\n".join(", ".join(f"0x{b:08x}u" for b in bits[i:i + 16]) for i in range(0, bits.size, 16)) + "\n};\n")
    _cmake_build(example, tmp_path / "build", f"-DCMAKE_TOOLCHAIN_FILE={example / 'arm-none-eabi.cmake'}")
    proc = subprocess.run(["qemu-system-arm", "-M", "netduinoplus2", "-display", "none", "-monitor", "none",
                           "-serial", "stdio", "-semihosting-config", "enable=on,target=native",
                           "-kernel", str(tmp_path / "build/tinyml_example.elf")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and "END" in proc.stdout, proc.stdout[-500:] + proc.stderr
    q_hex = re.search(r"Q ([0-9a-f]*)", proc.stdout).group(1)
    d_hex = re.search(r"D ([0-9a-f]*)", proc.stdout).group(1)
    ours_q = np.frombuffer(bytes.fromhex(q_hex), dtype=TYPES[t_in][1])
    shift = 128 if t_in == "uint8" else 0
    oracle = TflmOracle(_quantize_op_model("int8", s_in, z_in - shift, "int8", s_in, z_in - shift, float_in=True))
    theirs_q = np.concatenate([(oracle.run([c.reshape(1, N)])[0].reshape(-1).astype(np.int32) + shift)
                               for c in chunks]).astype(TYPES[t_in][1])
    assert np.array_equal(ours_q, theirs_q), f"{np.count_nonzero(ours_q != theirs_q)} mismatches"
    q = (np.arange(N) % 256).astype(np.uint8).view(TYPES[t_out][1])
    theirs_d = TflmOracle(_quantize_op_model(t_out, s_out, z_out, t_out, s_out, z_out, float_out=True)).run(
        [q.reshape(1, N)])[0].reshape(-1).astype(np.float32)
    assert np.array_equal(np.frombuffer(bytes.fromhex(d_hex), dtype="<u4"), theirs_d.view(np.uint32))


ARDUINO_STUB = r"""
/* Just enough of the Arduino core for the sketch: Serial prints to stdout. */
#include <stdio.h>
struct StubSerial {
    void begin(long) {}
    explicit operator bool() const { return true; }
    void print(const char *s) { fputs(s, stdout); }
    void print(int v) { printf("%d", v); }
    void println(const char *s) { printf("%s\n", s); }
    void println(int v) { printf("%d\n", v); }
};
static StubSerial Serial;
"""


def test_arduino_sketch_compiles_as_cpp_and_prints_tflite_micros_class(zoo_path, tmp_path: Path) -> None:
    """The sketch is C++ (Arduino and PlatformIO build it so): with a stub Serial it compiles with g++ against
    the library compiled as C the way the Arduino IDE does it (-Os, ARDUINO defined: the O2 pragma), and runs."""
    model = zoo_path("io_two_outputs")
    out = _package(model, tmp_path / "pkg", "arduino", "--patch", "off")
    objs = []
    for i, src in enumerate(sorted((out / "src").rglob("*.c"))):
        objs.append(str(tmp_path / f"{i}.o"))
        subprocess.run(["gcc", "-std=gnu11", "-Os", "-DARDUINO=10819", "-Wall", "-Wextra", "-Werror",
                        "-I", str(out / "src"), "-c", str(src), "-o", objs[-1]], check=True)
    sketch_dir = out / "examples/tinyml_classify"
    (tmp_path / "stub.h").write_text(ARDUINO_STUB)
    (tmp_path / "main.cpp").write_text('#include "stub.h"\n#include "tinyml_classify.ino"\n'
                                       "int main() { setup(); return 0; }\n")
    exe = tmp_path / "sketch"
    subprocess.run(["g++", "-std=gnu++11", "-Os", "-Wall", "-Wextra", "-Werror", "-I", str(tmp_path),
                    "-I", str(sketch_dir), "-I", str(out / "src"), str(tmp_path / "main.cpp"), *objs, "-o", str(exe)],
                   check=True)
    proc = subprocess.run([str(exe)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and hashlib.sha256(model.read_bytes()).hexdigest() in proc.stdout
    assert _printed_class(proc.stdout) == tflm_class(model, example_floats(sketch_dir))


ZEPHYR_STUB = """
# Stand-ins for the few Zephyr extension functions the module uses (cmake/modules/extensions.cmake in
# Zephyr: a zephyr_library_* call acts on the library zephyr_library_named() made current).
cmake_minimum_required(VERSION 3.20)
project(zephyr_stub C)
function(zephyr_include_directories)
  include_directories(${ARGN})
endfunction()
macro(zephyr_library_named name)
  set(ZEPHYR_CURRENT_LIBRARY ${name})
  add_library(${name} STATIC "")
endmacro()
function(zephyr_library_sources)
  target_sources(${ZEPHYR_CURRENT_LIBRARY} PRIVATE ${ARGN})
endfunction()
function(zephyr_library_compile_definitions)
  target_compile_definitions(${ZEPHYR_CURRENT_LIBRARY} PRIVATE ${ARGN})
endfunction()
function(zephyr_library_compile_options)
  target_compile_options(${ZEPHYR_CURRENT_LIBRARY} PRIVATE ${ARGN})
endfunction()
add_subdirectory(${MODULE_DIR}/zephyr module)
"""


@pytest.mark.parametrize("dsp", ["n", "y"])
def test_zephyr_module_cmake_selects_the_configured_variant(dsp: str, zoo_path, tmp_path: Path) -> None:
    """No Zephyr SDK here: the module's CMakeLists runs against stand-ins for Zephyr's functions, with the
    Kconfig choice as Zephyr passes it (CONFIG_* variables), and compiles (Cortex-M4 for the DSP variant)."""
    out = _package(zoo_path("io_per_tensor"), tmp_path / "pkg", "zephyr", "--patch", "off")
    (tmp_path / "stub").mkdir()
    (tmp_path / "stub/CMakeLists.txt").write_text(ZEPHYR_STUB)
    defs = [f"-DMODULE_DIR={out}", "-DCONFIG_TINYML_MODEL=y", f"-DCONFIG_TINYML_MODEL_DSP={dsp}"]
    if dsp == "y":
        defs += ["-DCMAKE_SYSTEM_NAME=Generic", "-DCMAKE_C_COMPILER=arm-none-eabi-gcc",
                 "-DCMAKE_TRY_COMPILE_TARGET_TYPE=STATIC_LIBRARY", "-DCMAKE_C_FLAGS=-mcpu=cortex-m4 -mthumb"]
    _cmake_build(tmp_path / "stub", tmp_path / "build", *defs)
    ninja = (tmp_path / "build/build.ninja").read_text()
    variant, other = ("dsp", "portable") if dsp == "y" else ("portable", "dsp")
    assert f"src/{variant}/tinyml_model.c" in ninja and f"src/{other}/" not in ninja
    assert f"-DTINYML_MODEL_DSP={int(dsp == 'y')}" in ninja and "-O2" in ninja
