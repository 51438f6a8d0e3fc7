"""`tinyml` command line: one module per verb in tinyml/commands/.

Every verb gets --help and --json FILE; errors become one line on stderr and
an exit code (0 ok, 1 a check failed, 2 bad input), never a traceback.
"""
from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys

from tinyml import __version__, commands
from tinyml.errors import TinymlError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tinyml", description="Neural networks to bit-exact C and firmware for Cortex-M boards."
    )
    parser.add_argument("--version", action="version", version=f"tinyml {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for m in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        if not m.name.startswith("_"):
            importlib.import_module(f"tinyml.commands.{m.name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except TinymlError as e:
        print(f"tinyml {args.command}: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("tinyml: interrupted", file=sys.stderr)
        return 130
    except MemoryError:
        print(f"tinyml {args.command}: error: out of memory", file=sys.stderr)
        return 2
    except Exception as e:  # a bug of ours: still one line, the traceback on request
        if os.environ.get("TINYML_DEBUG"):
            raise
        where = f"{type(e).__name__}: {e}".splitlines()[0][:300]
        print(f"tinyml {args.command}: internal error ({where}); rerun with TINYML_DEBUG=1 for details",
              file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
