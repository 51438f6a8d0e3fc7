"""Small hand-made graphs and resized boards for the firmware and simulator tests.

The graphs use ops whose numpy reference is checked against TFLite Micro
elsewhere, so a firmware test can compare the board's outputs with
`tinyml.reference` without a .tflite file.
"""
from __future__ import annotations

import re
from importlib.resources import files

import numpy as np

from tinyml.board import Board, parse_board
from tinyml.ir import Graph, Node, Quant, Tensor


def _q(scale: float, zp: int) -> Quant:
    return Quant(np.array([scale], np.float32), np.array([zp]))


def tiny_graph(shape: tuple[int, ...] = (1, 8, 8, 4), const_elems: int | None = None, seed: int = 0) -> Graph:
    """x -> ADD(x, constant) -> LOGISTIC -> y, all int8.

    `const_elems` switches to 1-D tensors of that many elements: a constant
    (weights in flash) as big as you need."""
    rng = np.random.default_rng(seed)
    g = Graph(name="tiny")
    cshape = shape if const_elems is None else (const_elems,)
    g.add_tensor(Tensor("x", shape if const_elems is None else cshape, "int8", _q(0.05, -3)))
    g.add_tensor(Tensor("c", cshape, "int8", _q(0.04, 2), rng.integers(-128, 128, cshape).astype(np.int8)))
    g.add_tensor(Tensor("s", g["x"].shape, "int8", _q(0.07, -10)))
    g.add_tensor(Tensor("y", g["x"].shape, "int8", _q(1 / 256, -128)))
    g.nodes.append(Node("ADD", ["x", "c"], ["s"], {"fused_activation_function": "NONE"}, "add"))
    g.nodes.append(Node("LOGISTIC", ["s"], ["y"], {}, "sigmoid"))
    g.inputs, g.outputs = ["x"], ["y"]
    return g


def random_samples(g: Graph, n: int, seed: int = 1) -> list[list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [[rng.integers(-128, 128, g[t].shape).astype(np.int8) for t in g.inputs] for _ in range(n)]


def resized_board_text(name: str, ram: int | None = None, flash: int | None = None) -> str:
    """A shipped board file with its first SRAM region `ram` bytes and/or `flash` bytes of flash."""
    text = (files("tinyml.boards") / f"{name}.toml").read_text()
    if ram is not None:
        text = re.sub(r"(\[\[memory\.ram\]\]\nname = \"\w+\"\norigin = 0x[0-9A-F]+[^\n]*\nsize = )0x[0-9A-F]+",
                      lambda m: m.group(1) + hex(ram), text, count=1)
    if flash is not None:
        text = re.sub(r"(\[memory\.flash\]\norigin = 0x[0-9A-F]+[^\n]*\nsize = )0x[0-9A-F]+", lambda m: m.group(1) + hex(flash),
                      text, count=1)
        text = re.sub(r"^sectors = .*$", "sectors = []", text, count=1, flags=re.M)
    return text


def resized_board(name: str, ram: int | None = None, flash: int | None = None) -> Board:
    """A shipped board with a single main SRAM region of `ram` bytes and/or `flash` bytes of flash."""
    board = parse_board(resized_board_text(name, ram, flash), f"{name}-resized")
    assert ram is None or board.ram.size == ram
    assert flash is None or board.flash.size == flash
    return board
