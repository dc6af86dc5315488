"""The tools for the people who tune judgment: train, explain, eval, and operators' examples."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.support import configure, traza_cli
from traza.decisions import judgment
from traza.decisions.textmodel import DatasetError


@pytest.fixture(autouse=True)
def clean_db() -> None:
    """No database needed (overrides the conftest fixture of the same name)."""


def examples_folder(tmp_path: Path, lines: list[str]) -> Path:
    folder = tmp_path / "config"
    (folder / "judgment").mkdir(parents=True)
    (folder / "judgment" / "mine.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ('{"text": "hola", "labels": ["wants_person"]}', "unknown label 'wants_person'"),
        ('{"text": "hola", "labels": ["greeting"]', "not valid JSON"),
        ('{"text": "", "labels": []}', "'text' must be a non-empty string"),
        ('["hola"]', "each line must be a JSON object"),
    ],
)
def test_a_bad_examples_file_is_refused_naming_file_and_line(
    tmp_path: Path, line: str, problem: str
) -> None:
    folder = examples_folder(tmp_path, ['{"text": "me pasás con alguien?", "labels": []}', line])
    result = traza_cli("judgment", "train", env={**os.environ, "TRAZA_CONFIG_DIR": str(folder)})
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"{folder / 'judgment' / 'mine.jsonl'}:2" in result.stderr
    assert problem in result.stderr and "previous model stays active" in result.stderr
    assert "Traceback" not in result.stderr


def test_an_empty_examples_file_is_refused(tmp_path: Path) -> None:
    folder = examples_folder(tmp_path, [])
    result = traza_cli("judgment", "train", env={**os.environ, "TRAZA_CONFIG_DIR": str(folder)})
    assert result.returncode == 2 and "no examples" in result.stderr


def test_operator_examples_make_a_new_version_and_a_bad_file_keeps_the_old(
    tmp_path: Path,
) -> None:
    judgment.forget()
    shipped = judgment.current().version
    folder = examples_folder(
        tmp_path, ['{"text": "me pasás con la chica de RRHH?", "labels": ["wants_human"]}']
    )
    configure(TRAZA_CONFIG_DIR=str(folder))
    mine = judgment.reload()
    assert mine.version != shipped and mine.trained_on == judgment.current().trained_on
    (folder / "judgment" / "mine.jsonl").write_text('{"text": "x", "labels": ["nope"]}\n')
    with pytest.raises(DatasetError, match="mine.jsonl:1: unknown label 'nope'"):
        judgment.reload()
    assert judgment.current().version == mine.version
    assert "unknown label" in str(judgment.status()["last_error"])
    judgment.forget()


def test_explain_shows_every_head_and_what_drove_it() -> None:
    result = traza_cli("judgment", "explain", "che, cuánto pagan por hora?", "--json",
                       env=dict(os.environ))  # fmt: skip
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["model"].startswith("judgment-")
    assert set(data["heads"]) == {judgment.ESCALATE, *judgment.SIGNALS}
    negotiation = data["heads"]["negotiation"]
    assert negotiation["fires"] and negotiation["features"]
    escalate = data["heads"][judgment.ESCALATE]
    assert escalate["fires"] and escalate["score"] >= escalate["threshold"]
    assert any(name == "negotiation" for name, _ in escalate["features"])
    assert data["intent"] == "salary"
    empty = traza_cli("judgment", "explain", "  ", env=dict(os.environ))
    assert empty.returncode == 2 and "non-empty" in empty.stderr


def test_eval_of_a_labelled_file_reports_labels_routes_and_misses(tmp_path: Path) -> None:
    labelled = tmp_path / "mine.jsonl"
    labelled.write_text(
        "\n".join(
            json.dumps(row, ensure_ascii=False)
            for row in [
                {"text": "quiero hablar con una persona", "labels": ["wants_human"]},
                {"text": "STOP", "labels": ["opt_out"]},
                {"text": "hola, buenos días", "labels": ["greeting"]},
                {"text": "cuánto pagan?", "labels": ["negotiation"]},
            ]
        )
        + "\n",
        encoding="utf-8",
    )
    result = traza_cli(
        "judgment", "eval", str(labelled), "--json", "--max-false-escalation", "1",
        env=dict(os.environ),
    )  # fmt: skip
    assert result.returncode in (0, 1), result.stderr
    report = json.loads(result.stdout)
    assert report["examples"] == 4
    assert {r["label"] for r in report["labels"]} >= set(judgment.SIGNALS)
    assert report["routes"]["false_opt_out"] == 0 and report["routes"]["opt_out_recall"] == 1.0
    assert "es" in "".join(report["by_variety"]) or "custom" in report["by_variety"]
    bad = traza_cli("judgment", "eval", str(tmp_path / "missing.jsonl"), env=dict(os.environ))
    assert bad.returncode == 2 and "cannot read" in bad.stderr
