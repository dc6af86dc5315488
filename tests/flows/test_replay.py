"""Replay: today's graph over past messages, side by side, with nothing sent or written."""

from __future__ import annotations

import json
import os
from typing import Any

import httpx
import psycopg

from tests.fakes.servers import GraphAPI
from tests.support import (
    ADMIN,
    add_agent,
    add_team,
    drain,
    post_webhook,
    say,
    text_message,
    traza_cli,
    use_rules,
    wa_payload,
)

WA = "5215550001111"
SALARY_TO_SALES = """\
routing:
  - name: salary-sales
    when: {intents: [salary]}
    team: sales
    reason: salary question
"""
GREETINGS_TO_SALES = """\
  - name: greetings-sales
    when: {keywords: [hola]}
    team: sales
    reason: greetings go to sales
"""
COUNTED = (
    "messages",
    "trace_events",
    "handoffs",
    "checkpoints",
    "checkpoint_writes",
    "procrastinate_jobs",
    "contacts",
    "conversations",
)


def counts(db: psycopg.Connection[Any]) -> dict[str, int]:
    out = {}
    for table in COUNTED:
        row = db.execute(f"SELECT count(*) AS n FROM {table}").fetchone()  # noqa: S608
        assert row is not None
        out[table] = row["n"]
    return out


def snapshot(db: psycopg.Connection[Any]) -> list[Any]:
    return db.execute(
        "SELECT c.owner, c.team, ct.opted_out_at, "
        "(SELECT max(id) FROM trace_events), (SELECT max(id) FROM messages) "
        "FROM conversations c JOIN contacts ct ON ct.id = c.contact_id ORDER BY c.id"
    ).fetchall()


async def conversation_id(client: httpx.AsyncClient) -> int:
    response = await client.get("/conversations", params={"wa_id": WA}, headers=ADMIN)
    [conversation] = response.json()
    return int(conversation["id"])


async def test_replay_with_unchanged_rules_reproduces_every_decision(
    client: httpx.AsyncClient, graph_api: GraphAPI, db: psycopg.Connection[Any]
) -> None:
    await say(client, "Hola, buenos días")
    await say(client, "¿Cuál es el horario de atención?")
    cid = await conversation_id(client)
    before, sent = counts(db), len(graph_api.requests)

    response = await client.post(f"/conversations/{cid}/replay", headers=ADMIN)

    assert response.status_code == 200, response.text
    result = response.json()
    assert [t["differs"] for t in result["turns"]] == [[], []]
    first = result["turns"][0]
    assert first["recorded"]["intent"] == first["replayed"]["intent"] == "greeting"
    # Which judgment model decided then, and which decides today.
    assert first["recorded"]["model"].startswith("judgment-")
    assert first["replayed"]["model"] == first["recorded"]["model"]
    assert first["replayed"]["reply"] and first["replayed"]["reply"] == first["recorded"]["reply"]
    assert first["replayed"]["route"]["route"] == "bot"
    assert counts(db) == before and len(graph_api.requests) == sent


