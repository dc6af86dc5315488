"""The seed's autonomous flow, days 1 to 7, through the real scheduler tables, the real
graph and a fake Graph API, with a frozen clock; plus the follow-up agent's limits."""

from __future__ import annotations

import json
import os
import time
import uuid
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from tests.fakes.servers import GraphAPI, LocalServer
from tests.support import (
    ADMIN,
    configure,
    drain,
    fire_timers,
    post_webhook,
    traza_cli,
    wa_payload,
)
from tests.support.recruiting import (
    CANDIDATE,
    VACANCY,
    WA,
    agent_config,
    at,
    candidate_sends,
    event,
    followups,
    sent_bodies,
)
from traza.clock import FrozenClock
from traza.recruiting.agents import active_agents, load_agents
from traza.rules.loader import RulesError

MAD = ZoneInfo("Europe/Madrid")


async def apply_for_job(client: httpx.AsyncClient, frozen: FrozenClock) -> None:
    await event(
        client,
        type="application.created",
        occurred_at=frozen.now(),
        candidate=CANDIDATE,
        vacancy=VACANCY,
        application_id="app-1",
    )


async def button(client: httpx.AsyncClient, payload: str, title: str) -> None:
    await candidate_sends(client, "button", {"payload": payload, "text": title})


async def test_the_seed_flow_day_1_to_7(
    client: httpx.AsyncClient, db: Any, frozen: FrozenClock, graph_api: GraphAPI
) -> None:
    agent_config(
        **{
            "no_activity: {after: 3d}": "no_activity: {after: 2d}",
            "stage_changed: {stages: [interview, offer]}": "stage_changed: {stages: [entrevista]}",
            "days: [mon, tue, wed, thu, fri]": "days: [mon, tue, wed, thu, fri, sat, sun]",
        }
    )
    # Day 1, hour 0: the candidate applies.
    frozen.set(at(1, 10))
    await apply_for_job(client, frozen)
    planned = followups(db)
    assert [(f["trigger"], f["due_at"]) for f in planned] == [
        ("application_received", at(1, 11)),
        ("no_activity", at(3, 10)),
    ]
    await fire_timers()  # nothing is due yet: the jobs re-check the clock and wait
    assert sent_bodies(graph_api) == []

    # Day 1, hour 1: confirmation (a template: the candidate never wrote, no open window).
    frozen.set(at(1, 11))
    await fire_timers()
    [confirmation] = sent_bodies(graph_api)
    assert confirmation["type"] == "template"
    assert confirmation["template"]["name"] == "aplicacion_recibida"
    params = [p["text"] for p in confirmation["template"]["components"][0]["parameters"]]
    assert params == ["María", "Desarrolladora Backend"]

    # Day 3: no movement → status update.
    frozen.set(at(3, 10))
    await fire_timers()
    assert sent_bodies(graph_api)[-1]["template"]["name"] == "seguimiento_sin_respuesta"

    # Day 5: moved to interview, and the interview is planned for day 7 at 11:00.
    frozen.set(at(5, 10))
    await event(
        client,
        type="application.stage_changed",
        application_id="app-1",
        stage="entrevista",
        changed_by="laura",
    )
    await event(
        client,
        type="interview.scheduled",
        application_id="app-1",
        interview_id="int-1",
        starts_at=at(7, 11).isoformat(),
        ends_at=at(7, 11, 45).isoformat(),
        video_link="https://meet.example.com/abc",
        interviewer={"external_id": "iv-1", "name": "Laura P."},
    )
    await fire_timers()
    notice = sent_bodies(graph_api)[-1]
    assert notice["template"]["name"] == "cambio_de_etapa"
    assert [p["text"] for p in notice["template"]["components"][0]["parameters"]] == [
        "María",
        "entrevista",
        "Desarrolladora Backend",
    ]

    # Day 6, 24 h before: confirm attendance (template with reply buttons).
    frozen.set(at(6, 11))
    await fire_timers()
    ask = sent_bodies(graph_api)[-1]
    assert ask["template"]["name"] == "confirmar_entrevista"
    interview_id = db.execute("SELECT id FROM interviews").fetchone()["id"]

    # The candidate confirms by button.
    frozen.set(at(6, 11, 5))
    await button(client, f"interview:confirm:{interview_id}", "Confirmo")
    row = db.execute("SELECT status, confirmed_at FROM interviews").fetchone()
    assert row["status"] == "confirmed" and row["confirmed_at"] == at(6, 11, 5)
    assert "Gracias por confirmar" in sent_bodies(graph_api)[-1]["text"]["body"]

    # Day 7, 1 h before: reminder with the link (free text: the window is open now).
    frozen.set(at(7, 10))
    await fire_timers()
    reminder = sent_bodies(graph_api)[-1]
    assert reminder["type"] == "text"
    assert "https://meet.example.com/abc" in reminder["text"]["body"]
    assert "11:00" in reminder["text"]["body"]

    # After the interview: thanks and the timeline, 2 h after it is marked completed.
    frozen.set(at(7, 11, 50))
    await event(client, type="interview.completed", interview_id="int-1")
    frozen.set(at(7, 13, 50))
    await fire_timers()
    thanks = sent_bodies(graph_api)[-1]
    assert "Gracias por tu tiempo" in thanks["text"]["body"]
    assert "5 días hábiles" in thanks["text"]["body"]

    final = {(f["trigger"], f["status"], f["fired_at"]) for f in followups(db)}
    assert ("application_received", "sent", at(1, 11)) in final
    assert ("no_activity", "sent", at(3, 10)) in final
    assert ("stage_changed", "sent", at(5, 10)) in final
    assert ("interview_24h", "sent", at(6, 11)) in final
    assert ("interview_1h", "sent", at(7, 10)) in final
    assert ("post_interview", "sent", at(7, 13, 50)) in final
    statuses = {f["trigger"]: f["status"] for f in followups(db) if f["status"] != "sent"}
    assert statuses == {"interview_unconfirmed": "cancelled", "no_activity": "cancelled"}
    assert len(sent_bodies(graph_api)) == 7  # six follow-ups and the confirmation reply
    keys = db.execute(
        "SELECT idempotency_key FROM messages WHERE direction = 'out' ORDER BY id"
    ).fetchall()
    assert len({k["idempotency_key"] for k in keys}) == len(keys)
    kinds = [
        e["kind"]
        for e in db.execute("SELECT kind FROM trace_events ORDER BY id").fetchall()
        if e["kind"].startswith("followup.")
    ]
    assert kinds.count("followup.drafted") == 6

    # The seed's "Monitorear Agente" figures.
    figures = (await client.get("/recruiting/agents/seguimiento", headers=ADMIN)).json()
    assert figures["messages_sent"] == 6
    assert figures["answer_rate"] == round(100 * 4 / 6, 1)  # the button answered the first 4
    assert figures["escalations"] == 0 and figures["paused"] == 0
    assert figures["recent_activity"][0]["trigger"] == "post_interview"
    assert figures["recent_activity"][0]["candidate"] == "María García"


