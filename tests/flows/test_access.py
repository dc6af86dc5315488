"""Who may do what: agents and API keys, 401s, roles, team scoping, agents vs supervisors, CLI.

Every refusal on a conversation is a 403 recorded in its trace as `access.denied` (actor
`human:<name>`, data.path) and leaves the handoff, notes and messages untouched.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
from typing import Any

import httpx
import psycopg
import pytest

from tests.support import ADMIN, add_agent, add_team, drain, say, traza_cli, use_rules

DB = psycopg.Connection[Any]

RULES = """
routing:
  - name: prices
    when: {keywords: [precio]}
    team: sales
    reason: pricing question
  - name: invoices
    when: {keywords: [factura]}
    team: support
    reason: invoice question
"""

SALES_WA = "5215550000001"
BOT_WA = "5215550000002"
SUPPORT_WA = "5215550000003"


async def teams_and_rules(client: httpx.AsyncClient) -> None:
    """Teams `sales` and `support`, then the rules routing to them (rules need the teams)."""
    await add_team(client, "sales")
    await add_team(client, "support")
    use_rules(RULES)


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def me(client: httpx.AsyncClient, headers: dict[str, str]) -> dict[str, Any]:
    response = await client.get("/me", headers=headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def conversation_of(client: httpx.AsyncClient, wa_id: str) -> dict[str, Any]:
    found = (await client.get("/conversations", params={"wa_id": wa_id}, headers=ADMIN)).json()
    assert len(found) == 1, found
    conversation: dict[str, Any] = found[0]
    return conversation


def handoff_row(db: DB, conversation_id: int) -> dict[str, Any]:
    row = db.execute(
        "SELECT id, status, team, assigned_agent, accepted_at, closed_at, closed_by "
        "FROM handoffs WHERE conversation_id = %s ORDER BY id DESC LIMIT 1",
        (conversation_id,),
    ).fetchone()
    assert row is not None, f"no handoff for conversation {conversation_id}"
    return dict(row)


def denied(db: DB, conversation_id: int) -> list[dict[str, Any]]:
    return [
        dict(r)
        for r in db.execute(
            "SELECT actor, data FROM trace_events WHERE kind = 'access.denied' "
            "AND conversation_id = %s ORDER BY id",
            (conversation_id,),
        ).fetchall()
    ]


def outbound(db: DB, conversation_id: int) -> list[dict[str, Any]]:
    return [
        dict(r)
        for r in db.execute(
            "SELECT actor, text, content FROM messages WHERE direction = 'out' "
            "AND conversation_id = %s ORDER BY id",
            (conversation_id,),
        ).fetchall()
    ]


# --- 1. agents and keys through the API ------------------------------------------------------


async def test_admin_creates_an_agent_whose_key_is_shown_once_and_stored_hashed(
    client: httpx.AsyncClient, db: DB
) -> None:
    created = await client.post(
        "/agents",
        json={"name": "ana", "teams": ["general"], "role": "agent", "capacity": 3},
        headers=ADMIN,
    )
    assert created.status_code == 201, created.text
    body = created.json()
    key = body["api_key"]
    assert re.fullmatch(r"trz_[0-9a-f]{8}_\S{20,}", key), key
    assert (body["name"], body["role"], body["teams"], body["capacity"]) == (
        "ana",
        "agent",
        ["general"],
        3,
    )
    assert body["disabled"] is False

    # Never shown again: not in the list, not in the agent's own view.
    listed = await client.get("/agents", headers=ADMIN)
    assert listed.status_code == 200
    assert [a["name"] for a in listed.json()] == ["ana"]
    assert all("api_key" not in a for a in listed.json())
    assert key not in listed.text and key.split("_", 2)[2] not in listed.text
    one = await client.get(f"/agents/{body['id']}", headers=ADMIN)
    assert one.status_code == 200 and "api_key" not in one.json() and key not in one.text

    # Stored as a SHA-256 hex digest of the whole key, never the key or its secret part.
    rows = db.execute(
        "SELECT prefix, key_hash FROM api_keys WHERE agent_id = %s", (body["id"],)
    ).fetchall()
    assert len(rows) == 1
    stored = rows[0]
    assert stored["key_hash"] != key
    assert re.fullmatch(r"[0-9a-f]{64}", stored["key_hash"])
    assert stored["key_hash"] == hashlib.sha256(key.encode()).hexdigest()
    assert stored["prefix"] == key.split("_")[1]
    secret = key.split("_", 2)[2]
    assert secret not in stored["key_hash"] and secret not in stored["prefix"]

    # The key authenticates as that agent; the bootstrap admin key is nobody.
    who = await me(client, bearer(key))
    assert (who["id"], who["name"], who["role"], who["teams"]) == (
        body["id"],
        "ana",
        "agent",
        ["general"],
    )
    assert "api_key" not in who
    admin_me = await client.get("/me", headers=ADMIN)
    assert admin_me.status_code == 200 and admin_me.json() is None


async def test_agent_creation_is_refused_with_a_clear_reason(
    client: httpx.AsyncClient, db: DB
) -> None:
    await add_agent(client, "ana")

    duplicate = await client.post("/agents", json={"name": "ana"}, headers=ADMIN)
    assert duplicate.status_code == 422
    assert duplicate.json()["detail"] == "agent 'ana' already exists"

    unknown = await client.post(
        "/agents", json={"name": "beto", "teams": ["general", "ventas"]}, headers=ADMIN
    )
    assert unknown.status_code == 422
    detail = unknown.json()["detail"]
    assert isinstance(detail, str) and "unknown team" in detail and "ventas" in detail
    assert "general" not in detail  # only the missing team is named

    bad_role = await client.post("/agents", json={"name": "beto", "role": "boss"}, headers=ADMIN)
    assert bad_role.status_code == 422
    assert "role" in bad_role.text

    # Nothing half-created: one agent, one key.
    assert [r["name"] for r in db.execute("SELECT name FROM agents").fetchall()] == ["ana"]
    assert db.execute("SELECT count(*) AS n FROM api_keys").fetchone() == {"n": 1}
    assert db.execute("SELECT count(*) AS n FROM agent_teams").fetchone() == {"n": 1}


async def test_a_second_key_works_revoking_one_stops_it_at_once_and_disabling_stops_all(
    client: httpx.AsyncClient, db: DB
) -> None:
    first = await add_agent(client, "ana")
    agent_id = (await me(client, first))["id"]

    issued = await client.post(f"/agents/{agent_id}/keys", headers=ADMIN)
    assert issued.status_code == 201, issued.text
    second_key = issued.json()["api_key"]
    second = bearer(second_key)
    assert issued.json()["agent"] == "ana"
    assert issued.json()["prefix"] == second_key.split("_")[1]
    assert second != first
    assert (await me(client, first))["name"] == "ana"
    assert (await me(client, second))["name"] == "ana"

    first_prefix = first["Authorization"].removeprefix("Bearer ").split("_")[1]
    revoked = await client.delete(f"/keys/{first_prefix}", headers=ADMIN)
    assert revoked.status_code == 204, revoked.text
    gone = await client.get("/me", headers=first)
    assert gone.status_code == 401
    assert gone.headers["WWW-Authenticate"] == "Bearer"
    assert (await client.get("/handoffs", headers=first)).status_code == 401
    assert (await me(client, second))["name"] == "ana"
    assert (await client.delete(f"/keys/{first_prefix}", headers=ADMIN)).status_code == 404
    row = db.execute(
        "SELECT revoked_at FROM api_keys WHERE prefix = %s", (first_prefix,)
    ).fetchone()
    assert row is not None and row["revoked_at"] is not None

    disabled = await client.patch(f"/agents/{agent_id}", json={"disabled": True}, headers=ADMIN)
    assert disabled.status_code == 200 and disabled.json()["disabled"] is True
    assert (await client.get("/me", headers=second)).status_code == 401
    assert (await client.get("/conversations", headers=second)).status_code == 401

    enabled = await client.patch(f"/agents/{agent_id}", json={"disabled": False}, headers=ADMIN)
    assert enabled.status_code == 200 and enabled.json()["disabled"] is False
    assert (await me(client, second))["name"] == "ana"
    assert (await client.get("/me", headers=first)).status_code == 401  # still revoked


# --- 2. 401 without a valid key --------------------------------------------------------------

GUARDED = [
    ("GET", "/conversations"),
    ("GET", "/handoffs"),
    ("GET", "/agents"),
    ("GET", "/rules"),
    ("GET", "/teams"),
    ("GET", "/me"),
]


async def test_every_operator_endpoint_needs_a_valid_key(client: httpx.AsyncClient, db: DB) -> None:
    real = await add_agent(client, "ana")
    prefix = real["Authorization"].removeprefix("Bearer ").split("_")[1]
    bad_headers: dict[str, dict[str, str]] = {
        "no header": {},
        "no scheme": {"Authorization": "test-admin-key"},
        "basic scheme": {"Authorization": "Basic dGVzdC1hZG1pbi1rZXk="},
        "empty bearer": {"Authorization": "Bearer "},
        "unknown trz key": bearer("trz_deadbeef_" + "A" * 32),
        "real prefix, wrong secret": bearer(f"trz_{prefix}_" + "B" * 32),
        "admin key with a suffix": bearer("test-admin-key-x"),
        "random string": bearer("not-a-key-at-all"),
    }
    for method, path in GUARDED:
        for label, headers in bad_headers.items():
            response = await client.request(method, path, headers=headers)
            assert response.status_code == 401, (method, path, label, response.text)
            assert response.headers.get("WWW-Authenticate") == "Bearer", (path, label)
        assert (await client.request(method, path, headers=real)).status_code in (200, 403)
        assert (await client.request(method, path, headers=ADMIN)).status_code == 200

    # Writes without a key change nothing.
    for label, headers in bad_headers.items():
        team = await client.post("/teams", json={"name": "intrusos"}, headers=headers)
        agent = await client.post("/agents", json={"name": "mallory"}, headers=headers)
        assert (team.status_code, agent.status_code) == (401, 401), label
    assert db.execute("SELECT count(*) AS n FROM teams WHERE name = 'intrusos'").fetchone() == {
        "n": 0
    }
    assert db.execute("SELECT count(*) AS n FROM agents").fetchone() == {"n": 1}


# --- 3. roles --------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["agent", "supervisor"])
async def test_only_admins_administer(client: httpx.AsyncClient, db: DB, role: str) -> None:
    caller = await add_agent(client, "ana", role=role)
    other = await client.post("/agents", json={"name": "beto"}, headers=ADMIN)
    assert other.status_code == 201
    other_id, other_prefix = other.json()["id"], other.json()["api_key"].split("_")[1]
    own_id = (await me(client, caller))["id"]

    attempts = [
        ("POST", "/agents", {"name": "mallory", "role": "admin"}),
        ("POST", "/teams", {"name": "intrusos"}),
        ("POST", "/rules/reload", None),
        ("GET", "/agents", None),
        ("GET", f"/agents/{other_id}", None),
        ("PATCH", f"/agents/{own_id}", {"role": "admin"}),
        ("PATCH", f"/agents/{other_id}", {"disabled": True}),
        ("POST", f"/agents/{own_id}/keys", None),
        ("DELETE", f"/keys/{other_prefix}", None),
    ]
    for method, path, body in attempts:
        response = await client.request(method, path, json=body, headers=caller)
        assert response.status_code == 403, (method, path, response.text)
        assert response.json()["detail"] == "needs role admin"

    agents = {
        r["name"]: r for r in db.execute("SELECT name, role, disabled_at FROM agents").fetchall()
    }
    assert set(agents) == {"ana", "beto"}
    assert agents["ana"]["role"] == role and agents["beto"]["disabled_at"] is None
    assert db.execute("SELECT count(*) AS n FROM teams WHERE name = 'intrusos'").fetchone() == {
        "n": 0
    }
    keys = db.execute("SELECT count(*) AS n FROM api_keys WHERE revoked_at IS NULL").fetchone()
    assert keys == {"n": 2}
    # What they may do: see themselves and their own teams.
    assert (await me(client, caller))["role"] == role
    teams = await client.get("/teams", headers=caller)
    assert teams.status_code == 200 and [t["name"] for t in teams.json()] == ["general"]


# --- 4. team scoping on a real handoff -------------------------------------------------------


async def test_agents_act_only_on_their_teams_conversations(
    client: httpx.AsyncClient, db: DB
) -> None:
    await teams_and_rules(client)
    a = await add_agent(client, "A", teams=["sales"])
    b = await add_agent(client, "B", teams=["support"])

    await say(client, "Hola, ¿qué precio tiene el plan?", wa_id=SALES_WA)
    sales = await conversation_of(client, SALES_WA)
    cid = sales["id"]
    assert sales["team"] == "sales" and sales["owner"] == "human"
    before = handoff_row(db, cid)
    assert before["team"] == "sales"
    assert (before["status"], before["assigned_agent"]) == ("assigned", "A")
    hid = before["id"]
    messages_before = outbound(db, cid)

    # B (support) is refused everything on the sales conversation, each refusal recorded.
    attempts = [
        ("GET", f"/conversations/{cid}", None),
        ("GET", f"/conversations/{cid}/timeline", None),
        ("GET", f"/conversations/{cid}/messages", None),
        ("POST", f"/conversations/{cid}/resume", {"type": "response", "args": "Soy B"}),
        ("POST", f"/handoffs/{hid}/claim", None),
        ("POST", f"/handoffs/{hid}/transfer", {"agent": "B", "note": "me lo quedo"}),
        ("POST", f"/handoffs/{hid}/resolve", None),
        ("POST", f"/conversations/{cid}/notes", {"body": "nota de B"}),
    ]
    for method, path, body in attempts:
        response = await client.request(method, path, json=body, headers=b)
        assert response.status_code == 403, (method, path, response.text)
        assert "sales" in response.json()["detail"]
    events = denied(db, cid)
    assert [e["actor"] for e in events] == ["human:B"] * len(attempts)
    assert [(e["data"]["method"], e["data"]["path"]) for e in events] == [
        (m, p) for m, p, _ in attempts
    ]
    assert all("sales" in e["data"]["reason"] for e in events)

    # Nothing changed: same handoff, no note, no message from B.
    assert handoff_row(db, cid) == before
    assert await conversation_of(client, SALES_WA) == sales
    assert db.execute("SELECT count(*) AS n FROM notes").fetchone() == {"n": 0}
    assert outbound(db, cid) == messages_before
    assert not [m for m in outbound(db, cid) if m["actor"] == "human:B"]

    # Lists: B does not see it, A does, admin sees all.
    await say(client, "Tengo un problema con mi factura", wa_id=SUPPORT_WA)
    support_cid = (await conversation_of(client, SUPPORT_WA))["id"]
    await say(client, "hola", wa_id=BOT_WA)
    bot_only = await conversation_of(client, BOT_WA)
    assert bot_only["team"] is None and bot_only["owner"] == "bot"

    def ids(response: httpx.Response, field: str = "id") -> set[int]:
        assert response.status_code == 200, response.text
        return {item[field] for item in response.json()}

    assert ids(await client.get("/conversations", headers=b)) == {support_cid}
    assert ids(await client.get("/conversations", headers=a)) == {cid}
    assert ids(await client.get("/conversations", headers=ADMIN)) == {
        cid,
        support_cid,
        bot_only["id"],
    }
    assert ids(await client.get("/conversations", params={"team": "sales"}, headers=b)) == set()
    assert ids(await client.get("/handoffs", headers=b), "conversation_id") == {support_cid}
    assert ids(await client.get("/handoffs", headers=a), "conversation_id") == {cid}
    assert ids(await client.get("/handoffs", headers=ADMIN), "conversation_id") == {
        cid,
        support_cid,
    }
    assert ids(await client.get("/handoffs", params={"team": "sales"}, headers=b)) == set()

    # A conversation the bot kept has no team: no agent may open it; the admin may.
    for headers in (a, b):
        response = await client.get(f"/conversations/{bot_only['id']}", headers=headers)
        assert response.status_code == 403, response.text
        timeline = await client.get(f"/conversations/{bot_only['id']}/timeline", headers=headers)
        assert timeline.status_code == 403
    assert [e["actor"] for e in denied(db, bot_only["id"])] == 2 * ["human:A"] + 2 * ["human:B"]
    assert (await client.get(f"/conversations/{bot_only['id']}", headers=ADMIN)).status_code == 200
    admin_timeline = await client.get(f"/conversations/{bot_only['id']}/timeline", headers=ADMIN)
    assert admin_timeline.status_code == 200
    assert "access.denied" in {e["kind"] for e in admin_timeline.json()}

    # A (sales) may do all of it.
    for path in (f"/conversations/{cid}", f"/conversations/{cid}/timeline"):
        assert (await client.get(path, headers=a)).status_code == 200, path
    assert (await client.get(f"/conversations/{cid}/messages", headers=a)).status_code == 200
    claimed = await client.post(f"/handoffs/{hid}/claim", headers=a)
    assert claimed.status_code == 200, claimed.text
    assert (claimed.json()["status"], claimed.json()["assigned_agent"]) == ("accepted", "A")
    note = await client.post(f"/conversations/{cid}/notes", json={"body": "nota de A"}, headers=a)
    assert note.status_code == 201 and note.json()["author"] == "A"
    assert note.json()["handoff_id"] == hid
    answered = await client.post(
        f"/conversations/{cid}/resume", json={"type": "response", "args": "Soy A"}, headers=a
    )
    assert answered.status_code == 200, answered.text
    assert [m["text"] for m in outbound(db, cid) if m["actor"] == "human:A"] == ["Soy A"]
    moved = await client.post(
        f"/handoffs/{hid}/transfer", json={"agent": "A", "note": "sigo yo"}, headers=a
    )
    assert moved.status_code == 200, moved.text
    assert moved.json()["assigned_agent"] == "A"
    resolved = await client.post(f"/handoffs/{hid}/resolve", headers=a)
    assert resolved.status_code == 200, resolved.text
    after = handoff_row(db, cid)
    assert (after["status"], after["closed_by"]) == ("resolved", "human:A")
    assert [e["actor"] for e in denied(db, cid)] == ["human:B"] * len(attempts)  # none for A


# --- 5. agent vs supervisor on another agent's handoff ---------------------------------------


async def test_agents_cannot_take_a_colleagues_handoff_but_a_supervisor_can_move_it(
    client: httpx.AsyncClient, db: DB
) -> None:
    await teams_and_rules(client)
    a1 = await add_agent(client, "A1", teams=["sales"])
    a2 = await add_agent(client, "A2", teams=["sales"], status="offline")
    s = await add_agent(client, "S", teams=["sales"], role="supervisor", status="offline")

    await say(client, "¿Me das el precio, por favor?", wa_id=SALES_WA)
    cid = (await conversation_of(client, SALES_WA))["id"]
    before = handoff_row(db, cid)
    hid = before["id"]
    assert (before["team"], before["status"], before["assigned_agent"]) == (
        "sales",
        "assigned",
        "A1",
    )

    online = await client.put("/me/status", json={"status": "online"}, headers=a2)
    assert online.status_code == 200
    await drain()  # the assignment round A2's status change queued
    before = handoff_row(db, cid)
    assert before["assigned_agent"] == "A1"
    messages_before = outbound(db, cid)

    # A2 is in the team (may look) but may not take, close or answer A1's handoff.
    assert (await client.get(f"/handoffs/{hid}", headers=a2)).status_code == 200
    attempts = [
        ("POST", f"/handoffs/{hid}/claim", None),
        ("POST", f"/handoffs/{hid}/resolve", None),
        ("POST", f"/conversations/{cid}/resume", {"type": "response", "args": "Soy A2"}),
        ("POST", f"/handoffs/{hid}/transfer", {"agent": "A2"}),
    ]
    for method, path, body in attempts:
        response = await client.request(method, path, json=body, headers=a2)
        assert response.status_code == 403, (method, path, response.text)
        assert "assigned to A1" in response.json()["detail"]
    events = denied(db, cid)
    assert [(e["actor"], e["data"]["path"]) for e in events] == [
        ("human:A2", p) for _, p, _ in attempts
    ]
    assert all("A1" in e["data"]["reason"] for e in events)
    assert handoff_row(db, cid) == before
    assert outbound(db, cid) == messages_before

    # The supervisor moves it to A2 with an internal note.
    note = "Cliente VIP: ofrécele el descuento anual"
    moved = await client.post(
        f"/handoffs/{hid}/transfer", json={"agent": "A2", "note": note}, headers=s
    )
    assert moved.status_code == 200, moved.text
    assert (moved.json()["assigned_agent"], moved.json()["status"]) == ("A2", "assigned")
    assert handoff_row(db, cid)["assigned_agent"] == "A2"
    for headers in (s, a2, ADMIN):
        notes = await client.get(f"/handoffs/{hid}/notes", headers=headers)
        assert notes.status_code == 200
        assert [(n["author"], n["body"]) for n in notes.json()] == [("S", note)]
    transferred = db.execute(
        "SELECT actor, data FROM trace_events WHERE kind = 'handoff.transferred' "
        "AND conversation_id = %s",
        (cid,),
    ).fetchall()
    assert len(transferred) == 1 and transferred[0]["actor"] == "human:S"
    assert (transferred[0]["data"]["from_agent"], transferred[0]["data"]["to_agent"]) == (
        "A1",
        "A2",
    )

    # Now A1 is the outsider and A2 may answer and close it; the note never reaches the customer.
    for path, body in (
        (f"/handoffs/{hid}/claim", None),
        (f"/conversations/{cid}/resume", {"type": "response", "args": "Soy A1"}),
    ):
        refused = await client.post(path, json=body, headers=a1)
        assert refused.status_code == 403, (path, refused.text)
    assert [e["actor"] for e in denied(db, cid)[-2:]] == ["human:A1", "human:A1"]
    answered = await client.post(
        f"/conversations/{cid}/resume", json={"type": "response", "args": "Soy A2"}, headers=a2
    )
    assert answered.status_code == 200, answered.text
    resolved = await client.post(f"/handoffs/{hid}/resolve", headers=a2)
    assert resolved.status_code == 200, resolved.text
    assert handoff_row(db, cid)["closed_by"] == "human:A2"
    await drain()
    sent = outbound(db, cid)
    assert [m["text"] for m in sent if m["actor"].startswith("human:")] == ["Soy A2"]
    assert len(sent) > len(messages_before) + 1  # the reply and the CSAT question
    assert not [m for m in sent if note in (m["text"] or "") or note in str(m["content"] or "")]


# --- 6. the CLI ------------------------------------------------------------------------------


def traza(*args: str, database_url: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DATABASE_URL": database_url}
    env.pop("TRAZA_CONFIG_DIR", None)
    return traza_cli(*args, env=env)


async def test_cli_adds_agents_whose_keys_work_and_can_be_revoked(
    client: httpx.AsyncClient, db: DB, database_url: str
) -> None:
    # Each run migrates first (~4 s), so three runs: the team comes from the API.
    await add_team(client, "cli-team")
    added = traza(
        "agents", "add", "carla", "--team", "cli-team", "--role", "supervisor",
        database_url=database_url,
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    keys = re.findall(r"trz_[0-9a-f]{8}_\S+", added.stdout + added.stderr)
    assert len(keys) == 1, added.stdout  # printed exactly once
    key = keys[0]
    assert "shown once" in added.stdout
    who = await me(client, bearer(key))
    assert (who["name"], who["role"], who["teams"]) == ("carla", "supervisor", ["cli-team"])
    stored = db.execute("SELECT key_hash FROM api_keys").fetchone()
    assert stored is not None and stored["key_hash"] == hashlib.sha256(key.encode()).hexdigest()

    unknown = traza("agents", "add", "dario", "--team", "nope", database_url=database_url)
    assert unknown.returncode == 2
    assert "Traceback" not in unknown.stderr
    lines = [line for line in unknown.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and "nope" in lines[0], lines
    assert db.execute("SELECT count(*) AS n FROM agents WHERE name = 'dario'").fetchone() == {
        "n": 0
    }

    revoked = traza("agents", "revoke", key.split("_")[1], database_url=database_url)
    assert revoked.returncode == 0, revoked.stderr
    assert "key revoked" in revoked.stdout
    assert (await client.get("/me", headers=bearer(key))).status_code == 401
