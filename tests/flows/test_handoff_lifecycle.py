"""The handoff lifecycle end to end: webhook → worker → graph → outbox, with rules files.

Routing precedence, business hours (frozen clock), round-robin assignment, strict
ownership and takeover, transfer and return to the bot, and CSAT.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx

from tests.fakes.servers import GraphAPI
from tests.support import (
    ADMIN,
    MADRID,
    add_agent,
    add_team,
    drain,
    fire_timers,
    post_webhook,
    use_rules,
    wa_payload,
)
from tests.support import say as conftest_say
from tests.support.handoffs import queue_bot_message
from traza.clock import FrozenClock

MAD = ZoneInfo(MADRID)
WA = "5215550001111"
OTHER = "5215550002222"
VIP = "5215550009999"
ASK_PERSON = "Quiero hablar con una persona"


# --- helpers ------------------------------------------------------------------------------


async def say(client: httpx.AsyncClient, text: str, *, wa_id: str = WA) -> None:
    """Post one customer text message and run the worker until it is handled."""
    await conftest_say(client, text, wa_id=wa_id)


def outbound(db: Any, cid: int | None = None) -> list[dict[str, Any]]:
    query = (
        "SELECT id, conversation_id, actor, type, text, content, status, error_title "
        "FROM messages WHERE direction='out'"
    )
    if cid is None:
        return list(db.execute(query + " ORDER BY id").fetchall())
    return list(db.execute(query + " AND conversation_id=%s ORDER BY id", (cid,)).fetchall())


def events(db: Any, kind: str, cid: int | None = None) -> list[dict[str, Any]]:
    rows = db.execute(
        "SELECT conversation_id, actor, data FROM trace_events WHERE kind=%s ORDER BY id", (kind,)
    ).fetchall()
    return [r for r in rows if cid is None or r["conversation_id"] == cid]


def handoff_rows(db: Any, cid: int | None = None) -> list[dict[str, Any]]:
    rows = db.execute("SELECT * FROM handoffs ORDER BY id").fetchall()
    return [r for r in rows if cid is None or r["conversation_id"] == cid]


async def cid_of(client: httpx.AsyncClient, wa_id: str = WA) -> int:
    found = (await client.get("/conversations", params={"wa_id": wa_id}, headers=ADMIN)).json()
    assert len(found) == 1, found
    return int(found[0]["id"])


async def conversation(client: httpx.AsyncClient, cid: int) -> dict[str, Any]:
    response = await client.get(f"/conversations/{cid}", headers=ADMIN)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


async def handoff(client: httpx.AsyncClient, hid: int) -> dict[str, Any]:
    response = await client.get(f"/handoffs/{hid}", headers=ADMIN)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


async def active_handoff(client: httpx.AsyncClient, cid: int) -> dict[str, Any]:
    rows = (await client.get("/handoffs?status=active&limit=500", headers=ADMIN)).json()
    [found] = [h for h in rows if h["conversation_id"] == cid]
    result: dict[str, Any] = found
    return result


async def rules_version(client: httpx.AsyncClient) -> str:
    response = await client.get("/rules", headers=ADMIN)
    assert response.status_code == 200, response.text
    version: str = response.json()["version"]
    assert version
    return version


def iso(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def list_reply(payload_id: str, *, wa_id: str = WA, title: str = "4 - Buena") -> dict[str, Any]:
    return {
        "from": wa_id,
        "id": f"wamid.csat.{time.time_ns()}",
        "timestamp": str(int(time.time())),
        "type": "interactive",
        "interactive": {"type": "list_reply", "list_reply": {"id": payload_id, "title": title}},
    }


# --- 1. Routing precedence from a rules file ----------------------------------------------

URGENT_RULE = """\
  - name: urgent-keyword
    when: {keywords: [urgente]}
    team: support
    priority: urgent
    query_type: urgent_request
    reason: urgent request
"""
SALARY_RULE = """\
  - name: salary-sales
    when: {intents: [salary]}
    team: sales
    query_type: compensation
    reason: salary question
