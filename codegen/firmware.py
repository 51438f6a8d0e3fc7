"""Generated library + board -> firmware images, built with arm-none-eabi-gcc.

`build_firmware` renders the firmware templates around the generated library
for one board, compiles them with the board's -mcpu/-mfpu, links them with the
board's real flash and RAM sizes (plus a reserved minimum stack), and reports
the size of every section and every memory region from the ELF and its map.

A board has one or two images. The "board" image is what gets flashed. When the
board's QEMU machine models another chip (an STM32F746 simulated on an MPS2
Cortex-M7), a "qemu" image is linked as well: the same objects and sizes, at the
machine's addresses and with its UART. Both share the compiled library.

Output directory (written to a temp dir, moved into place when complete):
    firmware.elf/.bin/.hex/.map   the board image
    firmware.json                 sizes, regions, symbols, I/O: what runners read
    Makefile                      rebuild by hand (`make`, `make qemu`)
    lib/ src/ board/ [qemu/]      sources; per-image config and linker script
    renode/                       <board>.resc, <board>.robot [, <board>.repl] (codegen/renode.py)
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import zlib
from dataclasses import asdict, dataclass, field
from importlib.resources import files
from pathlib import Path

import numpy as np

from tinyml import __version__
from tinyml.board import UART_DRIVERS, Board, Region, Uart, load_board
from tinyml.codegen.emit import IOInfo, emit_model
from tinyml.codegen.renode import RENODE_DIR, write_renode_files
from tinyml.codegen.templates import environment
from tinyml.errors import CheckFailed, DoesNotFit, ToolMissing
from tinyml.fsutil import atomic_directory
from tinyml.ir import Graph
from tinyml.report import weights_bytes
from tinyml.schedule.memory import MemoryPlan

TOOL_PREFIX = "arm-none-eabi-"
FW_SOURCES = ("startup.c", "counter.c", "protocol.c", "tm_board.c", "main.c")
STATIC_FILES = FW_SOURCES + tuple(sorted({d.source for d in UART_DRIVERS.values()})) + ("tm_firmware.h", "tm_profile.h")
LIB_SOURCES = ("tinyml_model.c", "tinyml_weights.c")
OPTIMIZE = ("O2", "Os")
STACK_GUARD_BYTES = 32
QEMU_UART_CLOCK_HZ = 25_000_000  # MPS2 APB clock; QEMU ignores the divisor
INSTALL_HINT = "install it with: apt-get install gcc-arm-none-eabi libnewlib-arm-none-eabi"


@dataclass(frozen=True)
class ImagePlan:
    """Where and how one image is linked."""

    variant: str  # "board" or "qemu"
    machine: str | None  # the QEMU machine that runs this image unchanged, if any
    serial_index: int  # which of the machine's serial ports is this image's UART
    flash: Region
    ram: Region
    extra_regions: tuple[Region, ...]
    uart: Uart
    counter: str  # fallback when DWT does not count: "tim2" or "marks"
    min_stack: int
    guard_base: int = 0
    guard_log2: int = 0

    @property
    def uart_source(self) -> str:
        return UART_DRIVERS[self.uart.driver].source


@dataclass
class Selftest:
    """One input set baked into the image and the CRC-32 of its expected outputs."""

    data: np.ndarray  # uint8, the inputs back to back
    crc: int

    @classmethod
    def from_arrays(cls, inputs: list[np.ndarray], outputs: list[np.ndarray]) -> "Selftest":
        data = np.frombuffer(b"".join(np.ascontiguousarray(x).tobytes() for x in inputs), dtype=np.uint8)
        crc = zlib.crc32(b"".join(np.ascontiguousarray(y).tobytes() for y in outputs))
        return cls(data.copy(), crc)


@dataclass
class Section:
    name: str
    size: int
    vma: int
    lma: int
    flags: list[str]


@dataclass
class FirmwareImage:
    """One linked ELF and what it costs."""

    variant: str
    machine: str | None
    serial_index: int
    counter: str
    elf: str  # relative to the firmware directory
    map: str
    sections: list[Section]
    regions: dict[str, dict[str, int]]  # FLASH/RAM: origin, size, used
    flash_bytes: int  # everything stored in flash: vectors, code, constants, .data's initial values
    static_ram_bytes: int  # .data + .bss
    stack_reserved_bytes: int  # the guaranteed minimum (part of the RAM region's use)
    stack_available_bytes: int  # from the guard to the top of RAM
    symbols: dict[str, int]
    contributions: dict[str, dict[str, int]] = field(default_factory=dict)  # section -> model/firmware/libc bytes

    @property
    def model_ram_bytes(self) -> int:
        """.data + .bss of the model library alone: what an application pays for the model, without our harness."""
        return sum(self.contributions.get(s, {}).get("model", 0) for s in (".data", ".bss"))


@dataclass
class Firmware:
    path: Path
    board: Board
    optimize: str
    per_layer: bool
    model_id: int
    inputs: list[IOInfo]
    outputs: list[IOInfo]
    arena_bytes: int
    weights_bytes: int
    num_layers: int
    images: dict[str, FirmwareImage]

    @property
    def qemu_image(self) -> FirmwareImage:
        """The image QEMU runs: the board's own when the machine models the chip."""
        return self.images.get("qemu") or self.images["board"]

    def elf(self, image: FirmwareImage) -> Path:
        return self.path / image.elf

    def to_json(self) -> dict:
        return {
            "tinyml_version": __version__,
            "board": self.board.name,
            "board_file": self.board.path,
            "optimize": self.optimize,
            "per_layer": self.per_layer,
            "model_id": self.model_id,
            "inputs": [asdict(i) for i in self.inputs],
            "outputs": [asdict(o) for o in self.outputs],
            "arena_bytes": self.arena_bytes,
            "weights_bytes": self.weights_bytes,
            "num_layers": self.num_layers,
            "images": {k: asdict(v) for k, v in self.images.items()},
        }


