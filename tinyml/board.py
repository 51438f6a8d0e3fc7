"""Boards: one TOML data file each, loaded and checked here.

A board file says what the firmware needs to know about a real board: the core
and FPU (compiler flags and which kernels to emit), the real memory map (flash
and every SRAM region with its real size, so "does it fit" matches the part you
buy), the clock, the UART the host talks to and how to power it up at register
level, how cycles are counted, which simulator machine runs the same core, and
how the board is flashed (the STM32 ROM bootloader's chip ID and the flash
sector layout). Adding a board is adding a file to boards/ (or passing a path).

Schema (every key is checked; unknown keys are errors so typos do not pass):

    name, title, vendor, mcu, family       strings (name: [a-z0-9-]+)
    core                                   "cortex-m3" | "cortex-m4" | "cortex-m7"
    fpu                                    "none" | "fpv4-sp-d16" | "fpv5-sp-d16" | "fpv5-d16"
    dsp                                    bool (ARMv7E-M SIMD: SMLAD, SXTB16...)
    clock_hz, boot_clock_hz                max core clock, clock after reset (what runs)
    min_stack_bytes                        stack the linker must leave free
    [cache] icache, dcache                 Cortex-M7 caches to enable at boot (optional)
    [memory.flash] origin, size, sectors   sectors: [[count, bytes], ...] in address order
    [[memory.ram]] name, origin, size, main   main=true regions (contiguous) hold data,
                                           arena and stack; the others are listed for users
    [uart] instance, driver, base, baud, clock_hz, enable, pins, via
           driver: a key of UART_DRIVERS (below)
           enable: [[register, mask], ...] ORed in order at boot (clock gates...)
           pins:   [{name, port (GPIO base), pin, af}] set to alternate function af
    [timer] cycles                         "dwt" (DWT->CYCCNT)
    [timing] flash_wait_states, flash_line_bytes   optional, for the cycle estimate (sim/cycles.py):
           wait states at clock_hz, bytes one flash read fetches (the accelerator/cache line)
    [sim.qemu] machine, same_firmware, serial_index
           same_firmware: the board image runs on the machine unchanged; otherwise the
           simulator image is relinked at the machine's addresses with the board's sizes
    [sim.renode] platform, uart, uart_model   platform "generated" = a .repl made from this file
    [flash] method, pid, address, bootloader_uarts, vcp_reaches_bootloader, boot, note
"""
from __future__ import annotations

import re
import tomllib
from dataclasses import asdict, dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import Any

from tinyml.errors import TinymlError

CORES = {  # core -> (FPUs it can have, has the DSP extension available)
    "cortex-m3": ({"none"}, False),
    "cortex-m4": ({"none", "fpv4-sp-d16"}, True),
    "cortex-m7": ({"none", "fpv5-sp-d16", "fpv5-d16"}, True),
}


@dataclass(frozen=True)
class UartDriver:
    """A UART the firmware can drive: its C source and the baud divisors it can program."""

    source: str  # in firmware_templates/firmware/
    divisor_scale: int = 1  # register value = scale * clock / baud
    divisor_range: tuple[int, int] = (16, 0xFFFF)


UART_DRIVERS = {
    "stm32-usart-v1": UartDriver("uart_stm32_usart_v1.c"),  # F1/F2/F4
    "stm32-usart-v2": UartDriver("uart_stm32_usart_v2.c"),  # F7/H7/L4/G4
    "stm32-lpuart": UartDriver("uart_stm32_usart_v2.c", 256, (0x300, 0xFFFFF)),  # USART v2 registers
    "cmsdk-uart": UartDriver("uart_cmsdk_uart.c", 1, (16, 0xFFFFF)),  # Arm MPS2
}
FLASH_METHODS = ("stm32-uart-bootloader", "mps2-mcc")


class BadBoard(TinymlError):
    """A board name is unknown or a board file is malformed (exit 2)."""


@dataclass
class Target:
    """What the emitted C may assume about the machine it runs on (a board's core, or the host)."""

    name: str = "host"  # "host" or a core such as "cortex-m4"
    dsp: bool = False  # ARMv7E-M DSP extension (SMLAD, SXTB16, SSAT)
    fpu: bool = False


