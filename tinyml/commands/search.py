"""`tinyml search --task T --board B -o DIR`: design a network for the board's SRAM and flash."""
from __future__ import annotations

import argparse
import re
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from tinyml.commands._common import add_json_arg, write_json
from tinyml.errors import TinymlError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "search", help="architecture search under a board's SRAM/flash budget -> trained int8 .tflite",
        description="Search a MobileNetV2-style network (elastic kernel, expand ratio, depth, resolution, width) for "
                    "TASK that fits the budgets on board B: choose the resolution/width family (TinyNAS), train a "
                    "weight-sharing supernet (OFA), evolve subnets under tinyml.cost's SRAM/flash/instruction "
                    "estimates, then fine-tune, quantize (tinyml quantize's int8 PTQ) and validate the result in QEMU, "
                    "bit for bit, within the budgets as measured. Resumable: rerun the same command to continue. "
                    "Exit 1 when nothing validated within the budgets, 2 on bad input.")
    p.add_argument("--task", required=True, metavar="TASK",
                   help="digits, fashion (Fashion-MNIST, Debian's dataset-fashion-mnist), kws (keywords synthesized "
                        "with espeak-ng), or an .npz with x [N,H,H(,C)] and integer y (optional x_test, y_test)")
    p.add_argument("--board", required=True, metavar="B", help="target board (see `tinyml boards`)")
    p.add_argument("-o", "--output", required=True, metavar="DIR", help="where the model, report and state go")
    p.add_argument("--sram-budget", type=byte_size, metavar="BYTES",
                   help="most SRAM the model may use: its RAM (arena) + the inference's stack, e.g. 64K "
                        "(default: the board's RAM)")
    p.add_argument("--flash-budget", type=byte_size, metavar="BYTES",
                   help="most flash of the whole firmware image, e.g. 256K (default: the board's flash)")
    p.add_argument("--instr-budget", type=count, metavar="N", help="most instructions per inference")
    p.add_argument("--bits", choices=["8", "mixed"], default="8",
                   help="8: int8 throughout; mixed: each finalist's weights at 8 or 4 bits per layer by issue 12's "
                        "ILP, candidates priced at the 4-bit flash floor (docs/search.md)")
    p.add_argument("--time-budget", type=minutes, default=20.0, metavar="MINUTES",
                   help="wall time to aim for (default 20); training and sampling stretch or shrink to it")
    p.add_argument("--space", default="mcunet", metavar="NAME|FILE",
                   help="search space: a shipped one (mcunet) or your own TOML (see docs/search.md)")
    p.add_argument("--ray-address", metavar="ADDR", help="run candidate evaluation on this Ray cluster "
                                                         "(host:port or auto; default: a local Ray)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--train-limit", type=count, metavar="N", help="use at most N training images")
    p.add_argument("--predictor-samples", type=count, default=120, metavar="N",
                   help="subnets measured to train the accuracy predictor (default 120; time may cut it short)")
    p.add_argument("--random-search", action="store_true",
                   help="also run random search with as many measured candidates, for comparison")
    p.add_argument("--baselines", action="store_true",
                   help="also train hand-designed baselines (MobileNetV2 that fits, a plain CNN) the same way")
    p.add_argument("--restart", action="store_true", help="discard a previous search in DIR")
    add_json_arg(p)
    p.set_defaults(func=run)


def byte_size(text: str) -> int:
    m = re.fullmatch(r"\s*(\d+)\s*([kKmM]?)[iI]?[bB]?\s*", text)
    if not m or int(m.group(1)) <= 0:
        raise argparse.ArgumentTypeError(f"not a byte count: {text!r} (e.g. 65536, 64K, 1M)")
    return int(m.group(1)) * {"": 1, "k": 1024, "m": 1024 * 1024}[m.group(2).lower()]


def count(text: str) -> int:
    if not text.isdigit() or int(text) <= 0:
        raise argparse.ArgumentTypeError(f"not a positive count: {text!r}")
    return int(text)


