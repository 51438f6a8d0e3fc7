"""`tinyml generate MODEL -o DIR`: the portable C99 library for a model."""
from __future__ import annotations

import argparse

from tinyml.codegen.emit import generate
from tinyml.commands._common import add_json_arg, add_patch_args, patch_options, patch_summary, write_json
from tinyml.pipeline import compile_model


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("generate", help="write the model as a portable C99 library",
                       description="Write model.h/.c, kernels and weights for MODEL into DIR (atomically).")
    p.add_argument("model", help=".tflite file (fully int8)")
    p.add_argument("-o", "--output", required=True, metavar="DIR", help="output directory (replaced when complete)")
    add_patch_args(p)
    add_json_arg(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    c = compile_model(args.model, patch_options(args))
    lib = generate(c.graph, c.plan, args.output)
    files = sorted(p.name for p in lib.path.iterdir())
    print(f"wrote {len(files)} files to {lib.path}: arena {lib.arena_bytes:,} B, weights {lib.weights_bytes:,} B")
    if args.json != "-" and patch_summary(c.patches):
        print(patch_summary(c.patches))
    write_json(args.json, {"output": str(lib.path), "files": files, "arena_bytes": lib.arena_bytes,
                           "patches": c.patches.describe() if c.patches else None,
                           "weights_bytes": lib.weights_bytes})
    return 0