# --- limits ----------------------------------------------------------------------------


async def test_a_message_due_friday_2100_waits_for_monday_0900_in_the_candidates_zone(
    client: httpx.AsyncClient, db: Any, frozen: FrozenClock, graph_api: GraphAPI
) -> None:
    agent_config()
    mexico = ZoneInfo("America/Mexico_City")
    frozen.set(datetime(2026, 3, 6, 20, 0, tzinfo=mexico))  # Friday 20:00 in Mexico City
    await event(
        client,
        type="application.created",
        occurred_at=frozen.now(),
        candidate=CANDIDATE | {"timezone": "America/Mexico_City"},
        vacancy=VACANCY,
        application_id="app-1",
    )
    frozen.set(datetime(2026, 3, 6, 21, 0, tzinfo=mexico))  # due: Friday 21:00
    await fire_timers()
    assert sent_bodies(graph_api) == []
    [first] = [f for f in followups(db) if f["trigger"] == "application_received"]
    assert first["status"] == "scheduled"
    assert first["due_at"] == datetime(2026, 3, 9, 9, 0, tzinfo=mexico)  # Monday 09:00
    deferred = db.execute(
        "SELECT data FROM trace_events WHERE kind = 'followup.deferred'"
    ).fetchone()
    assert deferred["data"]["until"].startswith("2026-03-09T09:00:00-06:00")
    frozen.set(datetime(2026, 3, 8, 12, 0, tzinfo=mexico))  # Sunday: still waiting
    await fire_timers()
    assert sent_bodies(graph_api) == []
    frozen.set(datetime(2026, 3, 9, 9, 0, tzinfo=mexico))
    await fire_timers()
    assert [b["template"]["name"] for b in sent_bodies(graph_api)] == ["aplicacion_recibida"]


