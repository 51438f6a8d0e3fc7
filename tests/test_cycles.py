"""The cycle estimate: the plugin's Thumb classifier on known encodings, the mix arithmetic, and a run."""
from __future__ import annotations

import shutil
import subprocess
from importlib.resources import files

import pytest

from tinyml.board import load_board
from tinyml.sim.cycles import CLASSES, estimate, inference_mixes, mix_cycles

# (halfword 1, halfword 2 or None, class, registers of a load/store multiple, conditional branch)
# encodings from the ARMv7-M Architecture Reference Manual, assembled by hand
ENCODINGS = [
    (0xFB21, 0x3002, "mac", 0, 0),        # SMLAD r0, r1, r2, r3
    (0xFB51, 0xF012, "mac", 0, 0),        # SMMULR r0, r1, r2
    (0xFB01, 0xF002, "mul", 0, 0),        # MUL.W r0, r1, r2
    (0xFB01, 0x3002, "mla", 0, 0),        # MLA r0, r1, r2, r3
    (0xFB91, 0xF0F2, "div", 0, 0),        # SDIV r0, r1, r2
    (0xFB81, 0x0102, "mac", 0, 0),        # SMULL r0, r1, r1, r2
    (0x6808, None, "load", 0, 0),         # LDR r0, [r1]
    (0x5C88, None, "load", 0, 0),         # LDRB r0, [r1, r2]
    (0x6008, None, "store", 0, 0),        # STR r0, [r1]
    (0xF8D1, 0x0004, "load", 0, 0),       # LDR.W r0, [r1, #4]
    (0xF8C1, 0x0004, "store", 0, 0),      # STR.W r0, [r1, #4]
    (0xE9D2, 0x0100, "dual", 0, 0),       # LDRD r0, r1, [r2]
    (0xE8B0, 0x000E, "multi", 3, 0),      # LDM.W r0!, {r1-r3}
    (0xB5F0, None, "multi", 5, 0),        # PUSH {r4-r7, lr}
    (0xBD10, None, "multi", 2, 0),        # POP {r4, pc}
    (0xD1FE, None, "cond_branch", 0, 1),  # BNE .
    (0xB100, None, "cond_branch", 0, 1),  # CBZ r0, .+4
    (0xF47F, 0xAFFE, "cond_branch", 0, 1),  # BNE.W .
    (0xE7FE, None, "branch", 0, 0),       # B .
    (0x4770, None, "branch", 0, 0),       # BX lr
    (0xF000, 0xF800, "branch", 0, 0),     # BL .+4
    (0xFA2F, 0xF081, "alu", 0, 0),        # SXTB16 r0, r1
    (0xF101, 0x0001, "alu", 0, 0),        # ADD.W r0, r1, #1
    (0x1C48, None, "alu", 0, 0),          # ADDS r0, r1, #1
    (0xEE30, 0x0A20, "fp", 0, 0),         # VADD.F32 s0, s0, s1
    (0xED90, 0x0A00, "fp_mem", 0, 0),     # VLDR s0, [r0]
]


def test_classifier_on_known_encodings(tmp_path):
    """insn_marks.c's classify() (compiled into a small host program) sorts each encoding as the manual says."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.fail("no host C compiler (the plugin needs one too)")
    src = (files("tinyml.sim") / "insn_marks.c").read_text()
    rows = ",\n".join(f"{{0x{a:04x}, 0x{b or 0:04x}, {int(b is not None)}}}" for a, b, *_ in ENCODINGS)
    # the QEMU API the plugin declares, defined as stubs so the file links as a program
    api = src[src.index("#define EXPORT"):src.index("EXPORT int qemu_plugin_version")].split("\n", 1)[1]
    stubs = "".join(d.strip() + (" {}\n" if d.strip().startswith("void ") else " { return 0; }\n")
                    for d in " ".join(api.split()).split(";") if d.strip())
    main = src + stubs + f"""
int main(void) {{
    static const unsigned cases[][3] = {{ {rows} }};
    for (unsigned i = 0; i < sizeof cases / sizeof cases[0]; i++) {{
        int regs, cond, loads;
        int c = classify(cases[i][0], cases[i][1], cases[i][2], &regs, &cond, &loads);
        printf("%s %d %d\\n", class_names[c], regs, cond);
    }}
    return 0;
}}
"""
    (tmp_path / "t.c").write_text(main)
    subprocess.run([cc, "-O1", "-o", str(tmp_path / "t"), str(tmp_path / "t.c")], check=True)
    got = subprocess.run([str(tmp_path / "t")], capture_output=True, text=True, check=True).stdout.split("\n")
    for (a, b, cls, regs, cond), line in zip(ENCODINGS, got):
        assert line == f"{cls} {regs} {cond}", f"{a:04x} {b or 0:04x}: {line}"


def test_mix_arithmetic_and_marks_parsing():
    """The table weights each class; a run's window is its entry to the next mark."""
    header = "classes executed " + " ".join(CLASSES)

    def row(tag, executed, **counts):
        vals = [counts.get(c, 0) for c in CLASSES]
        return f"{tag} {executed} " + " ".join(map(str, vals))

    text = "\n".join(["1", "5", "total 99", header, row("run", 10, alu=4),
                      row("mark", 5, alu=2), row("mark", 40, alu=14, load=10, load_pipelined=5, taken=3,
                                                 cond_branch=5, flash_lines=2)])
    (mix,) = inference_mixes(text)
    assert mix["alu"] == 10 and mix["load"] == 10 and mix["taken"] == 3
    # M4: 10 alu + 10 x 2 load + 5 pipelined + 5 branches + 3 x 2 refills = 46 cycles, + 2 lines x 5 wait states
    assert mix_cycles(mix, "cortex-m4") == 46
    assert mix_cycles(mix, "cortex-m4", 5) == 56
    est = estimate(mix, 60, "cortex-m4", 168_000_000, 5)
    assert est is not None and est.cycles == round(56 / 30 * 60)
    assert est.ms == pytest.approx(1000 * est.cycles / 168e6)
    assert estimate({}, 60, "cortex-m4", 1) is None


def test_boards_carry_flash_timing():
    assert load_board("stm32f405").flash_wait_states == 5
    assert load_board("mps2-an386").flash_wait_states == 0


@pytest.mark.slow
def test_validate_reports_an_estimate_beside_the_count(tmp_path):
    """A DSP conv model in QEMU: the M4 estimate is above the instruction count (loads and
    taken branches cost more than one cycle) and far below three cycles per instruction."""
    from tinyml import zoo
    from tinyml.oracle import random_inputs
    from tinyml.pipeline import compile_model
    from tinyml.sim.qemu import board_runner

    c = compile_model(zoo.path("op_conv_7to13_relu6"))
    runner = board_runner("stm32f405", "qemu", c, tmp_path)
    result = runner.run(random_inputs(c.graph, 1, 3))
    est = result.extra["cycles_estimated"]
    assert result.instructions < est < 3 * result.instructions
    assert result.extra["ms_estimated"] == pytest.approx(1000 * est / 168e6)
    assert result.extra["instruction_mix"]["mac"] > 0
    assert 1.0 < result.extra["cycles_per_instruction_estimated"] < 3.0
