"""A reaction is recorded for what it is; it answers a confirmation request only where the
rules say so (`reactions.confirm_interview`), and only a positive one does."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.fakes.servers import GraphAPI
from tests.support import fire_timers
from tests.support.recruiting import (
    CANDIDATE,
    VACANCY,
    agent_config,
    at,
    candidate_sends,
    event,
    sent_bodies,
)
from traza.clock import FrozenClock
from traza.rules import active


async def ask_to_confirm(
    client: httpx.AsyncClient, db: Any, frozen: FrozenClock, rules: str | None
) -> str:
    """Apply, schedule an interview, fire the 24-hour request; the request's wamid."""
    folder = agent_config(
        **{"days: [mon, tue, wed, thu, fri]": "days: [mon, tue, wed, thu, fri, sat, sun]"}
    )
    if rules is not None:
        (folder / "rules.yaml").write_text(rules, encoding="utf-8")
    active.forget()
    frozen.set(at(1, 10))
    await event(
        client,
        type="application.created",
        occurred_at=frozen.now(),
        candidate=CANDIDATE,
        vacancy=VACANCY,
        application_id="app-1",
    )
    await event(
        client,
        type="interview.scheduled",
        application_id="app-1",
        interview_id="int-1",
        starts_at=at(7, 11).isoformat(),
        ends_at=at(7, 11, 45).isoformat(),
    )
    frozen.set(at(6, 11))
    await fire_timers()
    row = db.execute(
        "SELECT wa_message_id FROM messages WHERE direction = 'out'"
        " AND content->>'trigger' = 'interview_24h'"
    ).fetchone()
    assert row is not None and row["wa_message_id"], "the confirmation request was sent"
    return str(row["wa_message_id"])


async def react(client: httpx.AsyncClient, wamid: str, emoji: str) -> None:
    await candidate_sends(client, "reaction", {"message_id": wamid, "emoji": emoji})


ON = "reactions: {confirm_interview: true}\n"


@pytest.mark.parametrize("emoji", ["👍", "👍🏽", "✅", "👌"])
async def test_a_positive_reaction_confirms_where_the_rules_say_so(
    client: httpx.AsyncClient, db: Any, frozen: FrozenClock, graph_api: GraphAPI, emoji: str
) -> None:
    wamid = await ask_to_confirm(client, db, frozen, ON)
    before = len(sent_bodies(graph_api))
    frozen.set(at(6, 11, 5))
    await react(client, wamid, emoji)
    row = db.execute("SELECT status, confirmed_at FROM interviews").fetchone()
    assert row["status"] == "confirmed" and row["confirmed_at"] == at(6, 11, 5)
    [reply] = sent_bodies(graph_api)[before:]
    assert "Gracias por confirmar" in reply["text"]["body"]
    reacted = db.execute("SELECT data FROM trace_events WHERE kind = 'message.reacted'").fetchone()[
        "data"
    ]
    assert reacted["emoji"] == emoji and reacted["reacted_to"] == wamid
    assert reacted["counts_as"].startswith("interview:confirm:")
    route = db.execute(
        "SELECT data FROM trace_events WHERE kind = 'routing.decision' ORDER BY id DESC LIMIT 1"
    ).fetchone()["data"]
    assert route["rule"] == "interview-confirmed"


@pytest.mark.parametrize(
    ("rules", "emoji"),
    [
        (None, "👍"),  # the default: a reaction is never an answer
        ("reactions: {confirm_interview: false}\n", "👍"),
        (ON, "👎"),
        (ON, "😮"),
        (ON, ""),  # a reaction taken back
    ],
)
async def test_other_reactions_are_recorded_and_never_answered(
    client: httpx.AsyncClient,
    db: Any,
    frozen: FrozenClock,
    graph_api: GraphAPI,
    rules: str | None,
    emoji: str,
) -> None:
    wamid = await ask_to_confirm(client, db, frozen, rules)
    before = len(sent_bodies(graph_api))
    frozen.set(at(6, 11, 5))
    await react(client, wamid, emoji)
    assert db.execute("SELECT status FROM interviews").fetchone()["status"] == "scheduled"
    assert sent_bodies(graph_api)[before:] == []
    reacted = db.execute("SELECT data FROM trace_events WHERE kind = 'message.reacted'").fetchone()[
        "data"
    ]
    assert "counts_as" not in reacted and reacted["removed"] == (emoji == "")


async def test_a_reaction_to_another_message_is_not_an_answer(
    client: httpx.AsyncClient, db: Any, frozen: FrozenClock, graph_api: GraphAPI
) -> None:
    await ask_to_confirm(client, db, frozen, ON)
    before = len(sent_bodies(graph_api))
    other = db.execute(
        "SELECT wa_message_id FROM messages WHERE direction = 'out'"
        " AND content->>'trigger' = 'application_received'"
    ).fetchone()["wa_message_id"]
    frozen.set(at(6, 11, 5))
    await react(client, other, "👍")
    assert db.execute("SELECT status FROM interviews").fetchone()["status"] == "scheduled"
    assert sent_bodies(graph_api)[before:] == []
