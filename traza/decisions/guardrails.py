"""Offline policy guardrails on every outgoing bot reply (`prompts/guardrails.yaml`)."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from typing import Any

import prompts
from traza.decisions.text import normalise


@dataclass(frozen=True, slots=True)
class Verdict:
    """Whether a reply may go out; if not, which policies it broke and why."""

    allowed: bool
    policies: list[str] = field(default_factory=list)
    reason: str | None = None
    source: str = "policy"

    def as_dict(self) -> dict[str, Any]:
        """A JSON-serialisable copy for state and trace."""
        return asdict(self)


@lru_cache(maxsize=1)
def _compiled() -> dict[str, tuple[str, list[re.Pattern[str]]]]:
    policies = prompts.load("guardrails")["policies"]
    return {
        name: (spec["description"], [re.compile(p, re.IGNORECASE) for p in spec["patterns"]])
        for name, spec in policies.items()
    }


def check_reply(text: str) -> Verdict:
    """Check a reply against every policy; all broken policies are named."""
    norm = normalise(text)
    broken = [
        name
        for name, (_, patterns) in _compiled().items()
        if any(p.search(norm) or p.search(text) for p in patterns)
    ]
    if not broken:
        return Verdict(allowed=True)
    reasons = "; ".join(_compiled()[name][0] for name in broken)
    return Verdict(allowed=False, policies=broken, reason=reasons)
