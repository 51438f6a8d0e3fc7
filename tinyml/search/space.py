"""Search spaces as data: MobileNetV2-style inverted-residual stages (MCUNet/OFA).

A space (a TOML file, tinyml/search/spaces/ or the user's own) lists the input
resolutions and width multipliers (a *family* is one of each: TinyNAS picks the
family first), a stem, stages with their elastic choices (kernel size, expand
ratio, depth), and an optional 1x1 head before the classifier. A subnet (`Arch`)
is one choice of everything; it is hashable and round-trips through JSON, so a
search can store and resume it.
"""
from __future__ import annotations

import random
import tomllib
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

from tinyml.errors import TinymlError

ELASTIC = ("kernel", "depth", "expand")  # OFA's progressive shrinking order
KERNELS = (3, 5, 7)  # the depthwise kernels the supernet holds (7x7 shared weights, centre crops)


@dataclass(frozen=True)
class Stage:
    channels: int  # output channels at width multiplier 1
    stride: int  # of the stage's first block
    depths: tuple[int, ...]
    kernels: tuple[int, ...]
    expands: tuple[int, ...]

    @property
    def max_depth(self) -> int:
        return max(self.depths)


@dataclass(frozen=True)
class Space:
    name: str
    resolutions: tuple[int, ...]
    widths: tuple[float, ...]
    stem_channels: int
    stem_stride: int
    stages: tuple[Stage, ...]
    head_channels: int  # 0: no 1x1 head conv before the pooling
    divisor: int  # channel counts are rounded to multiples of this

    def channels(self, c: int, width: float) -> int:
        """`c` scaled by the width multiplier, rounded to the divisor (never below it), as MobileNetV2 does."""
        d = self.divisor
        scaled = max(d, int(c * width + d / 2) // d * d)
        return scaled + d if scaled < 0.9 * c * width else scaled

    def families(self) -> list[tuple[int, float]]:
        return [(r, w) for r in self.resolutions for w in self.widths]

    def sample(self, rng: random.Random, family: tuple[int, float] | None = None,
               elastic: frozenset[str] = frozenset(ELASTIC)) -> Arch:
        """A random subnet; the dimensions not in `elastic` take their largest choice (progressive shrinking)."""
        r, w = family or (rng.choice(self.resolutions), rng.choice(self.widths))
        pick = lambda dim, options: rng.choice(options) if dim in elastic else max(options)  # noqa: E731
        return Arch(r, w, tuple(tuple((pick("kernel", s.kernels), pick("expand", s.expands))
                                      for _ in range(pick("depth", s.depths))) for s in self.stages))

    def largest(self, family: tuple[int, float]) -> Arch:
        return Arch(*family, tuple(tuple((max(s.kernels), max(s.expands)) for _ in range(s.max_depth))
                                   for s in self.stages))

    def smallest(self, family: tuple[int, float]) -> Arch:
        return Arch(*family, tuple(tuple((min(s.kernels), min(s.expands)) for _ in range(min(s.depths)))
                                   for s in self.stages))

    def contains(self, a: Arch) -> bool:
        return (a.resolution in self.resolutions and a.width in self.widths and len(a.stages) == len(self.stages)
                and all(len(blocks) in s.depths and all(k in s.kernels and e in s.expands for k, e in blocks)
                        for s, blocks in zip(self.stages, a.stages)))

    def describe(self) -> dict:
        return {"name": self.name, "resolutions": list(self.resolutions), "widths": list(self.widths),
                "stem": {"channels": self.stem_channels, "stride": self.stem_stride},
                "stages": [{"channels": s.channels, "stride": s.stride, "depths": list(s.depths),
                            "kernels": list(s.kernels), "expands": list(s.expands)} for s in self.stages],
                "head_channels": self.head_channels, "divisor": self.divisor}


@dataclass(frozen=True)
class Arch:
    """One subnet: a resolution, a width multiplier, and per stage a (kernel, expand) per block."""

    resolution: int
    width: float
    stages: tuple[tuple[tuple[int, int], ...], ...]

    @property
    def family(self) -> tuple[int, float]:
        return self.resolution, self.width

    @property
    def depths(self) -> tuple[int, ...]:
        return tuple(len(s) for s in self.stages)

    def to_json(self) -> dict:
        return {"resolution": self.resolution, "width": self.width,
                "stages": [[list(b) for b in s] for s in self.stages]}

    @staticmethod
    def from_json(d: dict) -> Arch:
        return Arch(int(d["resolution"]), float(d["width"]),
                    tuple(tuple((int(k), int(e)) for k, e in s) for s in d["stages"]))

    def label(self) -> str:
        """Short and readable: r28 w0.5 | k3e6 k5e3 | ..."""
        return f"r{self.resolution} w{self.width:g} | " + " | ".join(
            " ".join(f"k{k}e{e}" for k, e in s) for s in self.stages)


def load_space(spec: str | Path) -> Space:
    """A space by name (tinyml/search/spaces/NAME.toml) or a path to a TOML file; bad data: exit 2."""
    path = Path(spec)
    if path.suffix != ".toml":
        shipped = files("tinyml.search") / "spaces" / f"{spec}.toml"
        if not shipped.is_file():
            raise TinymlError(f"unknown search space {spec!r} (shipped: {', '.join(shipped_spaces())}; "
                              "or give a .toml file)")
        text, where = shipped.read_text(), f"{spec}.toml"
    else:
        try:
            text, where = path.read_text(), str(path)
        except (OSError, UnicodeDecodeError) as e:
            raise TinymlError(f"cannot read search space {path}: {e}") from None
    try:
        return parse_space(tomllib.loads(text), path.stem)
    except tomllib.TOMLDecodeError as e:
        raise TinymlError(f"{where}: not valid TOML ({e})") from None
    except (KeyError, TypeError, ValueError) as e:
        raise TinymlError(f"{where}: {e}") from None


def shipped_spaces() -> list[str]:
    return sorted(p.name[:-5] for p in (files("tinyml.search") / "spaces").iterdir() if p.name.endswith(".toml"))


def parse_space(d: dict, default_name: str = "space") -> Space:
    def ints(v, what: str, allowed: tuple[int, ...] | None = None, low: int = 1) -> tuple[int, ...]:
        v = v if isinstance(v, list) else [v]
        if not v or not all(isinstance(x, int) and not isinstance(x, bool) and x >= low for x in v):
            raise ValueError(f"{what} must be integers >= {low}, got {v!r}")
        if allowed is not None and not set(v) <= set(allowed):
            raise ValueError(f"{what} must be among {list(allowed)}, got {v!r}")
        return tuple(sorted(set(v)))

    stages = []
    for i, s in enumerate(d["stage"]):
        stages.append(Stage(ints(s["channels"], f"stage {i} channels")[0], ints(s.get("stride", 1), f"stage {i} stride")[0],
                            ints(s["depth"], f"stage {i} depth"), ints(s.get("kernel", 3), f"stage {i} kernel", KERNELS),
                            ints(s.get("expand", 6), f"stage {i} expand")))
    if not stages:
        raise ValueError("a space needs at least one [[stage]]")
    widths = d.get("width_multipliers", [1.0])
    if not widths or not all(isinstance(w, (int, float)) and 0 < w <= 4 for w in widths):
        raise ValueError(f"width_multipliers must be numbers in (0, 4], got {widths!r}")
    if any(s.stride not in (1, 2) for s in stages):
        raise ValueError("stage strides must be 1 or 2")
    return Space(name=str(d.get("name", default_name)), resolutions=ints(d["resolutions"], "resolutions", low=4),
                 widths=tuple(sorted({float(w) for w in widths})),
                 stem_channels=ints(d["stem"]["channels"], "stem channels")[0],
                 stem_stride=ints(d["stem"].get("stride", 1), "stem stride", (1, 2))[0], stages=tuple(stages),
                 head_channels=ints(d.get("head_channels", 0), "head_channels", low=0)[0],
                 divisor=ints(d.get("divisor", 8), "divisor")[0])
