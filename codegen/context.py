"""What an op's emit() talks to: tensor pointers, constant arrays, kernels, calls.

Ops never write C names or files themselves; they ask the context, which keeps
every identifier generated (never taken from the model), deduplicates kernels
and constants, and knows where each tensor sits in the arena.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np

from tinyml.board import Target
from tinyml.codegen.cnames import c_comment, c_ident, ctype
from tinyml.codegen.templates import render
from tinyml.ir import Graph, Node

FN_PLACEHOLDER = "@FN@"  # what `{{ fn }}` renders as until the kernel has its name


@dataclass
class ConstArray:
    symbol: str
    ctype: str
    values: np.ndarray
    comment: str = ""


@dataclass
class EmitContext:
    graph: Graph
    offsets: dict[str, int]  # arena byte offset of every activation tensor
    scratch_plan: dict[int, tuple[int, int]] = field(default_factory=dict)  # layer -> (offset, bytes)
    target: Target = field(default_factory=Target)
    kernels: list[str] = field(default_factory=list)  # rendered C function definitions
    consts: list[ConstArray] = field(default_factory=list)
    calls: list[str] = field(default_factory=list)  # statements of tinyml_invoke()
    _kernel_names: dict[str, str] = field(default_factory=dict)  # body hash -> fn name
    _const_names: dict[tuple[str, str], str] = field(default_factory=dict)
    node: Node | None = None  # the node being emitted (for comments)
    layer: int = -1  # its index in graph.nodes
    uses_libm: bool = False  # a float kernel calls libm (expf, logf): the package links `m`
    state_offsets: dict[str, int] = field(default_factory=dict)  # state tensor -> offset in tinyml_state

    # -- tensors -----------------------------------------------------------
    def tensor(self, name: str) -> str:
        """C expression pointing at tensor `name`'s data, typed by its dtype."""
        t = self.graph.tensors[name]
        if t.is_const:
            return self.const(t.data, "w", ctype(t.dtype))
        if t.state:
            return f"(({ctype(t.dtype)} *)(tinyml_state + {self.state_offsets[name]}))"
        off = self.offsets[name]
        return f"(({ctype(t.dtype)} *)(tinyml_arena + {off}))"

    def scratch(self, nbytes: int) -> str:
        """Pointer to `nbytes` of arena workspace valid during this node's call only.

        The memory planner reserved op.scratch_bytes() for this layer; asking
        for more here is a bug in the op, not in the model.
        """
        off, planned = self.scratch_plan.get(self.layer, (0, 0))
        assert nbytes <= planned, f"{self.node.op if self.node else '?'}: scratch {nbytes} > planned {planned}"
        return f"((void *)(tinyml_arena + {off}))"

    def scratch_planned(self) -> int:
        """Bytes of workspace the planner gave this node (optional scratch included when granted)."""
        return self.scratch_plan.get(self.layer, (0, 0))[1]

    # -- constants ---------------------------------------------------------
    def const(self, values: np.ndarray, hint: str, c_type: str | None = None) -> str:
        """Emit `values` as a const array (deduplicated) and return its symbol."""
        values = np.ascontiguousarray(values)
        c_type = c_type or ctype(str(values.dtype))
        key = (c_type, hashlib.sha1(values.tobytes() + str(values.shape).encode()).hexdigest())
        if key not in self._const_names:
            sym = f"tmw_{c_ident(hint)}_{len(self.consts)}"
            self._const_names[key] = sym
            comment = c_comment(self.node.name) if self.node is not None else ""
            self.consts.append(ConstArray(sym, c_type, values.reshape(-1), comment))
        return self._const_names[key]

    # -- kernels and calls -------------------------------------------------
    def kernel(self, template: str, **params: object) -> str:
        """Render kernels/<template> as a function; identical renders share one.

        Templates name their function `{{ fn }}`; it is rendered as a placeholder
        first, so that two layers with the same body compare equal, then named.
        """
        body = render(f"kernels/{template}", fn=FN_PLACEHOLDER, target=self.target, **params)
        digest = hashlib.sha1(body.encode()).hexdigest()
        if digest not in self._kernel_names:
            fn = f"tmk_{c_ident(template.split('.')[0])}_{len(self._kernel_names)}"
            self._kernel_names[digest] = fn
            self.kernels.append(body.replace(FN_PLACEHOLDER, fn))
        return self._kernel_names[digest]

    def call(self, fn: str, *args: object) -> None:
        """Append `fn(args...);` to the model's invoke function."""
        where = f"  /* {c_comment(self.node.op + ' ' + self.node.name)} */\n" if self.node else ""
        self.calls.append(f"{where}  {fn}({', '.join(str(a) for a in args)});")

    def raw(self, statement: str) -> None:
        """Append a generated statement (e.g. memmove) to invoke."""
        self.calls.append(f"  {statement}")
