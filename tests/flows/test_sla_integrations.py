"""SLA clocks in business hours, their breach actions, signed outbound webhooks, rules reloads.

Time is the `frozen` clock (Monday 2026-03-02 10:00 Madrid); deadlines are reached by
moving it and running the waiting operations jobs (`fire_timers`).
"""

from __future__ import annotations

import hashlib
import hmac
import os
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import psycopg
import pytest

from tests.fakes.servers import LocalServer, WebhookReceiver, free_port
from tests.support import (
    ADMIN,
    add_agent,
    add_team,
    configure,
    drain,
    fire_timers,
    say,
    traza_cli,
    use_rules,
)

MADRID = ZoneInfo("Europe/Madrid")
UTC = ZoneInfo("UTC")
PERSON = "quiero hablar con una persona"
Db = psycopg.Connection[Any]

SUPPORT_RULES = """\
default_team: support
routing:
  - name: asks-for-person
    when: {{wants_human: true}}
    team: support
    reason: customer asked for a person
teams:
  support:
    hours:
      timezone: Europe/Madrid
      weekly:
        mon: ["09:00-18:00"]
        tue: ["09:00-18:00"]
        wed: ["09:00-18:00"]
        thu: ["09:00-18:00"]
        fri: ["09:00-18:00"]
slas:
  - team: support
    first_response: 15m
    next_response: 10m
    resolution: 2h
    on_breach:
      first_response: [reassign, {{notify: ops}}]
      next_response: [escalate]
      resolution: [raise_priority]
integrations:
  ops:
    url: {url}/hook
    secret: s3cret
"""

# An address nothing listens on: the tests that use it must never notify.
NOWHERE = f"http://127.0.0.1:{free_port()}"


def madrid(hour: int, minute: int = 0, day: int = 2) -> datetime:
    return datetime(2026, 3, day, hour, minute, tzinfo=MADRID)


