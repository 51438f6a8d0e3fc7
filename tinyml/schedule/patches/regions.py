"""Regions of a tensor's spatial plane and the receptive field of a window op."""
from __future__ import annotations

from dataclasses import dataclass

from tinyml.ops.quantized import Window, effective_size

Span = tuple[int, int]  # half-open [start, end) along one spatial axis


@dataclass(frozen=True)
class Region:
    """Half-open row and column ranges of an NHWC tensor's spatial plane."""

    r0: int
    r1: int
    c0: int
    c1: int

    @property
    def h(self) -> int:
        return self.r1 - self.r0

    @property
    def w(self) -> int:
        return self.c1 - self.c0

    @staticmethod
    def full(shape: tuple[int, ...]) -> "Region":
        return Region(0, shape[1], 0, shape[2])


def input_span(o0: int, o1: int, stride: int, pad_before: int, k: int, dilation: int) -> tuple[int, int]:
    """Input rows [start, end) that outputs [o0, o1) of a window op read, before clipping.

    Negative `start` or `end` past the input size are the padded rows.
    """
    start = o0 * stride - pad_before
    return start, (o1 - 1) * stride - pad_before + effective_size(k, dilation)


def window_need(w: Window, out: Region, clip: tuple[int, int]) -> tuple[Region, tuple[int, int, int, int]]:
    """The input region (clipped to the `clip` = (h, w) plane) output region `out` reads, and its padding.

    The padding (top, bottom, left, right) is the part of the receptive
    field outside the image, so a patch node with that `explicit_padding`
    computes exactly the full node's values on `out`.
    """
    rs, re = input_span(out.r0, out.r1, w.stride_h, w.pad_top, w.k_h, w.dil_h)
    cs, ce = input_span(out.c0, out.c1, w.stride_w, w.pad_left, w.k_w, w.dil_w)
    need = Region(max(rs, 0), min(re, clip[0]), max(cs, 0), min(ce, clip[1]))
    return need, (max(-rs, 0), max(re - clip[0], 0), max(-cs, 0), max(ce - clip[1], 0))
