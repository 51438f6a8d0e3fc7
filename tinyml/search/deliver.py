"""From a chosen subnet to a validated int8 model: extract, fine-tune, quantize, run in QEMU, measure.

The subnet's weights come out of the (fine-tuned) supernet BN-folded into the IR
(`lower.float_graph`); tinyml's own int8 PTQ (tinyml.quantize) writes the .tflite;
`tinyml validate --board` (the same functions) runs it in QEMU on real test inputs
against TFLite Micro, bit for bit, and measures the model's RAM + stack, the
firmware's flash and the instructions, which are then held against the budgets.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from tinyml.search.costs import Budget
from tinyml.search.lower import Task, float_graph
from tinyml.search.space import Arch, Space


def quantize_subnet(weights: dict, arch: Arch, space: Space, task: Task, calib_nhwc: np.ndarray,
                    mixed=None):
    """Our int8 PTQ (minmax, bias correction) of the subnet -> tinyml.quantize.Quantized; with `mixed`
    (a `search.mixed.MixedTarget`) at the bit allocation's per-layer weight widths instead."""
    from tinyml.quantize import QuantPolicy, quantize_float_graph

    g = float_graph(arch, space, task, lambda spec: weights[spec.name])
    if mixed is not None:
        from tinyml.search.mixed import quantize_mixed

        return quantize_mixed(g, calib_nhwc, mixed)[0]
    return quantize_float_graph(g, calib_nhwc.astype(np.float32), QuantPolicy())


INT8_TEST_LIMIT = 500  # test images the int8 model is scored on (the numpy reference: ~0.2-0.7 s per 32x32 image here)


def int8_accuracy(quantized, x_nhwc: np.ndarray, y: np.ndarray) -> float:
    """Top-1 (%) of the int8 model on tinyml's numpy reference (bit-exact with TFLite Micro)."""
    from tinyml.quantize.evaluate import accuracy, run_int8

    return accuracy(run_int8(quantized.int8_graph, x_nhwc), y)


def validation_inputs(quantized, x_nhwc: np.ndarray) -> np.ndarray:
    """Real test images as the int8 codes the model takes, [N, 1, H, W, C] (what --inputs FILE.npy reads)."""
    from tinyml.quantize.evaluate import quantize_input

    return quantize_input(quantized.int8_graph, x_nhwc)[:, None]


def validate_in_qemu(tflite: Path, board: str, arena_budget: int, inputs_npy: Path) -> dict:
    """`tinyml validate TFLITE --board B --sram-budget ARENA --inputs NPY`, as a report dict."""
    from tinyml.oracle import TflmOracle
    from tinyml.pipeline import compile_model
    from tinyml.schedule.patches import PatchOptions
    from tinyml.sim.qemu import board_runner
    from tinyml.validation import load_inputs, validation_report

    c = compile_model(tflite, PatchOptions.parse("auto", None, arena_budget))
    inputs = load_inputs(c.graph, str(inputs_npy))
    expected = TflmOracle(c.model_bytes).run_batch(inputs)
    with tempfile.TemporaryDirectory(prefix="tinyml-search-") as tmp:
        runner = board_runner(board, "qemu", c, Path(tmp))
        result = runner.run(inputs)
    report = validation_report(c, inputs, result, expected, runner.target, board)
    report["patches"] = c.patches.describe() if c.patches else None
    report.pop("per_layer_instructions", None)
    return report


def within_budget(report: dict, budget: Budget) -> dict[str, bool]:
    """The measured figures against the budget (SRAM: model RAM + stack; flash: the whole firmware)."""
    checks = {"sram": report["ram_bytes"] is not None and report["ram_bytes"] <= budget.sram_bytes,
              "flash": report["flash_bytes"] is not None and report["flash_bytes"] <= budget.flash_bytes}
    if budget.instructions is not None:
        checks["instructions"] = report["instructions"] is not None and report["instructions"] <= budget.instructions
    return checks


