"""Cross-team checks wherever a candidate's name appears or an ATS event writes.

Two teams, `recruiting` and `payroll`, each with its ATS (an integration key) and its
supervisor. Each integration writes its own candidate; the follow-up agent has written
to both. A team-scoped caller must see only their team's candidate by name in the
monitor (JSON, CSV, `GET /recruiting/agents/{name}`, the dashboard page), may not write
the other team's candidate, and every refusal is an `access.denied` in the trace.
"""

from __future__ import annotations

import csv
import io
import os
import tempfile
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support import ADMIN, PHONE_NUMBER_ID, add_agent, add_team, configure, traza_cli

ROOT = Path(__file__).resolve().parents[2]
MARIA = {"external_id": "cand-r1", "name": "María García", "wa_id": "5215550001111"}
PEDRO = {"external_id": "cand-p1", "name": "Pedro López", "wa_id": "5215550002222"}


def agent_folder() -> None:
    folder = Path(tempfile.mkdtemp(prefix="traza-scopes-"))
    (folder / "agents").mkdir()
    example = ROOT / "examples/config/agents/seguimiento.yaml"
    (folder / "agents" / "seguimiento.yaml").write_text(
        example.read_text(encoding="utf-8"), encoding="utf-8"
    )
    configure(TRAZA_CONFIG_DIR=str(folder))


async def integration(client: httpx.AsyncClient, name: str, *teams: str) -> dict[str, str]:
    return await add_agent(client, name, teams=list(teams), role="integration", status="offline")


def created(event_id: str, candidate: dict[str, Any], application: str, **extra: Any) -> dict:
    return {
        "id": event_id,
        "type": "application.created",
        "application_id": application,
        "agent": "seguimiento",
        "candidate": candidate,
        "vacancy": {"external_id": "vac-1", "title": "Backend"},
    } | extra


def renamed(event_id: str, external_id: str, name: str, **extra: Any) -> dict[str, Any]:
    return {
        "id": event_id,
        "type": "candidate.updated",
        "candidate": {"external_id": external_id, "name": name},
    } | extra


async def post_event(
    client: httpx.AsyncClient, headers: dict[str, str], event: dict[str, Any]
) -> httpx.Response:
    return await client.post("/recruiting/events", json=event, headers=headers)


def denials(db: Any) -> list[dict[str, Any]]:
    rows = db.execute(
        "SELECT conversation_id, actor, data FROM trace_events WHERE kind = 'access.denied' "
        "ORDER BY id"
    ).fetchall()
    return [dict(r) for r in rows]


def name_of(db: Any, external_id: str) -> str:
    row = db.execute("SELECT name FROM candidates WHERE external_id = %s", (external_id,))
    return str(row.fetchone()["name"])


@dataclass
class World:
    ats_r: dict[str, str]
    ats_p: dict[str, str]
    sup_r: dict[str, str]
    sup_p: dict[str, str]
    agent_r: dict[str, str]
    conversation_p: int


