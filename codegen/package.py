"""The generated library as a package for the user's build system.

One layout serves CMake, Zephyr, PlatformIO and the Arduino IDE: the sources
sit under src/ (where Arduino and PlatformIO look) and each tool gets its own
manifest next to them. The library is emitted twice, plain C (src/portable/)
and for the ARMv7E-M DSP extension (src/dsp/), because the DSP kernels are
chosen when the C is generated (target.dsp), not by a define. Every .c of a
variant is wrapped in `#if TINYML_MODEL_DSP == n` (src/tinyml_variant.h picks
n from __ARM_FEATURE_DSP unless the build sets it), so tools that compile every
file under src/ still link exactly one variant. -O2 travels as the build files'
flags (a `#pragma GCC optimize` for Arduino, which has no per-library flags).

The example applications share examples/*/tinyml_example.h: a sample input as
floats, the quantize/run/dequantize calls and the top class of output 0. With a
board, examples/cmake/ also holds the firmware's own startup, linker script and
UART driver for it (firmware_templates/firmware/), so it runs bare-metal.
"""
from __future__ import annotations

from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

import numpy as np

from tinyml import __version__
from tinyml.board import Board, Target
from tinyml.codegen.emit import Emitted, IOInfo, emit_model
from tinyml.codegen.templates import environment
from tinyml.fsutil import atomic_directory
from tinyml.ir import Graph
from tinyml.schedule.memory import MemoryPlan

KINDS = ("cmake", "zephyr", "platformio", "arduino")
VARIANTS = {"portable": Target(), "dsp": Target("cortex-m", dsp=True)}
SHARED_FILES = ("tinyml_model.h", "tinyml_fixedpoint.h", "tinyml_dsp.h")
VARIANT_FILES = ("tinyml_model.c", "tinyml_weights.c", "tinyml_weights.h")
# The firmware files a bare-metal example needs besides its UART driver: reset and
# fault handling, the clock/pin set-up from the board file, and the framing the
# fault report uses (firmware_templates/firmware/).
BOARD_FILES = ("startup.c", "protocol.c", "tm_board.c", "tm_firmware.h")
ARDUINO_SKETCH = "tinyml_classify"

# kind -> (template under firmware_templates/package/, destination in the package)
MANIFESTS = {
    "cmake": [("CMakeLists.txt.j2", "CMakeLists.txt"), ("example_cmake/CMakeLists.txt.j2", "examples/cmake/CMakeLists.txt"),
              ("example_cmake/main.c.j2", "examples/cmake/main.c")],
    "zephyr": [("zephyr/module.yml.j2", "zephyr/module.yml"), ("zephyr/Kconfig.j2", "zephyr/Kconfig"),
               ("zephyr/CMakeLists.txt.j2", "zephyr/CMakeLists.txt"),
               ("example_zephyr/CMakeLists.txt.j2", "examples/zephyr/CMakeLists.txt"),
               ("example_zephyr/prj.conf.j2", "examples/zephyr/prj.conf"),
               ("example_zephyr/main.c.j2", "examples/zephyr/src/main.c")],
    "platformio": [("library.json.j2", "library.json"),
                   ("example_platformio/platformio.ini.j2", "examples/platformio/platformio.ini")],
    "arduino": [("library.properties.j2", "library.properties")],
}
# where each kind's example reads tinyml_example.h (PlatformIO builds the Arduino sketch)
EXAMPLE_DIRS = {"cmake": "examples/cmake", "zephyr": "examples/zephyr/src", "platformio": f"examples/{ARDUINO_SKETCH}",
                "arduino": f"examples/{ARDUINO_SKETCH}"}


@dataclass
class Package:
    path: Path
    kinds: tuple[str, ...]
    board: str | None  # the board examples/cmake/ is set up for, if any
    files: list[str]
    arena_bytes: int
    weights_bytes: dict[str, int]  # per variant


def example_inputs(inputs: list[IOInfo], seed: int = 0) -> list[np.ndarray]:
    """The example's sample input: floats uniform over each input's representable range ([-1, 1] for float)."""
    rng = np.random.default_rng(seed)
    bounds = {"int8": (-128, 127), "uint8": (0, 255)}
    out = []
    for io in inputs:
        lo, hi = -1.0, 1.0
        if io.dtype in bounds:
            lo, hi = (io.scale * (q - io.zero_point) for q in bounds[io.dtype])
        out.append(rng.uniform(lo, hi, io.elements).astype(np.float32))
    return out


