"""The contract every operator implements, and the registry that holds them."""
from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING, Callable, ClassVar, TypeVar

import numpy as np

from tinyml.errors import BadModel
from tinyml.ir import Graph, Node, Tensor

if TYPE_CHECKING:  # codegen imports ops, not the other way round at run time
    from tinyml.codegen.context import EmitContext
    from tinyml.ops.quantized import Window

OPS: dict[str, "Op"] = {}


class Op:
    """One operator: its shape rule, numpy reference, traits, cost and C emission.

    Subclasses set `name` to the TFLite builtin name and are registered with
    @register. Methods receive the whole graph so they can read tensor
    shapes, quantization and constants of the node's inputs and outputs.
    """

    name: ClassVar[str] = ""
    # True when the output is the input's bytes reinterpreted (RESHAPE,
    # SQUEEZE): the planner gives both one buffer and emit() writes nothing;
    # passes/cleanup.py drops one whose output equals its input.
    alias: ClassVar[bool] = False
    # True when the output is input 0 with some elements overwritten in place
    # (WRITE_WINDOW of a patch schedule): the planner gives both one buffer,
    # and unlike an alias emit() does write. Input 0 must die at this node.
    updates_input: ClassVar[bool] = False
    # Inputs that are state tensors (Tensor.state: kept across inferences,
    # outside the arena): the frontend accepts a variable tensor only there,
    # and nodes touching one state tensor keep their relative order
    # (schedule/order.py). With `writes_state` the kernel (and the reference,
    # on the array it is handed) overwrites them in place, so the node is
    # kept even when none of its outputs is used (passes/cleanup.py).
    state_inputs: ClassVar[tuple[int, ...]] = ()
    writes_state: ClassVar[bool] = False

    def inplace_inputs(self, g: Graph, n: Node) -> tuple[int, ...]:
        """Inputs whose buffer the output may overwrite, in order of preference.

        A promise about the kernel: it is correct with output == that input
        (it reads every input element before writing over it). The planner
        (tinyml/schedule/inplace.py) decides whether it is also legal in the
        graph: the input dies at this node, is no graph input, and is at
        least as large as the output.
        """
        return ()

    # -- traits: what the passes and the scheduler ask of an op -----------------
    # True when output element (b, y, x, c) reads only input elements at (b, y, x, .)
    # (constants broadcast per channel at most): the patch scheduler
    # (tinyml/schedule/patches/stage.py) runs such a node per patch on the patch's region.
    pointwise: ClassVar[bool] = False
    # True when a zero-point PAD before input 0 may become this op's `explicit_padding`
    # (its kernel skips taps outside the input): passes/fuse.py drops the padded copy.
    accepts_explicit_padding: ClassVar[bool] = False
    # True when the int8 kernel clamps its requantized result to `fused_activation_function`'s
    # range: passes/fuse.py folds a following standalone RELU/RELU6 into it.
    fuses_activation: ClassVar[bool] = False
    # True when the kernel reads and writes 4-bit activation tensors packed two per byte
    # (Tensor.bits 4; firmware_templates/kernels/_int8.j2's cursor/at/put); frontend/check.py
    # refuses 4-bit activations on every other op. Alias ops qualify with equal widths.
    subbyte_io: ClassVar[bool] = False

    def sliding_window(self, g: Graph, n: Node) -> "Window | None":
        """The window this node slides over input 0 (conv, depthwise, pooling), else None.

        The patch scheduler (tinyml/schedule/patches/) derives receptive fields
        from it. Raises ValueError when the node's geometry is invalid.
        """
        return None

    def fusable_activation(self, g: Graph, n: Node) -> bool:
        """Whether this standalone activation equals its producer's fused activation of the same
        name, so passes/fuse.py may fold it (asked once fuse.py has checked equal int8 quantization;
        tinyml/quantize/prepare.py asks it of float graphs, whose tensors have no quantization)."""
        return False

    def float_tolerance(self, g: Graph, n: Node) -> tuple[float, float] | None:
        """(atol, rtol) within which this node's float32 outputs agree with TFLite Micro's, or None
        when they agree bit for bit. Only kernels calling libm (whose expf/logf differ in the last
        bit between C libraries) state one; validation then accepts |ours - theirs| <= atol + rtol*|theirs|
        on graph outputs this node produces (docs/ops.md lists each)."""
        return None

    def pixel_cost(self, g: Graph, n: Node) -> tuple[float, float]:
        """Estimated instructions per input pixel and per output pixel (an estimate, not a measure).

        Only the patch search (tinyml/schedule/patches/estimate.py) asks: it bounds
        and ranks schedules by where recomputed overlap lands. Fitted to our
        kernels' QEMU counts on the zoo MobileNets (within ~25% per layer); changing
        a figure changes the schedules chosen. Default: element-wise and lookup-table ops.
        """
        return 0.0, 4.0 * output_channels(g, n)

    def check(self, g: Graph, n: Node) -> str | None:
        """Return why this node cannot be handled (dtype, rank...), or None."""
        return None

    def infer_shapes(self, g: Graph, n: Node) -> list[tuple[int, ...]]:
        """Output shapes computed from the inputs (used to verify the model)."""
        raise NotImplementedError

    def reference(self, g: Graph, n: Node, inputs: list[np.ndarray | None]) -> list[np.ndarray]:
        """Bit-exact numpy reference: TFLite Micro's arithmetic on `inputs`."""
        raise NotImplementedError

    def macs(self, g: Graph, n: Node) -> int:
        """Multiply-accumulates per inference (0 for data movement)."""
        return 0

    def scratch_bytes(self, g: Graph, n: Node) -> int:
        """Temporary workspace the kernel needs while it runs (im2col, ...)."""
        return 0

    def optional_scratch_bytes(self, g: Graph, n: Node) -> int:
        """Workspace that only makes the kernel faster: the planner grants it on top of
        scratch_bytes() only where it does not raise the peak, and emit() asks
        ctx.scratch_planned() whether it was."""
        return 0

    def emit(self, g: Graph, n: Node, ctx: "EmitContext") -> None:
        """Render this node's kernel and append its call to the model."""
        raise NotImplementedError

    def cost_terms(self, g: Graph, n: Node) -> tuple[str, dict[str, float]]:
        """The layer's shape class and the counts its instructions are linear in (tinyml/cost).

        The class names the kernel that runs (e.g. "conv_gemm", "dw_3x3_s2"; the part before the
        first '_' is the family a class without fitted data falls back to); the counts are what
        its loops run over ("call", "macs", "out" elements, "bytes" moved...). Coefficients per
        class are fitted to QEMU counts (benchmarks/fit_cost_model.py). Default: one pass over
        input and output elements.
        """
        x = g[n.inputs[0]] if n.inputs and n.inputs[0] is not None else None
        y = g[n.outputs[0]]
        return bit_class("other", x, y), {"call": 1, "out": y.size, "in": x.size if x is not None else 0}


