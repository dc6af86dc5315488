"""Reports and metrics: figures from a known set of conversations, CSV, validation, scope,
the follow-up agent's monitor, and the Prometheus exposition."""

from __future__ import annotations

import csv
import io
import os
import tempfile
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import psycopg
import pytest
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from tests.fakes.servers import LocalServer, OpenAICompatible
from tests.support import (
    ADMIN,
    PHONE_NUMBER_ID,
    add_agent,
    add_team,
    configure,
    post_webhook,
    say,
    status,
    use_rules,
    wa_payload,
)
from traza.clock import FrozenClock

ROOT = Path(__file__).resolve().parents[2]
MAD = ZoneInfo("Europe/Madrid")
OTHER_INBOX = "222000222"

RULES = """
teams:
  recruiting:
    hours:
      timezone: Europe/Madrid
      weekly:
        mon: ["09:00-18:00"]
        tue: ["09:00-18:00"]
        wed: ["09:00-18:00"]
        thu: ["09:00-18:00"]
        fri: ["09:00-18:00"]
"""


def at(day: int, hour: int, minute: int = 0, second: int = 0) -> datetime:
    """March 2026 in Madrid (UTC+1): the 2nd is a Monday."""
    return datetime(2026, 3, day, hour, minute, second, tzinfo=MAD)


class Rows:
    """Consistent rows inserted with known timestamps (the tables the product writes)."""

    def __init__(self, db: psycopg.Connection[Any]) -> None:
        self.db = db

    def one(self, sql: str, *args: Any) -> int:
        row = self.db.execute(sql + " RETURNING id", args).fetchone()
        assert row is not None
        return int(row["id"])

    def inbox(self, phone_number_id: str) -> int:
        return self.one("INSERT INTO inboxes (phone_number_id) VALUES (%s)", phone_number_id)

    def contact(self, name: str) -> int:
        return self.one(
            "INSERT INTO contacts (wa_id, profile_name) VALUES (%s, %s)",
            f"52155{uuid.uuid4().int % 10**8:08d}",
            name,
        )

    def conversation(
        self, inbox: int, contact: int, created: datetime, team: str | None = None
    ) -> int:
        return self.one(
            "INSERT INTO conversations (inbox_id, contact_id, team, thread_id, created_at, "
            "updated_at) VALUES (%s, %s, %s, %s, %s, %s)",
            inbox,
            contact,
            team,
            uuid.uuid4().hex,
            created,
            created,
        )

    def message(
        self,
        conversation: int,
        direction: str,
        created: datetime,
        *,
        actor: str = "customer",
        state: str | None = None,
        channel: str = "whatsapp",
        read_at: datetime | None = None,
    ) -> int:
        return self.one(
            "INSERT INTO messages (conversation_id, direction, type, text, actor, channel, "
            "status, created_at, read_at) VALUES (%s, %s, 'text', 'x', %s, %s, %s, %s, %s)",
            conversation,
            direction,
            actor,
            channel,
            state or ("received" if direction == "in" else "accepted"),
            created,
            read_at,
        )

    def handoff(
        self,
        conversation: int,
        reason: str,
        team: str,
        created: datetime,
        *,
        agent: str | None = None,
        first_response: datetime | None = None,
        closed: datetime | None = None,
        state: str = "open",
    ) -> int:
        return self.one(
            "INSERT INTO handoffs (conversation_id, status, reason, created_by, assigned_agent, "
            "team, created_at, first_response_at, closed_at) "
            "VALUES (%s, %s, %s, 'bot:traza', %s, %s, %s, %s, %s)",
            conversation,
            state,
            reason,
            agent,
            team,
            created,
            first_response,
            closed,
        )

    def sla(
        self, handoff: int, metric: str, state: str, started: datetime, stopped: datetime
    ) -> int:
        return self.one(
            "INSERT INTO sla_timers (handoff_id, metric, status, started_at, due_at, stopped_at) "
            "VALUES (%s, %s, %s, %s, %s, %s)",
            handoff,
            metric,
            state,
            started,
            stopped,
            stopped,
        )

    def csat(
        self, handoff: int, conversation: int, rating: int, when: datetime, agent: str, team: str
    ) -> int:
        return self.one(
            "INSERT INTO csat_ratings (handoff_id, conversation_id, rating, agent, team, bot, "
            "created_at) VALUES (%s, %s, %s, %s, %s, 'traza', %s)",
            handoff,
            conversation,
            rating,
            agent,
            team,
            when,
        )


