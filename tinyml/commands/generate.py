"""`tinyml generate MODEL -o DIR`: the portable C99 library for a model (optionally as a package)."""
from __future__ import annotations

import argparse
import hashlib

from tinyml.codegen.emit import generate
from tinyml.commands._common import (add_json_arg, add_patch_args, add_transformer_args, integer_only_summary,
                                     patch_options, patch_summary, write_json)
from tinyml.errors import TinymlError
from tinyml.pipeline import compile_model

PACKAGE_KINDS = ("all", "cmake", "zephyr", "platformio", "arduino")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("generate", help="write the model as a portable C99 library",
                       description="Write model.h/.c, kernels and weights for MODEL into DIR (atomically). With "
                                   "--package, DIR is a library for CMake, Zephyr, PlatformIO and the Arduino IDE "
                                   "with an example application (docs/integration.md).")
    p.add_argument("model", help=".tflite file (fully int8)")
    p.add_argument("-o", "--output", required=True, metavar="DIR", help="output directory (replaced when complete)")
    p.add_argument("--package", nargs="?", const="all", choices=PACKAGE_KINDS, metavar="KIND",
                   help="write a package: all (default: one layout with every manifest), cmake (CMakeLists.txt, "
                        "target tinyml_model), zephyr (zephyr/module.yml, Kconfig), platformio (library.json) or "
                        "arduino (library.properties)")
    p.add_argument("--board", metavar="B",
                   help="with --package: set examples/cmake/ up for board B (startup, linker script, UART driver, "
                        "CMake toolchain file) so it runs bare-metal there and in QEMU")
    add_patch_args(p)
    add_transformer_args(p)
    add_json_arg(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.board and args.package not in ("all", "cmake"):
        raise TinymlError("--board sets up the CMake example: use it with --package or --package cmake")
    board = None
    if args.board:
        from tinyml.board import load_board

        board = load_board(args.board)
    c = compile_model(args.model, patch_options(args), args.integer_only, args.attention_block)
    sha256 = hashlib.sha256(c.model_bytes).hexdigest()
    if args.package:
        return _run_package(args, c, sha256, board)
    lib = generate(c.graph, c.plan, args.output, model_sha256=sha256)
    files = sorted(p.name for p in lib.path.iterdir())
    print(f"wrote {len(files)} files to {lib.path}: arena {lib.arena_bytes:,} B, weights {lib.weights_bytes:,} B")
    if args.json != "-" and patch_summary(c.patches):
        print(patch_summary(c.patches))
    if args.json != "-" and c.integer_only is not None:
        print(integer_only_summary(c.integer_only))
    write_json(args.json, {"output": str(lib.path), "files": files, "arena_bytes": lib.arena_bytes,
                           "patches": c.patches.describe() if c.patches else None,
                           "weights_bytes": lib.weights_bytes, "model_sha256": sha256})
    return 0


def _run_package(args: argparse.Namespace, c, sha256: str, board) -> int:
    from tinyml.codegen.package import KINDS, write_package

    kinds = KINDS if args.package == "all" else (args.package,)
    pkg = write_package(c.graph, c.plan, args.output, sha256, kinds, board)
    weights = ", ".join(f"{v} {n:,} B" for v, n in pkg.weights_bytes.items())
    print(f"wrote a {'/'.join(kinds)} package ({len(pkg.files)} files) to {pkg.path}: arena {pkg.arena_bytes:,} B, "
          f"weights {weights}" + (f"; examples/cmake set up for {pkg.board}" if pkg.board else ""))
    if args.json != "-" and patch_summary(c.patches):
        print(patch_summary(c.patches))
    write_json(args.json, {"output": str(pkg.path), "package": list(kinds), "board": pkg.board, "files": pkg.files,
                           "arena_bytes": pkg.arena_bytes, "weights_bytes": pkg.weights_bytes,
                           "patches": c.patches.describe() if c.patches else None, "model_sha256": sha256})
    return 0
