"""Text normalisation shared by the classifier and the guardrails."""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache


def normalise(text: str) -> str:
    """Lower-case, strip accents and apostrophes, collapse spaces."""
    decomposed = unicodedata.normalize("NFKD", text.lower())
    plain = "".join(c for c in decomposed if not unicodedata.combining(c))
    plain = plain.replace("'", "").replace("’", "")
    return re.sub(r"\s+", " ", plain).strip()


@lru_cache(maxsize=256)
def phrase_pattern(phrases: tuple[str, ...]) -> re.Pattern[str]:
    """One regex matching any of the phrases on word boundaries."""
    alternatives = sorted((re.escape(normalise(p)) for p in phrases), key=len, reverse=True)
    return re.compile(r"(?<!\w)(" + "|".join(alternatives) + r")(?!\w)")