@pytest.fixture
async def world(client: httpx.AsyncClient, db: Any) -> World:
    """Each team's ATS writes its candidate; the follow-up agent wrote to both; Pedro
    (payroll) was escalated to payroll."""
    agent_folder()
    for team in ("recruiting", "payroll"):
        await add_team(client, team)
    w = World(
        ats_r=await integration(client, "ats-recruiting", "recruiting"),
        ats_p=await integration(client, "ats-payroll", "payroll"),
        sup_r=await add_agent(client, "rita", teams=["recruiting"], role="supervisor"),
        sup_p=await add_agent(client, "paco", teams=["payroll"], role="supervisor"),
        agent_r=await add_agent(client, "ramon", teams=["recruiting"]),
        conversation_p=0,
    )
    for headers, event in (
        (w.ats_r, created("ev-r1", MARIA, "app-r1")),
        (w.ats_p, created("ev-p1", PEDRO, "app-p1")),
    ):
        response = await post_event(client, headers, event)
        assert response.status_code == 200, response.text
    inbox = db.execute(
        "INSERT INTO inboxes (phone_number_id) VALUES (%s) RETURNING id", (PHONE_NUMBER_ID,)
    ).fetchone()["id"]
    fired = datetime.now(UTC) - timedelta(hours=1)
    for who in (MARIA, PEDRO):
        cand = db.execute(
            "SELECT id, contact_id FROM candidates WHERE external_id = %s", (who["external_id"],)
        ).fetchone()
        conversation = db.execute(
            "INSERT INTO conversations (inbox_id, contact_id, thread_id) VALUES (%s, %s, %s) "
            "RETURNING id",
            (inbox, cand["contact_id"], uuid.uuid4().hex),
        ).fetchone()["id"]
        message = db.execute(
            "INSERT INTO messages (conversation_id, direction, type, text, actor, status, "
            "created_at) VALUES (%s, 'out', 'text', 'x', 'bot:seguimiento', 'delivered', %s) "
            "RETURNING id",
            (conversation, fired),
        ).fetchone()["id"]
        db.execute(
            "INSERT INTO followups (key, agent, trigger, candidate_id, due_at, status, fired_at, "
            "message_id, channel) VALUES (%s, 'seguimiento', 'application_received', %s, %s, "
            "'sent', %s, %s, 'whatsapp')",
            (uuid.uuid4().hex, cand["id"], fired, fired, message),
        )
        if who is PEDRO:
            w.conversation_p = conversation
            db.execute(
                "INSERT INTO handoffs (conversation_id, status, reason, created_by, team, "
                "created_at) VALUES (%s, 'open', 'frustration', 'bot:traza', 'payroll', %s)",
                (conversation, fired + timedelta(minutes=5)),
            )
    return w


# --- the monitor: JSON, CSV, the recruiting endpoint, the dashboard page ---------------------


def named(monitor: dict[str, Any]) -> str:
    """Everything in a monitor answer that can carry a candidate's name."""
    return repr(monitor["recent_activity"]) + repr(monitor["escalated_cases"])


async def test_the_monitor_names_only_the_callers_candidates(
    client: httpx.AsyncClient, world: World
) -> None:
    for path in ("/reports/agents/seguimiento", "/recruiting/agents/seguimiento"):
        everyone = (await client.get(path, headers=ADMIN)).json()
        assert "María" in named(everyone) and "Pedro" in named(everyone)
        for headers, mine, theirs in (
            (world.sup_r, "María", "Pedro"),
            (world.agent_r, "María", "Pedro"),
            (world.sup_p, "Pedro", "María"),
        ):
            response = await client.get(path, headers=headers)
            assert response.status_code == 200, response.text
            seen = named(response.json())
            assert mine in seen and theirs not in seen, (path, seen)
            assert response.json()["messages_sent"] == 2  # counts name nobody
    lines = (await client.get("/reports/agents/seguimiento", headers=world.sup_p)).json()
    assert [a["kind"] for a in lines["recent_activity"]] == ["escalation", "followup"]
    assert [c["candidate"] for c in lines["escalated_cases"]] == ["Pedro López"]


async def test_the_monitor_csv_names_only_the_callers_candidates(
    client: httpx.AsyncClient, world: World
) -> None:
    for headers, mine, theirs in (
        (ADMIN, "María García", None),
        (world.sup_r, "María García", "Pedro López"),
        (world.sup_p, "Pedro López", "María García"),
    ):
        response = await client.get("/reports/agents/seguimiento.csv", headers=headers)
        assert response.status_code == 200, response.text
        cells = [cell for row in csv.reader(io.StringIO(response.text)) for cell in row]
        assert any(mine in cell for cell in cells)
        if theirs is not None:
            assert not any(theirs in cell or theirs[:7] in cell for cell in cells)


async def test_the_dashboard_monitor_names_only_the_callers_candidates(
    client: httpx.AsyncClient, world: World
) -> None:
    from tests.support.dashboard import key_of, login

    for headers, mine, theirs in (
        (world.sup_r, "María G.", "Pedro L."),
        (world.sup_p, "Pedro L.", "María G."),
    ):
        await login(client, key_of(headers))
        page = await client.get("/dashboard/agents/seguimiento?period=all")
        assert page.status_code == 200, page.text
        assert mine in page.text and theirs not in page.text
        cards = await client.get("/dashboard/agents")
        assert cards.status_code == 200 and theirs not in cards.text
    client.cookies.clear()


