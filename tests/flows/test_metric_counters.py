"""Prometheus counters are kept in the database, incremented with each event.

They never go down — not after a data-subject erasure redacts the events they counted,
not in a process that starts afresh — and every message status is counted, including
messages held for a human.
"""

from __future__ import annotations

from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.support import ADMIN, add_agent, say

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def counters(text: str) -> Samples:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name.endswith(("_total", "_count", "_bucket", "_sum"))
    }


async def scrape(client: httpx.AsyncClient, *, new_process: bool = False) -> Samples:
    from traza.db.counters import DATABASE

    if new_process:
        DATABASE.reset()  # what a freshly started process knows: nothing but the database
    response = await client.get("/metrics")
    assert response.status_code == 200
    return counters(response.text)


def traza_only(found: Samples) -> Samples:
    # The in-process series (webhook counters, model calls) belong to this test process.
    in_process = ("traza_webhook", "traza_messages_in", "traza_model_call", "traza_statuses")
    return {
        k: v
        for k, v in found.items()
        if k[0].startswith("traza_") and not k[0].startswith(in_process)
    }


async def test_counters_do_not_go_down_after_an_erasure(client: httpx.AsyncClient, db: Any) -> None:
    await say(client, "Hola, ¿cómo va mi aplicación?")
    await say(client, "Quiero hablar con una persona")
    before = traza_only(await scrape(client))
    decisions = {k: v for k, v in before.items() if k[0] == "traza_decisions_total"}
    assert sum(decisions.values()) == 2
    handoffs = (
        "traza_handoffs_total",
        frozenset({("reason", "asks-for-person"), ("team", "general")}),
    )
    assert before[handoffs] == 1

    contact = db.execute("SELECT id FROM contacts").fetchone()["id"]
    erased = await client.post(
        f"/contacts/{contact}/erase", json={"reason": "GDPR art. 17"}, headers=ADMIN
    )
    assert erased.status_code == 200, erased.text
    assert erased.json()["erased"]["trace_events"] > 0

    for new_process in (False, True):
        after = traza_only(await scrape(client, new_process=new_process))
        went_down = {k: (v, after.get(k)) for k, v in before.items() if (after.get(k) or 0) < v}
        assert went_down == {}
        # The same labels as before: nothing was recounted under redacted data.
        assert {k: v for k, v in after.items() if k[0] == "traza_decisions_total"} == decisions


async def test_a_message_held_for_a_human_is_counted(client: httpx.AsyncClient, db: Any) -> None:
    await add_agent(client, "ana", teams=["general"])
    await say(client, "Quiero hablar con una persona")
    held = ("traza_messages_total", frozenset(
        {("direction", "in"), ("channel", "whatsapp"), ("status", "held_for_human")}
    ))  # fmt: skip
    assert (await scrape(client)).get(held, 0) == 0

    await say(client, "hola, ¿sigue ahí alguien?")
    await say(client, "gracias")
    kinds = db.execute(
        "SELECT count(*) AS n FROM trace_events WHERE kind = 'message.held_for_human'"
    ).fetchone()
    assert kinds["n"] == 2
    assert (await scrape(client)).get(held) == 2
    assert (await scrape(client, new_process=True)).get(held) == 2


async def test_counters_survive_folding_and_count_each_event_once(
    client: httpx.AsyncClient,
) -> None:
    from traza.db.counters import compact
    from traza.db.engine import autocommit

    received = ("traza_messages_total", frozenset(
        {("direction", "in"), ("channel", "whatsapp"), ("status", "received")}
    ))  # fmt: skip
    await say(client, "hola")
    assert (await scrape(client)).get(received) == 1
    async with autocommit() as conn:
        await compact(conn)
        assert await compact(conn) == 0  # nothing left to fold
    assert (await scrape(client, new_process=True)).get(received) == 1
    await say(client, "gracias")
    assert (await scrape(client)).get(received) == 2