@dataclass(frozen=True)
class Region:
    name: str
    origin: int
    size: int
    main: bool = False

    @property
    def end(self) -> int:
        return self.origin + self.size


@dataclass(frozen=True)
class Pin:
    name: str
    port: int
    pin: int
    af: int


@dataclass(frozen=True)
class Uart:
    instance: str
    driver: str
    base: int
    baud: int = 115200
    clock_hz: int = 0
    enable: tuple[tuple[int, int], ...] = ()
    pins: tuple[Pin, ...] = ()
    via: str = ""

    @property
    def divisor(self) -> int:
        """The baud-rate register value for `clock_hz` (what the driver writes)."""
        scale = UART_DRIVERS[self.driver].divisor_scale
        return max(1, (scale * self.clock_hz + self.baud // 2) // self.baud)


@dataclass(frozen=True)
class QemuMachine:
    """What a QEMU 7.2 machine maps and where its first UART and counter are."""

    name: str
    core: str
    fpus: frozenset[str]
    flash: Region
    ram: Region
    uart: Uart
    counter: str  # "tim2": TIM2 at 1 GHz virtual = instructions under -icount shift=0; "plugin": TCG plugin


QEMU_MACHINES = {
    "netduinoplus2": QemuMachine(
        "netduinoplus2", "cortex-m4", frozenset({"none", "fpv4-sp-d16"}),
        Region("FLASH", 0x08000000, 0x100000), Region("RAM", 0x20000000, 0x30000),  # QEMU maps 192 KiB
        Uart("USART1", "stm32-usart-v1", 0x40011000), "tim2"),
    "mps2-an386": QemuMachine(
        "mps2-an386", "cortex-m4", frozenset({"none", "fpv4-sp-d16"}),
        Region("FLASH", 0x0, 0x400000), Region("RAM", 0x20000000, 0x400000),
        Uart("UART0", "cmsdk-uart", 0x40004000), "plugin"),
    "mps2-an500": QemuMachine(
        "mps2-an500", "cortex-m7", frozenset({"none", "fpv5-sp-d16", "fpv5-d16"}),
        Region("FLASH", 0x0, 0x400000), Region("RAM", 0x20000000, 0x400000),
        Uart("UART0", "cmsdk-uart", 0x40004000), "plugin"),
}


@dataclass(frozen=True)
class QemuSim:
    machine: QemuMachine
    same_firmware: bool
    serial_index: int = 0


@dataclass(frozen=True)
class RenodeSim:
    platform: str  # a Renode platform path, or "generated"
    uart: str  # e.g. "sysbus.usart1"
    uart_model: str = ""  # Renode peripheral type when generated


@dataclass(frozen=True)
class Flashing:
    method: str
    address: int
    pid: int | None = None
    bootloader_uarts: tuple[str, ...] = ()
    vcp_reaches_bootloader: bool | None = None
    boot: str = ""
    note: str = ""


@dataclass(frozen=True)
class Board:
    name: str
    title: str
    vendor: str
    mcu: str
    family: str
    core: str
    fpu: str
    dsp: bool
    clock_hz: int
    boot_clock_hz: int
    min_stack_bytes: int
    flash: Region
    flash_sectors: tuple[tuple[int, int], ...]
    ram_regions: tuple[Region, ...]
    uart: Uart
    cycles_timer: str
    qemu: QemuSim
    renode: RenodeSim
    flashing: Flashing
    icache: bool = False
    dcache: bool = False
    flash_wait_states: int = 0
    flash_line_bytes: int = 16
    path: str = field(default="", compare=False)

    @property
    def ram(self) -> Region:
        """The contiguous span of the main SRAM regions: what the linker calls RAM."""
        mains = sorted((r for r in self.ram_regions if r.main), key=lambda r: r.origin)
        return Region("+".join(r.name for r in mains), mains[0].origin, mains[-1].end - mains[0].origin, True)

    @property
    def total_ram_bytes(self) -> int:
        return sum(r.size for r in self.ram_regions)

    def target(self) -> Target:
        """What the emitted kernels may assume about this core."""
        return Target(name=self.core, dsp=self.dsp, fpu=self.fpu != "none")

    def cpu_flags(self) -> list[str]:
        flags = [f"-mcpu={self.core}", "-mthumb"]
        if self.fpu == "none":
            return flags + ["-mfloat-abi=soft"]
        return flags + [f"-mfpu={self.fpu}", "-mfloat-abi=hard"]

    def sector_layout(self) -> list[tuple[int, int]]:
        """(address, size) of every flash erase unit, in address order."""
        out, addr = [], self.flash.origin
        for count, size in self.flash_sectors:
            for _ in range(count):
                out.append((addr, size))
                addr += size
        return out

    def summary(self) -> dict[str, Any]:
        """The JSON shape `tinyml boards --json` prints."""
        d = asdict(self)
        d["qemu"]["machine"] = self.qemu.machine.name
        d["ram"] = asdict(self.ram)
        d["total_ram_bytes"] = self.total_ram_bytes
        return d


# -- loading ----------------------------------------------------------------


def board_names() -> list[str]:
    return sorted(p.name[:-5] for p in files("tinyml.boards").iterdir() if p.name.endswith(".toml"))


def all_boards() -> list[Board]:
    return [load_board(n) for n in board_names()]


def load_board(name_or_path: str | Path) -> Board:
    """A shipped board by name, or any board file by path."""
    text_name = str(name_or_path)
    if text_name.endswith(".toml") or "/" in text_name:
        path = Path(text_name)
        try:
            text = path.read_text()
        except OSError as e:
            raise BadBoard(f"cannot read board file {path}: {e.strerror or e}") from None
        return parse_board(text, str(path.resolve()))
    res = files("tinyml.boards") / f"{text_name}.toml"
    if not re.fullmatch(r"[a-z0-9][a-z0-9-]*", text_name) or not res.is_file():
        raise BadBoard(f"unknown board {text_name!r}; known boards: {', '.join(board_names())}")
    return parse_board(res.read_text(), f"{text_name}.toml")


def parse_board(text: str, origin: str = "<board>") -> Board:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise BadBoard(f"{origin}: not valid TOML: {e}") from None
    r = _Reader(data, origin)
    try:
        board = _build(r)
    except (TypeError, ValueError, KeyError) as e:
        raise BadBoard(f"{origin}: {e}") from None
    _check(board, origin)
    return board


class _Reader:
    """Typed access to one TOML table that remembers which keys were read."""

    def __init__(self, table: dict, where: str):
        self.table, self.where, self.seen = table, where, set()

    def get(self, key: str, kind: type | tuple[type, ...], default: Any = ...) -> Any:
        self.seen.add(key)
        if key not in self.table:
            if default is ...:
                raise BadBoard(f"{self.where}: missing key {key!r}")
            return default
        value = self.table[key]
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise BadBoard(f"{self.where}: {key!r} must be {getattr(kind, '__name__', kind)}, got {value!r}")
        return value

    def sub(self, key: str, optional: bool = False) -> "_Reader":
        t = self.get(key, dict, {} if optional else ...)
        return _Reader(t, f"{self.where} [{key}]")

    def done(self) -> None:
        extra = set(self.table) - self.seen
        if extra:
            raise BadBoard(f"{self.where}: unknown key(s) {', '.join(sorted(extra))}")


def _build(r: _Reader) -> Board:
    mem = r.sub("memory")
    fl = mem.sub("flash")
    flash = Region("FLASH", fl.get("origin", int), fl.get("size", int))
    sectors = tuple((int(c), int(s)) for c, s in fl.get("sectors", list, []))
    fl.done()
    regions = []
    for i, t in enumerate(mem.get("ram", list)):
        rr = _Reader(t, f"{mem.where} ram[{i}]")
        regions.append(Region(rr.get("name", str), rr.get("origin", int), rr.get("size", int), rr.get("main", bool, False)))
        rr.done()
    mem.done()

    u = r.sub("uart")
    pins = []
    for t in u.get("pins", list, []):
        pr = _Reader(t, f"{u.where} pin")
        pins.append(Pin(pr.get("name", str), pr.get("port", int), pr.get("pin", int), pr.get("af", int)))
        pr.done()
    uart = Uart(u.get("instance", str), u.get("driver", str), u.get("base", int), u.get("baud", int, 115200),
                u.get("clock_hz", int), tuple((int(a), int(m)) for a, m in u.get("enable", list, [])),
                tuple(pins), u.get("via", str, ""))
    u.done()

    t = r.sub("timer")
    cycles = t.get("cycles", str)
    t.done()

    sim = r.sub("sim")
    q = sim.sub("qemu")
    mname = q.get("machine", str)
    if mname not in QEMU_MACHINES:
        raise BadBoard(f"{q.where}: unknown QEMU machine {mname!r}; known: {', '.join(QEMU_MACHINES)}")
    qemu = QemuSim(QEMU_MACHINES[mname], q.get("same_firmware", bool), q.get("serial_index", int, 0))
    q.done()
    rn = sim.sub("renode")
    renode = RenodeSim(rn.get("platform", str), rn.get("uart", str), rn.get("uart_model", str, ""))
    rn.done()
    sim.done()

    f = r.sub("flash")
    pid = f.get("pid", int, None)
    flashing = Flashing(f.get("method", str), f.get("address", int), pid,
                        tuple(f.get("bootloader_uarts", list, [])), f.get("vcp_reaches_bootloader", bool, None),
                        f.get("boot", str, ""), f.get("note", str, ""))
    f.done()

    c = r.sub("cache", optional=True)
    icache, dcache = c.get("icache", bool, False), c.get("dcache", bool, False)
    c.done()

    tm = r.sub("timing", optional=True)
    wait_states, line_bytes = tm.get("flash_wait_states", int, 0), tm.get("flash_line_bytes", int, 16)
    tm.done()

    board = Board(
        name=r.get("name", str), title=r.get("title", str), vendor=r.get("vendor", str), mcu=r.get("mcu", str),
        family=r.get("family", str), core=r.get("core", str), fpu=r.get("fpu", str), dsp=r.get("dsp", bool),
        clock_hz=r.get("clock_hz", int), boot_clock_hz=r.get("boot_clock_hz", int),
        min_stack_bytes=r.get("min_stack_bytes", int), flash=flash, flash_sectors=sectors,
        ram_regions=tuple(regions), uart=uart, cycles_timer=cycles, qemu=qemu, renode=renode,
        flashing=flashing, icache=icache, dcache=dcache, flash_wait_states=wait_states,
        flash_line_bytes=line_bytes, path=r.where,
    )
    r.done()
    return board


def _check(b: Board, origin: str) -> None:
    """Consistency rules a TOML parser cannot express."""
    problems: list[str] = []
    if not re.fullmatch(r"[a-z0-9][a-z0-9-]*", b.name):
        problems.append(f"name {b.name!r} must be lowercase letters, digits and '-'")
    if b.core not in CORES:
        problems.append(f"core {b.core!r} not supported (one of {', '.join(CORES)})")
    else:
        fpus, has_dsp = CORES[b.core]
        if b.fpu not in fpus:
            problems.append(f"fpu {b.fpu!r} does not exist on {b.core} (one of {', '.join(sorted(fpus))})")
        if b.dsp and not has_dsp:
            problems.append(f"{b.core} has no DSP extension")
    if b.icache or b.dcache:
        if b.core != "cortex-m7":
            problems.append("caches exist only on cortex-m7")
    for what, v in (("clock_hz", b.clock_hz), ("boot_clock_hz", b.boot_clock_hz), ("flash size", b.flash.size),
                    ("uart clock_hz", b.uart.clock_hz), ("uart baud", b.uart.baud)):
        if v <= 0:
            problems.append(f"{what} must be positive")
    if not 0 <= b.flash_wait_states <= 15 or b.flash_line_bytes not in (4, 8, 16, 32, 64):
        problems.append("timing: flash_wait_states must be 0-15 and flash_line_bytes 4, 8, 16, 32 or 64")
    if b.min_stack_bytes < 256 or b.min_stack_bytes % 8:
        problems.append("min_stack_bytes must be a multiple of 8 and at least 256")
    if b.flash_sectors and sum(c * s for c, s in b.flash_sectors) != b.flash.size:
        problems.append("flash sectors do not add up to the flash size")
    problems += _check_regions(b)
    problems += _check_uart(b.uart)
    if b.cycles_timer != "dwt":
        problems.append(f"timer cycles {b.cycles_timer!r} unknown (only 'dwt')")
    problems += _check_sim(b)
    fl = b.flashing
    if fl.method not in FLASH_METHODS:
        problems.append(f"flash method {fl.method!r} unknown (one of {', '.join(FLASH_METHODS)})")
    if fl.method == "stm32-uart-bootloader" and fl.pid is None:
        problems.append("the STM32 bootloader method needs the chip's pid")
    if not (b.flash.origin <= fl.address < b.flash.end):
        problems.append("flash address is outside the flash")
    if problems:
        raise BadBoard(f"{origin}: " + "; ".join(problems))


def _check_regions(b: Board) -> list[str]:
    out = []
    names = [r.name for r in b.ram_regions]
    if len(set(names)) != len(names):
        out.append("RAM region names repeat")
    mains = sorted((r for r in b.ram_regions if r.main), key=lambda r: r.origin)
    if not mains:
        out.append("no RAM region has main = true")
    for a, c in zip(mains, mains[1:]):
        if a.end != c.origin:
            out.append(f"main RAM regions {a.name} and {c.name} are not contiguous")
    spans = sorted([(r.origin, r.end, r.name) for r in b.ram_regions] + [(b.flash.origin, b.flash.end, "FLASH")])
    for (lo1, hi1, n1), (lo2, _, n2) in zip(spans, spans[1:]):
        if lo2 < hi1:
            out.append(f"memory regions {n1} and {n2} overlap")
    for r in b.ram_regions:
        if r.size <= 0 or r.origin % 4:
            out.append(f"RAM region {r.name} needs a positive size and a word-aligned origin")
    return out


def _check_uart(u: Uart) -> list[str]:
    out = []
    if u.driver not in UART_DRIVERS:
        return [f"uart driver {u.driver!r} unknown (one of {', '.join(UART_DRIVERS)})"]
    lo, hi = UART_DRIVERS[u.driver].divisor_range
    if u.clock_hz > 0 and u.baud > 0 and not lo <= u.divisor <= hi:
        out.append(f"uart: {u.baud} baud is out of reach from a {u.clock_hz} Hz clock (divisor {u.divisor})")
    for p in u.pins:
        if not (0 <= p.pin <= 15 and 0 <= p.af <= 15):
            out.append(f"uart pin {p.name}: pin and af must be 0..15")
    return out


def _check_sim(b: Board) -> list[str]:
    out = []
    m = b.qemu.machine
    if m.core != b.core:
        out.append(f"QEMU machine {m.name} has a {m.core}, the board a {b.core}")
    if b.fpu not in m.fpus:
        out.append(f"QEMU machine {m.name} cannot run {b.fpu} code")
    ram = b.ram if any(r.main for r in b.ram_regions) else None
    if ram is not None:
        if b.qemu.same_firmware:
            if not (m.flash.origin <= b.flash.origin and b.flash.end <= m.flash.end):
                out.append(f"QEMU machine {m.name} does not map the board's flash")
            if not (m.ram.origin <= ram.origin and ram.end <= m.ram.end):
                out.append(f"QEMU machine {m.name} does not map the board's RAM")
        elif b.flash.size > m.flash.size or ram.size > m.ram.size:
            out.append(f"QEMU machine {m.name} maps less memory than the board has")
    if b.qemu.serial_index < 0:
        out.append("serial_index must be >= 0")
    if b.renode.platform == "generated" and not b.renode.uart_model:
        out.append("a generated Renode platform needs uart_model")
    return out
