"""`traza candidates import` as a user runs it, against the test database.

A clean file creates candidates, contacts and applications with consent and missing
profile fields; importing it again changes nothing; a bad row is reported with its line
and column while the rest goes in (exit 1); `--dry-run` changes nothing; a file that
cannot be used at all stops with exit 2, one clear line and nothing changed.
"""

from __future__ import annotations

import csv
import os
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg

from tests.support import ADMIN, ROOT, traza_cli

DB = psycopg.Connection[Any]
EXAMPLE = ROOT / "examples" / "talent_pool.csv"
HEADER = "external_id,name,phone,email,locale,timezone,consent_source,consent_at,vacancy,stage"


def traza(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return traza_cli("candidates", "import", *map(str, args), env=dict(os.environ))


def counts(db: DB) -> dict[str, int]:
    tables = ("candidates", "contacts", "applications", "vacancies", "stage_history", "followups")
    return {t: db.execute(f"SELECT count(*) AS n FROM {t}").fetchone()["n"] for t in tables}


def candidate(db: DB, external_id: str) -> dict[str, Any]:
    row = db.execute("SELECT * FROM candidates WHERE external_id = %s", (external_id,)).fetchone()
    assert row is not None, external_id
    return dict(row)


def summary(stdout: str) -> dict[str, int]:
    """The created/updated/unchanged/failed figures of the summary."""
    figures = {}
    for line in stdout.splitlines():
        words = line.split()
        if len(words) >= 2 and words[0] in ("created", "updated", "unchanged", "failed"):
            figures[words[0]] = int(words[1])
    return figures


def write(path: Path, *lines: str, encoding: str = "utf-8") -> Path:
    path.write_text("\n".join(lines) + "\n", encoding=encoding)
    return path


async def test_a_clean_file_creates_candidates_contacts_and_applications(db: DB):
    result = traza(EXAMPLE)
    assert result.returncode == 0, result.stderr
    assert summary(result.stdout) == {"created": 8, "updated": 0, "unchanged": 0, "failed": 0}
    assert "applications: 6 created" in result.stdout
    assert "importing" in result.stderr and "8/8" in result.stderr  # the progress bar, at its end
    assert counts(db) == {
        "candidates": 8,
        "contacts": 7,  # Carmen has only an e-mail
        "applications": 6,
        "vacancies": 2,
        "stage_history": 6,
        "followups": 0,  # importing a pool never messages it
    }

    maria = candidate(db, "cand-1001")
    assert maria["name"] == "María Fernanda García López"
    assert (maria["wa_id"], maria["phone"]) == ("525555550101", "+525555550101")
    assert maria["email"] == "maria.garcia@example.com"
    assert (maria["locale"], maria["timezone"]) == ("es", "America/Mexico_City")
    assert maria["consent_source"] == "formulario web"
    assert maria["consent_at"] == datetime(2026, 1, 12, 16, 15, tzinfo=UTC)
    assert maria["profile"] == {
        "city": "Ciudad de México",
        "years_experience": "5",
        "cv_url": "https://cv.example.com/mfgarcia.pdf",
    }
    contact = db.execute("SELECT * FROM contacts WHERE id = %s", (maria["contact_id"],)).fetchone()
    assert contact["wa_id"] == "525555550101" and contact["profile_name"] == maria["name"]
    assert contact["opted_in_at"] == maria["consent_at"]

    # Every phone spelling becomes the WhatsApp id; a date without a time is read in the
    # candidate's zone; an empty profile cell is a known-missing field.
    assert candidate(db, "cand-1005")["wa_id"] == "573155550105"
    assert candidate(db, "cand-1007")["wa_id"] == "34622550107"
    jose = candidate(db, "cand-1002")
    assert jose["consent_at"] == datetime(2026, 1, 20, 6, 0, tzinfo=UTC)  # 00:00 in Mexico City
    assert jose["profile"] == {"city": "Guadalajara", "years_experience": "3", "cv_url": None}
    carmen = candidate(db, "cand-1008")
    assert carmen["contact_id"] is None and carmen["wa_id"] is None
    assert (carmen["locale"], carmen["email"]) == ("en", "carmen.torres@example.com")

    applications = db.execute(
        "SELECT k.external_id, v.external_id AS vacancy, a.stage, h.changed_by, h.from_stage "
        "FROM applications a JOIN candidates k ON k.id = a.candidate_id "
        "JOIN vacancies v ON v.id = a.vacancy_id JOIN stage_history h ON h.application_id = a.id "
        "ORDER BY k.external_id"
    ).fetchall()
    assert [(a["external_id"], a["vacancy"], a["stage"]) for a in applications] == [
        ("cand-1001", "vac-backend", "screening"),
        ("cand-1002", "vac-backend", "applied"),
        ("cand-1003", "vac-almacen", "interview"),
        ("cand-1004", "vac-backend", "applied"),
        ("cand-1005", "vac-almacen", "applied"),
        ("cand-1007", "vac-almacen", "rejected"),
    ]
    assert {(a["changed_by"], a["from_stage"]) for a in applications} == {("import", None)}
    traced = db.execute(
        "SELECT actor, data FROM trace_events WHERE kind = 'candidates.imported'"
    ).fetchall()
    assert [t["actor"] for t in traced] == ["system:import"]
    assert len(traced[0]["data"]["created"]) == 8

    # What the agent makes of it: the vacancy's missing fields, and consent.
    db.execute('UPDATE vacancies SET required_fields = \'["cv_url", "city"]\'')
    from sqlalchemy import select

    from traza.db.engine import session_scope
    from traza.db.models import Candidate, Vacancy
    from traza.recruiting.messages import missing_fields
    from traza.recruiting.repository import INACTIVE_SQL

    async with session_scope() as session:
        vacancy = await session.scalar(select(Vacancy).where(Vacancy.external_id == "vac-backend"))
        for external_id, missing in (("cand-1002", ["cv_url"]), ("cand-1001", [])):
            found = await session.scalar(
                select(Candidate).where(Candidate.external_id == external_id)
            )
            assert found is not None and missing_fields(found, vacancy) == missing
        inactive = await session.execute(
            INACTIVE_SQL, {"cutoff": datetime.now(UTC) + timedelta(days=1), "batch": 100}
        )
        invited = set(inactive.scalars())
    without_consent = candidate(db, "cand-1007")["id"]  # imported, but never reactivated
    assert without_consent not in invited
    assert maria["id"] in invited


def test_importing_again_changes_nothing_then_updates_what_the_file_changes(db: DB, tmp_path):
    assert traza(EXAMPLE).returncode == 0
    before = counts(db)
    maria = candidate(db, "cand-1001")

    again = traza(EXAMPLE, "--errors", tmp_path / "errors.csv")
    assert again.returncode == 0, again.stderr
    assert (tmp_path / "errors.csv").read_bytes() == b"line,column,message\r\n"
    assert summary(again.stdout) == {"created": 0, "updated": 0, "unchanged": 8, "failed": 0}
    assert counts(db) == before
    assert candidate(db, "cand-1001") == maria  # not even updated_at moved

    # An edited export: María moved city and stage, Javier gave consent, José's e-mail
    # cell is empty (an empty cell never erases what is known), Lucía has a new number.
    text = EXAMPLE.read_text(encoding="utf-8")
    edits = {
        "Ciudad de México,5": "Puebla,6",
        "vac-backend,screening": "vac-backend,interview",
        "Madrid,,,vac-almacen": "Madrid,llamada,2026-03-01T12:00:00+01:00,vac-almacen",
        "jl.hernandez@example.com": "",
        "+34 612 55 01 06": "+34 699 55 01 06",
    }
    for old, new in edits.items():
        assert old in text, old
        text = text.replace(old, new)
    edited = tmp_path / "pool.csv"
    edited.write_text(text, encoding="utf-8")

    result = traza(edited)
    assert result.returncode == 0, result.stderr
    assert summary(result.stdout) == {"created": 0, "updated": 3, "unchanged": 5, "failed": 0}
    assert "0 created, 1 moved" in result.stdout
    assert counts(db) == before | {"stage_history": 7, "contacts": 8}  # Lucía's new number
    maria = candidate(db, "cand-1001")
    assert maria["profile"]["city"] == "Puebla" and maria["profile"]["years_experience"] == "6"
    assert maria["updated_at"] > maria["created_at"]
    moved = db.execute(
        "SELECT h.from_stage, h.to_stage FROM stage_history h JOIN applications a "
        "ON a.id = h.application_id WHERE a.candidate_id = %s ORDER BY h.id",
        (maria["id"],),
    ).fetchall()
    assert [(m["from_stage"], m["to_stage"]) for m in moved] == [
        (None, "screening"),
        ("screening", "interview"),
    ]
    javier = candidate(db, "cand-1007")
    assert javier["consent_source"] == "llamada"
    contact = db.execute(
        "SELECT opted_in_at FROM contacts WHERE id = %s", (javier["contact_id"],)
    ).fetchone()
    assert contact["opted_in_at"] == javier["consent_at"]
    assert candidate(db, "cand-1002")["email"] == "jl.hernandez@example.com"
    lucia = candidate(db, "cand-1006")
    assert lucia["wa_id"] == "34699550106"
    assert db.execute(
        "SELECT wa_id FROM contacts WHERE id = %s", (lucia["contact_id"],)
    ).fetchone() == {"wa_id": "34699550106"}

    assert traza(edited).returncode == 0
    assert counts(db) == before | {"stage_history": 7, "contacts": 8}


def test_without_external_ids_a_row_finds_its_candidate_by_number_then_by_email(db: DB, tmp_path):
    first = write(
        tmp_path / "a.csv",
        "name,phone,email,vacancy,stage,city",
        "Diego Morales,+52 55 5555 0201,,vac-1,applied,CDMX",
        "Paula Ortiz,,paula@example.com,vac-1,applied,",
        "Diego Morales,+52 55 5555 0201,,vac-2,applied,",  # same person, a second vacancy
    )
    result = traza(first, "--batch-size", "2")  # the repeat falls in the next batch
    assert result.returncode == 0, result.stderr
    assert summary(result.stdout) == {"created": 2, "updated": 0, "unchanged": 1, "failed": 0}
    assert counts(db)["candidates"] == 2 and counts(db)["applications"] == 3

    second = write(
        tmp_path / "b.csv",
        "name,phone,email,city",
        "Diego Morales,0052 (55) 5555-0201,diego@example.com,",
        "Paula Ortiz,+57 300 555 0202,PAULA@example.com,Cali",  # now with a number
    )
    result = traza(second)
    assert result.returncode == 0, result.stderr
    assert summary(result.stdout) == {"created": 0, "updated": 2, "unchanged": 0, "failed": 0}
    rows = db.execute("SELECT name, wa_id, email, profile FROM candidates ORDER BY id").fetchall()
    assert [(r["name"], r["wa_id"], r["email"]) for r in rows] == [
        ("Diego Morales", "525555550201", "diego@example.com"),
        ("Paula Ortiz", "573005550202", "paula@example.com"),
    ]
    assert rows[0]["profile"] == {"city": "CDMX"} and rows[1]["profile"] == {"city": "Cali"}
    assert counts(db)["contacts"] == 2


async def test_an_ats_event_adopts_the_imported_candidate_with_the_same_number(
    db: DB, tmp_path: Path, client: httpx.AsyncClient
) -> None:
    pool = write(
        tmp_path / "pool.csv",
        "name,phone,consent_source,consent_at",
        "Diego Morales,+52 55 5555 0201,feria de empleo,2026-01-10T10:00:00-06:00",
    )
    assert traza(pool).returncode == 0
    candidate_event = {
        "id": "evt-adopt",
        "type": "application.created",
        "application_id": "app-9",
        "candidate": {"external_id": "ats-7", "name": "Diego Morales", "wa_id": "525555550201"},
        "vacancy": {"external_id": "vac-9", "title": "Analista de Datos"},
    }

    adopted = await client.post("/recruiting/events", json=candidate_event, headers=ADMIN)
    someone_else = await client.post(
        "/recruiting/events",
        json={
            **candidate_event,
            "id": "evt-other",
            "application_id": "app-10",
            "candidate": {"external_id": "ats-8", "name": "Otro", "wa_id": "525555550201"},
        },
        headers=ADMIN,
    )

    assert adopted.status_code == 200, adopted.text
    assert counts(db)["candidates"] == 1 and counts(db)["contacts"] == 1
    assert candidate(db, "ats-7")["name"] == "Diego Morales"
    assert someone_else.status_code == 422
    assert "belongs to candidate 'ats-7'" in someone_else.text
    assert counts(db)["candidates"] == 1 and counts(db)["applications"] == 1


def test_bad_rows_are_reported_by_line_and_column_and_the_rest_is_imported(db: DB, tmp_path):
    future = (datetime.now(UTC) + timedelta(days=3)).isoformat()
    source = write(
        tmp_path / "pool.csv",
        HEADER + ",City",
        "c-1,Ana Ruiz,+52 55 5555 0301,ana@example.com,es,America/Mexico_City,web,"
        "2026-01-01T10:00:00-06:00,vac-1,applied,CDMX",
        "c-2,Bruno Díaz,55 12,bruno@example,es,Mars/Olympus,,,,,",
        '"c-3","Carla ""La Jefa"" Peña",+57 310 555 0303,,es-CO,America/Bogota,web,'
        '"2026-02-30",vac-1,,"Bogotá,\nD.C."',
        "c-4,,+34 600 555 304,,,,,,,,",  # line 6: line 4's quoted city spans two lines
        "c-5,Diana Gil,,,,,,,,interview,",
        "c-6,Elena Sanz,+34 600 555 306,,klingon!,,web,,,,Madrid,extra",
        "c-7,Félix Mora,+52 55 5555 0301,,,,,,,,",  # Ana's number
        f"c-8,Gloria Paz,+34 600 555 308,,,,web,{future},,,",
        "c-9,Héctor Gómez,+34 600 555 309,,,Europe/Madrid,,,,,Sevilla",
    )
    errors = tmp_path / "errors.csv"
    result = traza(source, "--errors", errors)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert summary(result.stdout) == {"created": 2, "updated": 0, "unchanged": 0, "failed": 7}

    expected = [
        ["line", "column", "message"],
        ["3", "phone", "not a phone number with its country code (like +52 55 1234 5678)"],
        ["3", "email", "not an e-mail address"],
        ["3", "timezone", "not an IANA time zone (like America/Mexico_City or Europe/Madrid)"],
        ["4", "consent_at", "not an ISO 8601 date and time (like 2026-03-01T09:00:00-06:00)"],
        ["6", "name", "is empty: every candidate needs a name"],
        ["7", "phone", "a candidate needs a phone, a wa_id or an e-mail"],
        ["7", "stage", "a stage needs a vacancy"],
        ["8", "", "12 values, but the header has 11 columns"],
        ["9", "phone", "another candidate (external_id 'c-1') has this number"],
        ["10", "consent_at", "is in the future"],
    ]
    with errors.open(encoding="utf-8", newline="") as f:
        assert list(csv.reader(f)) == expected
    for line, column, message in expected[1:]:
        where = f"line {line}, {column}" if column else f"line {line}"
        assert f"{where}: {message}" in result.stderr

    imported = db.execute("SELECT external_id, profile FROM candidates ORDER BY id").fetchall()
    assert [(r["external_id"], r["profile"]) for r in imported] == [
        ("c-1", {"city": "CDMX"}),
        ("c-9", {"city": "Sevilla"}),
    ]
    assert counts(db)["applications"] == 1


def test_a_row_the_database_refuses_fails_alone(db: DB, tmp_path):
    """A state the checks cannot see (a contact already linked elsewhere): only that row fails."""
    db.execute("INSERT INTO contacts (wa_id) VALUES ('525555550401')")
    db.execute(
        "INSERT INTO candidates (name, email, contact_id) "
        "SELECT 'Otra Persona', 'otra@example.com', id FROM contacts"
    )
    source = write(
        tmp_path / "pool.csv",
        "external_id,name,phone",
        "r-1,Irene Vidal,+52 55 5555 0400",
        "r-2,Jaime Rubio,+52 55 5555 0401",
        "r-3,Karla Núñez,+52 55 5555 0402",
    )
    result = traza(source)
    assert result.returncode == 1
    assert "line 3: the database refused this row" in result.stderr
    assert summary(result.stdout) == {"created": 2, "updated": 0, "unchanged": 0, "failed": 1}
    names = db.execute("SELECT external_id FROM candidates ORDER BY id").fetchall()
    assert [n["external_id"] for n in names] == [None, "r-1", "r-3"]


def test_dry_run_checks_and_counts_but_changes_nothing(db: DB, tmp_path):
    result = traza(EXAMPLE, "--dry-run")
    assert result.returncode == 0, result.stderr
    assert summary(result.stdout)["created"] == 8
    assert "vacancies would be created for: vac-almacen, vac-backend" in result.stdout
    assert "dry run: nothing was changed" in result.stdout
    assert all(n == 0 for n in counts(db).values())
    assert db.execute("SELECT count(*) AS n FROM trace_events").fetchone()["n"] == 0

    assert traza(EXAMPLE).returncode == 0
    before = counts(db)
    edited = tmp_path / "pool.csv"
    edited.write_text(
        EXAMPLE.read_text(encoding="utf-8").replace("Ciudad de México", "Puebla")
        + "cand-2001,Nueva Persona,+52 55 5555 0999,,,,,,,,,,\n",
        encoding="utf-8",
    )
    result = traza(edited, "--dry-run")
    assert result.returncode == 0, result.stderr
    assert summary(result.stdout) == {"created": 1, "updated": 1, "unchanged": 7, "failed": 0}
    assert counts(db) == before
    assert candidate(db, "cand-1001")["profile"]["city"] == "Ciudad de México"


def test_another_delimiter_and_encoding_and_headers_as_people_write_them(db: DB, tmp_path):
    source = write(
        tmp_path / "pool.csv",
        "Name;Phone;TimeZone;Años de experiencia;",
        "Núria Puig;+34 611 555 501;Europe/Madrid;8;",
        encoding="cp1252",
    )
    result = traza(source, "--delimiter", ";", "--encoding", "cp1252")
    assert result.returncode == 0, result.stderr
    row = db.execute("SELECT name, wa_id, timezone, profile FROM candidates").fetchone()
    assert row == {
        "name": "Núria Puig",
        "wa_id": "34611555501",
        "timezone": "Europe/Madrid",
        "profile": {"anos_de_experiencia": "8"},
    }


def test_a_file_that_cannot_be_used_stops_with_exit_2_and_changes_nothing(db: DB, tmp_path):
    latin = tmp_path / "latin.csv"
    latin.write_bytes(
        ("name,phone\n" + "Ana,+525555550101\n" * 3 + "Núria,+34611555501\n").encode("cp1252")
    )
    cases: list[tuple[list[str | Path], str]] = [
        ([latin], "line 5"),
        ([tmp_path / "nope.csv"], "no such file"),
        ([write(tmp_path / "a.csv", "nombre,telefono", "Ana,+525555550101")], "no 'name' column"),
        ([write(tmp_path / "b.csv", "name,city", "Ana,CDMX")], "'phone', 'wa_id' or 'email'"),
        ([write(tmp_path / "c.csv", "name;phone", "Ana;+525555550101")], "--delimiter ';'"),
        ([write(tmp_path / "d.csv", "name,phone,id", "Ana,+525555550101,7")], "'id' cannot"),
        ([write(tmp_path / "e.csv", "name,phone,phone", "Ana,1,2")], "'phone' twice"),
        ([write(tmp_path / "f.csv", "name,phone,2024", "Ana,1,2")], "profile field"),
        ([write(tmp_path / "h.csv", "name,,phone", "Ana,1,2")], "column 2 of the header"),
        ([write(tmp_path / "g.csv", "")], "empty"),
        ([tmp_path], "is a folder"),
        ([EXAMPLE, "--encoding", "klingon"], "unknown encoding"),
        ([EXAMPLE, "--errors", EXAMPLE], "must not be the file"),
        ([EXAMPLE, "--delimiter", "||"], "one character"),
    ]
    # In-process (the file is refused before any database work), then one as a user runs it.
    from typer.testing import CliRunner

    from traza.cli import cli

    runner = CliRunner()
    for args, message in cases:
        ran = runner.invoke(cli, ["candidates", "import", *map(str, args)])
        assert ran.exit_code == 2, (args, ran.stdout, ran.stderr, ran.exception)
        lines = [line for line in ran.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error: "), (args, ran.stderr)
        assert message in lines[0], (args, ran.stderr)
    result = traza(latin)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert errors == [
        "error: latin.csv is not UTF-8 text (line 5, byte 66): give its encoding with "
        "--encoding (for example cp1252 or latin-1)"
    ]
    assert all(n == 0 for n in counts(db).values())


def test_the_readme_documents_every_column_and_option():
    import typer.main

    from traza.cli import cli
    from traza.recruiting.importer import BATCH, COLUMNS, SHOWN_ERRORS

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("### Importing a talent pool", 1)[1].split("\n## ", 1)[0]
    for column in COLUMNS:
        assert f"| `{column}`" in section or f", `{column}` |" in section, column
    group = typer.main.get_command(cli).commands["candidates"]  # type: ignore[attr-defined]
    command = group.commands["import"]
    options = {o for p in command.params for o in p.opts if o.startswith("--")}
    for option in options - {"--help"}:
        assert f"| `{option}" in section, option
    assert {p.name: p.default for p in command.params}["batch_size"] == BATCH
    assert f"written {BATCH} per transaction" in section
    assert f"the first {SHOWN_ERRORS} are printed" in section