# -- planning -----------------------------------------------------------------


def _guard_past(end: int) -> tuple[int, int]:
    """An MPU region right after RAM: base `end`, the largest size its alignment allows (<= 1 MiB)."""
    if end <= 0 or end >= 1 << 32:
        return 0, 0
    log2 = min((end & -end).bit_length() - 1, 20)
    return (end, log2) if log2 >= 5 else (0, 0)


def image_plans(board: Board, min_stack: int) -> dict[str, ImagePlan]:
    m = board.qemu.machine
    same = board.qemu.same_firmware
    fallback = "tim2" if same and m.counter == "tim2" else "marks"
    extra = tuple(r for r in board.ram_regions if not r.main)
    plans = {"board": ImagePlan("board", m.name if same else None, board.qemu.serial_index if same else 0,
                                board.flash, board.ram, extra, board.uart, fallback, min_stack,
                                *_guard_past(board.ram.end))}
    if not same:
        ram = Region("RAM", m.ram.origin, board.ram.size, True)
        uart = Uart(m.uart.instance, m.uart.driver, m.uart.base, board.uart.baud, QEMU_UART_CLOCK_HZ)
        plans["qemu"] = ImagePlan("qemu", m.name, 0, Region("FLASH", m.flash.origin, board.flash.size), ram, (),
                                  uart, "tim2" if m.counter == "tim2" else "marks", min_stack,
                                  *_guard_past(ram.end))
    return plans


def check_fits(board: Board, arena_bytes: int, weights_bytes: int, min_stack: int) -> None:
    """Fail before compiling when the arena or the weights alone cannot fit."""
    ram_needed = arena_bytes + STACK_GUARD_BYTES + min_stack
    if ram_needed > board.ram.size:
        raise DoesNotFit(f"RAM of {board.name}", ram_needed, board.ram.size,
                         f"arena {arena_bytes:,} B + minimum stack {min_stack:,} B + guard "
                         f"{STACK_GUARD_BYTES} B, before any firmware data; RAM is {board.ram.name}")
    if weights_bytes > board.flash.size:
        raise DoesNotFit(f"flash of {board.name}", weights_bytes, board.flash.size,
                         f"weights alone {weights_bytes:,} B, before any code")


# -- building -----------------------------------------------------------------


def tool(name: str) -> str:
    path = shutil.which(TOOL_PREFIX + name)
    if not path:
        raise ToolMissing(f"{TOOL_PREFIX}{name} not found; {INSTALL_HINT}")
    return path


def compile_flags(board: Board, optimize: str) -> list[str]:
    return [*board.cpu_flags(), f"-{optimize}", "-g", "-std=c99", "-Wall", "-Wextra", "-Werror",
            "-ffunction-sections", "-fdata-sections", "-fno-common"]


