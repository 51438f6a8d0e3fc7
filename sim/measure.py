"""From the firmware's protocol replies to a RunResult: shared by every device runner.

QEMU, Renode and a board on a serial port all answer with the same HELLO and
RESULT frames; only how counter ticks turn into a count differs (a hardware
counter, or the instruction-count plugin's marks), so that is a parameter.
"""
from __future__ import annotations

from collections.abc import Callable, Collection

from tinyml.codegen.firmware import Firmware, FirmwareImage
from tinyml.errors import CheckFailed
from tinyml.sim.host import unpack_outputs
from tinyml.sim.protocol import Counter, Hello, LinkError, Result, counter_delta
from tinyml.sim.runner import RunResult


def check_hello(fw: Firmware, h: Hello, counters: Collection[Counter] | None = None) -> None:
    """The device runs this build (same model, same I/O sizes) with a counter we can read."""
    if h.model_id != fw.model_id:
        raise LinkError(f"the device runs model 0x{h.model_id:08x}, this build is 0x{fw.model_id:08x} "
                        "(flash it, or drop --no-flash)")
    if h.input_bytes != [i.nbytes for i in fw.inputs] or h.output_bytes != [o.nbytes for o in fw.outputs]:
        raise LinkError("the device's input/output sizes differ from the build's")
    if counters is not None and h.counter not in counters:
        raise LinkError(f"the firmware counts with {h.counter.name}, which this target cannot read")


def leaving_out_io(ticks: Callable[[int, int], int], results: list[Result]) -> Callable[[int, int], int]:
    """`ticks` minus the spans the firmware spent fetching streamed input rows from the host.

    That wait is the link's, not the model's (a camera would have the rows
    ready); the callback's own bookkeeping around it stays counted. A span
    counts against an interval when it lies inside it (counter values
    compared modulo 2^32 from the interval's start).
    """
    spans = [s for r in results for s in r.io_spans]
    if not spans:
        return ticks

    def net(before: int, after: int) -> int:
        width = counter_delta(before, after)
        inside = [(a, b) for a, b in spans if counter_delta(before, a) <= width and counter_delta(before, b) <= width]
        return ticks(before, after) - sum(ticks(a, b) for a, b in inside)

    return net


def run_result(fw: Firmware, image: FirmwareImage, hello: Hello, results: list[Result], samples: int, target: str,
               ticks: Callable[[int, int], int] = counter_delta, extra: dict[str, object] | None = None) -> RunResult:
    """Outputs and cost from the replies: counter ticks minus the counter's own overhead.

    DWT counts cycles (a real core); TIM2 under -icount and the plugin's marks
    count instructions. `instructions`/`cycles` report the slowest inference,
    and per-layer figures come from that same inference.
    """
    bad = [r.index for r in results if r.status != 0]
    if bad:
        raise CheckFailed(f"{target}: tinyml_run() returned an error on inference {bad[0]}")
    overhead = ticks(*hello.calib)
    counts = [ticks(r.t0, r.t1) - overhead for r in results]
    per_layer = None
    if hello.per_layer and results:
        slowest = results[counts.index(max(counts))]
        per_layer = [ticks(b, e) - overhead if (b, e) != (0, 0) else 0 for b, e in slowest.layer_ticks]
    outputs = unpack_outputs(fw.outputs, b"".join(b"".join(r.outputs) for r in results), samples)
    stack = max(r.stack_bytes for r in results) if results else None
    worst = max(counts) if counts else None
    cycles = hello.counter == Counter.DWT
    unit = "cycles" if cycles else "instructions"
    info: dict[str, object] = {
        f"{unit}_per_input": counts,
        f"{unit}_min": min(counts) if counts else None,
        "flash_bytes": image.flash_bytes,
        "static_ram_bytes": image.static_ram_bytes,
        "model_ram_bytes": image.model_ram_bytes,
        # during inference: the model library's .data/.bss (arena included) + the stack tinyml_run() used
        "ram_bytes": image.model_ram_bytes + stack if stack is not None else None,
        # the same with the harness's own buffers (UART, counters) added
        "firmware_ram_bytes": image.static_ram_bytes + stack if stack is not None else None,
        "stack_available_bytes": hello.stack_size,
        "clock_hz": hello.clock_hz,
        "counter": hello.counter.name.lower(),
        **(extra or {}),
    }
    return RunResult(outputs, None if cycles else worst, worst if cycles else None, stack, per_layer, info)