async def test_replay_feeds_each_turn_what_it_saw_after_name_and_record_changed(
    client: httpx.AsyncClient, graph_api: GraphAPI, db: psycopg.Connection[Any]
) -> None:
    await say(client, "Hola, buenos días")
    contact = db.execute("SELECT id FROM contacts WHERE wa_id = %s", (WA,)).fetchone()["id"]
    db.execute(
        "INSERT INTO candidates (contact_id, name, wa_id, email) "
        "VALUES (%s, 'María G.', %s, 'maria@example.com')",
        (contact, WA),
    )
    await say(client, "Gracias")
    # Since then: a new WhatsApp profile name, the ATS renamed the candidate, and another
    # candidate called María G. joined the pool.
    db.execute("UPDATE contacts SET profile_name = 'Mariana' WHERE id = %s", (contact,))
    db.execute("UPDATE candidates SET name = 'Mariana Gómez' WHERE contact_id = %s", (contact,))
    db.execute("INSERT INTO candidates (name, email) VALUES ('María G.', 'otra@example.com')")
    renamed = wa_payload(
        messages=[text_message("Hola de nuevo", wa_id=WA)],
        contacts=[{"profile": {"name": "Mariana"}, "wa_id": WA}],
    )
    assert (await post_webhook(client, renamed)).status_code == 200
    await drain()
    cid = await conversation_id(client)

    response = await client.post(f"/conversations/{cid}/replay", headers=ADMIN)

    assert response.status_code == 200, response.text
    turns = response.json()["turns"]
    assert [t["differs"] for t in turns] == [[], [], []]
    replies = [t["replayed"]["reply"] for t in turns]
    assert "María G." in replies[0] and "María G." in replies[1] and "Mariana" in replies[2]
    assert all(t["replayed"]["guardrail"] == t["recorded"]["guardrail"] for t in turns)
    # What each turn read is in its `turn.started` event.
    inputs = [
        r["inputs"]
        for r in db.execute(
            "SELECT data->'inputs' AS inputs FROM trace_events WHERE kind = 'turn.started' "
            "ORDER BY id"
        )
    ]
    assert [i["contact_name"] for i in inputs] == ["María G.", "María G.", "Mariana"]
    assert inputs[0]["candidate"] is None
    assert inputs[1]["candidate"]["name"] == "María G."
    assert inputs[2]["recent"] and inputs[2]["candidate"]["name"] == "Mariana Gómez"


async def test_a_rules_change_shows_as_a_difference_and_nothing_is_sent_or_changed(
    client: httpx.AsyncClient, graph_api: GraphAPI, db: psycopg.Connection[Any]
) -> None:
    await add_team(client, "sales")
    await say(client, "Hola")
    await say(client, "¿Cuánto pagan en este puesto?")
    cid = await conversation_id(client)
    recorded = db.execute(
        "SELECT data FROM trace_events WHERE conversation_id = %s AND kind = 'routing.decision' "
        "ORDER BY id",
        (cid,),
    ).fetchall()
    assert [r["data"]["route"] for r in recorded] == ["bot", "human"]
    before, sent, state = counts(db), len(graph_api.requests), snapshot(db)

    # The planted change: greetings and salary questions now go to the sales team.
    use_rules(SALARY_TO_SALES + GREETINGS_TO_SALES)
    response = await client.post(f"/conversations/{cid}/replay", headers=ADMIN)

    assert response.status_code == 200, response.text
    first, second = response.json()["turns"]
    assert first["differs"] == ["route", "guardrail", "reply"]
    assert first["recorded"]["guardrail"] == {"allowed": True, "policies": []}
    assert first["replayed"]["guardrail"] is None  # no reply, nothing to check
    assert first["recorded"]["route"]["route"] == "bot" and first["recorded"]["reply"]
    assert first["replayed"]["route"] == {
        "route": "human",
        "rule": "greetings-sales",
        "team": "sales",
        "action": None,
    }
    assert first["replayed"]["reply"] is None
    assert first["replayed"]["handoff"] == {"rule": "greetings-sales", "team": "sales"}
    assert second["differs"] == ["route"]
    assert second["recorded"]["route"]["rule"] == "negotiation"
    assert second["replayed"]["route"]["rule"] == "salary-sales"
    # Nothing was sent, and nothing in the live conversation moved.
    assert len(graph_api.requests) == sent
    assert counts(db) == before and snapshot(db) == state