def minutes(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of minutes: {text!r}") from None
    if not 0.2 <= v <= 24 * 60:
        raise argparse.ArgumentTypeError(f"time budget must be 0.2 .. 1440 minutes, got {text}")
    return v


def run(args: argparse.Namespace) -> int:
    from tinyml.board import load_board
    from tinyml.search.run import Settings, run_search
    from tinyml.search.space import load_space

    try:
        board = load_board(args.board)
    except (OSError, ValueError) as e:
        raise TinymlError(f"--board {args.board}: {e}") from None
    load_space(args.space)  # a bad space is reported before anything starts
    out = Path(args.output)
    if out.exists() and not out.is_dir():
        raise TinymlError(f"-o {out}: exists and is not a directory")
    if args.restart and out.exists():
        (out / "search_state.json").unlink(missing_ok=True)
        (out / "supernet.pt").unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    settings = Settings(task=args.task, board=board.name, sram_budget=args.sram_budget or board.ram.size,
                        flash_budget=args.flash_budget or board.flash.size, instr_budget=args.instr_budget,
                        bits=args.bits, minutes=args.time_budget, space=args.space, seed=args.seed,
                        train_limit=args.train_limit, predictor_samples=args.predictor_samples,
                        random_search=args.random_search, baselines=args.baselines)
    quiet = args.json == "-"
    console = Console(stderr=True)
    with Progress(TextColumn("{task.description:<28}"), BarColumn(), TaskProgressColumn(), TimeElapsedColumn(),
                  console=console, transient=True, disable=quiet) as bar:
        tasks: dict[str, int] = {}

        def progress(step: str, done: float, total: float) -> None:
            if step not in tasks:
                tasks[step] = bar.add_task(step, total=total)
            bar.update(tasks[step], completed=done, total=total)

        report = run_search(settings, out, progress, args.ray_address,
                            log=lambda m: console.print(m) if not quiet else None)
    if not quiet:
        print_report(report, out)
    write_json(args.json, report)
    return 0


def print_report(r: dict, out: Path) -> None:
    con = Console()
    d, b = r["delivered"], r["budget"]
    fam = r["family"]
    con.print(f"family: resolution {fam['resolution']}, width {fam['width']:g} (most compute under the budget "
              f"among {len(fam['table'])} families)")
    con.print(f"delivered: {d['label']}")
    t = Table(title="delivered network (measured in QEMU unless labelled)")
    for col in ("", "value", "budget"):
        t.add_column(col, justify="right" if col else "left")
    v = d["validation"]
    t.add_row("int8 test accuracy", f"{d['int8_test_accuracy']:.2f} %", "")
    t.add_row("float test accuracy", f"{d['float_test_accuracy']:.2f} %", "")
    t.add_row("bit-exact vs TFLite Micro", f"{v['bit_exact']} ({v['inputs']} inputs)", "")
    t.add_row("SRAM (model RAM + stack)", f"{v['ram_bytes']:,} B", f"{b['sram_bytes']:,} B")
    t.add_row("flash (firmware)", f"{v['flash_bytes']:,} B", f"{b['flash_bytes']:,} B")
    t.add_row("instructions", f"{v['instructions']:,}", f"{b['instructions']:,}" if b["instructions"] else "")
    con.print(t)
    lt = Table(title="layers (instructions: cost-model estimate)")
    for col in ("#", "op", "output", "MACs", "weights B", "instr. est."):
        lt.add_column(col, justify="right" if col not in ("op",) else "left")
    for x in r["layers"] or []:
        lt.add_row(str(x["layer"]), x["op"], "x".join(map(str, x["output"][1:])), f"{x['macs']:,}",
                   f"{x['weight_bytes']:,}", f"{x['instructions_estimate']:,}")
    con.print(lt)
    if r.get("random_search"):
        rs = r["random_search"]
        con.print(f"random search ({rs['candidates']} measured): best validation accuracy {rs['val_accuracy']:.2f} % "
                  f"vs the search's {r['finalists'][0]['val_accuracy']:.2f} %")
    for base in r.get("baselines") or []:
        con.print(f"baseline {base['name']}: int8 test accuracy {base.get('int8_test_accuracy', float('nan')):.2f} %")
    con.print(f"files in {out}: model.tflite, report.json, pareto.png; check it yourself with:\n  {d['command']}")

