"""The resumable search state: one JSON file in the output directory, rewritten atomically.

Each finished step stores its result under its own key; a restarted search with
the same settings skips those steps (the supernet resumes from its checkpoint,
the predictor's samples from the last chunk measured). Different settings in the
same directory are refused rather than mixed.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tinyml.errors import TinymlError
from tinyml.fsutil import write_text_atomic

VERSION = 1


class SearchState:
    def __init__(self, directory: Path, settings: dict):
        self.path = directory / "search_state.json"
        self.data: dict[str, Any] = {"version": VERSION, "settings": settings, "steps": {}}
        if self.path.exists():
            try:
                saved = json.loads(self.path.read_text())
            except (OSError, ValueError) as e:
                raise TinymlError(f"{self.path}: unreadable search state ({e}); remove it to start over") from None
            if not isinstance(saved, dict) or saved.get("version") != VERSION or not isinstance(saved.get("steps"), dict):
                raise TinymlError(f"{self.path}: not a search state of this version; remove it to start over")
            if saved.get("settings") != json.loads(json.dumps(settings)):
                raise TinymlError(f"{directory} holds a search with other settings "
                                  f"({_differences(saved.get('settings') or {}, settings)}); "
                                  "use another -o, or --restart to discard it")
            self.data = saved

    @property
    def resumed(self) -> list[str]:
        return list(self.data["steps"])

    def get(self, step: str, default: Any = None) -> Any:
        return self.data["steps"].get(step, default)

    def put(self, step: str, value: Any) -> Any:
        self.data["steps"][step] = value
        write_text_atomic(self.path, json.dumps(self.data, indent=1) + "\n")
        return value


def _differences(a: dict, b: dict) -> str:
    keys = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
    return ", ".join(f"{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in keys[:3])
