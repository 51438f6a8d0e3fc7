"""What a candidate costs on the board (tinyml.cost), and the same for thousands of them on Ray.

The figures compared with the budgets are the ones `tinyml validate --board`
measures: SRAM = the model's RAM (activation arena) + the inference's stack,
flash = the whole firmware image. Fast mode predicts them (arena computed, stack,
code and instructions fitted; docs/cost_model.md) with the patch schedule that
fits the SRAM budget (MCUNetV2: the network and its schedule are judged together);
finalists are priced in exact mode (the planner and patch search `generate` runs)
and the delivered network is measured in QEMU.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

from tinyml.search.lower import Task, cost_graph
from tinyml.search.space import Arch, Space


@dataclass(frozen=True)
class Budget:
    sram_bytes: int  # model RAM + stack
    flash_bytes: int  # whole firmware
    instructions: int | None = None  # per inference

    def describe(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class CandidateCost:
    sram_bytes: int  # arena + stack estimate
    flash_bytes: int  # model library estimate + the firmware harness (measured)
    instructions: int  # estimate
    macs: int
    arena_bytes: int
    patches: str | None  # the patch schedule assumed, None: layer by layer
    mode: str

    def fits(self, b: Budget) -> bool:
        return (self.sram_bytes <= b.sram_bytes and self.flash_bytes <= b.flash_bytes
                and (b.instructions is None or self.instructions <= b.instructions))

    def describe(self) -> dict:
        return asdict(self)


def price(arch: Arch, space: Space, task: Task, board: str, budget: Budget, mode: str = "fast",
          weight_bits: int = 8) -> CandidateCost:
    """tinyml.cost on the subnet's int8 graph, with a patch schedule that fits the SRAM budget when one does."""
    from tinyml.cost import estimate
    from tinyml.cost.model import load_coefficients
    from tinyml.errors import TinymlError

    coef = load_coefficients()
    arena_budget = budget.sram_bytes - coef["stack_bytes"]
    g = cost_graph(arch, space, task, weight_bits=weight_bits)
    try:
        c = estimate(g, board, mode=mode, sram_budget=arena_budget)
    except TinymlError:  # exact mode: no schedule fits; price it layer by layer (it will not fit)
        c = estimate(g, board, mode=mode, patches="off")
    return CandidateCost(sram_bytes=c.peak_sram_bytes, flash_bytes=c.flash_bytes + coef["firmware_flash_bytes"],
                         instructions=c.instructions_estimate, macs=c.macs, arena_bytes=c.arena_bytes,
                         patches=c.patches, mode=mode)


def price_batch(archs: list[Arch], space: Space, task: Task, board: str, budget: Budget,
                mode: str = "fast", weight_bits: int = 8) -> list[CandidateCost]:
    return [price(a, space, task, board, budget, mode, weight_bits) for a in archs]


class CostService:
    """Prices candidates in batches of Ray tasks (a local Ray unless `address`), caching by subnet.

    `weight_bits` 4 (`--bits mixed`): weights priced at 4 bits, the flash floor of the bit allocation
    (8 or 4 bits per layer) the finalists get; activations stay 8-bit."""

    def __init__(self, space: Space, task: Task, board: str, budget: Budget, address: str | None = None,
                 batch: int = 64, weight_bits: int = 8):
        from tinyml.search.cluster import ray_session

        self.ray = ray_session(address)
        self.batch = batch
        self.context = self.ray.put((space, task, board, budget))
        self.weight_bits = weight_bits
        self._remote = self.ray.remote(_price_remote)
        self.cache: dict[tuple[Arch, str], CandidateCost] = {}

    def costs(self, archs: list[Arch], mode: str = "fast", progress=None) -> list[CandidateCost]:
        todo = list(dict.fromkeys(a for a in archs if (a, mode) not in self.cache))
        chunks = [todo[i:i + self.batch] for i in range(0, len(todo), self.batch)]
        pending = {self._remote.remote(self.context, chunk, mode, self.weight_bits): chunk for chunk in chunks}
        done = 0
        while pending:
            ready, _ = self.ray.wait(list(pending), num_returns=1)
            chunk = pending.pop(ready[0])
            for a, c in zip(chunk, self.ray.get(ready[0])):
                self.cache[(a, mode)] = c
            done += len(chunk)
            if progress:
                progress(done, len(todo))
        return [self.cache[(a, mode)] for a in archs]

    def builds(self, models: list[bytes], board: str, arena_budget: int) -> list[dict]:
        """measure_build of each .tflite, one Ray task each (a compile and link: seconds)."""
        remote = self.ray.remote(_build_remote)
        return self.ray.get([remote.remote(m, board, arena_budget) for m in models])


def _price_remote(context: tuple, archs: list[Arch], mode: str, weight_bits: int = 8) -> list[CandidateCost]:
    space, task, board, budget = context
    return price_batch(archs, space, task, board, budget, mode, weight_bits)


def measure_build(tflite: bytes, board: str, arena_budget: int) -> dict:
    """Compile and link a model's firmware as `validate --board` would: the firmware's flash and the model
    library's RAM, measured from the linked image (no run: the stack is the one figure still estimated)."""
    import tempfile
    from pathlib import Path

    from tinyml.codegen.firmware import build_firmware
    from tinyml.pipeline import load_graph
    from tinyml.schedule.memory import plan_memory
    from tinyml.schedule.patches import PatchOptions, schedule_patches

    g = load_graph(tflite)
    result = schedule_patches(g, PatchOptions.parse("auto", None, arena_budget), plan_memory(g))
    with tempfile.TemporaryDirectory(prefix="tinyml-search-build-") as tmp:
        fw = build_firmware(result.graph, result.plan, board, Path(tmp) / "fw", check_fit=False)
    image = fw.qemu_image
    return {"flash_bytes": image.flash_bytes, "model_ram_bytes": image.model_ram_bytes}


def _build_remote(tflite: bytes, board: str, arena_budget: int) -> dict:
    from tinyml.errors import TinymlError

    try:
        return measure_build(tflite, board, arena_budget)
    except TinymlError as e:  # does not fit the board, or no patch schedule fits: reported, not fatal
        return {"error": str(e).splitlines()[0]}
