"""The one Jinja environment that renders firmware_templates/."""
from __future__ import annotations

from functools import lru_cache
from importlib.resources import files

import jinja2

from tinyml.codegen.cnames import c_array


@lru_cache(maxsize=1)
def environment() -> jinja2.Environment:
    root = files("tinyml.firmware_templates")
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(root)),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
    )
    env.filters["c_array"] = c_array
    return env


def render(template: str, **params: object) -> str:
    return environment().get_template(template).render(**params)