"""
BOTH = "Es urgente: ¿cuánto pagan en este puesto?"


async def test_first_matching_rule_wins_and_reordering_the_file_changes_the_winner(
    client: httpx.AsyncClient, db: Any
) -> None:
    await add_team(client, "support")
    await add_team(client, "sales")
    use_rules("routing:\n" + URGENT_RULE + SALARY_RULE)
    first_version = await rules_version(client)

    await say(client, BOTH, wa_id=WA)

    cid = await cid_of(client, WA)
    [decision] = events(db, "routing.decision", cid)
    assert decision["data"]["rule"] == "urgent-keyword"
    assert decision["data"]["route"] == "human" and decision["data"]["team"] == "support"
    assert decision["data"]["rules_version"] == first_version
    [h] = handoff_rows(db, cid)
    assert (h["team"], h["priority"], h["query_type"]) == ("support", "urgent", "urgent_request")
    assert h["rules_version"] == first_version and h["reason"] == "urgent-keyword"
    assert (await conversation(client, cid))["team"] == "support"

    # The same two rules, the other way round: the salary rule now comes first.
    use_rules("routing:\n" + SALARY_RULE + URGENT_RULE)
    second_version = await rules_version(client)
    assert second_version != first_version

    await say(client, BOTH, wa_id=OTHER)

    other = await cid_of(client, OTHER)
    [decision] = events(db, "routing.decision", other)
    assert decision["data"]["rule"] == "salary-sales" and decision["data"]["team"] == "sales"
    assert decision["data"]["rules_version"] == second_version
    [h] = handoff_rows(db, other)
    assert (h["team"], h["priority"], h["query_type"]) == ("sales", "normal", "compensation")
    assert h["rules_version"] == second_version


async def test_opt_out_beats_a_matching_configured_rule(client: httpx.AsyncClient, db: Any) -> None:
    await add_team(client, "support")
    use_rules("routing:\n" + URGENT_RULE)

    await say(client, "Es urgente que no me escribas más", wa_id=WA)

    cid = await cid_of(client, WA)
    [decision] = events(db, "routing.decision", cid)
    assert decision["data"]["rule"] == "opt-out" and decision["data"]["route"] == "system"
    assert decision["data"]["rules_version"] == await rules_version(client)
    assert handoff_rows(db) == []
    assert [m["actor"] for m in outbound(db)] == ["system:opt_out"]
    contact = db.execute("SELECT opted_out_at FROM contacts").fetchone()
    assert contact["opted_out_at"] is not None
    assert (await conversation(client, cid))["owner"] == "bot"


async def test_bot_target_and_contacts_rules(client: httpx.AsyncClient, db: Any) -> None:
    await add_team(client, "support")
    use_rules(
        f"""\
routing:
  - name: vip
    when: {{contacts: ["{VIP}"]}}
    team: support
    priority: high
  - name: greeter
    when: {{intents: [greeting]}}
    bot: recepcion
"""
    )

    await say(client, "hola", wa_id=WA)
    await say(client, "hola", wa_id=VIP)

    plain, vip = await cid_of(client, WA), await cid_of(client, VIP)
    [greeted] = events(db, "routing.decision", plain)
    assert greeted["data"]["rule"] == "greeter" and greeted["data"]["route"] == "bot"
    assert greeted["data"]["bot"] == "recepcion"
    [reply] = outbound(db, plain)
    assert reply["actor"] == "bot:recepcion" and reply["status"] == "accepted"
    assert handoff_rows(db, plain) == []

    [vip_decision] = events(db, "routing.decision", vip)
    assert vip_decision["data"]["rule"] == "vip" and vip_decision["data"]["team"] == "support"
    [h] = handoff_rows(db, vip)
    assert (h["team"], h["priority"], h["reason"]) == ("support", "high", "vip")
    assert [m["actor"] for m in outbound(db, vip)] == ["system:handoff"]


# --- 2. Business hours (frozen clock) -----------------------------------------------------


def hours_rules(*, mode: str = "message") -> str:
    split = '["09:00-14:00", "16:00-19:00"]'
    weekly = ", ".join(f"{d}: {split}" for d in ("mon", "tue", "wed", "thu", "fri"))
    return f"""\
teams:
  support:
    hours:
      timezone: Europe/Madrid
      weekly: {{{weekly}}}
      holidays: {{dates: [2026-03-19]}}
    out_of_hours: {{mode: {mode}}}
routing:
  - name: to-support
    when: {{wants_human: true}}
    team: support
    reason: customer asked for a person