@pytest.fixture
async def known_set(client: httpx.AsyncClient, db: Any) -> dict[str, Any]:
    """Seven conversations around Monday 2 and Tuesday 3 March 2026 (Madrid).

    C1 bot answers (bot-resolved). C2 asks for a person: recruiting, Ana answers in 10 min
    and resolves in 1 h, CSAT 5. C3 frustrated at 17:30 Monday: recruiting closes at
    18:00, Ana answers Tuesday 09:30 — 16 h on the wall, 1 h of business time; its
    first-response clock breached. C4 (the other inbox) negotiates salary: general (always
    open), Luis answers in 20 min, resolves in 1 h, the resolution clock breached, CSAT 3;
    the handoff notice failed to send. C5 started on Sunday, writes on Monday. C6 starts
    after the period. C7 opts out (no bot, no human).
    """
    await add_team(client, "recruiting")
    ana = await add_agent(client, "ana", teams=["recruiting"])
    luis = await add_agent(client, "luis", teams=["general"])
    use_rules(RULES)
    r = Rows(db)
    a, b = r.inbox(PHONE_NUMBER_ID), r.inbox(OTHER_INBOX)

    c1 = r.conversation(a, r.contact("María García"), at(2, 10))
    r.message(c1, "in", at(2, 10))
    r.message(c1, "out", at(2, 10, 0, 5), actor="bot:traza")

    c2 = r.conversation(a, r.contact("Pedro López"), at(2, 11), team="recruiting")
    r.message(c2, "in", at(2, 11))
    r.message(c2, "out", at(2, 11, 0, 5), actor="bot:traza", state="delivered")
    r.message(c2, "in", at(2, 11, 5))
    r.message(c2, "out", at(2, 11, 5, 1), actor="system:handoff")
    r.message(c2, "out", at(2, 11, 15), actor="human:ana", state="read")
    h2 = r.handoff(
        c2,
        "asks-for-person",
        "recruiting",
        at(2, 11, 5),
        agent="ana",
        first_response=at(2, 11, 15),
        closed=at(2, 12, 5),
        state="resolved",
    )
    r.sla(h2, "first_response", "met", at(2, 11, 5), at(2, 11, 15))
    r.sla(h2, "resolution", "met", at(2, 11, 5), at(2, 12, 5))
    r.csat(h2, c2, 5, at(2, 12, 10), "ana", "recruiting")

    c3 = r.conversation(a, r.contact("Carlos Ruiz"), at(2, 17, 30), team="recruiting")
    r.message(c3, "in", at(2, 17, 30))
    r.message(c3, "out", at(3, 9, 30), actor="human:ana", state="delivered")
    h3 = r.handoff(
        c3,
        "frustration",
        "recruiting",
        at(2, 17, 30),
        agent="ana",
        first_response=at(3, 9, 30),
        state="accepted",
    )
    r.sla(h3, "first_response", "breached", at(2, 17, 30), at(2, 17, 45))

    c4 = r.conversation(b, r.contact("Laura Sánchez"), at(3, 9), team="general")
    r.message(c4, "in", at(3, 9))
    r.message(c4, "out", at(3, 9, 0, 1), actor="system:handoff", state="failed")
    r.message(c4, "out", at(3, 9, 20), actor="human:luis", state="read")
    h4 = r.handoff(
        c4,
        "negotiation",
        "general",
        at(3, 9),
        agent="luis",
        first_response=at(3, 9, 20),
        closed=at(3, 10),
        state="resolved",
    )
    r.sla(h4, "first_response", "met", at(3, 9), at(3, 9, 20))
    r.sla(h4, "resolution", "breached", at(3, 9), at(3, 9, 50))
    r.csat(h4, c4, 3, at(3, 10, 5), "luis", "general")

    c5 = r.conversation(a, r.contact("Ana Martín"), at(1, 20))
    r.message(c5, "in", at(2, 9))
    r.message(c5, "out", at(2, 9, 0, 5), actor="bot:traza")

    c6 = r.conversation(a, r.contact("Luis Pérez"), at(4, 10))
    r.message(c6, "in", at(4, 10))
    r.message(c6, "out", at(4, 10, 0, 5), actor="bot:traza")

    c7 = r.conversation(a, r.contact("Rosa Díaz"), at(3, 15))
    r.message(c7, "in", at(3, 15))
    r.message(c7, "out", at(3, 15, 0, 2), actor="system:opt-out")
    return {"ana": ana, "luis": luis}