LINK_FLAGS = ["-nostartfiles", "--specs=nano.specs", "--specs=nosys.specs", "-Wl,--gc-sections",
              "-Wl,--no-warn-rwx-segments", "-lm"]  # libm: float kernels (LOG_SOFTMAX) call expf/logf


def build_firmware(graph: Graph, plan: MemoryPlan, board: Board | str, out_dir: str | Path, *,
                   optimize: str = "O2", per_layer: bool = False, min_stack: int | None = None,
                   selftest: Selftest | None = None, check_fit: bool = True) -> Firmware:
    """Emit, compile and link `graph` for `board` into out_dir (atomically).

    Raises DoesNotFit (needed vs available bytes) when the model is too big for
    the board's RAM or flash: before compiling when the arena or the weights
    alone are too big (`check_fit`), otherwise when the linker says so.
    """
    board = load_board(board) if isinstance(board, str) else board
    if optimize not in OPTIMIZE:
        raise ValueError(f"optimize must be one of {OPTIMIZE}")
    min_stack = min_stack or board.min_stack_bytes
    if check_fit:  # the graph's constants: a lower bound of what the emitted C stores
        check_fits(board, plan.arena_bytes, weights_bytes(graph), min_stack)
    em = emit_model(graph, plan, board.target())
    weights = sum(int(c.values.nbytes) for c in em.ctx.consts)
    cc = tool("gcc")
    model_id = zlib.crc32("".join(em.texts[k] for k in sorted(em.texts)).encode())
    plans = image_plans(board, min_stack)
    # Streamed inputs: the firmware's main.c supplies tinyml_read_input (rows fetched from the host
    # on demand), so the library keeps no whole-input buffer.
    cflags = compile_flags(board, optimize) + (["-DTINYML_USER_READ_INPUT"] if streamed_inputs(em.inputs) else [])
    lib_flags = ["-include", "src/tm_profile.h"] if per_layer else []
    out = Path(out_dir)
    with atomic_directory(out) as tmp:
        _write_sources(tmp, em.texts, board, plans, cflags, lib_flags, model_id, per_layer, selftest, em.inputs)
        lib_objs = [_compile(cc, tmp, f"lib/{s}", f"obj/lib/{s[:-2]}.o", cflags + lib_flags + ["-Isrc", "-Ilib"])
                    for s in LIB_SOURCES]
        images = {}
        for variant, ip in plans.items():
            elf = "firmware.elf" if variant == "board" else f"{variant}/firmware.elf"
            inc = [f"-I{variant}", "-Isrc", "-Ilib"]
            objs = [_compile(cc, tmp, f"src/{s}", f"obj/{variant}/{s[:-2]}.o", cflags + inc)
                    for s in FW_SOURCES + (ip.uart_source,)]
            _link(cc, tmp, objs + lib_objs, variant, elf, cflags, board, ip, plan.arena_bytes, weights)
            images[variant] = analyze_image(tmp, elf, ip)
        objcopy = tool("objcopy")
        for fmt, ext in (("binary", "bin"), ("ihex", "hex")):
            _run([objcopy, "-O", fmt, "firmware.elf", f"firmware.{ext}"], tmp)
        write_renode_files(board, tmp / RENODE_DIR, selftest.crc if selftest else None, "../firmware.elf")
        fw = Firmware(out.resolve(), board, optimize, per_layer, model_id, em.inputs, em.outputs,
                      plan.arena_bytes, weights, len(graph.nodes), images)
        (tmp / "firmware.json").write_text(json.dumps(fw.to_json(), indent=2) + "\n")
    return fw