async def test_replay_cli_prints_the_difference_and_fails(
    client: httpx.AsyncClient, graph_api: GraphAPI, db: psycopg.Connection[Any]
) -> None:
    await add_team(client, "sales")
    await say(client, "¿Cuánto pagan?")
    cid = await conversation_id(client)
    folder = use_rules(SALARY_TO_SALES).parent
    env = {**os.environ, "TRAZA_CONFIG_DIR": str(folder)}
    before = counts(db)

    same = traza_cli("replay", str(cid), "--json", env={**env, "TRAZA_CONFIG_DIR": ""})
    changed = traza_cli("replay", str(cid), env=env)
    many = traza_cli("replay", "--all", "--since", "2000-01-01", "--json", env=env)

    assert same.returncode == 0, same.stderr
    assert json.loads(same.stdout)["differences"] == 0
    assert changed.returncode == 1, changed.stderr
    assert "≠ route" in changed.stdout and "salary-sales" in changed.stdout
    assert "judgment model: recorded judgment-" in changed.stdout
    assert many.returncode == 1, many.stderr
    summary = json.loads(many.stdout)
    assert summary["conversations"] == 1 and summary["differing_turns"] == 1
    assert summary["by_aspect"]["route"] == 1 and summary["differing_conversations"] == [cid]
    assert counts(db) == before


def test_replay_cli_refuses_bad_input_clearly(database_url: str) -> None:
    env = dict(os.environ)
    missing = traza_cli("replay", "999999", env=env)
    neither = traza_cli("replay", env=env)
    bad_date = traza_cli("replay", "--all", "--since", "yesterday", env=env)

    assert missing.returncode == 2 and "conversation 999999 not found" in missing.stderr
    assert neither.returncode == 2 and "--all --since" in neither.stderr
    assert bad_date.returncode == 2 and "is not a date" in bad_date.stderr
    for run in (missing, neither, bad_date):
        assert "Traceback" not in run.stderr


async def test_replay_from_a_checkpoint_and_fork_into_a_scratch_thread(
    client: httpx.AsyncClient, graph_api: GraphAPI, db: psycopg.Connection[Any]
) -> None:
    await say(client, "Hola")
    await say(client, "¿Cuál es el horario?")
    await say(client, "Gracias")
    cid = await conversation_id(client)
    history = (await client.get(f"/conversations/{cid}/history", headers=ADMIN)).json()
    # The checkpoint at the end of the first turn: replay only what came after it.
    ends = sorted((c for c in history if not c["next"]), key=lambda c: c["step"])
    first_end = ends[0]

    response = await client.post(
        f"/conversations/{cid}/replay",
        json={"from_checkpoint": first_end["checkpoint_id"]},
        headers=ADMIN,
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["skipped"] == 1 and len(body["turns"]) == 2
    assert "horario" in body["turns"][0]["said"]

    forked = await client.post(
        f"/conversations/{cid}/checkpoints/{first_end['checkpoint_id']}/fork", headers=ADMIN
    )
    assert forked.status_code == 201, forked.text
    scratch = forked.json()["thread_id"]
    assert scratch.startswith(f"scratch-{cid}-")
    copied = db.execute(
        "SELECT count(*) AS n FROM checkpoints WHERE thread_id = %s", (scratch,)
    ).fetchone()
    assert copied == {"n": 1}
    from traza.services.runtime import conversation_graph, thread_config

    state = await (await conversation_graph()).aget_state(thread_config(scratch))
    assert state.values["conversation_id"] == cid

    missing = await client.post(f"/conversations/{cid}/checkpoints/nope/fork", headers=ADMIN)
    assert missing.status_code == 404
    bad_from = await client.post(
        f"/conversations/{cid}/replay", json={"from_checkpoint": "nope"}, headers=ADMIN
    )
    assert bad_from.status_code == 404


async def test_agents_may_not_replay(client: httpx.AsyncClient, graph_api: GraphAPI) -> None:
    await add_team(client, "support")
    headers = await add_agent(client, "ana", teams=["support"])
    await say(client, "Quiero hablar con una persona")
    cid = await conversation_id(client)

    response = await client.post(f"/conversations/{cid}/replay", headers=headers)

    assert response.status_code == 403