"""


async def support_with_hours(client: httpx.AsyncClient, *, mode: str = "message") -> None:
    await add_team(client, "support")
    use_rules(hours_rules(mode=mode))
    await add_agent(client, "sofia", teams=["support"])
    await drain()


async def test_open_team_sends_the_handoff_notice_and_assigns_at_once(
    client: httpx.AsyncClient, db: Any, frozen: FrozenClock
) -> None:
    await support_with_hours(client)
    assert frozen.now() == datetime(2026, 3, 2, 10, 0, tzinfo=MAD)  # Monday, open

    await say(client, ASK_PERSON)

    cid = await cid_of(client)
    [h] = handoff_rows(db, cid)
    assert h["team"] == "support" and h["waiting_until"] is None
    assert h["status"] == "assigned" and h["assigned_agent"] == "sofia"
    assert [m["actor"] for m in outbound(db, cid)] == ["system:handoff"]
    [created] = events(db, "handoff.created", cid)
    assert created["data"]["out_of_hours"] is False
    [assigned] = events(db, "handoff.assigned", cid)
    assert assigned["data"]["agent"] == "sofia" and assigned["actor"] == "system:assignment"


async def test_split_shift_gap_queues_until_opening_with_one_out_of_hours_message(
    client: httpx.AsyncClient, db: Any, frozen: FrozenClock
) -> None:
    await support_with_hours(client)
    frozen.set(datetime(2026, 3, 2, 15, 0, tzinfo=MAD))  # the lunch gap

    await say(client, ASK_PERSON)
    await say(client, "¿hay alguien?")
    await say(client, "sigo esperando")

    cid = await cid_of(client)
    [h] = handoff_rows(db, cid)
    assert h["status"] == "open" and h["assigned_agent"] is None
    assert h["waiting_until"] == datetime(2026, 3, 2, 16, 0, tzinfo=MAD)
    out = outbound(db, cid)
    assert [m["actor"] for m in out] == ["system:hours"]
    assert "16:00" in out[0]["text"]
    [created] = events(db, "handoff.created", cid)
    assert created["data"]["out_of_hours"] is True

    # Handed back and asked again within the same closure: still one message.
    back = await client.post(f"/handoffs/{h['id']}/return-to-bot", headers=ADMIN)
    assert back.status_code == 200, back.text
    await say(client, ASK_PERSON)
    assert [m["actor"] for m in outbound(db, cid)] == ["system:hours"]
    again = await active_handoff(client, cid)
    assert again["id"] != h["id"] and again["status"] == "open"

    # Early timers find the team still closed and wait.
    await fire_timers()
    assert (await handoff(client, again["id"]))["status"] == "open"

    frozen.set(datetime(2026, 3, 2, 16, 1, tzinfo=MAD))
    await fire_timers()
    opened = await handoff(client, again["id"])
    assert opened["status"] == "assigned" and opened["assigned_agent"] == "sofia"
    assert [m["actor"] for m in outbound(db, cid)] == ["system:hours"]


async def test_the_sweep_during_a_closure_keeps_one_round_for_the_opening(
    client: httpx.AsyncClient, db: Any, frozen: FrozenClock
) -> None:
    from traza.worker.operations import recover_operations

    await support_with_hours(client)
    frozen.set(datetime(2026, 3, 2, 15, 0, tzinfo=MAD))
    await say(client, ASK_PERSON)
    for _ in range(3):  # the minutely sweep, three times while the team is closed
        await recover_operations()
        await drain()
    rounds = db.execute(
        "SELECT queueing_lock, scheduled_at > now() AS later FROM procrastinate_jobs "
        "WHERE task_name = 'assign_team' AND status = 'todo'"
    ).fetchall()
    assert len(rounds) == 1 and rounds[0]["later"], rounds
    assert rounds[0]["queueing_lock"].startswith("assign:support:2026-03-02T15:00")
    frozen.set(datetime(2026, 3, 2, 16, 0, tzinfo=MAD))
    await fire_timers()
    [h] = handoff_rows(db, await cid_of(client))
    assert h["status"] == "assigned" and h["assigned_agent"] == "sofia"


async def test_a_holiday_waits_for_the_next_working_day(
    client: httpx.AsyncClient, db: Any, frozen: FrozenClock
) -> None:
    await support_with_hours(client)
    frozen.set(datetime(2026, 3, 19, 10, 0, tzinfo=MAD))
    assert frozen.now().astimezone(MAD).strftime("%a") == "Thu"

    await say(client, ASK_PERSON)

    [h] = handoff_rows(db)
    assert h["status"] == "open" and h["assigned_agent"] is None
    assert h["waiting_until"] == datetime(2026, 3, 20, 9, 0, tzinfo=MAD)
    assert [m["actor"] for m in outbound(db)] == ["system:hours"]


async def test_closed_team_in_bot_mode_leaves_the_turn_to_the_bot(
    client: httpx.AsyncClient, db: Any, frozen: FrozenClock
) -> None:
    await support_with_hours(client, mode="bot")
    frozen.set(datetime(2026, 3, 2, 15, 0, tzinfo=MAD))

    await say(client, ASK_PERSON)

    [decision] = events(db, "routing.decision")
    assert decision["data"]["rule"] == "to-support"
    assert decision["data"]["route"] == "bot" and decision["data"]["out_of_hours"] is True
    assert handoff_rows(db) == []
    [reply] = outbound(db)
    assert reply["actor"] == "bot:traza" and reply["status"] == "accepted"
    assert (await conversation(client, await cid_of(client)))["owner"] == "bot"


async def test_team_hours_are_read_in_the_team_time_zone(
    client: httpx.AsyncClient, db: Any, frozen: FrozenClock
) -> None:
    await add_team(client, "mx")
    weekly = ", ".join(f'{d}: ["09:00-18:00"]' for d in ("mon", "tue", "wed", "thu", "fri"))
    use_rules(
        f"""\