async def test_three_unanswered_attempts_pause_the_agent_until_the_candidate_writes(
    client: httpx.AsyncClient, db: Any, frozen: FrozenClock, graph_api: GraphAPI
) -> None:
    agent_config(**{"no_activity: {after: 3d}": "no_activity: {after: 1h}"})
    frozen.set(at(1, 10))
    await apply_for_job(client, frozen)
    frozen.set(at(1, 11, 30))  # application_received (1) and no_activity (2)
    await fire_timers()
    for n, stage in enumerate(("screening", "assessment", "review"), start=1):
        frozen.set(at(1 + n, 10))
        await event(client, type="application.stage_changed", application_id="app-1", stage=stage)
        frozen.set(at(1 + n, 11, 5))
        await fire_timers()
    statuses = [(f["trigger"], f["status"]) for f in followups(db)]
    assert statuses.count(("no_activity", "sent")) == 2  # the 2nd and 3rd attempts
    assert ("no_activity", "paused") in statuses
    paused = [f for f in followups(db) if f["status"] == "paused"]
    assert "3 messages without an answer" in paused[0]["reason"]
    assert len(sent_bodies(graph_api)) == 3

    # The candidate answers: the agent may write again.
    response = await post_webhook(
        client,
        wa_payload(
            messages=[
                {
                    "from": WA,
                    "id": f"wamid.{uuid.uuid4().hex}",
                    "timestamp": str(int(time.time())),
                    "type": "text",
                    "text": {"body": "Sigo interesado, gracias"},
                }
            ]
        ),
    )
    assert response.status_code == 200
    await drain()
    frozen.set(at(5, 10))
    await event(client, type="application.stage_changed", application_id="app-1", stage="final")
    frozen.set(at(5, 11, 5))
    await fire_timers()
    assert followups(db)[-1]["status"] == "sent"


async def test_stale_follow_ups_are_cancelled_or_skipped(
    client: httpx.AsyncClient, db: Any, frozen: FrozenClock, graph_api: GraphAPI
) -> None:
    agent_config()
    frozen.set(at(1, 10))
    await apply_for_job(client, frozen)
    await event(
        client,
        type="interview.scheduled",
        application_id="app-1",
        interview_id="int-1",
        starts_at=at(4, 11).isoformat(),
        video_link="https://meet.example.com/a",
    )
    # The interview moves: the reminders planned for the old time are cancelled.
    await event(
        client,
        type="interview.rescheduled",
        application_id="app-1",
        interview_id="int-1",
        starts_at=at(4, 16).isoformat(),
    )
    reminders = [f for f in followups(db) if f["trigger"] == "interview_1h"]
    assert [(f["status"], f["due_at"]) for f in reminders] == [
        ("cancelled", at(4, 10)),
        ("scheduled", at(4, 15)),
    ]
    # A human takes the conversation over: the agent's follow-up is skipped when it fires.
    frozen.set(at(1, 11))
    await fire_timers()  # the confirmation opens the conversation
    cid = db.execute("SELECT id FROM conversations").fetchone()["id"]
    taken = await client.post(f"/conversations/{cid}/takeover", headers=ADMIN)
    assert taken.status_code == 200, taken.text
    frozen.set(at(3, 16))  # 24 h before the new time
    await fire_timers()
    skipped = [f for f in followups(db) if f["trigger"] == "interview_24h"]
    assert skipped[-1]["status"] == "skipped"
    assert skipped[-1]["reason"] == "a human owns the conversation"
    bot_messages = db.execute(
        "SELECT count(*) AS n FROM messages WHERE direction = 'out' AND actor LIKE 'bot:%' "
        "AND created_at > (SELECT min(created_at) FROM handoffs)"
    ).fetchone()
    assert bot_messages["n"] == 0


