"""Prompts, message templates and keyword lists: the only place wording lives.

Nodes never carry text inline; they ask this module for it by key and language.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
DEFAULT_LANGUAGE = "es"


class _SafeDict(dict[str, Any]):
    """Leaves unknown `{placeholders}` visible instead of failing the reply."""

    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


@cache
def load(name: str) -> dict[str, Any]:
    """Load `prompts/<name>.yaml` (cached for the life of the process)."""
    data = yaml.safe_load((HERE / f"{name}.yaml").read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"prompts/{name}.yaml must hold a mapping")
    return data


def preload() -> None:
    """Read every prompt file now (before an event loop runs; Studio flags blocking reads)."""
    for path in HERE.glob("*.yaml"):
        load(path.stem)


def reply(key: str, language: str | None, **values: Any) -> str:
    """A template reply in the language (falling back to Spanish), placeholders filled."""
    templates = load("replies")
    entry = templates.get(key) or templates["unknown"]
    text = entry.get(language or DEFAULT_LANGUAGE) or entry[DEFAULT_LANGUAGE]
    filled = str(text).format_map(_SafeDict({k: v for k, v in values.items() if v}))
    return filled.replace("{nombre}", "").replace(" ,", ",").replace("  ", " ").strip()


def system_prompt(key: str, **values: Any) -> str:
    """A system prompt for the model, from `prompts/llm.yaml`."""
    return str(load("llm")[key]).format_map(_SafeDict(values))