def bit_class(cls: str, *tensors: Tensor | None) -> str:
    """`cls`, suffixed with the storage widths when a tensor is not 8-bit (another kernel runs then)."""
    bits = [t.bits for t in tensors if t is not None]
    return cls if all(b == 8 for b in bits) else f"{cls}_{'_'.join(f'{b}b' for b in bits)}"


def copy_terms(t: Tensor) -> dict[str, float]:
    """A copy writing tensor `t`: bytes moved and contiguous runs (rows of an NHWC region)."""
    row = t.shape[-1] * t.shape[-2] if len(t.shape) >= 2 else max(t.size, 1)
    return {"call": 1, "bytes": t.nbytes, "runs": t.size // max(row, 1)}


@lru_cache(maxsize=1024)  # per window geometry: cost_terms asks on every estimate call
def border_pixels(w: "Window") -> int:
    """Output pixels whose window reaches into the padding (the kernels' slower border path)."""
    def edge(out: int, stride: int, pad: int, k: int, size: int) -> int:
        inside = sum(1 for o in range(out) if o * stride - pad >= 0 and o * stride - pad + k <= size)
        return out - inside

    rows = edge(w.out_h, w.stride_h, w.pad_top, (w.k_h - 1) * w.dil_h + 1, w.in_h)
    cols = edge(w.out_w, w.stride_w, w.pad_left, (w.k_w - 1) * w.dil_w + 1, w.in_w)
    return w.out_h * w.out_w - (w.out_h - rows) * (w.out_w - cols)


@lru_cache(maxsize=1024)
def inside_taps(w: "Window") -> tuple[int, int]:
    """Window rows and columns inside the input (not in the padding), each summed over the output
    rows / columns: a window's taps inside are rows x columns, and their sum over all output pixels
    the product of the two sums."""
    def inside(out: int, stride: int, pad: int, k: int, dil: int, size: int) -> int:
        return sum(1 for o in range(out) for t in range(k) if 0 <= o * stride - pad + t * dil < size)

    return (inside(w.out_h, w.stride_h, w.pad_top, w.k_h, w.dil_h, w.in_h),
            inside(w.out_w, w.stride_w, w.pad_left, w.k_w, w.dil_w, w.in_w))


def per_channel_scales(t: Tensor) -> bool:
    """Whether a weights tensor's scales differ per output channel (the kernels then read a
    multiplier and shift per channel instead of literals)."""
    q = t.quant
    return q is not None and q.scale.size > 1 and bool(np.any(q.scale != q.scale.flat[0]))


T = TypeVar("T")
_REMEMBERED: dict[tuple, tuple[tuple, object]] = {}
REMEMBER_MAX = 512  # entries: the weights of a dozen MobileNet-size graphs, not a whole search's


def remembered(arrays: tuple, key: tuple, decide: Callable[[], T]) -> T:
    """decide(), remembered for these constant arrays (by identity; the memo keeps them alive so an
    id is never reused while remembered) and key: cost_terms asks the same question of the same
    weights (do they pack, can the accumulator overflow) on every estimate call of a search."""
    k = (*map(id, arrays), *key)
    hit = _REMEMBERED.get(k)
    if hit is not None and all(a is b for a, b in zip(hit[0], arrays)):
        return hit[1]  # type: ignore[return-value]
    if len(_REMEMBERED) >= REMEMBER_MAX:
        _REMEMBERED.clear()
    value = decide()
    _REMEMBERED[k] = (arrays, value)
    return value


def output_channels(g: Graph, n: Node) -> int:
    """The innermost dimension of the node's first output (1 for a scalar or no output)."""
    if not n.outputs:
        return 1
    y = g[n.outputs[0]]
    return y.shape[-1] if y.shape else 1


def register(cls: type[Op]) -> type[Op]:
    assert cls.name and cls.name not in OPS, f"bad or duplicate op name {cls.name!r}"
    OPS[cls.name] = cls()
    return cls


def get_op(name: str) -> Op:
    try:
        return OPS[name]
    except KeyError:
        raise BadModel(f"no implementation for op {name}") from None


def traits(name: str) -> Op:
    """The op's traits, or Op's defaults for an op nothing implements: legalization
    passes run before the support check, on graphs that may hold such ops."""
    return OPS.get(name) or _DEFAULTS


_DEFAULTS = Op()