# --- ATS events: an integration key of its own, scoped to its teams -------------------------


async def test_only_integration_and_admin_keys_post_events(
    client: httpx.AsyncClient, db: Any, world: World
) -> None:
    before = len(denials(db))
    for headers in (world.sup_r, world.sup_p, world.agent_r):
        response = await post_event(client, headers, renamed("ev-x", "cand-p1", "Hacked"))
        assert response.status_code == 403, response.text
        assert "integration" in response.json()["detail"]
    assert name_of(db, "cand-p1") == "Pedro López"
    recorded = denials(db)[before:]
    assert [d["actor"] for d in recorded] == ["human:rita", "human:paco", "human:ramon"]
    assert all(d["data"]["path"] == "/recruiting/events" for d in recorded)
    ok = await post_event(client, ADMIN, renamed("ev-admin", "cand-p1", "Pedro López R."))
    assert ok.status_code == 200 and ok.json()["status"] == "applied"


async def test_an_integration_cannot_write_another_teams_candidate(
    client: httpx.AsyncClient, db: Any, world: World
) -> None:
    attempts = [
        renamed("ev-r2", "cand-p1", "Hacked"),  # rename Pedro
        {
            "id": "ev-r3",
            "type": "application.stage_changed",
            "application_id": "app-p1",
            "stage": "rejected",
        },
        created(
            "ev-r4", {"external_id": "cand-new", "wa_id": PEDRO["wa_id"], "name": "X"}, "app-r9"
        ),  # Pedro again, by his number
        created("ev-p1", PEDRO, "app-p1"),  # payroll's own event id, replayed
        renamed("ev-r5", "cand-r1", "María", team="payroll"),  # into a team it does not write
    ]
    before = len(denials(db))
    for event in attempts:
        response = await post_event(client, world.ats_r, event)
        assert response.status_code == 403, (event["id"], response.text)
        assert isinstance(response.json()["detail"], str)
    assert name_of(db, "cand-p1") == "Pedro López"
    stage = db.execute("SELECT stage FROM applications WHERE external_id = 'app-p1'").fetchone()
    assert stage["stage"] == "applied"
    assert db.execute("SELECT count(*) AS n FROM candidates").fetchone()["n"] == 2
    recorded = denials(db)[before:]
    assert len(recorded) == len(attempts)
    assert {d["actor"] for d in recorded} == {"system:ats-recruiting"}
    # Pedro's denials are written to his conversation's trace.
    assert recorded[0]["conversation_id"] == world.conversation_p
    stored = db.execute("SELECT count(*) AS n FROM recruiting_events").fetchone()["n"]
    assert stored == 2  # nothing refused was stored as seen

    mine = await post_event(client, world.ats_r, renamed("ev-r6", "cand-r1", "María G. Ruiz"))
    assert mine.status_code == 200, mine.text
    assert name_of(db, "cand-r1") == "María G. Ruiz"


async def test_new_candidates_belong_to_the_team_that_wrote_them(
    client: httpx.AsyncClient, db: Any, world: World
) -> None:
    rows = db.execute("SELECT external_id, team FROM candidates").fetchall()
    teams = {r["external_id"]: r["team"] for r in rows}
    assert teams == {"cand-r1": "recruiting", "cand-p1": "payroll"}

    # A candidate nobody owns yet (imported, or written by the admin key) is claimed by
    # the first integration that writes them; from then on only that team may.
    admin = await post_event(
        client, ADMIN, created("ev-a1", {"external_id": "cand-a", "name": "Ana Martín"}, "app-a")
    )
    assert admin.status_code == 200, admin.text
    claim = await post_event(client, world.ats_p, renamed("ev-p2", "cand-a", "Ana Martín P."))
    assert claim.status_code == 200, claim.text
    owner = db.execute("SELECT team FROM candidates WHERE external_id = 'cand-a'").fetchone()
    assert owner["team"] == "payroll"
    refused = await post_event(client, world.ats_r, renamed("ev-r7", "cand-a", "Ana"))
    assert refused.status_code == 403

    # An unowned candidate whose conversation went to a team belongs to that team.
    db.execute("UPDATE candidates SET team = NULL WHERE external_id = 'cand-p1'")
    db.execute("UPDATE conversations SET team = 'payroll' WHERE id = %s", (world.conversation_p,))
    derived = await post_event(client, world.ats_r, renamed("ev-r8", "cand-p1", "Hacked"))
    assert derived.status_code == 403
    assert name_of(db, "cand-p1") == "Pedro López"

    # A key writing for several teams names the candidate's team.
    both = await integration(client, "ats-both", "recruiting", "payroll")
    vague = await post_event(
        client, both, created("ev-b1", {"external_id": "cand-b", "name": "Bea"}, "app-b")
    )
    assert vague.status_code == 422 and "'team'" in vague.json()["detail"]
    precise = await post_event(
        client,
        both,
        created("ev-b1", {"external_id": "cand-b", "name": "Bea"}, "app-b", team="payroll"),
    )
    assert precise.status_code == 200, precise.text
    unknown = await post_event(client, ADMIN, renamed("ev-a2", "cand-b", "Bea", team="sales"))
    assert unknown.status_code == 422 and "sales" in unknown.json()["detail"]


