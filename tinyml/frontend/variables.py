"""Resource variables read into state tensors: VAR_HANDLE, READ_VARIABLE, ASSIGN_VARIABLE, CALL_ONCE.

A streaming model (e.g. a wake-word detector exported with
tf.lite.experimental resource variables) keeps its ring buffers in resource
variables: VAR_HANDLE names one by (container, shared_name), READ_VARIABLE
copies it out, ASSIGN_VARIABLE copies a value in, and a CALL_ONCE at the
start runs an init subgraph that assigns each its first value. TFLite Micro
keeps one buffer per variable across Invoke() calls.

Here every variable becomes one state tensor of the main subgraph (flagged
`variable`, so the IR marks it `state`): READ_VARIABLE reads it, and
ASSIGN_VARIABLE writes it in place; VAR_HANDLE and CALL_ONCE disappear. The
init subgraph must be what converters emit, constants assigned to variables;
its constants become the state's initial values (what tinyml_reset()
restores). Anything else that handles a resource is refused by name.
"""
from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from tinyml.errors import BadModel, UnsupportedOps, show
from tinyml.frontend import schema as S
from tinyml.ops import OPS

if TYPE_CHECKING:
    from tinyml.frontend.tflite import _RawOp, _RawSubgraph, _RawTensor

RESOURCE_OPS = ("VAR_HANDLE", "READ_VARIABLE", "ASSIGN_VARIABLE", "CALL_ONCE")
_RESOURCE_TYPE = 13  # TensorType RESOURCE


def lower_resource_variables(sg: "_RawSubgraph", raw: list["_RawSubgraph"], opcodes: list[str],
                             buffer_size) -> "_RawSubgraph":
    """Subgraph `sg` with its resource variables as appended variable tensors (unchanged if it has none).

    `buffer_size(i)` gives the byte length of buffer i (0 when empty).
    """
    names = [opcodes[op.opcode] for op in sg.ops]
    if not any(n in RESOURCE_OPS for n in names):
        return sg
    handles: dict[int, tuple[str, str]] = {}  # resource tensor -> variable key
    initial: dict[tuple[str, str], "_RawTensor"] = {}
    kept: list[tuple[int, "_RawOp"]] = []
    for k, (name, op) in enumerate(zip(names, sg.ops)):
        what = f"operator {k} ({name})"
        if name == "VAR_HANDLE":
            handles[op.outputs[0]] = _key(op, what)
        elif name == "CALL_ONCE":
            if kept:
                raise UnsupportedOps([("CALL_ONCE (after other operators)", what)])
            initial.update(_init_values(raw, opcodes, _init_index(op, what, len(raw)), what))
        else:
            kept.append((k, op))
    # every tensor read from or assigned to a variable: its shape and type
    seen: dict[tuple[str, str], list["_RawTensor"]] = {}
    for k, op in kept:
        name = names[k]
        if name in ("READ_VARIABLE", "ASSIGN_VARIABLE"):
            key = _handle_of(op, handles, name, f"operator {k} ({name})")
            value = op.outputs[0] if name == "READ_VARIABLE" else op.inputs[1] if len(op.inputs) > 1 else -1
            if value < 0:
                raise BadModel(f"malformed model: operator {k} ({name}) has no value tensor")
            seen.setdefault(key, []).append(sg.tensors[value])
    tensors = list(sg.tensors)
    index: dict[tuple[str, str], int] = {}
    for key, uses in seen.items():
        first = uses[0]
        nbytes = _nbytes(first)
        for t in uses[1:] + ([initial[key]] if key in initial else []):
            if t.type_code != first.type_code or _nbytes(t) != nbytes:
                raise BadModel(f"malformed model: resource variable {show(key[1])} is used with "
                               f"different types or sizes")
        init = initial.get(key)
        if init is not None and buffer_size(init.buffer) == 0:
            raise UnsupportedOps([("CALL_ONCE (its init subgraph assigns a computed value)", show(key[1]))])
        index[key] = len(tensors)
        tensors.append(replace(first, name=key[1] or "state", buffer=init.buffer if init is not None else 0,
                               variable=True, sparse=False))
    ops = []
    for k, op in kept:
        if names[k] == "READ_VARIABLE":
            op = replace(op, inputs=[index[handles[op.inputs[0]]]])
        elif names[k] == "ASSIGN_VARIABLE":
            op = replace(op, inputs=[index[handles[op.inputs[0]]], op.inputs[1]], outputs=[])
        ops.append(op)
    return replace(sg, tensors=tensors, ops=ops)