def _write_sources(root: Path, lib_texts: dict[str, str], board: Board, plans: dict[str, ImagePlan],
                   cflags: list[str], lib_flags: list[str], model_id: int, per_layer: bool,
                   selftest: Selftest | None, inputs: list[IOInfo]) -> None:
    env = environment()
    banner = f"Generated by tinyml {__version__}; do not edit."
    (root / "lib").mkdir()
    for name, text in lib_texts.items():
        (root / "lib" / name).write_text(text)
    (root / "src").mkdir()
    src = files("tinyml.firmware_templates") / "firmware"
    for name in STATIC_FILES:
        (root / "src" / name).write_text((src / name).read_text())
    if selftest is not None:
        (root / "src" / "tm_selftest.h").write_text(
            env.get_template("firmware/tm_selftest.h.j2").render(banner=banner, selftest=selftest))
    for variant, ip in plans.items():
        (root / variant).mkdir()
        params = dict(banner=banner, board=board, image=ip, model_id=model_id, per_layer=per_layer,
                      selftest=selftest is not None, input_geometry=[_row_and_pixel_bytes(io) for io in inputs])
        (root / variant / "tm_config.h").write_text(env.get_template("firmware/tm_config.h.j2").render(**params))
        (root / variant / "linker.ld").write_text(env.get_template("firmware/linker.ld.j2").render(**params))
    qemu = plans.get("qemu")
    (root / "Makefile").write_text(env.get_template("firmware/Makefile.j2").render(
        banner=banner, board=board, cflags=cflags, lib_flags=lib_flags, ldflags=LINK_FLAGS,
        lib_sources=LIB_SOURCES, fw_sources=FW_SOURCES, board_uart_source=plans["board"].uart_source,
        qemu_uart_source=(qemu or plans["board"]).uart_source, has_qemu_image=qemu is not None,
        qemu_machine=qemu.machine if qemu else None))


def streamed_inputs(inputs: list[IOInfo]) -> list[int]:
    """Indices of the inputs the model reads window by window (no arena offset)."""
    return [i for i, io in enumerate(inputs) if io.offset is None]


def _row_and_pixel_bytes(io: IOInfo) -> tuple[int, int]:
    """Bytes per image row and per pixel of an NHWC input (0, 0 for other shapes): what a read spans."""
    if len(io.shape) != 4 or min(io.shape) < 1:
        return 0, 0
    return io.nbytes // (io.shape[0] * io.shape[1]), io.nbytes // (io.shape[0] * io.shape[1] * io.shape[2])


def _run(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)


def _compile(cc: str, root: Path, src: str, obj: str, flags: list[str]) -> str:
    (root / obj).parent.mkdir(parents=True, exist_ok=True)
    proc = _run([cc, *flags, "-c", src, "-o", obj], root)
    if proc.returncode != 0:
        first = [ln for ln in proc.stderr.splitlines() if "error" in ln][:3] or proc.stderr.splitlines()[:3]
        raise CheckFailed(f"arm-none-eabi-gcc failed on {src}: {' | '.join(first)}")
    return obj


_OVERFLOW = re.compile(r"region [`'](\w+)' overflowed by (\d+) bytes")


def _link(cc: str, root: Path, objs: list[str], variant: str, elf: str, cflags: list[str], board: Board,
          ip: ImagePlan, arena: int, weights: int) -> None:
    map_file = elf[:-4] + ".map"
    proc = _run([cc, *cflags, *objs, f"-T{variant}/linker.ld", f"-Wl,-Map={map_file}", *LINK_FLAGS, "-o", elf], root)
    if proc.returncode == 0:
        return
    overflows = {name: int(n) for name, n in _OVERFLOW.findall(proc.stderr)}
    detail = (f"arena {arena:,} B, weights {weights:,} B, minimum stack {ip.min_stack:,} B"
              + (f"; flash also overflowed by {overflows['FLASH']:,} B" if "FLASH" in overflows and "RAM" in overflows
                 else ""))
    if "RAM" in overflows:
        raise DoesNotFit(f"RAM of {board.name}", ip.ram.size + overflows["RAM"], ip.ram.size, detail)
    if "FLASH" in overflows:
        raise DoesNotFit(f"flash of {board.name}", ip.flash.size + overflows["FLASH"], ip.flash.size, detail)
    raise CheckFailed(f"linking {elf} failed: {' | '.join(proc.stderr.strip().splitlines()[:3])}")


# -- size report ----------------------------------------------------------------

_SECTION_ROW = re.compile(r"^\s*\d+\s+(\S+)\s+([0-9a-f]+)\s+([0-9a-f]+)\s+([0-9a-f]+)\s+[0-9a-f]+\s+\S+\s+(.*)$")
SYMBOLS = ("tm_now", "tinyml_run", "tm_vectors", "_stack_guard", "_stack_bottom", "_estack", "_sidata", "_ebss")


def read_sections(elf: Path) -> list[Section]:
    """Allocated sections of an ELF (name, size, VMA, LMA, flags) from objdump -h."""
    proc = subprocess.run([tool("objdump"), "-h", "-w", str(elf)], capture_output=True, text=True, check=True)
    out = []
    for line in proc.stdout.splitlines():
        m = _SECTION_ROW.match(line)
        if m:
            flags = [f.strip() for f in m.group(5).split(",")]
            if "ALLOC" in flags:
                out.append(Section(m.group(1), int(m.group(2), 16), int(m.group(3), 16), int(m.group(4), 16), flags))
    return out