def _variant_source(text: str, variant: str) -> str:
    """Wrap one variant's C file so only the selected variant compiles to anything."""
    n = int(VARIANTS[variant].dsp)
    return (f"/* tinyml package, {variant} variant: compiled when TINYML_MODEL_DSP == {n} (tinyml_variant.h). */\n"
            f'#include "tinyml_variant.h"\n#if TINYML_MODEL_DSP == {n}\n{text}'
            f"#else\ntypedef int tinyml_{variant}_variant_not_selected;  /* ISO C: no empty file */\n#endif\n")


def _board_files(board: Board, banner: str) -> tuple[dict[str, str], str]:
    """examples/cmake/board/: the firmware's startup, drivers and linker script for `board`; its UART driver."""
    from tinyml.codegen.firmware import image_plans  # imports the firmware builder: only when a board is given

    env = environment()
    image = image_plans(board, board.min_stack_bytes)["board"]
    params = dict(banner=banner, board=board, image=image, model_id=0, per_layer=False, selftest=False,
                  input_geometry=[])
    src = files("tinyml.firmware_templates") / "firmware"
    out = {name: (src / name).read_text() for name in (*BOARD_FILES, image.uart_source)}
    for name in ("tm_config.h", "linker.ld"):
        out[name] = env.get_template(f"firmware/{name}.j2").render(**params)
    return out, image.uart_source


def render_package(g: Graph, plan: MemoryPlan, model_sha256: str, kinds: tuple[str, ...] = KINDS,
                   board: Board | None = None, seed: int = 0) -> tuple[dict[str, str], dict[str, Emitted]]:
    """Every file of the package (relative path -> text) and the two emitted variants."""
    emitted = {v: emit_model(g, plan, t, model_sha256) for v, t in VARIANTS.items()}
    portable = emitted["portable"]
    assert portable.texts["tinyml_model.h"] == emitted["dsp"].texts["tinyml_model.h"], "the variants share one API"
    texts = {f"src/{name}": portable.texts[name] for name in SHARED_FILES}
    for v, em in emitted.items():
        for name in VARIANT_FILES:
            texts[f"src/{v}/{name}"] = _variant_source(em.texts[name], v) if name.endswith(".c") else em.texts[name]
    banner = f"Generated by tinyml {__version__}; do not edit."
    env = environment()
    sources = [f"src/{v}/{name}" for v in VARIANTS for name in VARIANT_FILES if name.endswith(".c")]
    params = dict(banner=banner, version=__version__, model_sha256=model_sha256, kinds=kinds,
                  sources=sources, variant_files=[n for n in VARIANT_FILES if n.endswith(".c")],
                  streamed=any(io.offset is None for io in portable.inputs), libm=portable.ctx.uses_libm, board=board, sketch=ARDUINO_SKETCH,
                  uart_source=None, cpu_flags=" ".join(board.cpu_flags()) if board else "")
    if board is not None and "cmake" in kinds:
        board_texts, params["uart_source"] = _board_files(board, banner)
        texts.update({f"examples/cmake/board/{k}": v for k, v in board_texts.items()})
        texts["examples/cmake/arm-none-eabi.cmake"] = env.get_template(
            "package/example_cmake/arm-none-eabi.cmake.j2").render(**params)
    texts["src/tinyml_variant.h"] = env.get_template("package/tinyml_variant.h.j2").render(**params)
    texts["README.md"] = env.get_template("package/README.md.j2").render(**params)
    for kind in kinds:
        for template, dest in MANIFESTS[kind]:
            texts[dest] = env.get_template(f"package/{template}").render(**params)
    if "arduino" in kinds or "platformio" in kinds:
        texts[f"examples/{ARDUINO_SKETCH}/{ARDUINO_SKETCH}.ino"] = env.get_template(
            "package/example_arduino/sketch.ino.j2").render(**params)
    example = env.get_template("package/tinyml_example.h.j2").render(
        **params, data=example_inputs(portable.inputs, seed))
    for kind in kinds:
        texts[f"{EXAMPLE_DIRS[kind]}/tinyml_example.h"] = example
    return texts, emitted


def write_package(g: Graph, plan: MemoryPlan, out_dir: str | Path, model_sha256: str,
                  kinds: tuple[str, ...] = KINDS, board: Board | None = None, seed: int = 0) -> Package:
    """Write the package to out_dir atomically (temp dir, then move into place)."""
    texts, emitted = render_package(g, plan, model_sha256, kinds, board, seed)
    with atomic_directory(out_dir) as tmp:
        for rel, text in texts.items():
            (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
            (tmp / rel).write_text(text)
    weights = {v: sum(int(c.values.nbytes) for c in em.ctx.consts) for v, em in emitted.items()}
    return Package(Path(out_dir), kinds, board.name if board else None, sorted(texts), plan.arena_bytes, weights)
