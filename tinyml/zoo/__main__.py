"""`python -m tinyml.zoo [GROUP...]`: build the zoo and print a Markdown table of it."""
from __future__ import annotations

import sys

from tinyml import zoo
from tinyml.zoo.convert import op_names


def main(argv: list[str]) -> int:
    groups = argv or list(zoo.GROUPS)
    print("| model | group | ops (in order of first use) | note |")
    print("|---|---|---|---|")
    for group in groups:
        for name in zoo.names(group):
            ops = list(dict.fromkeys(op_names(zoo.path(name).read_bytes())))
            print(f"| {name} | {group} | {' '.join(ops)} | {zoo.get(name).note} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
