"""Offline, deterministic classification of a turn (Spanish and English, no network).

The keyword lists are in `prompts/classifier.yaml`; this module only applies them.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any, Literal, get_args

import prompts
from traza.decisions.text import normalise, phrase_pattern

Intent = Literal[
    "greeting",
    "thanks",
    "goodbye",
    "application_status",
    "interview",
    "job_info",
    "provide_info",
    "salary",
    "media",
    "unsupported",
    "unknown",
]
INTENTS: tuple[str, ...] = get_args(Intent)


@dataclass(frozen=True, slots=True)
class Classification:
    """What the customer wants and how they feel, with the source of the verdict."""

    intent: str
    language: str
    frustration: bool
    wants_human: bool
    opt_out: bool
    confidence: float
    source: str = "rules"
    matched: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """A JSON-serialisable copy for state and trace."""
        return asdict(self)


def _matches(text: str, phrases: list[str]) -> str | None:
    if not text or not phrases:
        return None
    found = phrase_pattern(tuple(phrases)).search(text)
    return found.group(1) if found else None


def detect_language(text: str, fallback: str = "es") -> str:
    """Spanish or English by marker words and Spanish punctuation; `fallback` on a tie."""
    if "¿" in text or "¡" in text or "ñ" in text.lower():
        return "es"
    words = set(re.findall(r"\w+", normalise(text)))
    scores = {lang: len(words & markers) for lang, markers in _language_markers().items()}
    best: str = max(scores, key=lambda lang: scores[lang])
    if scores[best] == 0 or list(scores.values()).count(scores[best]) > 1:
        return fallback
    return best


def _config() -> dict[str, Any]:
    return prompts.load("classifier")


def _language_markers() -> dict[str, set[str]]:
    """Marker words per language; a multi-word marker ("por favor") counts each word."""
    return {
        lang: {word for marker in markers for word in re.findall(r"\w+", normalise(str(marker)))}
        for lang, markers in _config()["languages"].items()
    }


def classify_turn(
    texts: list[str],
    *,
    types: list[str] | None = None,
    payloads: list[str] | None = None,
    language_hint: str | None = None,
) -> Classification:
    """Classify the texts of one turn (a coalesced burst counts as one turn)."""
    config = _config()
    joined = " \n".join(t for t in texts if t)
    norm = normalise(joined)
    language = (
        detect_language(joined, fallback=language_hint or "es")
        if joined
        else (language_hint or "es")
    )
    opt_out_hit = _matches(norm, config["opt_out"]) or next(
        (p for p in payloads or [] if p.upper() in config.get("opt_out_payloads", [])), None
    )
    human_hit = _matches(norm, config["wants_human"])
    frustration_hit = _matches(norm, config["frustration"]) or (
        "!!!" in joined or _shouting(joined)
    )
    intent, matched = "unknown", None
    for name, phrases in config["intents"].items():
        hit = _matches(norm, phrases)
        if hit:
            intent, matched = name, hit
            break
    if intent == "unknown" and types:
        if all(t in {"image", "audio", "video", "document", "sticker"} for t in types):
            intent = "media"
        elif any(t in {"unsupported", "unknown"} for t in types):
            intent = "unsupported"
    any_hit = matched or opt_out_hit or human_hit or intent != "unknown"
    confidence = config["confidence"]["match" if any_hit else "none"]
    return Classification(
        intent=intent,
        language=language,
        frustration=bool(frustration_hit),
        wants_human=bool(human_hit),
        opt_out=bool(opt_out_hit),
        confidence=float(confidence),
        matched=str(opt_out_hit or human_hit or matched or "") or None,
    )


def _shouting(text: str) -> bool:
    letters = [c for c in text if c.isalpha()]
    return len(letters) >= 12 and sum(c.isupper() for c in letters) / len(letters) > 0.8
