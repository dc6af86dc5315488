r"""Text PostgreSQL can store: no U+0000 and no lone UTF-16 surrogates.

JSON carries both (`\u0000`, `\ud800`) and Python decodes them, but PostgreSQL's text
and jsonb hold neither. Input models refuse them with a 422 that names the field
(`refuse_unstorable` as a `model_validator(mode="before")`); signed webhooks, which must
never be refused, repair them instead (`traza.ingest.payload.clean_text`).
"""

from __future__ import annotations

from typing import Any


def problem(text: str) -> str | None:
    """Why `text` cannot be stored, or None when it can."""
    if "\x00" in text:
        return "contains U+0000 (NUL), which cannot be stored"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "contains a lone UTF-16 surrogate (U+D800 to U+DFFF), which cannot be stored"
    return None


def find_unstorable(value: Any, where: str = "") -> str | None:
    """The first string (or key) in `value` that cannot be stored, as "where: why"."""
    stack: list[tuple[Any, str]] = [(value, where)]
    while stack:
        item, at = stack.pop()
        if isinstance(item, str):
            if why := problem(item):
                return f"{at or 'value'}: {why}"
        elif isinstance(item, dict):
            for key, child in item.items():
                name = f"{at}.{key}" if at else str(key)
                if isinstance(key, str) and (why := problem(key)):
                    return f"{at or 'a key'}: a key {why}"
                stack.append((child, name))
        elif isinstance(item, list | tuple):
            stack.extend((child, f"{at}[{i}]") for i, child in enumerate(item))
    return None


def refuse_unstorable(data: Any) -> Any:
    """A pydantic before-validator: `ValueError` naming the field that cannot be stored."""
    if where := find_unstorable(data):
        raise ValueError(where)
    return data