async def test_an_integration_key_is_good_for_events_only(
    client: httpx.AsyncClient, db: Any, world: World
) -> None:
    before = len(denials(db))
    calls = [
        ("GET", "/conversations", None),
        ("GET", "/handoffs", None),
        ("GET", "/reports/agents/seguimiento", None),
        ("GET", "/reports/agents/seguimiento.csv", None),
        ("GET", "/recruiting/agents/seguimiento", None),
        ("GET", "/teams", None),
        ("GET", "/me", None),
        ("PUT", "/me/status", {"status": "online"}),
        ("GET", "/agents", None),
    ]
    for method, path, body in calls:
        response = await client.request(method, path, json=body, headers=world.ats_r)
        assert response.status_code == 403, (path, response.text)
        assert "integration" in response.json()["detail"]
    assert len(denials(db)) - before == len(calls)

    from tests.support.dashboard import key_of, login

    refused = await login(client, key_of(world.ats_r))
    assert refused.status_code == 401  # no dashboard session for a system's key
    client.cookies.clear()

    agent_id = db.execute("SELECT id FROM agents WHERE name = 'ats-recruiting'").fetchone()["id"]
    for change in ({"status": "online"}, {"capacity": 3}, {"role": "supervisor"}, {"teams": []}):
        response = await client.patch(f"/agents/{agent_id}", json=change, headers=ADMIN)
        assert response.status_code == 422, (change, response.text)
    person = db.execute("SELECT id FROM agents WHERE name = 'rita'").fetchone()["id"]
    response = await client.patch(f"/agents/{person}", json={"role": "integration"}, headers=ADMIN)
    assert response.status_code == 422
    no_team = await client.post(
        "/agents", json={"name": "ats-x", "teams": [], "role": "integration"}, headers=ADMIN
    )
    assert no_team.status_code == 422


async def test_other_role_refusals_are_recorded(
    client: httpx.AsyncClient, db: Any, world: World
) -> None:
    before = len(denials(db))
    for path in ("/agents", "/agents/1"):
        response = await client.get(path, headers=world.sup_r)
        assert response.status_code == 403
    recorded = denials(db)[before:]
    assert [d["data"]["reason"] for d in recorded] == ["needs role admin"] * 2


async def test_cli_adds_an_integration_key(
    client: httpx.AsyncClient, db: Any, database_url: str
) -> None:
    await add_team(client, "recruiting")
    env = {**os.environ, "DATABASE_URL": database_url}
    env.pop("TRAZA_CONFIG_DIR", None)
    added = traza_cli(
        "agents", "add", "ats", "--role", "integration", "--team", "recruiting", env=env
    )
    assert added.returncode == 0, added.stderr
    assert "ats added (integration, teams: recruiting)" in added.stdout
    key = added.stdout.split("store it now): ")[1].split()[0]
    headers = {"Authorization": f"Bearer {key}"}
    event = created("ev-cli", MARIA, "app-cli")
    assert (await post_event(client, headers, event)).status_code == 200
    assert (await client.get("/conversations", headers=headers)).status_code == 403
