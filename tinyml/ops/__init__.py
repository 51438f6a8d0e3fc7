"""Operator registry: every module in this package registers its ops on import.

Each op lives in one place (its module): shape rule, numpy reference, the traits
the passes and the scheduler ask (see Op), cost and the C it emits. Adding an op
is adding a module here plus its template in firmware_templates/kernels/.
"""
from __future__ import annotations

import importlib
import pkgutil

from tinyml.ops.base import OPS, Op, get_op, register, traits

for _m in pkgutil.iter_modules(__path__):
    if _m.name != "base":
        importlib.import_module(f"{__name__}.{_m.name}")

__all__ = ["OPS", "Op", "get_op", "register", "traits"]