def mixed_target(s, budget: Budget, labels: np.ndarray):
    """What `quantize_subnet` needs for `--bits mixed` (None for int8)."""
    from tinyml.search.mixed import MixedTarget

    return MixedTarget(s.board, budget.flash_bytes, labels) if s.bits == "mixed" else None


def validate_command(tflite: Path, board: str, arena_budget: int, inputs_npy: Path) -> str:
    return f"tinyml validate {tflite} --board {board} --sram-budget {arena_budget} --inputs {inputs_npy}"


def deliver_best(net, finalists: list[dict], space: Space, task: Task, ds, s, budget: Budget, out: Path,
                 seconds: float, progress, log) -> dict:
    """Fine-tune, quantize and validate the finalists in order until one is bit-exact within every budget."""
    import io

    from tinyml.cost.model import load_coefficients
    from tinyml.errors import CheckFailed
    from tinyml.fsutil import write_bytes_atomic
    from tinyml.search.space import Arch
    from tinyml.search.supernet import to_nhwc
    from tinyml.search.train import TrainConfig, finetune, finetune_steps, predict, tensors

    arena_budget = budget.sram_bytes - load_coefficients()["stack_bytes"]
    attempts = []
    for f in finalists:
        arch = Arch.from_json(f["arch"])
        r = arch.resolution
        x, y = tensors(ds.x_train, ds.y_train, r)
        xt, _ = tensors(ds.x_test, ds.y_test, r)
        cfg = TrainConfig(seconds=seconds, max_epochs=0, seed=s.seed, flip=ds.name == "fashion",
                          augment_shift=max(1, r // 14))
        steps = finetune_steps(len(y), cfg.batch)
        tuned = finetune(net, arch, x, y, cfg, steps, seconds,
                         lambda name, done: progress("fine-tune", done, 1.0))
        float_acc = float((predict(tuned, arch, xt).argmax(1) == ds.y_test).mean() * 100)
        progress("quantize", 0, 1)
        q = quantize_subnet(tuned.export_weights(arch), arch, space, task, to_nhwc(x[:200]),
                            mixed_target(s, budget, ds.y_train[:200]))
        xt_nhwc = to_nhwc(xt)
        n_int8 = min(len(ds.y_test), INT8_TEST_LIMIT)
        int8_acc = int8_accuracy(q, xt_nhwc[:n_int8], ds.y_test[:n_int8])
        tflite, inputs_npy = out / "model.tflite", out / "validation_inputs.npy"
        write_bytes_atomic(tflite, q.tflite)
        buf = io.BytesIO()
        np.save(buf, validation_inputs(q, xt_nhwc[: s.validate_inputs]))
        write_bytes_atomic(inputs_npy, buf.getvalue())
        progress("QEMU validation", 0, 1)
        report = validate_in_qemu(tflite, s.board, arena_budget, inputs_npy)
        checks = within_budget(report, budget)
        attempt = {"arch": f["arch"], "label": arch.label(), "bits": s.bits, "float_test_accuracy": float_acc,
                   "int8_test_accuracy": int8_acc, "int8_test_samples": n_int8, "validation": report, "within_budget": checks,
                   "tflite_bytes": len(q.tflite), "command": validate_command(tflite, s.board, arena_budget, inputs_npy)}
        attempts.append(attempt)
        if report["bit_exact"] and all(checks.values()):
            return attempt | {"attempts": len(attempts)}
        log(f"finalist {arch.label()}: {'bit-exact' if report['bit_exact'] else 'NOT bit-exact'}, "
            f"measured {report['ram_bytes']} B SRAM / {report['flash_bytes']} B flash: "
            f"{', '.join(k for k, ok in checks.items() if not ok) or 'ok'}; trying the next")
    (out / "model.tflite").unlink(missing_ok=True)
    raise CheckFailed(f"none of the {len(attempts)} finalists validated bit-exactly within the budget in QEMU "
                      f"(last: {attempts[-1]['within_budget'] if attempts else 'no finalist'})")
