"""The documentation tells the truth: the README's example rules are the shipped example,
and that example is valid against a database that has its teams."""

from __future__ import annotations

import re
from pathlib import Path

from traza.decisions import cards
from traza.rules.loader import load_file, parse

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "config" / "rules.yaml"


def test_readme_shows_the_shipped_example_rules_file() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("### Example rules file", 1)[1]
    block = re.search(r"```yaml\n(.*?)```", section, re.S)
    assert block is not None
    assert block.group(1) == EXAMPLE.read_text(encoding="utf-8")


def test_example_rules_file_is_valid_with_its_teams() -> None:
    loaded = load_file(EXAMPLE, known_teams={"general", "recruiting", "payroll"})
    rules = loaded.rules
    assert {"recruiting", "payroll"} <= set(rules.teams)
    assert [r.name for r in rules.routing][:2] == ["vip-contacts", "payroll-questions"]
    assert set(rules.integrations) == {"helpdesk", "ops-alerts"}


def test_example_needs_its_teams_to_exist() -> None:
    text = EXAMPLE.read_text(encoding="utf-8")
    try:
        parse(text, source=str(EXAMPLE), known_teams={"general"})
    except ValueError as exc:
        assert "unknown team 'recruiting'" in str(exc)
        assert "traza teams add recruiting" in str(exc)
    else:  # pragma: no cover - the assertion below explains the failure
        raise AssertionError("rules naming missing teams were accepted")


def test_the_dataset_cards_count_the_shipped_data() -> None:
    judgment_card = (ROOT / "docs" / "judgment-dataset.md").read_text(encoding="utf-8")
    assert cards.judgment_card() in judgment_card
    guardrails_card = (ROOT / "docs" / "guardrails-dataset.md").read_text(encoding="utf-8")
    assert cards.guardrails_card() in guardrails_card
