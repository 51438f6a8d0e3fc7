"""Cycles and milliseconds estimated from the executed instruction mix: an estimate, never a measurement.

QEMU counts instructions exactly but models no pipeline, so the QEMU plugin
(insn_marks.c) also sorts every executed instruction into a class (loads,
pipelined loads, stores, multiplies, MACs, load/store multiple and their
registers, branches, taken conditional branches, data reads from new flash
lines). Each inference's mix, weighted by a per-core table, gives cycles per
instruction; that ratio times the measured instruction count is the estimate,
and the board's clock turns it into milliseconds. On a real board DWT->CYCCNT
counts cycles; the estimate ignores bus contention, flash instruction-fetch
stalls (assumed hidden by the flash accelerator or cache), register
dependencies and, on the Cortex-M7, the exact dual-issue rules.

Cortex-M4 figures: Arm Cortex-M4 Technical Reference Manual (DDI 0439), table
"Cortex-M4 instruction set summary" (cycle counts): data processing 1, MUL 1,
MLA/MLS 2, DSP multiplies and MACs 1, SDIV/UDIV 2-12, LDR 2 (1 when it follows
another load/store and pipelines), STR 1, LDRD/STRD 1+2, LDM/STM/PUSH/POP 1+N,
branch taken 1+P with P the pipeline refill (1-3, taken as 2), not taken 1.
Cortex-M7 (its TRM gives no per-instruction table): dual issue of most ALU
pairs (0.5), one load/store or MAC per cycle, predicted branches; coarser.
"""
from __future__ import annotations

from dataclasses import dataclass

# insn_marks.c's class order
CLASSES = ("alu", "mul", "mla", "mac", "div", "load", "load_pipelined", "store", "dual", "multi", "multi_regs",
           "branch", "cond_branch", "taken", "fp", "fp_mem", "flash_lines")
INSTRUCTION_CLASSES = tuple(c for c in CLASSES if c not in ("multi_regs", "taken", "flash_lines"))

# cycles per occurrence of each class; `taken` is the refill on top of a conditional branch's 1 cycle,
# `multi_regs` the per-register beat of LDM/STM/PUSH/POP; flash_lines are charged the board's wait states
CORE_CYCLES: dict[str, dict[str, float]] = {
    "cortex-m4": {"alu": 1, "mul": 1, "mla": 2, "mac": 1, "div": 7, "load": 2, "load_pipelined": 1, "store": 1,
                  "dual": 3, "multi": 1, "multi_regs": 1, "branch": 3, "cond_branch": 1, "taken": 2,
                  "fp": 1, "fp_mem": 2},
    "cortex-m7": {"alu": 0.5, "mul": 1, "mla": 1, "mac": 1, "div": 7, "load": 1, "load_pipelined": 1, "store": 1,
                  "dual": 1, "multi": 1, "multi_regs": 0.5, "branch": 1, "cond_branch": 0.5, "taken": 1,
                  "fp": 0.5, "fp_mem": 1},
}
CORE_CYCLES["cortex-m3"] = {**CORE_CYCLES["cortex-m4"], "mac": 2}  # no DSP extension: long MACs only


@dataclass(frozen=True)
class CycleEstimate:
    cycles: int
    ms: float
    cycles_per_instruction: float
    mix: dict[str, int]

    def report(self) -> dict[str, object]:
        return {"cycles_estimated": self.cycles, "ms_estimated": self.ms,
                "cycles_per_instruction_estimated": round(self.cycles_per_instruction, 4),
                "instruction_mix": self.mix}


def mix_cycles(mix: dict[str, int], core: str, flash_wait_states: int = 0) -> float:
    """Cycles the table gives for an instruction mix."""
    table = CORE_CYCLES[core]
    return sum(mix.get(c, 0) * w for c, w in table.items()) + mix.get("flash_lines", 0) * flash_wait_states


def estimate(mix: dict[str, int], instructions: int, core: str, clock_hz: int,
             flash_wait_states: int = 0) -> CycleEstimate | None:
    """Scale the mix's cycles per instruction to the measured count (the window the mix covers
    differs from the measured span by the few harness instructions around tinyml_run)."""
    executed = sum(mix.get(c, 0) for c in INSTRUCTION_CLASSES)
    if not executed or core not in CORE_CYCLES:
        return None
    cpi = mix_cycles(mix, core, flash_wait_states) / executed
    cycles = round(cpi * instructions)
    return CycleEstimate(cycles, 1000.0 * cycles / clock_hz, cpi, mix)


def inference_mixes(marks_text: str) -> list[dict[str, int]]:
    """Each tinyml_run() call's instruction mix, from its entry to the next tm_now() mark."""
    header: list[str] = []
    runs: list[list[int]] = []
    marks: list[list[int]] = []
    for line in marks_text.splitlines():
        tag, _, rest = line.partition(" ")
        if tag == "classes":
            header = rest.split()
        elif tag in ("run", "mark"):
            (runs if tag == "run" else marks).append([int(v) for v in rest.split()])
    if not header:
        return []
    out = []
    for run in runs:
        after = next((m for m in marks if m[0] >= run[0]), None)
        if after is not None:
            out.append({name: after[i] - run[i] for i, name in enumerate(header) if name != "executed"})
    return out
