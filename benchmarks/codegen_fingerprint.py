"""Fingerprint what the compiler emits for every zoo model: generated C and firmware bytes.

A refactoring that must not change the product (a moved module, a renamed class)
is checked by running this before and after and diffing the two JSON files:

    python benchmarks/codegen_fingerprint.py -o before.json
    ... change the code ...
    python benchmarks/codegen_fingerprint.py -o after.json --compare before.json

For each model it hashes every generated library file (`tinyml generate`, default
options, and `--patch off`) and the loadable bytes of each firmware image
(`tinyml build`, `objcopy -O binary`, so build paths in debug data do not count).
Exit 1 when --compare finds a difference.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from tinyml import zoo

BOARDS = ("stm32f405", "mps2-an500")
VARIANTS = {"auto": [], "off": ["--patch", "off"]}


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def _tinyml(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "tinyml.cli", *args], check=True, capture_output=True)


def library_hashes(model: Path, work: Path, extra: list[str]) -> dict[str, str]:
    out = work / "lib"
    _tinyml("generate", str(model), "-o", str(out), *extra)
    return {str(p.relative_to(out)): _digest(p) for p in sorted(out.rglob("*")) if p.is_file()}


def firmware_hashes(model: Path, work: Path, board: str, extra: list[str]) -> dict[str, str]:
    out = work / f"fw-{board}"
    _tinyml("build", str(model), "--board", board, "-o", str(out), *extra)
    hashes = {}
    for elf in sorted(out.rglob("*.elf")):
        binary = elf.with_suffix(".bin")
        subprocess.run(["arm-none-eabi-objcopy", "-O", "binary", str(elf), str(binary)], check=True)
        hashes[str(elf.relative_to(out))] = _digest(binary)
    return hashes


def fingerprint(names: list[str], boards: tuple[str, ...], firmware: bool) -> dict:
    result: dict[str, dict] = {}
    for name in names:
        path = zoo.path(name)
        entry: dict[str, dict] = {}
        for variant, extra in VARIANTS.items():
            with tempfile.TemporaryDirectory() as tmp:
                work = Path(tmp)
                entry[f"lib/{variant}"] = library_hashes(path, work, extra)
                if firmware and variant == "auto":
                    for board in boards:
                        entry[f"fw/{board}"] = firmware_hashes(path, work, board, extra)
        result[name] = entry
        print(f"{name}: {sum(len(v) for v in entry.values())} files", flush=True)
    return result


def differences(before: dict, after: dict) -> list[str]:
    """Files whose hashes differ, for the models fingerprinted in `after` (a run may cover some groups only)."""
    diffs = []
    for name in sorted(after):
        b, a = before.get(name, {}), after[name]
        for key in sorted(set(b) | set(a)):
            for f in sorted(set(b.get(key, {})) | set(a.get(key, {}))):
                if b.get(key, {}).get(f) != a.get(key, {}).get(f):
                    diffs.append(f"{name} {key} {f}")
    return diffs


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-o", "--output", required=True, help="JSON file to write")
    ap.add_argument("--compare", help="an earlier JSON file: print differences, exit 1 if any")
    ap.add_argument("--group", action="append", help="zoo group(s) (default: all)")
    ap.add_argument("--no-firmware", action="store_true", help="hash generated C only")
    args = ap.parse_args(argv)
    names = [n for g in (args.group or zoo.GROUPS) for n in zoo.names(g)]
    result = fingerprint(names, BOARDS, not args.no_firmware)
    Path(args.output).write_text(json.dumps(result, indent=1, sort_keys=True))
    if args.compare:
        diffs = differences(json.loads(Path(args.compare).read_text()), result)
        for d in diffs:
            print("differs:", d)
        print(f"{len(diffs)} differences over {len(names)} models")
        return 1 if diffs else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