async def test_opt_out_cancels_every_planned_follow_up_when_it_fires(
    client: httpx.AsyncClient, db: Any, frozen: FrozenClock, graph_api: GraphAPI
) -> None:
    agent_config()
    frozen.set(at(1, 10))
    await apply_for_job(client, frozen)
    frozen.set(at(1, 11))
    await fire_timers()
    response = await post_webhook(
        client,
        wa_payload(
            messages=[
                {
                    "from": WA,
                    "id": f"wamid.{uuid.uuid4().hex}",
                    "timestamp": str(int(time.time())),
                    "type": "text",
                    "text": {"body": "baja"},
                }
            ]
        ),
    )
    assert response.status_code == 200
    await drain()
    frozen.set(at(4, 10))
    await fire_timers()
    last = followups(db)[-1]
    assert (last["trigger"], last["status"], last["reason"]) == (
        "no_activity",
        "cancelled",
        "the candidate opted out",
    )
    assert sent_bodies(graph_api)[-1]["type"] == "text"  # the one opt-out confirmation


def test_a_template_that_breaks_a_limit_is_refused_when_the_agent_loads() -> None:
    good = agent_config()
    assert "seguimiento" in active_agents()
    path = good / "agents" / "seguimiento.yaml"
    text = path.read_text(encoding="utf-8")
    bad = text.replace(
        "Hola {nombre}, recibimos tu aplicación para {vacante}.",
        "Hola {nombre}, el salario es de 3.500 € al mes y empiezas el 1 de abril.",
    )
    path.write_text(bad, encoding="utf-8")
    with pytest.raises(RulesError) as refused:
        load_agents(good / "agents")
    message = str(refused.value)
    assert "agent 'seguimiento'" in message and "templates.application_received.es" in message
    assert "salary" in message and "3.500" in message
    # The running service keeps the agent it had: the bad template never sends.
    kept = active_agents()["seguimiento"]
    assert "3.500" not in json.dumps(kept.model_dump(mode="json"), ensure_ascii=False)
    checked = traza_cli("agents", "check", str(good / "agents"), env=dict(os.environ))
    assert checked.returncode == 1 and "3.500" in checked.stderr and "salary" in checked.stderr


async def test_a_template_rendered_with_ats_data_is_checked_again_at_send(
    client: httpx.AsyncClient, db: Any, frozen: FrozenClock, graph_api: GraphAPI
) -> None:
    agent_config()
    frozen.set(at(1, 10))
    await event(
        client,
        type="application.created",
        occurred_at=frozen.now(),
        candidate=CANDIDATE,
        vacancy={**VACANCY, "title": "Cajero, 3.500 € al mes"},
        application_id="app-1",
    )
    frozen.set(at(1, 11))
    await fire_timers()
    [first] = [f for f in followups(db) if f["trigger"] == "application_received"]
    assert first["status"] == "skipped"
    verdict = db.execute(
        "SELECT data FROM trace_events WHERE kind = 'guardrail.verdict'"
    ).fetchone()
    assert verdict["data"]["allowed"] is False and "salary" in verdict["data"]["policies"]
    assert "3.500" in verdict["data"]["span"]
    assert "3.500" not in json.dumps(sent_bodies(graph_api))
    [handoff] = db.execute("SELECT reason, summary FROM handoffs").fetchall()
    assert handoff["reason"] == "guardrail" and "3.500" in handoff["summary"]


async def test_events_are_idempotent_and_bad_ones_are_refused(
    client: httpx.AsyncClient, db: Any, frozen: FrozenClock
) -> None:
    agent_config()
    body = {
        "id": "evt-1",
        "type": "application.created",
        "candidate": CANDIDATE,
        "vacancy": VACANCY,
        "application_id": "app-1",
    }
    assert (await event(client, **body))["status"] == "applied"
    assert (await event(client, **body))["status"] == "duplicate"
    assert db.execute("SELECT count(*) AS n FROM applications").fetchone()["n"] == 1
    assert db.execute("SELECT count(*) AS n FROM followups").fetchone()["n"] == 2
    headers = {**ADMIN, "content-type": "application/json"}
    bad = await client.post(
        "/recruiting/events",
        json={
            "id": "evt-2",
            "type": "application.stage_changed",
            "application_id": "nope",
            "stage": "x",
        },
        headers=headers,
    )
    assert bad.status_code == 422 and "unknown application 'nope'" in bad.text
    wrong = await client.post(
        "/recruiting/events", json={"id": "evt-3", "type": "party.started"}, headers=headers
    )
    assert wrong.status_code == 422
    assert (await client.post("/recruiting/events", json=body)).status_code == 401