def refuse_unsupported_state(sg: "_RawSubgraph", opcodes: list[str]) -> None:
    """Raise UnsupportedOps when an operator touches state or a type the IR has no room for.

    Such a model (resource variables, variable state tensors of LSTM/SVDF,
    float16 or string tensors) is well formed and TFLite Micro may run it;
    it is refused by naming its operators, every one tinyml lacks
    listed with them, rather than failing later on a tensor the IR cannot
    hold or a state tensor no node writes.
    """
    items, stateful = [], False
    for k, op in enumerate(sg.ops):
        name = opcodes[op.opcode]
        why = None
        state_at = OPS[name].state_inputs if name in OPS else ()
        for pos, i in enumerate(op.inputs + op.outputs):
            if i < 0:
                continue
            t = sg.tensors[i]
            type_name, dtype = S.TENSOR_TYPES.get(t.type_code, (f"type {t.type_code}", None))
            label = show(t.name, 40) or f"#{i}"
            if dtype is None:
                why = f"tensor {label} has type {type_name}"
            elif t.variable and pos not in state_at:
                why = f"tensor {label} is a variable (state kept across invocations)"
            if why:
                break
        stateful = stateful or why is not None
        if name not in OPS or why is not None:
            out = sg.tensors[op.outputs[0]].name if op.outputs else ""
            node = show(out) or (f"tensor{op.outputs[0]}" if op.outputs else f"operator {k}")
            items.append((name if name not in OPS else f"{name} ({why})", node))
    if stateful:
        raise UnsupportedOps(items)


def _key(op: "_RawOp", what: str) -> tuple[str, str]:
    """(container, shared_name) of a VAR_HANDLE: TFLite Micro's identity of a variable."""
    union_id = S.OPTION_TABLES["VarHandleOptions"][0]
    if op.options_type not in (0, union_id) or op.options is None or len(op.outputs) != 1:
        raise BadModel(f"malformed model: {what} lacks its VarHandleOptions or its one output")
    container = op.options.string(0, "container") or ""
    shared = op.options.string(1, "shared_name") or ""
    return container, shared


def _init_index(op: "_RawOp", what: str, count: int) -> int:
    union_id = S.OPTION_TABLES["CallOnceOptions"][0]
    if op.options_type != union_id or op.options is None:
        raise BadModel(f"malformed model: {what} lacks its CallOnceOptions")
    i = op.options.scalar(0, "i", 0, "init_subgraph_index")
    if not 0 < i < count:
        raise BadModel(f"malformed model: {what} runs subgraph {i} of {count}")
    return i


def _handle_of(op: "_RawOp", handles: dict[int, tuple[str, str]], name: str, what: str) -> tuple[str, str]:
    if not op.inputs or op.inputs[0] not in handles:
        raise UnsupportedOps([(f"{name} (of a resource no VAR_HANDLE makes)", what)])
    return handles[op.inputs[0]]


def _init_values(raw: list["_RawSubgraph"], opcodes: list[str], i: int,
                 what: str) -> dict[tuple[str, str], "_RawTensor"]:
    """The constants the init subgraph assigns, by variable; anything else there is refused."""
    sg = raw[i]
    handles: dict[int, tuple[str, str]] = {}
    values: dict[tuple[str, str], "_RawTensor"] = {}
    for k, op in enumerate(sg.ops):
        name = opcodes[op.opcode]
        here = f"subgraph {i} operator {k} ({name})"
        if name == "VAR_HANDLE":
            handles[op.outputs[0]] = _key(op, here)
        elif name == "ASSIGN_VARIABLE" and len(op.inputs) == 2 and op.inputs[1] >= 0:
            values[_handle_of(op, handles, name, here)] = sg.tensors[op.inputs[1]]
        else:
            raise UnsupportedOps([(f"CALL_ONCE (its init subgraph runs {name})", what)])
    return values


def _nbytes(t: "_RawTensor") -> int:
    width = {0: 4, 2: 4, 3: 1, 4: 8, 6: 1, 7: 2, 9: 1}.get(t.type_code, 0)
    count = 1
    for d in t.shape:
        count *= max(d, 0)
    return width * count if t.type_code != _RESOURCE_TYPE else -1
