"""End to end through the webhook, the worker, the graph and the outbox (local channel)."""

from __future__ import annotations

import asyncio

from tests.support import (
    ADMIN,
    configure,
    drain,
    post_webhook,
    say,
    text_message,
    wa_payload,
)


def outbound(db) -> list[dict]:
    return db.execute(
        "SELECT id, actor, text, status, channel FROM messages WHERE direction='out' ORDER BY id"
    ).fetchall()


async def test_customer_message_is_answered_by_the_bot_with_a_full_trace(client, db):
    await say(client, "Hola, ¿cómo va mi aplicación?")

    out = outbound(db)
    assert len(out) == 1
    assert out[0]["actor"] == "bot:traza"
    assert "aplicación sigue en revisión" in out[0]["text"]
    assert out[0]["status"] == "accepted" and out[0]["channel"] == "local"

    conversations = (await client.get("/conversations", headers=ADMIN)).json()
    assert len(conversations) == 1 and conversations[0]["owner"] == "bot"
    cid = conversations[0]["id"]
    timeline = (await client.get(f"/conversations/{cid}/timeline", headers=ADMIN)).json()
    kinds = [e["kind"] for e in timeline]
    assert kinds == [
        "message.received",
        "turn.started",
        "classification",
        "routing.decision",
        "reply.drafted",
        "guardrail.verdict",
        "message.queued",
        "reply.sent_to_outbox",
        "message.sent",
    ]
    decision = next(e for e in timeline if e["kind"] == "routing.decision")
    assert decision["data"]["rule"] == "default-bot"
    assert decision["data"]["inputs"]["intent"] == "application_status"
    assert decision["checkpoint_id"] and decision["duration_ms"] is not None
    assert {e["actor"] for e in timeline} == {"customer", "bot:traza", "system:sender"}

    history = (await client.get(f"/conversations/{cid}/history", headers=ADMIN)).json()
    assert history[0]["values"]["decision"]["route"] == "bot"
    ids = {h["checkpoint_id"] for h in history}
    assert all(e["checkpoint_id"] in ids for e in timeline if e["checkpoint_id"])


async def test_english_message_gets_an_english_reply(client, db):
    await say(client, "Hi, any news on my application?")
    assert "still under review" in outbound(db)[0]["text"]


async def test_burst_from_one_contact_is_one_coalesced_turn(client, db):
    configure(TRAZA_COALESCE_SECONDS="0.5")
    for text in ("hola", "quería saber", "¿cómo va mi aplicación?"):
        response = await post_webhook(client, wa_payload(messages=[text_message(text)]))
        assert response.status_code == 200
    jobs = db.execute(
        "SELECT count(*) AS n FROM procrastinate_jobs WHERE task_name='process_conversation'"
    ).fetchone()
    assert jobs["n"] == 1
    await asyncio.sleep(0.6)
    await drain()
    turns = db.execute("SELECT data FROM trace_events WHERE kind='turn.started'").fetchall()
    assert len(turns) == 1 and len(turns[0]["data"]["messages"]) == 3
    assert len(outbound(db)) == 1
    unprocessed = db.execute(
        "SELECT count(*) AS n FROM messages WHERE direction='in' AND processed_at IS NULL"
    ).fetchone()
    assert unprocessed["n"] == 0