def read_symbols(elf: Path, names: tuple[str, ...] = SYMBOLS) -> dict[str, int]:
    proc = subprocess.run([tool("nm"), str(elf)], capture_output=True, text=True, check=True)
    found = {}
    for line in proc.stdout.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[2] in names:
            found[parts[2]] = int(parts[0], 16)
    return found


_MAP_INPUT = re.compile(r"^ (\.\S+|COMMON)(?:\s+0x([0-9a-f]+)\s+0x([0-9a-f]+)\s+(\S.*))?$")
_MAP_CONT = re.compile(r"^\s+0x([0-9a-f]+)\s+0x([0-9a-f]+)\s+(\S.*)$")


def map_contributions(map_text: str, sections: list[Section]) -> dict[str, dict[str, int]]:
    """Bytes each part (model library, firmware, C library) puts in each output section."""
    spans = [(s.vma, s.vma + s.size, s.name) for s in sections if s.size]
    out: dict[str, dict[str, int]] = {}
    lines = map_text.split("\n")
    start = next((i for i, ln in enumerate(lines) if ln.startswith("Linker script and memory map")), len(lines))
    pending = False
    for line in lines[start:]:
        m = _MAP_INPUT.match(line)
        if m and m.group(2) is None:
            pending = True
            continue
        c = m if m else (_MAP_CONT.match(line) if pending else None)
        pending = False
        if not c:
            continue
        addr, size, src = (int(c.group(2), 16), int(c.group(3), 16), c.group(4)) if m else \
            (int(c.group(1), 16), int(c.group(2), 16), c.group(3))
        owner = next((name for lo, hi, name in spans if lo <= addr < hi), None)
        if owner is None or size == 0:
            continue
        part = "model" if "obj/lib/" in src else "firmware" if "obj/" in src else "libc"
        out.setdefault(owner, {}).setdefault(part, 0)
        out[owner][part] += size
    return out


def analyze_image(root: Path, elf: str, ip: ImagePlan) -> FirmwareImage:
    sections = read_sections(root / elf)
    symbols = read_symbols(root / elf)

    def in_region(addr: int, r: Region) -> bool:
        return r.origin <= addr < r.end

    flash_used = sum(s.size for s in sections if "LOAD" in s.flags and in_region(s.lma, ip.flash))
    ram_used = sum(s.size for s in sections if in_region(s.vma, ip.ram))
    stack = sum(s.size for s in sections if s.name == ".stack")
    static_ram = sum(s.size for s in sections if s.name in (".data", ".bss"))
    regions = {"FLASH": {"origin": ip.flash.origin, "size": ip.flash.size, "used": flash_used},
               "RAM": {"origin": ip.ram.origin, "size": ip.ram.size, "used": ram_used}}
    map_path = elf[:-4] + ".map"
    contributions = map_contributions((root / map_path).read_text(), sections)
    return FirmwareImage(ip.variant, ip.machine, ip.serial_index, ip.counter, elf, map_path, sections, regions,
                 flash_used, static_ram, stack - STACK_GUARD_BYTES,
                 symbols.get("_estack", 0) - symbols.get("_stack_bottom", 0), symbols, contributions)


# -- reading a build back -----------------------------------------------------------


def load_firmware(path: str | Path) -> Firmware:
    """Read a `tinyml build` output directory (for the QEMU and serial runners)."""
    root = Path(path)
    try:
        d = json.loads((root / "firmware.json").read_text())
    except (OSError, ValueError) as e:
        raise CheckFailed(f"{root} is not a tinyml firmware directory: {e}") from None
    board = load_board(d["board_file"] if "/" in d["board_file"] else d["board"])
    images = {k: FirmwareImage(**{**v, "sections": [Section(**s) for s in v["sections"]]})
              for k, v in d["images"].items()}

    def io(rows: list[dict]) -> list[IOInfo]:
        return [IOInfo(r["name"], r["dtype"], tuple(r["shape"]), r["nbytes"], r["offset"]) for r in rows]

    return Firmware(root.resolve(), board, d["optimize"], d["per_layer"], d["model_id"], io(d["inputs"]),
                    io(d["outputs"]), d["arena_bytes"], d["weights_bytes"], d["num_layers"], images)
