"""The dataset cards' tables, computed from the shipped example files.

    uv run python -m traza.decisions.cards judgment     # docs/judgment-dataset.md
    uv run python -m traza.decisions.cards guardrails   # docs/guardrails-dataset.md

A test checks that each card holds the table this prints, so the card matches the data.
"""

from __future__ import annotations

import sys
from collections import Counter

from traza.decisions import guardrails, judgment, textmodel
from traza.decisions.textmodel import Example


def _table(examples: list[Example], labels: list[str], empty: str) -> str:
    varieties = judgment.VARIETIES
    counts: Counter[tuple[str, str]] = Counter()
    for e in examples:
        for label in e.labels or {empty}:
            counts[(label, e.variety)] += 1
    lines = [
        "| label | " + " | ".join(varieties) + " | all |",
        "| --- |" + " ---: |" * (len(varieties) + 1),
    ]
    for label in [*labels, empty]:
        row = [counts[(label, v)] for v in varieties]
        lines.append(f"| `{label}` | " + " | ".join(map(str, row)) + f" | {sum(row)} |")
    totals = [sum(1 for e in examples if e.variety == v) for v in varieties]
    lines.append("| **messages** | " + " | ".join(map(str, totals)) + f" | {sum(totals)} |")
    train, held = textmodel.split(examples)
    lines += [
        "",
        f"{len(examples)} examples in {len({e.family for e in examples})} families;"
        f" train {len(train)}, held-out {len(held)} ({len({e.family for e in held})} families).",
    ]
    return "\n".join(lines)


def judgment_card() -> str:
    """Counts per label × variety of the judgment examples."""
    examples = judgment.read(judgment.builtin_files())
    return _table(examples, list(judgment.LABELS), "(no label)")


def guardrails_card() -> str:
    """Counts per category × variety of the labelled replies."""
    examples = guardrails.read(guardrails.builtin_files())
    return _table(examples, list(guardrails.CATEGORIES), "(benign)")


if __name__ == "__main__":
    which = sys.argv[1] if len(sys.argv) > 1 else "judgment"
    print(judgment_card() if which == "judgment" else guardrails_card())