async def test_inactive_candidates_are_invited_back_once_per_period(
    client: httpx.AsyncClient, db: Any, frozen: FrozenClock, graph_api: GraphAPI
) -> None:
    from traza.recruiting.followups import plan_reactivations

    agent_config(**{"reactivation: {enabled: false, after: 90d}": "reactivation: {after: 30d}"})
    frozen.set(at(1, 10))
    await apply_for_job(client, frozen)
    await event(
        client,
        type="application.stage_changed",
        application_id="app-1",
        stage="rejected",
        occurred_at=at(1, 12).isoformat(),
    )
    frozen.set(at(20, 10))
    assert await plan_reactivations() == 0  # 19 days: not inactive yet
    frozen.set(at(40, 10))
    assert await plan_reactivations() == 1
    assert await plan_reactivations() == 0  # once per period
    await fire_timers()
    names = [b["template"]["name"] for b in sent_bodies(graph_api) if "template" in b]
    assert names.count("reactivacion") == 1 and names.count("cierre_proceso") == 1
    [invitation] = [
        b for b in sent_bodies(graph_api) if b.get("template", {}).get("name") == "reactivacion"
    ]
    assert [p["text"] for p in invitation["template"]["components"][0]["parameters"]] == [
        "María",
        "Desarrolladora Backend",
    ]


async def test_the_model_cannot_read_another_candidates_data_through_the_tools(
    client: httpx.AsyncClient, db: Any, frozen: FrozenClock
) -> None:
    from tests.fakes.servers import OpenAICompatible
    from tests.support import say

    agent_config()
    frozen.set(at(1, 10))
    await apply_for_job(client, frozen)  # María: application app-1
    await event(
        client,
        type="application.created",
        candidate=CANDIDATE
        | {
            "external_id": "cand-2",
            "name": "Pedro López",
            "wa_id": "5215550002222",
            "email": "pedro@example.com",
        },
        vacancy={"external_id": "vac-2", "title": "Jefe de Almacén"},
        application_id="app-2",
    )
    other = db.execute(
        "SELECT a.id FROM applications a JOIN candidates k ON k.id = a.candidate_id "
        "WHERE k.name = 'Pedro López'"
    ).fetchone()["id"]
    own = db.execute("SELECT id FROM applications WHERE external_id = 'app-1'").fetchone()["id"]
    model = OpenAICompatible(
        classification={
            "intent": "application_status",
            "language": "es",
            "frustration": False,
            "wants_human": False,
            "opt_out": False,
            "confidence": 0.9,
        },
        tool_calls=[
            ("application_status", {"application_id": other}),
            ("application_status", {"application_id": own, "candidate_id": 2}),
            ("application_status", {"application_id": own}),
        ],
        reply="Tu aplicación sigue en revisión.",
    )
    async with LocalServer(model.app()) as server:
        configure(
            OPENAI_BASE_URL=server.url + "/v1",
            OPENAI_API_KEY="test",
            TRAZA_LLM_MODEL="fake-model",
            TRAZA_LLM_TIMEOUT="5",
        )
        await say(client, "¿Cómo va mi aplicación?", wa_id=WA)
    rounds = [
        r
        for r in model.requests
        if "application_status" in [t["function"]["name"] for t in r.get("tools") or []]
    ]
    assert len(rounds) == 4  # three tool calls, then the reply
    # Each round's request carries the earlier tool results: take the last one's.
    last = [m["content"] for m in rounds[-1]["messages"] if m.get("role") == "tool"]
    assert len(last) == 3
    refused, forged, allowed = (json.loads(c) for c in last)
    assert "error" in refused and "Pedro" not in last[0] and "Almacén" not in last[0]
    assert "error" in forged  # a candidate_id argument is not part of the tool
    assert "Desarrolladora Backend" in last[2] and "Pedro" not in last[2]
    sent = db.execute(
        "SELECT text FROM messages WHERE direction = 'out' ORDER BY id DESC LIMIT 1"
    ).fetchone()
    assert sent["text"] == "Tu aplicación sigue en revisión."