teams:
  mx:
    hours: {{timezone: America/Mexico_City, weekly: {{{weekly}}}}}
routing:
  - name: to-mx
    when: {{wants_human: true}}
    team: mx
"""
    )
    # Tuesday 02:00 UTC is Monday 20:00 in Mexico City: closed until Tuesday 09:00 there.
    frozen.set(datetime(2026, 3, 3, 2, 0, tzinfo=UTC))

    await say(client, ASK_PERSON)

    [h] = handoff_rows(db)
    assert h["team"] == "mx" and h["status"] == "open"
    assert h["waiting_until"] == datetime(2026, 3, 3, 15, 0, tzinfo=UTC)
    assert [m["actor"] for m in outbound(db)] == ["system:hours"]


# --- 3. Round-robin -------------------------------------------------------------------------


async def test_round_robin_spreads_by_least_recent_within_capacity(
    client: httpx.AsyncClient, db: Any
) -> None:
    agents = {}
    for name, capacity, status in (
        ("a1", 1, "online"),
        ("a2", 2, "online"),
        ("a3", 2, "online"),
        ("a4", 5, "away"),
    ):
        agents[name] = await add_agent(
            client, name, teams=["general"], capacity=capacity, status=status
        )
    customers = [f"52155510000{i:02d}" for i in range(1, 7)]

    for wa_id in customers[:5]:
        await say(client, ASK_PERSON, wa_id=wa_id)

    cids = [await cid_of(client, wa_id) for wa_id in customers[:5]]
    order = [(await active_handoff(client, cid))["assigned_agent"] for cid in cids]
    assert order == ["a1", "a2", "a3", "a2", "a3"]
    for record in events(db, "handoff.assigned"):
        assert record["data"]["load"] <= record["data"]["capacity"]

    await say(client, ASK_PERSON, wa_id=customers[5])

    sixth = await active_handoff(client, await cid_of(client, customers[5]))
    assert sixth["status"] == "open" and sixth["assigned_agent"] is None
    listed = (await client.get("/agents", headers=ADMIN)).json()
    loads = {a["name"]: a for a in listed}
    assert {n: loads[n]["load"] for n in ("a1", "a2", "a3", "a4")} == {
        "a1": 1,
        "a2": 2,
        "a3": 2,
        "a4": 0,
    }

    # a2 resolves one of theirs: the waiting sixth goes to a2, the one with room.
    a2_first = await active_handoff(client, cids[1])
    resolved = await client.post(f"/handoffs/{a2_first['id']}/resolve", headers=agents["a2"])
    assert resolved.status_code == 200, resolved.text
    await drain()

    sixth = await handoff(client, sixth["id"])
    assert sixth["status"] == "assigned" and sixth["assigned_agent"] == "a2"
    assigned_to = [
        r["assigned_agent"]
        for r in db.execute("SELECT assigned_agent FROM handoffs WHERE status <> 'resolved'")
    ]
    assert "a4" not in assigned_to
    assert assigned_to.count("a1") <= 1 and assigned_to.count("a2") <= 2
    assert assigned_to.count("a3") <= 2


async def test_a_returning_customer_goes_back_to_a_former_agent_only_when_available(
    client: httpx.AsyncClient, db: Any
) -> None:
    a1 = await add_agent(client, "a1", teams=["general"])
    await add_agent(client, "a2", teams=["general"])

    async def ask_and_return() -> str:
        await say(client, ASK_PERSON)
        h = await active_handoff(client, await cid_of(client))
        back = await client.post(f"/handoffs/{h['id']}/return-to-bot", headers=ADMIN)
        assert back.status_code == 200, back.text
        await drain()
        agent: str = h["assigned_agent"]
        return agent

    assert await ask_and_return() == "a1"  # nobody assigned yet: the first agent

    # a1 is offline: the handover goes to a2, not back to a1.
    assert (await client.put("/me/status", json={"status": "offline"}, headers=a1)).is_success
    assert await ask_and_return() == "a2"

    # a1 is back and the least recently assigned; the former agent a2 is online with room,
    # so the customer goes back to a2.
    assert (await client.put("/me/status", json={"status": "online"}, headers=a1)).is_success
    await drain()
    assert await ask_and_return() == "a2"
    preferred = events(db, "handoff.assigned")[-1]["data"]
    assert preferred["former_agent"] == "a2"


# --- 4. Strict ownership and takeover -----------------------------------------------------


async def test_while_a_human_owns_the_bot_is_silent_and_its_queued_message_is_skipped(
    client: httpx.AsyncClient, db: Any
) -> None:
    await add_agent(client, "ana", teams=["general"])
    await say(client, ASK_PERSON)
    cid = await cid_of(client)
    assert (await conversation(client, cid))["owner"] == "human"

    await say(client, "hola, ¿cuánto pagan?")
    await say(client, "gracias")

    assert not [m for m in outbound(db, cid) if m["actor"].startswith("bot:")]
    assert len(events(db, "message.held_for_human", cid)) == 2
    assert len(events(db, "routing.decision", cid)) == 1  # no turn routed while held

    late = await queue_bot_message(cid, key="reply:late:1", text="Respuesta tardía del bot")
    await drain()

    [row] = [m for m in outbound(db, cid) if m["id"] == late]
    assert row["status"] == "skipped" and "human owns" in row["error_title"]
    [skipped] = events(db, "message.skipped", cid)
    assert "human owns" in skipped["data"]["reason"]


async def test_an_agent_takes_over_a_bot_conversation_and_the_bot_goes_silent(
    client: httpx.AsyncClient, db: Any
) -> None:
    ana = await add_agent(client, "ana", teams=["general"], status="away")
    await say(client, "hola")
    cid = await cid_of(client)

    # Never handed to humans: the conversation has no team yet, so an agent cannot see it.
    denied = await client.post(f"/conversations/{cid}/takeover", headers=ana)
    assert denied.status_code == 403

    # A first handoff (to the general team) that went back to the bot.
    await say(client, ASK_PERSON)
    h = await active_handoff(client, cid)
    assert (await client.post(f"/handoffs/{h['id']}/return-to-bot", headers=ADMIN)).is_success
    await drain()
    await say(client, "hola otra vez")
    assert (await conversation(client, cid))["owner"] == "bot"
    assert outbound(db, cid)[-1]["actor"] == "bot:traza"

    taken = await client.post(f"/conversations/{cid}/takeover", headers=ana)
    assert taken.status_code == 200, taken.text
    assert taken.json() == {"conversation_id": cid, "owner": "human", "waiting_for_human": True}
    await drain()

    current = await active_handoff(client, cid)
    assert current["status"] == "accepted" and current["assigned_agent"] == "ana"
    assert current["reason"] == "agent-takeover" and current["created_by"] == "human:ana"
    state = await conversation(client, cid)
    assert state["owner"] == "human" and state["owner_agent"] == "ana"
    bot_replies = len([m for m in outbound(db, cid) if m["actor"].startswith("bot:")])

    await say(client, "¿cuánto pagan?")
    assert len([m for m in outbound(db, cid) if m["actor"].startswith("bot:")]) == bot_replies

    again = await client.post(f"/conversations/{cid}/takeover", headers=ana)
    assert again.status_code == 409
    assert (await client.post(f"/conversations/{cid}/takeover", headers=ADMIN)).status_code == 409


# --- 5. Transfer, reply, return to the bot ------------------------------------------------


async def test_transfer_reply_and_return_to_bot_keep_the_human_message_in_context(
    client: httpx.AsyncClient, db: Any
) -> None:
    await add_team(client, "support")
    await add_team(client, "sales")
    use_rules(
        """\