async def test_handoff_holds_the_bot_until_a_human_answers_and_hands_back(client, db):
    await say(client, "Quiero hablar con una persona")
    conversation = (await client.get("/conversations", headers=ADMIN)).json()[0]
    cid = conversation["id"]
    assert conversation["owner"] == "human"
    handoffs = (await client.get("/handoffs?status=open", headers=ADMIN)).json()
    assert len(handoffs) == 1 and handoffs[0]["reason"] == "asks-for-person"
    notice = outbound(db)
    assert [m["actor"] for m in notice] == ["system:handoff"]

    # While a human owns it, the bot says nothing; messages attach to the handoff.
    await say(client, "¿hola? sigo esperando")
    assert len(outbound(db)) == 1
    held = db.execute(
        "SELECT handoff_id FROM messages WHERE direction='in' ORDER BY id DESC LIMIT 1"
    ).fetchone()
    assert held["handoff_id"] == handoffs[0]["id"]

    claim = await client.post(f"/handoffs/{handoffs[0]['id']}/claim", headers=ADMIN)
    assert claim.status_code == 200 and claim.json()["assigned_agent"] == "admin"

    reply = await client.post(
        f"/conversations/{cid}/resume",
        json=[{"type": "response", "args": "Hola, soy Ana, del equipo de selección."}],
        headers=ADMIN,
    )
    assert reply.status_code == 200, reply.text
    assert reply.json() == {"conversation_id": cid, "owner": "human", "waiting_for_human": True}
    await drain()
    human = outbound(db)[-1]
    assert human["actor"] == "human:admin" and human["text"].startswith("Hola, soy Ana")
    assert human["status"] == "accepted"

    back = await client.post(f"/handoffs/{handoffs[0]['id']}/return-to-bot", headers=ADMIN)
    assert back.status_code == 200
    assert back.json()["owner"] == "bot" and back.json()["waiting_for_human"] is False
    assert (await client.get(f"/handoffs/{handoffs[0]['id']}", headers=ADMIN)).json()[
        "status"
    ] == "returned"

    await say(client, "gracias!")
    last = outbound(db)[-1]
    assert last["actor"] == "bot:traza" and "gusto" in last["text"]
    kinds = [
        e["kind"]
        for e in (await client.get(f"/conversations/{cid}/timeline", headers=ADMIN)).json()
    ]
    assert "message.held_for_human" in kinds
    assert kinds.count("owner.changed") == 2


async def test_resume_rejects_bad_input_and_conversations_not_waiting(client, db):
    await say(client, "hola")
    cid = (await client.get("/conversations", headers=ADMIN)).json()[0]["id"]
    r = await client.post(f"/conversations/{cid}/resume", json={"type": "ignore"}, headers=ADMIN)
    assert r.status_code == 409
    r = await client.post(f"/conversations/{cid}/resume", json={"type": "response"}, headers=ADMIN)
    assert r.status_code == 422 and "needs args" in r.json()["detail"]
    r = await client.post(f"/conversations/{cid}/resume", json={"type": "nope"}, headers=ADMIN)
    assert r.status_code == 422
    r = await client.post("/conversations/999/resume", json={"type": "ignore"}, headers=ADMIN)
    assert r.status_code == 404


async def test_operator_endpoints_need_a_valid_key(client):
    for path in ("/conversations", "/handoffs", "/conversations/1/timeline"):
        assert (await client.get(path)).status_code == 401
        bad = await client.get(path, headers={"Authorization": "Bearer wrong"})
        assert bad.status_code == 401 and bad.json()["detail"] == "invalid or revoked API key"


async def test_opt_out_is_honoured_and_confirmed_once(client, db):
    await say(client, "STOP")
    await say(client, "no me escriban más")
    contact = db.execute("SELECT opted_out_at FROM contacts").fetchone()
    assert contact["opted_out_at"] is not None
    out = outbound(db)
    assert len(out) == 1 and out[0]["actor"] == "system:opt_out"
    actions = db.execute("SELECT data FROM trace_events WHERE kind='system.action'").fetchall()
    assert [a["data"]["confirmed"] for a in actions] == [True, False]


async def test_frustration_escalates_to_a_human(client, db):
    await say(client, "Esto es inaceptable, nadie me responde")
    decision = db.execute("SELECT data FROM trace_events WHERE kind='routing.decision'").fetchone()
    assert decision["data"]["rule"] == "frustration"
    assert db.execute("SELECT owner FROM conversations").fetchone()["owner"] == "human"