def events(db: Db, kind: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = db.execute(
        "SELECT kind, actor, data, conversation_id FROM trace_events WHERE kind = %s ORDER BY id",
        (kind,),
    ).fetchall()
    return rows


def handoff_row(db: Db) -> dict[str, Any]:
    rows = db.execute("SELECT * FROM handoffs ORDER BY id").fetchall()
    assert len(rows) == 1, rows
    row: dict[str, Any] = rows[0]
    return row


def timers(db: Db, handoff_id: int) -> dict[str, dict[str, Any]]:
    rows = db.execute(
        "SELECT * FROM sla_timers WHERE handoff_id = %s ORDER BY id", (handoff_id,)
    ).fetchall()
    return {r["metric"]: r for r in rows}


def job_waiting(db: Db, job_id: int | None) -> bool:
    row = db.execute(
        "SELECT count(*) AS n FROM procrastinate_jobs WHERE id = %s AND status = 'todo'",
        (job_id,),
    ).fetchone()
    assert row is not None
    return bool(row["n"])


def waiting_sla_jobs(db: Db) -> int:
    row = db.execute(
        "SELECT count(*) AS n FROM procrastinate_jobs WHERE task_name = 'sla_timer' "
        "AND status = 'todo'"
    ).fetchone()
    assert row is not None
    return int(row["n"])


def assert_signed(request: dict[str, Any], secret: str) -> None:
    """The receiver's check: recompute the HMAC from the raw body and the header's `t=`."""
    parts = dict(p.split("=", 1) for p in request["headers"]["x-traza-signature"].split(","))
    assert set(parts) == {"t", "v1"}
    expected = hmac.new(
        secret.encode(), f"{parts['t']}.".encode() + request["raw"], hashlib.sha256
    ).hexdigest()
    assert hmac.compare_digest(parts["v1"], expected)
    forged = hmac.new(b"wrong", f"{parts['t']}.".encode() + request["raw"], hashlib.sha256)
    assert parts["v1"] != forged.hexdigest()


async def reply(cid: int, text: str, agent: str) -> None:
    """`agent` answers the waiting conversation (what POST /conversations/{id}/resume runs).

    Called below the HTTP route, which `test_the_assigned_agent_answers_through_the_api_in_time`
    exercises.
    """
    from traza.services import turns

    result = await turns.resume(cid, response={"type": "response", "args": text}, agent=agent)
    assert result == {"owner": "human", "waiting_for_human": True}
    await drain()


async def support_desk(
    client: httpx.AsyncClient, url: str
) -> tuple[dict[str, str], dict[str, str], dict[str, str]]:
    """Team support with two online agents and a supervisor, and its rules."""
    await add_team(client, "support")
    a1 = await add_agent(client, "a1", teams=["support"])
    a2 = await add_agent(client, "a2", teams=["support"])
    s1 = await add_agent(client, "s1", teams=["support"], role="supervisor")
    use_rules(SUPPORT_RULES.format(url=url))
    return a1, a2, s1


# --- 1. breaches and their actions ---------------------------------------------------------


async def test_sla_breaches_reassign_notify_escalate_and_raise_priority(
    client: httpx.AsyncClient, db: Db, frozen: Any
) -> None:
    receiver = WebhookReceiver()
    async with LocalServer(receiver.app()) as server:
        await support_desk(client, server.url)
        await say(client, PERSON)

        handoff = handoff_row(db)
        hid, cid = handoff["id"], handoff["conversation_id"]
        assert (handoff["status"], handoff["team"], handoff["assigned_agent"]) == (
            "assigned",
            "support",
            "a1",
        )
        assert handoff["priority"] == "normal" and handoff["sla_state"] == "ok"
        clocks = timers(db, hid)
        assert set(clocks) == {"first_response", "resolution"}
        assert all(t["status"] == "running" for t in clocks.values())
        assert clocks["first_response"]["due_at"] == madrid(10, 15).astimezone(UTC)
        assert clocks["resolution"]["due_at"] == madrid(12, 0).astimezone(UTC)
        assert job_waiting(db, clocks["first_response"]["job_id"])

        # 10:10: the job runs early on this clock and waits again.
        frozen.advance(timedelta(minutes=10))
        await fire_timers()
        assert events(db, "sla.breached") == []
        clocks = timers(db, hid)
        assert clocks["first_response"]["status"] == "running"
        assert job_waiting(db, clocks["first_response"]["job_id"])
        assert handoff_row(db)["assigned_agent"] == "a1"
        assert receiver.requests == []

        # 10:16: first response breached → reassigned to a2, ops notified (signed).
        frozen.set(madrid(10, 16))
        await fire_timers()
        breached = events(db, "sla.breached")
        assert len(breached) == 1 and breached[0]["conversation_id"] == cid
        data = breached[0]["data"]
        assert data["metric"] == "first_response" and data["handoff_id"] == hid
        assert [a["action"] for a in data["actions"]] == ["reassign", "notify:ops"]
        assert all(a["done"] for a in data["actions"])
        reassigned = events(db, "handoff.reassigned")
        assert len(reassigned) == 1
        assert reassigned[0]["data"]["agent"] == "a2"
        assert reassigned[0]["data"]["previous"] == "a1"
        handoff = handoff_row(db)
        assert handoff["assigned_agent"] == "a2" and handoff["sla_state"] == "breached"
        assert timers(db, hid)["first_response"]["status"] == "breached"
        assert timers(db, hid)["resolution"]["status"] == "running"

        assert len(receiver.requests) == 1
        call = receiver.requests[0]
        assert call["headers"]["x-traza-event"] == "sla.breached"
        assert_signed(call, "s3cret")
        assert call["body"]["event"] == "sla.breached"
        assert call["body"]["data"]["metric"] == "first_response"
        assert call["body"]["data"]["handoff"]["id"] == hid
        assert call["body"]["data"]["handoff"]["assigned_agent"] == "a2"
        calls = db.execute("SELECT status, event, attempts FROM integration_calls").fetchall()
        assert calls == [{"status": "delivered", "event": "sla.breached", "attempts": 1}]

        # a2 answers: the first-response clock had already breached and stays so.
        await reply(cid, "Hola, soy a2. ¿En qué te ayudo?", "a2")
        handoff = handoff_row(db)
        assert handoff["status"] == "accepted" and handoff["first_response_at"] is not None
        sent = db.execute(
            "SELECT actor, text, status FROM messages WHERE direction = 'out' ORDER BY id"
        ).fetchall()
        assert sent[-1] == {
            "actor": "human:a2",
            "text": "Hola, soy a2. ¿En qué te ayudo?",
            "status": "accepted",
        }
        assert timers(db, hid)["first_response"]["status"] == "breached"
        assert "next_response" not in timers(db, hid)

        # The customer writes again: the next-response clock starts (10 min).
        await say(client, "sigo esperando la respuesta")
        next_clock = timers(db, hid)["next_response"]
        assert next_clock["status"] == "running"
        assert next_clock["due_at"] == madrid(10, 26).astimezone(UTC)

        frozen.advance(timedelta(minutes=11))
        await fire_timers()
        escalated = events(db, "handoff.escalated")
        assert len(escalated) == 1 and escalated[0]["data"]["supervisor"] == "s1"
        assert escalated[0]["data"]["metric"] == "next_response"
        assert handoff_row(db)["escalated_to"] == "s1"
        assert timers(db, hid)["next_response"]["status"] == "breached"
        assert [e["data"]["metric"] for e in events(db, "sla.breached")] == [
            "first_response",
            "next_response",
        ]

        # 12:01: resolution breached → priority one step up.
        frozen.set(madrid(12, 1))
        await fire_timers()
        last = events(db, "sla.breached")[-1]["data"]
        assert last["metric"] == "resolution"
        assert last["actions"] == [
            {"action": "raise_priority", "done": True, "from": "normal", "to": "high"}
        ]
        assert handoff_row(db)["priority"] == "high"
        assert timers(db, hid)["resolution"]["status"] == "breached"
        assert waiting_sla_jobs(db) == 0

        shown = (await client.get(f"/handoffs/{hid}/sla", headers=ADMIN)).json()
        assert {t["metric"]: t["status"] for t in shown} == {
            "first_response": "breached",
            "next_response": "breached",
            "resolution": "breached",
        }
        assert len(receiver.requests) == 1  # only first_response notifies


# --- 2. clocks stopped in time -------------------------------------------------------------


async def test_timely_reply_and_resolve_stop_the_clocks_and_delete_their_jobs(
    client: httpx.AsyncClient, db: Db, frozen: Any
) -> None:
    a1, _, _ = await support_desk(client, NOWHERE)
    await say(client, PERSON)
    handoff = handoff_row(db)
    hid, cid = handoff["id"], handoff["conversation_id"]
    assert handoff["assigned_agent"] == "a1"
    first_job = timers(db, hid)["first_response"]["job_id"]
    assert job_waiting(db, first_job)

    frozen.set(madrid(10, 5))
    await reply(cid, "Hola, te atiendo yo.", "a1")
    first = timers(db, hid)["first_response"]
    assert first["status"] == "met" and first["stopped_at"] == madrid(10, 5).astimezone(UTC)
    assert not job_waiting(db, first_job)
    met = events(db, "sla.met")
    assert [e["data"]["metric"] for e in met] == ["first_response"]
    assert met[0]["actor"] == "human:a1"
    assert met[0]["data"]["early_by_seconds"] == 600

    frozen.set(madrid(10, 20))
    await fire_timers()
    assert events(db, "sla.breached") == []
    handoff = handoff_row(db)
    assert handoff["sla_state"] == "ok" and handoff["assigned_agent"] == "a1"
    assert db.execute("SELECT count(*) AS n FROM integration_calls").fetchone() == {"n": 0}
    resolution = timers(db, hid)["resolution"]
    assert resolution["status"] == "running" and job_waiting(db, resolution["job_id"])

    response = await client.post(f"/handoffs/{hid}/resolve", headers=a1)
    assert response.status_code == 200, response.text
    await drain()
    resolution = timers(db, hid)["resolution"]
    assert resolution["status"] == "met"
    assert not job_waiting(db, resolution["job_id"])
    assert waiting_sla_jobs(db) == 0
    assert handoff_row(db)["status"] == "resolved"

    frozen.set(madrid(12, 30))
    await fire_timers()
    assert events(db, "sla.breached") == []
    assert handoff_row(db)["priority"] == "normal"


async def test_the_assigned_agent_answers_through_the_api_in_time(
    client: httpx.AsyncClient, db: Db, frozen: Any
) -> None:
    a1, _, _ = await support_desk(client, NOWHERE)
    await say(client, PERSON)
    handoff = handoff_row(db)
    assert handoff["assigned_agent"] == "a1"
    frozen.set(madrid(10, 5))
    response = await client.post(
        f"/conversations/{handoff['conversation_id']}/resume",
        json={"type": "response", "args": "Hola, te atiendo yo."},
        headers=a1,
    )
    assert response.status_code == 200, response.text
    await drain()
    assert timers(db, handoff["id"])["first_response"]["status"] == "met"


# --- 3. business hours ---------------------------------------------------------------------


async def test_deadlines_count_business_hours_only(
    client: httpx.AsyncClient, db: Db, frozen: Any
) -> None:
    await support_desk(client, NOWHERE)
    frozen.set(madrid(17, 55))
    await say(client, PERSON)
    handoff = handoff_row(db)
    assert handoff["waiting_until"] is None and handoff["assigned_agent"] == "a1"
    clocks = timers(db, handoff["id"])
    # 5 minutes today, the other 10 when the team opens on Tuesday.
    assert clocks["first_response"]["due_at"] == madrid(9, 10, day=3).astimezone(UTC)
    assert clocks["resolution"]["due_at"] == madrid(10, 55, day=3).astimezone(UTC)
    started = events(db, "sla.started")
    assert {e["data"]["metric"]: e["data"]["target_seconds"] for e in started} == {
        "first_response": 900,
        "resolution": 7200,
    }

    # Overnight is closed time: at 09:05 next day the clock has not run out.
    frozen.set(madrid(9, 5, day=3))
    await fire_timers()
    assert events(db, "sla.breached") == []
    frozen.set(madrid(9, 11, day=3))
    await fire_timers()
    assert [e["data"]["metric"] for e in events(db, "sla.breached")] == ["first_response"]


# --- 4. signed outbound webhooks -----------------------------------------------------------

HELPDESK_RULES = """\
routing:
  - name: ticket
    when: {{keywords: [factura]}}
    action: helpdesk
integrations:
  helpdesk:
    url: {url}/hook
    secret_env: HELPDESK_SECRET
    max_attempts: 3
    reply: "Abrimos un ticket"
"""


async def _ticket(client: httpx.AsyncClient, db: Db) -> int:
    await say(client, "tengo un problema con mi factura")
    out = db.execute("SELECT text FROM messages WHERE direction = 'out' ORDER BY id").fetchall()
    assert [m["text"] for m in out] == ["Abrimos un ticket"]
    decision = events(db, "routing.decision")[-1]["data"]
    assert decision["rule"] == "ticket" and decision["action"] == "helpdesk"
    row = db.execute("SELECT id FROM conversations").fetchone()
    assert row is not None
    return int(row["id"])


def _call(db: Db) -> dict[str, Any]:
    rows = db.execute("SELECT * FROM integration_calls").fetchall()
    assert len(rows) == 1, rows
    row: dict[str, Any] = rows[0]
    return row


async def test_routing_action_webhook_is_signed_and_retried_until_delivered(
    client: httpx.AsyncClient, db: Db, frozen: Any
) -> None:
    configure(HELPDESK_SECRET="hd-secret")
    receiver = WebhookReceiver(answers=[500, 503, (200, {"ticket": "T-9"})])
    async with LocalServer(receiver.app()) as server:
        use_rules(HELPDESK_RULES.format(url=server.url))
        cid = await _ticket(client, db)
        assert len(receiver.requests) == 1
        assert _call(db)["status"] == "pending"
        await fire_timers()
        assert len(receiver.requests) == 2
        await fire_timers()
        assert len(receiver.requests) == 3
        await fire_timers()  # nothing left to retry
        assert len(receiver.requests) == 3

    deliveries = {r["headers"]["x-traza-delivery"] for r in receiver.requests}
    assert deliveries == {str(_call(db)["id"])}
    for n, request in enumerate(receiver.requests, start=1):
        assert_signed(request, "hd-secret")
        assert request["headers"]["x-traza-event"] == "routing.action"
        assert request["body"]["event"] == "routing.action"
        assert request["body"]["attempt"] == n
        assert request["body"]["conversation_id"] == cid
        assert request["body"]["data"]["rule"] == "ticket"
        texts = [m["text"] for m in request["body"]["data"]["messages"]]
        assert texts == ["tengo un problema con mi factura"]

    call = _call(db)
    assert (call["status"], call["attempts"], call["event"]) == ("delivered", 3, "routing.action")
    assert call["response"] == {"ticket": "T-9"} and call["response_status"] == 200

    timeline = (await client.get(f"/conversations/{cid}/timeline", headers=ADMIN)).json()
    outcomes = [e for e in timeline if e["kind"].startswith("integration.")]
    assert [e["kind"] for e in outcomes] == [
        "integration.queued",
        "integration.failed",
        "integration.failed",
        "integration.delivered",
    ]
    assert [e["data"].get("status_code") for e in outcomes[1:]] == [500, 503, 200]
    assert outcomes[1]["data"]["retry_in_seconds"] < outcomes[2]["data"]["retry_in_seconds"]
    assert outcomes[3]["data"]["response"] == {"ticket": "T-9"}
    assert outcomes[3]["actor"] == "system:integration:helpdesk"


async def test_webhook_failing_every_attempt_is_dead_lettered(
    client: httpx.AsyncClient, db: Db, frozen: Any
) -> None:
    configure(HELPDESK_SECRET="hd-secret")
    receiver = WebhookReceiver(answers=[500, 500, 500, 500, 500])
    async with LocalServer(receiver.app()) as server:
        use_rules(HELPDESK_RULES.format(url=server.url))
        await _ticket(client, db)
        for _ in range(4):
            await fire_timers()
    assert len(receiver.requests) == 3  # max_attempts, never more
    call = _call(db)
    assert (call["status"], call["attempts"], call["last_error"]) == ("dead", 3, "HTTP 500")
    assert len(events(db, "integration.failed")) == 2
    dead = events(db, "integration.dead_lettered")
    assert len(dead) == 1 and dead[0]["data"]["attempt"] == 3


async def test_webhook_answered_with_a_client_error_is_dead_at_once(
    client: httpx.AsyncClient, db: Db, frozen: Any
) -> None:
    configure(HELPDESK_SECRET="hd-secret")
    receiver = WebhookReceiver(answers=[(400, {"error": "bad ticket"}), 200])
    async with LocalServer(receiver.app()) as server:
        use_rules(HELPDESK_RULES.format(url=server.url))
        await _ticket(client, db)
        await fire_timers()
    assert len(receiver.requests) == 1
    call = _call(db)
    assert (call["status"], call["attempts"], call["response_status"]) == ("dead", 1, 400)
    assert events(db, "integration.failed") == []
    dead = events(db, "integration.dead_lettered")
    assert len(dead) == 1 and dead[0]["data"]["status_code"] == 400


async def test_webhook_without_its_secret_is_dead_lettered_naming_the_variable(
    client: httpx.AsyncClient, db: Db, frozen: Any
) -> None:
    configure(HELPDESK_SECRET=None)
    receiver = WebhookReceiver()
    async with LocalServer(receiver.app()) as server:
        use_rules(HELPDESK_RULES.format(url=server.url))
        await _ticket(client, db)
        await fire_timers()
    assert receiver.requests == []  # nothing unsigned ever leaves
    call = _call(db)
    assert call["status"] == "dead" and "HELPDESK_SECRET" in call["last_error"]
    dead = events(db, "integration.dead_lettered")
    assert len(dead) == 1 and "HELPDESK_SECRET" in dead[0]["data"]["error"]


# --- 5. rules reload -----------------------------------------------------------------------

GOOD_RULES = """\
routing:
  - name: salary-to-general
    when: {intents: [salary]}
    team: general
teams:
  general:
    hours:
      timezone: Europe/Madrid
      weekly:
        mon: ["09:00-14:00", "15:00-18:00"]
integrations:
  helpdesk:
    url: http://127.0.0.1:9/hook
    secret: x
    max_attempts: 3
"""

# Each bad file: (text, the lines that name the problem, what is on that line, its words).
# Overlapping ranges are checked across a day's list: the `weekly:` key or the day's line.
BAD_RULES = {
    "wrong type": (
        GOOD_RULES.replace("max_attempts: 3", "max_attempts: many"),
        {15},
        "max_attempts: many",
        "valid integer",
    ),
    "unknown team": (
        GOOD_RULES.replace("team: general", "team: ventas"),
        {4},
        "team: ventas",
        "unknown team 'ventas'",
    ),
    "overlapping ranges": (
        GOOD_RULES.replace('"15:00-18:00"', '"13:00-18:00"'),
        {10},
        "mon:",
        "ranges overlap (13:00 starts before 14:00)",
    ),
    "unknown time zone": (
        GOOD_RULES.replace("Europe/Madrid", "Mars/Olympus"),
        {8},
        "timezone: Mars/Olympus",
        "unknown time zone 'Mars/Olympus'",
    ),
}


async def _rules(client: httpx.AsyncClient) -> dict[str, Any]:
    response = await client.get("/rules", headers=ADMIN)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_bad_rules_are_refused_with_their_line_and_the_previous_rules_stay(
    client: httpx.AsyncClient, db: Db, frozen: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = use_rules(GOOD_RULES)
    shown = await _rules(client)
    good = shown["version"]
    assert good and shown["source"] == str(path) and shown["last_error"] is None
    assert shown["rules"]["routing"][0]["name"] == "salary-to-general"

    for case, (text, lines, on_line, words) in BAD_RULES.items():
        path.write_text(text, encoding="utf-8")
        response = await client.post("/rules/reload", headers=ADMIN)
        assert response.status_code == 422, (case, response.text)
        problems = response.json()["detail"]["problems"]
        assert len(problems) == 1, (case, problems)
        assert problems[0]["file"] == str(path), case
        line = problems[0]["line"]
        assert line in lines and on_line in text.splitlines()[line - 1], (case, problems)
        assert words in problems[0]["problem"], (case, problems)
        shown = await _rules(client)
        assert shown["version"] == good, case
        assert shown["last_error"] and f"{path}:{line}:" in shown["last_error"], case

        await say(client, f"hola, {case}")
        decision = events(db, "routing.decision")[-1]["data"]
        assert decision["rules_version"] == good, case

    # The file is watched: a valid change is picked up without a reload...
    monkeypatch.setattr("traza.rules.active.CHECK_EVERY_SECONDS", 0)
    newer = GOOD_RULES.replace("salary-to-general", "salary-v2")
    path.write_text(newer, encoding="utf-8")
    stamp = path.stat().st_mtime + 5
    os.utime(path, (stamp, stamp))
    shown = await _rules(client)
    assert shown["version"] not in (None, good) and shown["last_error"] is None
    assert shown["rules"]["routing"][0]["name"] == "salary-v2"
    newest = shown["version"]
    await say(client, "cuánto pagan")
    decision = events(db, "routing.decision")[-1]["data"]
    assert (decision["rule"], decision["rules_version"]) == ("salary-v2", newest)

    # ...and an invalid change is refused, the last good version staying active.
    path.write_text(BAD_RULES["unknown time zone"][0], encoding="utf-8")
    os.utime(path, (stamp + 5, stamp + 5))
    shown = await _rules(client)
    assert shown["version"] == newest
    assert shown["last_error"] and "Mars/Olympus" in shown["last_error"]
    assert f"{path}:8:" in shown["last_error"]


def test_rules_check_offline_prints_each_problem_with_its_line(tmp_path: Path) -> None:
    bad = tmp_path / "rules.yaml"
    bad.write_text(
        GOOD_RULES.replace("Europe/Madrid", "Mars/Olympus").replace(
            "max_attempts: 3", "max_attempts: many"
        ),
        encoding="utf-8",
    )
    result = traza_cli("rules", "check", str(bad), "--offline", env=dict(os.environ))
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert sorted(lines) == sorted(
        [
            f"{bad}:8: teams.general.hours.timezone: unknown time zone 'Mars/Olympus' "
            "(use an IANA name like Europe/Madrid)",
            f"{bad}:15: integrations.helpdesk.max_attempts: "
            "Input should be a valid integer, unable to parse string as an integer",
        ]
    )

    good = tmp_path / "good.yaml"
    good.write_text(GOOD_RULES, encoding="utf-8")
    result = traza_cli("rules", "check", str(good), "--offline", env=dict(os.environ))
    assert result.returncode == 0, result.stderr
    assert "valid, version" in result.stdout


# --- 6. start-up refusal -------------------------------------------------------------------


async def test_the_service_refuses_to_start_on_invalid_rules(database_url: str) -> None:
    from api.main import create_app
    from traza.db.queue import app as jobs
    from traza.rules import active
    from traza.rules.loader import RulesError

    path = use_rules(GOOD_RULES.replace("team: general", "team: ventas"))
    app = create_app(worker=False)
    with pytest.raises(RulesError) as refused:
        async with app.router.lifespan_context(app):
            pytest.fail("the service started with invalid rules")
    await jobs.close_async()  # the failed start-up leaves the job pool open
    assert [(p.line, p.where) for p in refused.value.problems] == [(4, "routing[0].team")]
    assert active.status()["version"] is None
    assert f"{path}:4:" in str(refused.value)


def test_traza_serve_exits_2_naming_the_line_of_invalid_rules(
    database_url: str, tmp_path: Path
) -> None:
    (tmp_path / "rules.yaml").write_text(
        GOOD_RULES.replace("Europe/Madrid", "Mars/Olympus"), encoding="utf-8"
    )
    env = {**os.environ, "TRAZA_CONFIG_DIR": str(tmp_path), "DATABASE_URL": database_url}
    port = str(free_port())
    result = traza_cli("serve", "--port", port, "--no-worker", env=env, timeout=60)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert "traza will not start" in result.stderr
    assert f"{tmp_path / 'rules.yaml'}:8: teams.general.hours.timezone" in result.stderr
    assert "Mars/Olympus" in result.stderr
    assert "Uvicorn running" not in result.stderr + result.stdout