PERIOD = {"from": "2026-03-02", "to": "2026-03-04", "tz": "Europe/Madrid"}


async def report(client: httpx.AsyncClient, headers: dict[str, str] = ADMIN, **params: Any):
    response = await client.get("/reports/conversations", params=PERIOD | params, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


async def test_report_figures_from_the_known_set(client: httpx.AsyncClient, known_set) -> None:
    data = await report(client)
    assert data["period"] == {
        "from": "2026-03-02T00:00:00+01:00",
        "to": "2026-03-04T00:00:00+01:00",
        "tz": "Europe/Madrid",
    }
    t = data["totals"]
    assert t["conversations"] == {
        "started": 5,
        "active": 6,
        "bot_resolved": 1,
        "handed_off": 3,
        "other": 1,
    }
    assert t["messages"] == {
        "in": 7,
        "out": 8,
        "out_by_sender": {"bot": 3, "human": 3, "system": 2},
        "out_not_sent": 1,
    }
    assert t["handoffs"] == {
        "created": 3,
        "by_reason": {"asks-for-person": 1, "frustration": 1, "negotiation": 1},
    }
    # 10 min, 20 min, and C3's 16 wall-clock hours that hold 1 h of business time.
    assert t["first_response"] == {
        "count": 3,
        "median_seconds": 1200.0,
        "p90_seconds": 3120.0,
        "mean_seconds": 1800.0,
    }
    assert t["resolution"] == {
        "count": 2,
        "median_seconds": 3600.0,
        "p90_seconds": 3600.0,
        "mean_seconds": 3600.0,
    }
    assert t["sla"] == {
        "met": 3,
        "breached": 2,
        "hit_rate": 60.0,
        "by_metric": {
            "first_response": {"met": 2, "breached": 1},
            "next_response": {"met": 0, "breached": 0},
            "resolution": {"met": 1, "breached": 1},
        },
    }
    assert t["csat"] == {
        "count": 2,
        "average": 4.0,
        "distribution": {"1": 0, "2": 0, "3": 1, "4": 0, "5": 1},
    }
    assert data["scope"] == "all"
    assert "days" not in data


async def test_report_by_day(client: httpx.AsyncClient, known_set) -> None:
    data = await report(client, group="day")
    monday, tuesday = data["days"]
    assert (monday["day"], monday["from"], monday["to"]) == (
        "2026-03-02",
        "2026-03-02T00:00:00+01:00",
        "2026-03-03T00:00:00+01:00",
    )
    assert monday["conversations"] == {
        "started": 3,
        "active": 4,
        "bot_resolved": 1,
        "handed_off": 2,
        "other": 0,
    }
    assert tuesday["conversations"] == {
        "started": 2,
        "active": 3,
        "bot_resolved": 0,
        "handed_off": 1,
        "other": 1,
    }
    assert (monday["messages"]["in"], monday["messages"]["out"]) == (5, 5)
    assert (tuesday["messages"]["in"], tuesday["messages"]["out"]) == (2, 3)
    assert monday["handoffs"]["by_reason"] == {"asks-for-person": 1, "frustration": 1}
    # A response is counted on the day it was given: C3's on Tuesday.
    assert monday["first_response"]["count"] == 1
    assert monday["first_response"]["median_seconds"] == 600.0
    assert tuesday["first_response"]["count"] == 2
    assert tuesday["first_response"]["median_seconds"] == 2400.0  # (1200 + 3600) / 2
    assert (monday["sla"]["met"], monday["sla"]["breached"]) == (2, 1)
    assert (tuesday["sla"]["met"], tuesday["sla"]["breached"]) == (1, 1)
    assert (monday["csat"]["average"], tuesday["csat"]["average"]) == (5.0, 3.0)


async def test_report_filters(client: httpx.AsyncClient, known_set) -> None:
    team = (await report(client, team="recruiting"))["totals"]
    assert team["conversations"]["started"] == 2
    assert (team["messages"]["in"], team["messages"]["out"]) == (3, 4)
    assert team["first_response"]["median_seconds"] == 2100.0
    assert team["first_response"]["p90_seconds"] == 3300.0
    assert (team["sla"]["met"], team["sla"]["breached"]) == (2, 1)
    assert (team["csat"]["count"], team["csat"]["average"]) == (1, 5.0)

    luis = (await report(client, agent="luis"))["totals"]
    assert luis["conversations"]["started"] == 1
    # Only what Luis sent goes out; the failed notice was the system's.
    assert luis["messages"] == {
        "in": 1,
        "out": 1,
        "out_by_sender": {"bot": 0, "human": 1, "system": 0},
        "out_not_sent": 0,
    }
    assert luis["handoffs"]["by_reason"] == {"negotiation": 1}
    assert luis["resolution"]["median_seconds"] == 3600.0
    assert (luis["csat"]["count"], luis["csat"]["average"]) == (1, 3.0)

    bot = (await report(client, bot="traza"))["totals"]
    assert bot["conversations"] == {
        "started": 2,
        "active": 3,
        "bot_resolved": 1,
        "handed_off": 1,
        "other": 0,
    }
    assert bot["messages"]["out"] == 3
    assert bot["messages"]["out_by_sender"]["bot"] == 3
    assert bot["csat"]["count"] == 1

    other = (await report(client, inbox=OTHER_INBOX))["totals"]
    assert other["conversations"]["started"] == 1
    assert other["handoffs"]["by_reason"] == {"negotiation": 1}


async def test_csv_export(client: httpx.AsyncClient, known_set) -> None:
    response = await client.get(
        "/reports/conversations.csv", params=PERIOD | {"group": "day"}, headers=ADMIN
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/csv")
    assert (
        "traza-conversations-2026-03-02-2026-03-04.csv" in (response.headers["content-disposition"])
    )
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert [r["period"] for r in rows] == ["2026-03-02", "2026-03-03", "total"]
    total = rows[-1]
    assert total["conversations_started"] == "5"
    assert total["messages_in"] == "7" and total["messages_out"] == "8"
    assert total["bot_resolved"] == "1" and total["handed_off"] == "3"
    assert total["first_response_median_seconds"] == "1200.0"
    assert total["first_response_p90_seconds"] == "3120.0"
    assert total["sla_met"] == "3" and total["sla_breached"] == "2"
    assert total["csat_average"] == "4.0" and total["csat_5"] == "1"
    assert total["handoff_reason:frustration"] == "1"
    assert rows[1]["handoff_reason:frustration"] == "0"  # Tuesday had none
    assert rows[0]["resolution_median_seconds"] == "3600.0"


async def test_bad_parameters_are_422(client: httpx.AsyncClient, known_set) -> None:
    async def refused(params: dict[str, str], field: str, words: str) -> None:
        response = await client.get("/reports/conversations", params=params, headers=ADMIN)
        assert response.status_code == 422, response.text
        [problem] = response.json()["detail"]
        assert problem["loc"][-1] == field, problem
        assert words in problem["msg"], problem

    await refused({"from": "yesterday", "to": "2026-03-04"}, "from", "not a date or time")
    await refused({"from": "2026-03-04", "to": "2026-03-02"}, "to", "must be after")
    await refused({"from": "2026-03-02", "to": "2026-03-02"}, "to", "must be after")
    await refused(PERIOD | {"tz": "Europe/Madird"}, "tz", "unknown time zone")
    await refused(PERIOD | {"team": "payrol"}, "team", "unknown team 'payrol'")
    await refused(PERIOD | {"agent": "nobody"}, "agent", "unknown agent 'nobody'")
    await refused(PERIOD | {"inbox": "999"}, "inbox", "unknown inbox '999'")
    await refused(PERIOD | {"bot": "robocop"}, "bot", "unknown bot 'robocop'")
    await refused(PERIOD | {"agent": "ana", "bot": "traza"}, "bot", "not both")
    await refused(PERIOD | {"teem": "recruiting"}, "teem", "unknown parameter 'teem'")
    await refused(PERIOD | {"group": "week"}, "group", "day")
    await refused({"to": "2026-03-04"}, "from", "Field required")
    response = await client.get(
        "/reports/conversations.csv", params=PERIOD | {"team": "x"}, headers=ADMIN
    )
    assert response.status_code == 422


async def test_agents_see_only_their_teams(client: httpx.AsyncClient, db, known_set) -> None:
    ana = known_set["ana"]
    mine = await report(client, headers=ana)
    assert mine["scope"] == ["recruiting"]
    assert mine["totals"] == (await report(client, team="recruiting"))["totals"]
    response = await client.get(
        "/reports/conversations", params=PERIOD | {"team": "general"}, headers=ana
    )
    assert response.status_code == 403
    assert "not one of your teams" in response.json()["detail"]
    denied = db.execute(
        "SELECT actor, data FROM trace_events WHERE kind = 'access.denied'"
    ).fetchone()
    assert denied["actor"] == "human:ana"
    assert denied["data"]["path"] == "/reports/conversations"
    csv_response = await client.get(
        "/reports/conversations.csv", params=PERIOD | {"team": "general"}, headers=ana
    )
    assert csv_response.status_code == 403
    assert (await client.get("/reports/conversations", params=PERIOD)).status_code == 401


async def test_report_of_real_turns(client: httpx.AsyncClient) -> None:
    """What the product itself writes is counted the same way (actors, statuses)."""
    await say(client, "Hola, ¿cómo va mi aplicación?")
    await say(client, "Quiero hablar con una persona", wa_id="5215550002222")
    today = datetime.now(MAD).date()
    params = {"from": today.isoformat(), "to": (today + timedelta(days=1)).isoformat()}
    t = (await report(client, **params))["totals"]
    assert t["conversations"] == {
        "started": 2,
        "active": 2,
        "bot_resolved": 1,
        "handed_off": 1,
        "other": 0,
    }
    assert t["messages"]["in"] == 2
    assert t["messages"]["out_by_sender"]["bot"] == 1
    assert t["messages"]["out_by_sender"]["system"] == 1  # "a person will answer"
    assert t["handoffs"]["by_reason"] == {"asks-for-person": 1}


# --- the follow-up agent's monitor ----------------------------------------------------------


def agent_folder() -> Path:
    folder = Path(tempfile.mkdtemp(prefix="traza-agents-"))
    (folder / "agents").mkdir()
    example = ROOT / "examples/config/agents/seguimiento.yaml"
    (folder / "agents" / "seguimiento.yaml").write_text(
        example.read_text(encoding="utf-8"), encoding="utf-8"
    )
    configure(TRAZA_CONFIG_DIR=str(folder))
    return folder


@pytest.fixture
def follow_ups(db: Any) -> None:
    """The seed's monitor, Tuesday 3 March: five candidates, two escalations.

    María: confirmation at 10:30, read, she answered. Pedro: reminder at 10:15, delivered
    but not read, no answer; paused at 08:00. Carlos: update at 09:00, read, answered in
    anger; escalated at 09:45 (pending). Ana: update by e-mail at 09:30 (no read receipts).
    Laura, on Monday: confirmation read and answered, escalated about salary, resolved,
    rated 4. A follow-up still scheduled for Ana.
    """
    agent_folder()
    r = Rows(db)
    inbox = r.inbox(PHONE_NUMBER_ID)

    def candidate(name: str) -> tuple[int, int]:
        contact = r.contact(name)
        cid = r.one("INSERT INTO candidates (name, contact_id) VALUES (%s, %s)", name, contact)
        return cid, r.conversation(inbox, contact, at(1, 12))

    def follow_up(
        cand: int,
        conversation: int | None,
        trigger: str,
        fired: datetime,
        *,
        state: str = "sent",
        channel: str = "whatsapp",
        read: datetime | None = None,
    ) -> None:
        message = (
            r.message(
                conversation,
                "out",
                fired,
                actor="bot:seguimiento",
                channel=channel,
                read_at=read,
                state="read" if read else "delivered",
            )
            if conversation and state == "sent"
            else None
        )
        r.one(
            "INSERT INTO followups (key, agent, trigger, candidate_id, due_at, status, "
            "fired_at, message_id, channel) VALUES (%s, 'seguimiento', %s, %s, %s, %s, %s, "
            "%s, %s)",
            uuid.uuid4().hex,
            trigger,
            cand,
            fired,
            state,
            fired if state != "scheduled" else None,
            message,
            channel if message else None,
        )

    maria, c_maria = candidate("María García")
    follow_up(maria, c_maria, "application_received", at(3, 10, 30), read=at(3, 10, 40))
    r.message(c_maria, "in", at(3, 10, 45))

    pedro, c_pedro = candidate("Pedro López")
    follow_up(pedro, None, "no_activity", at(3, 8), state="paused")
    follow_up(pedro, c_pedro, "interview_1h", at(3, 10, 15))

    carlos, c_carlos = candidate("Carlos Ruiz")
    follow_up(carlos, c_carlos, "no_activity", at(3, 9), read=at(3, 9, 10))
    r.message(c_carlos, "in", at(3, 9, 40))
    r.handoff(c_carlos, "frustration", "general", at(3, 9, 45))

    ana, c_ana = candidate("Ana Martín")
    follow_up(ana, c_ana, "no_activity", at(3, 9, 30), channel="email")
    follow_up(ana, None, "interview_24h", at(5, 10), state="scheduled")

    laura, c_laura = candidate("Laura Sánchez")
    follow_up(laura, c_laura, "application_received", at(2, 10), read=at(2, 10, 5))
    r.message(c_laura, "in", at(2, 10, 20))
    h = r.handoff(c_laura, "negotiation", "general", at(2, 10, 25), state="resolved")
    r.csat(h, c_laura, 4, at(2, 11, 5), "luis", "general")


async def test_follow_up_agent_monitor_is_the_seeds(
    client: httpx.AsyncClient, frozen: FrozenClock, follow_ups: None
) -> None:
    frozen.set(at(3, 11))
    response = await client.get(
        "/reports/agents/seguimiento", params={"tz": "Europe/Madrid", "limit": 4}, headers=ADMIN
    )
    assert response.status_code == 200, response.text
    m = response.json()
    assert m["messages_sent"] == 5
    assert (m["sent_on_whatsapp"], m["opened"], m["open_rate"]) == (4, 3, 75.0)
    assert (m["answered"], m["reply_rate"]) == (3, 60.0)
    assert m["escalations"] == 2
    assert (m["satisfaction"], m["ratings"]) == (4.0, 1)
    assert (m["scheduled"], m["paused"]) == (1, 1)
    assert [a["line"] for a in m["recent_activity"]] == [
        "10:30 – Envió confirmación a María G.",
        "10:15 – Envió recordatorio a Pedro L.",
        "09:45 – Escaló caso de Carlos R. (frustrado)",
        "09:30 – Envió update a Ana M.",
    ]
    assert [c["line"] for c in m["escalated_cases"]] == [
        "Carlos R. – Muestra frustración o enojo [Pendiente]",
        "Laura S. – Pide negociar salario [Resuelto]",
    ]
    assert m["escalated_cases"][0]["status"] == "open"

    full = (
        await client.get(
            "/reports/agents/seguimiento", params={"tz": "Europe/Madrid"}, headers=ADMIN
        )
    ).json()
    assert [a["line"] for a in full["recent_activity"]][4:] == [
        "09:00 – Envió update a Carlos R.",
        "08:00 – Pausó el seguimiento de Pedro L. (sin respuesta)",
        "02/03 10:25 – Escaló caso de Laura S. (negociación)",
        "02/03 10:00 – Envió confirmación a Laura S.",
    ]

    english = (
        await client.get(
            "/reports/agents/seguimiento",
            params={"tz": "Europe/Madrid", "lang": "en", "limit": 3},
            headers=ADMIN,
        )
    ).json()
    assert [a["line"] for a in english["recent_activity"]] == [
        "10:30 – Sent confirmation to María G.",
        "10:15 – Sent reminder to Pedro L.",
        "09:45 – Escalated Carlos R.'s case (frustrated)",
    ]
    assert english["escalated_cases"][1]["line"] == (
        "Laura S. – Wants to negotiate salary [Resolved]"
    )

    # Tuesday only: Laura's Monday is out.
    tuesday = (
        await client.get(
            "/reports/agents/seguimiento",
            params={"from": "2026-03-03", "to": "2026-03-04", "tz": "Europe/Madrid"},
            headers=ADMIN,
        )
    ).json()
    assert tuesday["messages_sent"] == 4
    assert (tuesday["opened"], tuesday["open_rate"]) == (2, 66.7)
    assert tuesday["reply_rate"] == 50.0
    assert tuesday["escalations"] == 1
    assert tuesday["satisfaction"] is None

    # The recruiting endpoint shares the definitions.
    same = (await client.get("/recruiting/agents/seguimiento", headers=ADMIN)).json()
    assert (same["messages_sent"], same["open_rate"], same["answer_rate"]) == (5, 75.0, 60.0)


async def test_follow_up_agent_monitor_csv_scope_and_errors(
    client: httpx.AsyncClient, frozen: FrozenClock, follow_ups: None
) -> None:
    frozen.set(at(3, 11))
    response = await client.get(
        "/reports/agents/seguimiento.csv", params={"tz": "Europe/Madrid"}, headers=ADMIN
    )
    assert response.status_code == 200, response.text
    rows = list(csv.DictReader(io.StringIO(response.text)))
    figures = {r["item"]: r["value"] for r in rows if r["section"] == "figure"}
    assert figures["messages_sent"] == "5" and figures["open_rate"] == "75.0"
    assert figures["reply_rate"] == "60.0" and figures["satisfaction"] == "4.0"
    activity = [r for r in rows if r["section"] == "activity"]
    assert activity[0]["item"] == "10:30 – Envió confirmación a María G."
    assert activity[0]["candidate"] == "María García"
    cases = [(r["candidate"], r["item"], r["state"]) for r in rows if r["section"] == "case"]
    assert cases == [
        ("Carlos Ruiz", "Muestra frustración o enojo", "Pendiente"),
        ("Laura Sánchez", "Pide negociar salario", "Resuelto"),
    ]

    # An agent of another team sees the figures, not that team's escalations nor the
    # names of candidates who are not their team's.
    await add_team(client, "recruiting")
    ana = await add_agent(client, "ana", teams=["recruiting"])
    scoped = (await client.get("/reports/agents/seguimiento", headers=ana)).json()
    assert scoped["messages_sent"] == 5
    assert (scoped["escalations"], scoped["escalated_cases"]) == (0, [])
    assert scoped["recent_activity"] == []

    missing = await client.get("/reports/agents/nadie", headers=ADMIN)
    assert missing.status_code == 404 and "seguimiento" in missing.json()["detail"]
    bad = await client.get("/reports/agents/seguimiento", params={"from": "ayer"}, headers=ADMIN)
    assert bad.status_code == 422
    assert bad.json()["detail"][0]["loc"] == ["query", "from"]
    bad_lang = await client.get("/reports/agents/seguimiento", params={"lang": "fr"}, headers=ADMIN)
    assert bad_lang.status_code == 422


# --- /metrics ------------------------------------------------------------------------------


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(found: dict, name: str, **labels: str) -> float | None:
    return found.get((name, frozenset(labels.items())))


@pytest.fixture
def fresh_metrics() -> None:
    from traza.db.counters import DATABASE

    DATABASE.reset()


async def test_metrics_count_what_the_trace_recorded(
    client: httpx.AsyncClient, db: Any, fresh_metrics: None
) -> None:
    await say(client, "Hola, ¿cómo va mi aplicación?")
    await say(client, "Quiero hablar con una persona")
    reply = db.execute(
        "SELECT wa_message_id, channel FROM messages WHERE actor LIKE 'bot:%' ORDER BY id"
    ).fetchone()
    failed = status(
        reply["wa_message_id"], "failed", errors=[{"code": 131026, "title": "Undeliverable"}]
    )
    assert (await post_webhook(client, wa_payload(statuses=[failed]))).status_code == 200
    with psycopg.connect(os.environ["DATABASE_URL"], autocommit=True) as conn:
        conn.execute(
            "INSERT INTO procrastinate_jobs (queue_name, task_name, args, scheduled_at) VALUES "
            "('operations', 'assign_team', '{\"team\": \"general\"}', now() + interval '1 hour')"
        )

    response = await client.get("/metrics")
    assert response.status_code == 200
    found = samples(response.text)
    channel = reply["channel"]
    assert value(found, "traza_metrics_database_up") == 1.0
    assert (
        value(found, "traza_messages_total", direction="in", channel="whatsapp", status="received")
        == 2.0
    )
    assert (
        value(found, "traza_messages_total", direction="out", channel=channel, status="accepted")
        == 2.0  # the bot's reply and "a person will answer"
    )
    assert (
        value(found, "traza_messages_total", direction="out", channel=channel, status="failed")
        == 1.0
    )
    assert (
        value(
            found,
            "traza_decisions_total",
            route="bot",
            rule="default-bot",
            intent="application_status",
        )
        == 1.0
    )
    assert (
        value(
            found, "traza_decisions_total", route="human", rule="asks-for-person", intent="unknown"
        )
        == 1.0
    )
    assert (
        value(found, "traza_guardrail_verdicts_total", outcome="allowed", source="offline") == 1.0
    )
    assert value(found, "traza_handoffs_total", reason="asks-for-person", team="general") == 1.0
    assert (
        value(found, "traza_send_errors_total", code="131026", channel=channel, stage="delivery")
        == 1.0
    )
    assert value(found, "traza_jobs", queue="operations", state="scheduled") == 1.0
    assert value(found, "traza_webhook_requests_total", outcome="stored") is not None

    # Counters live in the database: stable across scrapes, across folding the appended
    # rows into totals, and they count the next event once.
    from traza.db.counters import compact
    from traza.db.engine import autocommit

    first = samples((await client.get("/metrics")).text)
    async with autocommit() as conn:
        await compact(conn)
    second = samples((await client.get("/metrics")).text)
    await say(client, "Gracias")
    third = samples((await client.get("/metrics")).text)
    key = ("traza_messages_total", "in", "whatsapp", "received")
    for snapshot, expected in ((first, 2.0), (second, 2.0), (third, 3.0)):
        assert value(snapshot, key[0], direction=key[1], channel=key[2], status=key[3]) == (
            expected
        )


async def test_metrics_token(client: httpx.AsyncClient) -> None:
    configure(TRAZA_METRICS_TOKEN="s3cret")
    assert (await client.get("/metrics")).status_code == 401
    wrong = await client.get("/metrics", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    ok = await client.get("/metrics", headers={"Authorization": "Bearer s3cret"})
    assert ok.status_code == 200
    assert "traza_metrics_database_up 1.0" in ok.text


async def test_job_lag_and_lateness(client: httpx.AsyncClient, fresh_metrics: None) -> None:
    from traza.db.queue import app as jobs
    from traza.metrics import measure_job

    with psycopg.connect(os.environ["DATABASE_URL"], autocommit=True) as conn:
        conn.execute(
            "INSERT INTO procrastinate_jobs (queue_name, task_name, args, scheduled_at) VALUES "
            "('operations', 'assign_team', '{\"team\": \"general\"}', "
            "now() - interval '30 seconds')"
        )
    found = samples((await client.get("/metrics")).text)
    assert value(found, "traza_jobs", queue="operations", state="waiting") == 1.0
    lag = value(found, "traza_job_lag_seconds", queue="operations")
    assert lag is not None and 30.0 <= lag < 120.0

    labels = {"queue": "operations", "task": "assign_team"}

    def sample(name: str) -> float:
        return REGISTRY.get_sample_value(f"traza_job_lateness_seconds_{name}", labels) or 0.0

    count, total = sample("count"), sample("sum")
    await jobs.run_worker_async(
        wait=False,
        install_signal_handlers=False,
        listen_notify=False,
        worker_middleware=[measure_job],
    )
    after = sample("count")
    assert after == count + 1
    assert 30.0 <= sample("sum") - total < 120.0  # it started 30 s after it was due
    found = samples((await client.get("/metrics")).text)
    assert value(found, "traza_job_lag_seconds", queue="operations") == 0.0
    assert value(found, "traza_job_lateness_seconds_count", **labels) == after


async def test_model_latency_and_errors(client: httpx.AsyncClient) -> None:
    from traza.decisions import llm

    model = OpenAICompatible()
    async with LocalServer(model.app()) as server:
        configure(
            OPENAI_BASE_URL=server.url + "/v1",
            OPENAI_API_KEY="test",
            TRAZA_LLM_MODEL="fake-model",
            TRAZA_LLM_TIMEOUT="2",
        )
        chat = llm.chat_model()
        assert chat is not None
        ok = {"call": "classify", "outcome": "ok"}
        before = REGISTRY.get_sample_value("traza_model_call_seconds_count", ok) or 0.0
        await llm.classify(chat, ["hola"])
        assert REGISTRY.get_sample_value("traza_model_call_seconds_count", ok) == before + 1

        model.fail_status = 500
        errors_before = sum(
            s.value
            for m in REGISTRY.collect()
            if m.name == "traza_model_errors"
            for s in m.samples
            if s.name == "traza_model_errors_total" and s.labels["call"] == "judge"
        )
        with pytest.raises(llm.LLMError):
            await llm.judge(chat, "Hola")
        errors_after = sum(
            s.value
            for m in REGISTRY.collect()
            if m.name == "traza_model_errors"
            for s in m.samples
            if s.name == "traza_model_errors_total" and s.labels["call"] == "judge"
        )
        assert errors_after == errors_before + 1
    text = (await client.get("/metrics")).text
    assert 'traza_model_call_seconds_count{call="classify",outcome="ok"}' in text
    assert 'traza_model_call_seconds_count{call="judge",outcome="error"}' in text


async def test_readme_documents_reports_and_metrics() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Reports and metrics", 1)[1].split("\n## ", 1)[0]
    for words in (
        "/reports/conversations",
        "/reports/agents/",
        "TRAZA_METRICS_TOKEN",
        "scrape_configs",
        "traza_messages_total",
    ):
        assert words in section, words
