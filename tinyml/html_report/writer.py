"""Render a report page to one self-contained HTML file.

The page data goes in as JSON inside <script type="application/json">, with
every <, > and & written as a \\u escape, so no string from a model (tensor
names are untrusted) can close that element or open markup; the visible
title is HTML-escaped by Jinja. Styles and the script are inlined and the
page's Content-Security-Policy forbids fetching anything.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup

from tinyml.errors import TinymlError
from tinyml.fsutil import write_text_atomic

HERE = Path(__file__).parent


def embed_json(data: dict) -> str:
    """JSON that is inert inside a <script> element (no '</script>', no '<!--')."""
    text = json.dumps(_finite(data), separators=(",", ":"), allow_nan=False, default=_jsonable)
    return text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")


def _finite(o: object) -> object:
    """NaN and infinities (a float model's largest difference) as text: JSON.parse rejects them."""
    if isinstance(o, float) and not math.isfinite(o):
        return str(o)
    if isinstance(o, dict):
        return {k: _finite(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_finite(v) for v in o]
    return o


def _jsonable(o: object) -> object:
    if hasattr(o, "tolist"):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serializable: {type(o).__name__}")


def render(page: dict) -> str:
    env = Environment(loader=FileSystemLoader(HERE), autoescape=select_autoescape(["html"]))
    return env.get_template("page.html").render(
        title=page["title"], generator=page["generator"], data=Markup(embed_json(page)),
        css=Markup((HERE / "page.css").read_text()), js=Markup((HERE / "page.js").read_text()))


def write_page(dest: str | Path, page: dict) -> Path:
    """Write the page atomically (tinyml/fsutil.py); returns its path. An unwritable place is bad input."""
    text = render(page)
    try:
        return write_text_atomic(dest, text)
    except OSError as e:
        raise TinymlError(f"cannot write the report {dest}: {e.strerror or e}") from None