routing:
  - name: to-support
    when: {wants_human: true}
    team: support
"""
    )
    sofia = await add_agent(client, "sofia", teams=["support"])
    vera = await add_agent(client, "vera", teams=["sales"])
    await say(client, ASK_PERSON)
    cid = await cid_of(client)
    h = await active_handoff(client, cid)
    assert (h["team"], h["assigned_agent"]) == ("support", "sofia")

    note = "Cliente pregunta por comisiones; nota interna confidencial"
    moved = await client.post(
        f"/handoffs/{h['id']}/transfer", json={"team": "sales", "note": note}, headers=sofia
    )
    assert moved.status_code == 200, moved.text
    assert moved.json()["team"] == "sales" and moved.json()["status"] == "open"
    await drain()

    h = await handoff(client, h["id"])
    assert (h["team"], h["status"], h["assigned_agent"]) == ("sales", "assigned", "vera")
    [transferred] = events(db, "handoff.transferred", cid)
    assert transferred["actor"] == "human:sofia"
    assert transferred["data"]["from_team"] == "support"
    assert transferred["data"]["to_team"] == "sales"
    assert transferred["data"]["from_agent"] == "sofia"
    notes = (await client.get(f"/handoffs/{h['id']}/notes", headers=vera)).json()
    assert [(n["author"], n["body"]) for n in notes] == [("sofia", note)]
    assert transferred["data"]["note_id"] == notes[0]["id"]
    assert (await conversation(client, cid))["team"] == "sales"

    answer = "Hola, soy Vera de ventas. La comisión es del 5 por ciento."
    reply = await client.post(
        f"/conversations/{cid}/resume", json={"type": "response", "args": answer}, headers=vera
    )
    assert reply.status_code == 200, reply.text
    await drain()
    sent = outbound(db, cid)[-1]
    assert sent["actor"] == "human:vera" and sent["text"] == answer
    assert sent["status"] == "accepted"
    assert not [m for m in outbound(db) if "confidencial" in (m["text"] or "")]
    assert (await handoff(client, h["id"]))["status"] == "accepted"

    back = await client.post(f"/handoffs/{h['id']}/return-to-bot", headers=vera)
    assert back.status_code == 200, back.text
    assert back.json()["owner"] == "bot" and back.json()["waiting_for_human"] is False
    await drain()
    assert (await conversation(client, cid))["owner"] == "bot"
    assert (await handoff(client, h["id"]))["status"] == "returned"
    changed = events(db, "owner.changed", cid)[-1]
    assert changed["actor"] == "human:vera"
    assert changed["data"]["from"] == "human" and changed["data"]["to"] == "bot"

    await say(client, "¿y cómo va mi aplicación?")
    last = outbound(db, cid)[-1]
    assert last["actor"] == "bot:traza" and last["status"] == "accepted"
    history = (await client.get(f"/conversations/{cid}/history", headers=ADMIN)).json()
    recent = history[0]["values"]["recent"]
    assert {"who": "human:vera", "type": "text", "text": answer} in recent
    assert not [r for r in recent if "confidencial" in (r.get("text") or "")]


# --- 6. CSAT --------------------------------------------------------------------------------


async def resolved_handoff(client: httpx.AsyncClient, agent: dict[str, str]) -> tuple[int, int]:
    """A handoff answered by the agent; returns (conversation id, handoff id)."""
    await say(client, ASK_PERSON)
    cid = await cid_of(client)
    h = await active_handoff(client, cid)
    reply = await client.post(
        f"/conversations/{cid}/resume",
        json={"type": "response", "args": "Listo, ya quedó resuelto."},
        headers=agent,
    )
    assert reply.status_code == 200, reply.text
    await drain()
    return cid, int(h["id"])


async def test_resolving_inside_the_window_asks_for_a_rating_once(
    client: httpx.AsyncClient, db: Any, graph_api: GraphAPI
) -> None:
    ana = await add_agent(client, "ana", teams=["general"])
    cid, hid = await resolved_handoff(client, ana)

    resolved = await client.post(f"/handoffs/{hid}/resolve", headers=ana)
    assert resolved.status_code == 200, resolved.text
    await drain()

    body = graph_api.sent[-1]
    assert body["type"] == "interactive" and body["to"] == WA
    assert body["interactive"]["type"] == "list"
    rows = [r for s in body["interactive"]["action"]["sections"] for r in s["rows"]]
    assert [r["id"] for r in rows] == [f"csat:{hid}:{n}" for n in range(1, 6)]
    [question] = [m for m in outbound(db, cid) if m["actor"] == "system:csat"]
    assert question["type"] == "interactive" and question["status"] == "accepted"
    assert len(events(db, "csat.requested", cid)) == 1

    for _ in range(2):
        response = await post_webhook(client, wa_payload(messages=[list_reply(f"csat:{hid}:4")]))
        assert response.status_code == 200
        await drain()

    [rating] = db.execute("SELECT * FROM csat_ratings").fetchall()
    assert (rating["handoff_id"], rating["conversation_id"], rating["rating"]) == (hid, cid, 4)
    assert (rating["agent"], rating["team"], rating["bot"]) == ("ana", "general", "traza")
    thanks = [m for m in outbound(db, cid) if m["type"] == "text" and m["actor"] == "system:csat"]
    assert len(thanks) == 1 and thanks[0]["status"] == "accepted"
    assert graph_api.sent[-1]["text"]["body"] == thanks[0]["text"]
    actions = [e["data"] for e in events(db, "system.action", cid)]
    assert [(a["rule"], a["rating"], a["recorded"]) for a in actions] == [
        ("csat-answer", 4, True),
        ("csat-answer", 4, False),
    ]


async def test_resolving_outside_the_window_skips_the_rating(
    client: httpx.AsyncClient, db: Any, graph_api: GraphAPI
) -> None:
    ana = await add_agent(client, "ana", teams=["general"])
    cid, hid = await resolved_handoff(client, ana)
    sent_before = len(graph_api.sent)
    db.execute(
        "UPDATE conversations SET last_inbound_at = now() - interval '2 days' WHERE id=%s",
        (cid,),
    )

    resolved = await client.post(f"/handoffs/{hid}/resolve", headers=ana)
    assert resolved.status_code == 200, resolved.text
    await drain()

    assert len(graph_api.sent) == sent_before
    assert not [m for m in outbound(db, cid) if m["actor"] == "system:csat"]
    [skipped] = events(db, "csat.skipped", cid)
    assert skipped["data"]["handoff_id"] == hid and "24-hour" in skipped["data"]["reason"]
    assert events(db, "csat.requested") == []


async def test_returning_to_the_bot_does_not_ask_for_a_rating(
    client: httpx.AsyncClient, db: Any, graph_api: GraphAPI
) -> None:
    ana = await add_agent(client, "ana", teams=["general"])
    cid, hid = await resolved_handoff(client, ana)

    back = await client.post(f"/handoffs/{hid}/return-to-bot", headers=ana)
    assert back.status_code == 200, back.text
    await drain()

    assert (await handoff(client, hid))["status"] == "returned"
    assert not [m for m in outbound(db, cid) if m["actor"] == "system:csat"]
    assert not [b for b in graph_api.sent if b["type"] == "interactive"]
    assert events(db, "csat.requested") == [] and events(db, "csat.skipped") == []


def test_frozen_calendar_assumptions() -> None:
    assert datetime(2026, 3, 2, tzinfo=MAD).strftime("%a") == "Mon"
    assert datetime(2026, 3, 20, tzinfo=MAD).strftime("%a") == "Fri"
    assert datetime(2026, 3, 2, 20, 0, tzinfo=ZoneInfo("America/Mexico_City")) == datetime(
        2026, 3, 3, 2, 0, tzinfo=UTC
    )
    assert datetime(2026, 3, 2, 16, 0, tzinfo=MAD) - datetime(
        2026, 3, 2, 15, 0, tzinfo=MAD
    ) == timedelta(hours=1)
