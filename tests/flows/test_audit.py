"""The tamper-evident trail: hash chains, refusals, tampering found at the right event,
anchors, offline verification of an export, and erasure that keeps the chain verifiable.

Tampering is done as an attacker with the table owner's rights would: the append-only
trigger disabled, a row changed, the trigger enabled again.
"""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from datetime import date
from decimal import Decimal
from typing import Any

import psycopg
import pytest

from tests.support import ADMIN, add_agent, say, traza_cli
from traza.audit import chain, trail
from traza.audit.chain import Event, canonical, parse_json, verify_export

DB = psycopg.Connection[Any]
WA = "5215550001111"


MARK = "UPDATE trace_events SET data = '{\"$redacted\": {}}' WHERE id = %s"


def add_event(db: DB, cid: int | None, kind: str) -> None:
    db.execute(
        "INSERT INTO trace_events (conversation_id, kind, actor) VALUES (%s, %s, 'x')", (cid, kind)
    )


def tamper(db: DB, sql: str, *params: Any) -> None:
    """Change the trail behind the trigger's back."""
    db.execute("ALTER TABLE trace_events DISABLE TRIGGER trace_events_append_only")
    try:
        db.execute(sql, params)
    finally:
        db.execute("ALTER TABLE trace_events ENABLE TRIGGER trace_events_append_only")


def events_of(db: DB, cid: int | None) -> list[dict[str, Any]]:
    return db.execute(
        "SELECT id, seq, kind, data, data_hash, prev_hash, hash FROM trace_events "
        "WHERE conversation_id IS NOT DISTINCT FROM %s ORDER BY seq",
        (cid,),
    ).fetchall()


async def conversation(client: Any, db: DB, *texts: str) -> int:
    for text in texts or ("Hola, ¿cómo va mi aplicación?",):
        await say(client, text)
    row = db.execute("SELECT id FROM conversations ORDER BY id DESC LIMIT 1").fetchone()
    assert row is not None
    return int(row["id"])


def bare_conversation(db: DB, wa_id: str | None = None) -> int:
    """A conversation row without a flow (for direct inserts)."""
    db.execute(
        "INSERT INTO inboxes (phone_number_id) VALUES ('audit-inbox') ON CONFLICT DO NOTHING"
    )
    contact = db.execute(
        "INSERT INTO contacts (wa_id) VALUES (%s) RETURNING id",
        (wa_id or str(uuid.uuid4().int)[:12],),
    ).fetchone()
    assert contact is not None
    row = db.execute(
        "INSERT INTO conversations (inbox_id, contact_id, thread_id) "
        "SELECT id, %s, %s FROM inboxes WHERE phone_number_id = 'audit-inbox' RETURNING id",
        (contact["id"], uuid.uuid4().hex),
    ).fetchone()
    assert row is not None
    return int(row["id"])


# --- the chain ---------------------------------------------------------------------------


async def test_a_real_conversation_is_one_hash_chain_that_verifies(client, db):
    cid = await conversation(client, db, "Hola, ¿cómo va mi aplicación?", "gracias")
    events = events_of(db, cid)
    assert len(events) >= 10
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert events[0]["prev_hash"] is None
    for before, after in zip(events, events[1:], strict=False):
        assert after["prev_hash"] == before["hash"]
    for e in events:
        assert bytes(e["data_hash"]) == chain.data_hash(e["data"])

    report = await trail.verify()
    assert report.ok, report.breaks
    assert report.events == db.execute("SELECT count(*) AS n FROM trace_events").fetchone()["n"]
    one = await trail.verify(conversation_id=cid)
    assert one.ok and one.chains == 1 and one.events == len(events)


def test_update_and_delete_are_refused(db):
    cid = bare_conversation(db)
    db.execute(
        "INSERT INTO trace_events (conversation_id, kind, actor, data) "
        "VALUES (%s, 'note.added', 'human:ana', '{\"body\": \"x\"}')",
        (cid,),
    )
    event = events_of(db, cid)[0]
    for sql in (
        "UPDATE trace_events SET kind = 'other' WHERE id = %s",
        "UPDATE trace_events SET data = '{}' WHERE id = %s",
        "DELETE FROM trace_events WHERE id = %s",
    ):
        with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
            db.execute(sql, (event["id"],))
    # Hashes given by the writer are ignored: the trigger computes them.
    db.execute(
        "INSERT INTO trace_events (conversation_id, kind, actor, seq, hash, data_hash) "
        "VALUES (%s, 'x', 'system:test', 99, 'forged', 'forged')",
        (cid,),
    )
    assert [e["seq"] for e in events_of(db, cid)] == [1, 2]
    # The redaction path: only under the setting, only `data`, only to the marker, once.
    with db.transaction():
        db.execute("SET LOCAL traza.redaction = 'on'")
        for sql in (
            'UPDATE trace_events SET data = \'{"body": "y"}\' WHERE id = %s',
            "UPDATE trace_events SET data = '{\"$redacted\": {}}', actor = 'x' WHERE id = %s",
        ):
            with pytest.raises(psycopg.errors.RaiseException), db.transaction():
                db.execute(sql, (event["id"],))
        db.execute(
            "UPDATE trace_events SET data = '{\"$redacted\": {}}' WHERE id = %s", (event["id"],)
        )
        with pytest.raises(psycopg.errors.RaiseException), db.transaction():
            db.execute(
                'UPDATE trace_events SET data = \'{"body": "x"}\' WHERE id = %s', (event["id"],)
            )
    with pytest.raises(psycopg.errors.RaiseException):
        db.execute(
            "UPDATE trace_events SET data = '{\"$redacted\": {}}' WHERE id = %s", (event["id"] + 1,)
        )
    # Anchors are append-only too.
    db.execute(
        "INSERT INTO audit_anchors (day, created_by, events, chains, hash) "
        "VALUES (current_date, 'test', 0, 0, 'x')"
    )
    with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
        db.execute("DELETE FROM audit_anchors")


async def test_changed_data_is_reported_at_that_event(client, db):
    cid = await conversation(client, db)
    events = events_of(db, cid)
    target = next(e for e in events if e["kind"] == "routing.decision")
    tamper(
        db,
        "UPDATE trace_events SET data = jsonb_set(data, '{rule}', '\"vip\"') WHERE id = %s",
        target["id"],
    )
    report = await trail.verify()
    assert len(report.breaks) == 1
    broken = report.breaks[0]
    assert (broken.conversation_id, broken.event_id, broken.seq, broken.kind) == (
        cid,
        target["id"],
        target["seq"],
        "routing.decision",
    )
    assert broken.problem == "data_changed"
    assert broken.expected == bytes(target["data_hash"]).hex()
    assert broken.found != broken.expected


async def test_an_overwritten_hash_or_changed_fields_are_reported_at_that_event(client, db):
    cid = await conversation(client, db)
    events = events_of(db, cid)
    middle = events[len(events) // 2]
    tamper(db, "UPDATE trace_events SET hash = sha256(hash) WHERE id = %s", middle["id"])
    broken = (await trail.verify(conversation_id=cid)).breaks
    assert [(b.event_id, b.problem) for b in broken] == [(middle["id"], "hash_changed")]
    assert broken[0].expected == bytes(middle["hash"]).hex()

    tamper(db, "UPDATE trace_events SET hash = %s WHERE id = %s", middle["hash"], middle["id"])
    assert (await trail.verify(conversation_id=cid)).ok
    later = events[-2]
    tamper(db, "UPDATE trace_events SET actor = 'human:mallory' WHERE id = %s", later["id"])
    broken = (await trail.verify(conversation_id=cid)).breaks
    assert [(b.event_id, b.problem) for b in broken] == [(later["id"], "fields_changed")]
    assert "next event" in broken[0].detail


async def test_a_deleted_event_is_reported_where_the_chain_breaks(client, db):
    cid = await conversation(client, db)
    events = events_of(db, cid)
    gone, following = events[3], events[4]
    tamper(db, "DELETE FROM trace_events WHERE id = %s", gone["id"])
    broken = (await trail.verify()).breaks
    assert len(broken) == 1
    assert (broken[0].event_id, broken[0].problem) == (following["id"], "events_missing")
    assert (broken[0].expected, broken[0].found) == (
        f"seq {gone['seq']}",
        f"seq {following['seq']}",
    )
    assert f"after event {events[2]['id']}" in broken[0].detail

    # Deleting the last events leaves a valid-looking chain: the anchor catches it.
    cid2 = bare_conversation(db)
    for n in range(3):
        add_event(db, cid2, f"k{n}")
    await trail.write_anchor(created_by="system:test")
    tail = events_of(db, cid2)[-1]
    tamper(db, "DELETE FROM trace_events WHERE id = %s", tail["id"])
    broken = (await trail.verify(conversation_id=cid2)).breaks
    assert [(b.problem, b.seq) for b in broken] == [("anchored_event_missing", 3)]


def test_concurrent_writers_keep_one_gapless_chain(db, database_url):
    cid = bare_conversation(db)

    async def writer(n: int) -> None:
        async with await psycopg.AsyncConnection.connect(database_url) as conn:
            for i in range(5):
                async with conn.transaction():
                    for j in range(3):
                        await conn.execute(
                            "INSERT INTO trace_events (conversation_id, kind, actor, data) "
                            "VALUES (%s, 'load', 'system:test', %s)",
                            (cid, json.dumps({"writer": n, "i": i, "j": j})),
                        )
                    await asyncio.sleep(0)

    async def main() -> None:
        await asyncio.gather(*(writer(n) for n in range(8)))

    asyncio.run(main())
    events = events_of(db, cid)
    assert [e["seq"] for e in events] == list(range(1, 121))
    rows = db.execute(
        "SELECT id, seq, conversation_id, at, kind, actor, duration_ms, message_id, thread_id, "
        "step, llm, data::text AS data_text, data_hash, prev_hash, hash FROM trace_events "
        "WHERE conversation_id = %s ORDER BY seq",
        (cid,),
    ).fetchall()
    result = chain.verify_chain([_event(r) for r in rows], conversation_id=cid)
    assert result.broken is None and result.events == 120


def _event(row: dict[str, Any]) -> Event:
    return Event(
        **{k: row[k] for k in ("id", "seq", "conversation_id", "at", "kind", "actor")},
        **{k: row[k] for k in ("duration_ms", "message_id", "thread_id", "step", "llm")},
        data_hash=bytes(row["data_hash"]),
        prev_hash=bytes(row["prev_hash"]) if row["prev_hash"] is not None else None,
        hash=bytes(row["hash"]),
        data_text=row["data_text"],
    )


async def test_since_starts_from_the_last_event_before_that_day(db):
    cid = bare_conversation(db)
    for n in range(6):
        db.execute(
            "INSERT INTO trace_events (conversation_id, kind, actor, data, at) "
            "VALUES (%s, %s, 'x', %s, %s)",
            (cid, f"k{n}", json.dumps({"n": n}), "2020-01-01" if n < 3 else "2026-03-02"),
        )
    events = events_of(db, cid)
    tamper(db, "UPDATE trace_events SET data = '{\"n\": 9}' WHERE id = %s", events[1]["id"])
    since = date(2026, 1, 1)
    recent = await trail.verify(since=since)
    assert recent.ok and recent.events == 3 and recent.chains == 1
    assert [b.event_id for b in (await trail.verify()).breaks] == [events[1]["id"]]
    tamper(db, "UPDATE trace_events SET data = '{\"n\": 9}' WHERE id = %s", events[4]["id"])
    assert [b.event_id for b in (await trail.verify(since=since)).breaks] == [events[4]["id"]]
    assert await trail.count_chains(since=since) == 1


# --- the canonical form ------------------------------------------------------------------

VALUES: list[Any] = [
    {},
    [],
    {"b": 1, "a": 2, "aa": 3, "ñ": 4, "z": {"y": [1, {"x": None}]}, "é€": True, "ab": False},
    {"text": 'María "G." \\ \n\t\r\b\f\x01\x1f \u2028 😀 /', "€": "ß"},
    {"floats": [0.1, 1.5, 1e-7, 1e20, 1.0, -0.0, 3.141592653589793, 0.30000000000000004]},
    {"ints": [0, -1, 12345678901234567890, 2**63]},
    {"nested": [[[]], [{}], {"": ""}, {"a": [1, [2, [3]]]}]},
]
TEXTS = ['{"n": 1.50}', '{"n": 1E+2}', '{"n": -0.0}', '{"n": 1.5e-3}', "[1e400]", '{"a":1,"a":2}']


def test_canonical_form_is_postgresqls_jsonb_text(db):
    for value in VALUES:
        stored = db.execute("SELECT CAST(%s AS jsonb)::text AS t", (json.dumps(value),))
        text = stored.fetchone()["t"]
        assert canonical(value) == text, value
        assert canonical(parse_json(text)) == text
        assert chain.data_hash(value) == chain.sha256(text)
    for raw in TEXTS:
        text = db.execute("SELECT CAST(%s AS jsonb)::text AS t", (raw,)).fetchone()["t"]
        assert canonical(parse_json(raw)) == text, raw
    for number in (12.5, 0.1 + 0.2, 1e-7, 1e20, 123456.789012345678, 5e-324, 0.0, 2.0**70):
        text = db.execute(
            "SELECT to_jsonb(CAST(%s AS float8)::numeric)::text AS t", (number,)
        ).fetchone()["t"]
        assert canonical(chain.duration_value(number)) == text, number
    assert canonical(chain.duration_value(Decimal(text))) == text


# --- erasure -----------------------------------------------------------------------------


async def test_erasure_redacts_personal_data_and_the_chain_still_verifies(client, db):
    cid = await conversation(client, db, "Hola, soy María, ¿cómo va mi aplicación?")
    contact = db.execute("SELECT id FROM contacts WHERE wa_id = %s", (WA,)).fetchone()["id"]
    candidate = db.execute(
        "INSERT INTO candidates (contact_id, name, wa_id, email, phone, profile) "
        "VALUES (%s, 'María García', %s, 'maria@example.com', %s, '{\"city\": \"Sevilla\"}') "
        "RETURNING id",
        (contact, WA, WA),
    ).fetchone()["id"]
    db.execute(
        "INSERT INTO trace_events (kind, actor, data) VALUES "
        "('candidate.imported', 'system:import', %s), ('agent.status', 'human:ana', '{}')",
        (json.dumps({"candidate_id": candidate, "name": "María García"}),),
    )
    before = (await client.get(f"/contacts/{contact}/export", headers=ADMIN)).json()
    assert before["contact"]["wa_id"] == WA and before["candidates"][0]["email"]
    assert "María" in json.dumps(before, ensure_ascii=False)
    assert before["conversations"][0]["checkpoints"] > 0

    erased = await client.post(
        f"/contacts/{contact}/erase", json={"reason": "GDPR art. 17 request #42"}, headers=ADMIN
    )
    assert erased.status_code == 200, erased.text
    assert erased.json()["erased"]["trace_events"] > 0

    # No personal data is left anywhere.
    tables = [
        r["relname"]
        for r in db.execute(
            "SELECT relname FROM pg_stat_user_tables WHERE schemaname = 'public'"
        ).fetchall()
    ]
    for table in tables:
        found = db.execute(
            f"SELECT count(*) AS n FROM {table} x WHERE x::text ILIKE '%%maría%%' "
            f"OR x::text LIKE '%%{WA}%%' OR x::text LIKE '%%maria@%%'"
        ).fetchone()["n"]
        assert found == 0, table
    bodies = db.execute("SELECT convert_from(body, 'UTF8') AS b FROM webhook_events").fetchall()
    assert bodies and all("María" not in b["b"] and WA not in b["b"] for b in bodies)
    thread = db.execute("SELECT thread_id FROM conversations WHERE id = %s", (cid,)).fetchone()
    assert (
        db.execute(
            "SELECT count(*) AS n FROM checkpoints WHERE thread_id = %s", (thread["thread_id"],)
        ).fetchone()["n"]
        == 0
    )

    # The chain still verifies; the redactions are reported and recorded.
    report = await trail.verify()
    assert report.ok, report.breaks
    events = events_of(db, cid)
    redacted = [e["id"] for e in events if chain.is_redacted(e["data"])]
    assert redacted and set(redacted) <= set(report.redacted)
    record = events[-1]
    assert record["kind"] == "subject.erased" and record["data"]["redacted_event_ids"] == redacted
    assert record["data"]["reason"] == "GDPR art. 17 request #42"
    outside = events_of(db, None)
    assert [e["kind"] for e in outside] == ["candidate.imported", "agent.status", "subject.erased"]
    assert chain.is_redacted(outside[0]["data"]) and outside[1]["data"] == {}
    # Who, what and when are still there.
    assert [e["kind"] for e in events][:2] == ["message.received", "turn.started"]

    # Erased for good: a second request is refused, the data cannot be put back.
    again = await client.post(f"/contacts/{contact}/erase", json={"reason": "x"}, headers=ADMIN)
    assert again.status_code == 409
    with pytest.raises(psycopg.errors.RaiseException), db.transaction():
        db.execute("SET LOCAL traza.redaction = 'on'")
        db.execute(
            "UPDATE trace_events SET data = '{\"$redacted\": {}}' WHERE id = %s", (redacted[0],)
        )
    after = (await client.get(f"/contacts/{contact}/export", headers=ADMIN)).json()
    assert after["subject"]["erased"] is True and after["contact"]["wa_id"] is None

    # The exported trail verifies offline and shows the redactions.
    lines = (await client.get(f"/conversations/{cid}/audit.jsonl", headers=ADMIN)).text
    offline = verify_export(lines.splitlines())
    assert offline.ok and offline.redacted == redacted

    # A new message from the same number starts a new contact: the erased one stays erased.
    await say(client, "hola otra vez")
    contacts = db.execute("SELECT id, wa_id FROM contacts ORDER BY id").fetchall()
    assert [c["wa_id"] for c in contacts] == [None, WA]


async def test_a_redaction_without_a_recorded_erasure_is_reported(client, db):
    cid = await conversation(client, db)
    target = events_of(db, cid)[2]
    tamper(
        db,
        'UPDATE trace_events SET data = \'{"$redacted": {"by": "human:mallory"}}\' WHERE id = %s',
        target["id"],
    )
    broken = (await trail.verify()).breaks
    assert [(b.event_id, b.problem) for b in broken] == [(target["id"], "unauthorised_redaction")]


# --- export, offline verification, anchors -------------------------------------------------


async def test_exported_trail_verifies_offline_and_edits_are_found(client, db):
    cid = await conversation(client, db)
    await trail.write_anchor(created_by="system:test")
    response = await client.get(f"/conversations/{cid}/audit.jsonl", headers=ADMIN)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/x-ndjson")
    lines = response.text.splitlines()
    header = json.loads(lines[0])
    assert header["format"] == chain.FORMAT and header["events"] == len(events_of(db, cid))
    assert [json.loads(line)["type"] for line in lines[1:]].count("anchor") == 1

    report = verify_export(lines)
    assert report.ok and report.events == header["events"] and report.anchors == 1

    edited = list(lines)
    at = next(i for i, line in enumerate(edited) if '"routing.decision"' in line)
    event = json.loads(edited[at])
    edited[at] = edited[at].replace('"default-bot"', '"vip"')
    broken = verify_export(edited).broken
    assert broken is not None and (broken.event_id, broken.problem) == (event["id"], "data_changed")

    removed = lines[:3] + lines[4:]
    broken = verify_export(removed).broken
    assert broken is not None and broken.problem == "events_missing"
    assert broken.event_id == json.loads(lines[4])["id"]

    # Re-hashing the whole chain after an edit beats the chain but not the anchor.
    forged = [parse_json(line) for line in lines[1:] if '"type": "event"' in line]
    prev: bytes | None = None
    out = [lines[0]]
    for fields in forged:
        if fields["kind"] == "routing.decision":
            fields["data"]["rule"] = "vip"
        event = chain._event_from_line(fields)
        event.data_hash = chain.data_hash(event.data)
        event.prev_hash = prev
        event.hash = chain.event_hash(event)
        prev = event.hash
        out.append(chain.export_event_line(event))
    out += [line for line in lines if '"type": "anchor"' in line]
    broken = verify_export(out).broken
    assert broken is not None and broken.problem == "anchor_mismatch"


async def test_anchors_chain_and_catch_a_rewritten_history(client, db):
    cid = await conversation(client, db)
    other = bare_conversation(db)
    add_event(db, other, "a")
    first = (await trail.write_anchor(created_by="system:test")).anchor
    assert first.prev_hash is None and first.chains == 2
    assert [h[0] for h in first.heads] == sorted([cid, other])
    assert first.events == db.execute("SELECT count(*) AS n FROM trace_events").fetchone()["n"]

    second = (await trail.write_anchor(created_by="system:test")).anchor
    assert second.chains == 0 and second.events == 0 and second.prev_hash == first.hash
    add_event(db, other, "b")
    third = (await trail.write_anchor(created_by="system:test")).anchor
    assert third.heads == [[other, 2, bytes(events_of(db, other)[-1]["hash"]).hex()]]
    report = await trail.verify()
    assert report.ok and report.anchors == 3 and report.anchored_heads == 3

    # An attacker rewrites an event and re-hashes the rest of its chain: links all hold,
    # but the anchored head no longer matches.
    rows = db.execute(
        "SELECT id, seq, conversation_id, at, kind, actor, duration_ms, message_id, thread_id, "
        "step, llm, data::text AS data_text, data_hash, prev_hash, hash FROM trace_events "
        "WHERE conversation_id = %s ORDER BY seq",
        (cid,),
    ).fetchall()
    prev: bytes | None = None
    db.execute("ALTER TABLE trace_events DISABLE TRIGGER trace_events_append_only")
    try:
        for row in rows:
            event = _event(row)
            if event.kind == "routing.decision":
                event.data_text = event.data_text.replace("default-bot", "vip")
                db.execute(
                    "UPDATE trace_events SET data = %s WHERE id = %s", (event.data_text, event.id)
                )
            event.data_hash = chain.sha256(
                db.execute(
                    "SELECT data::text AS t FROM trace_events WHERE id = %s", (event.id,)
                ).fetchone()["t"]
            )
            event.prev_hash = prev
            event.hash = chain.event_hash(event)
            prev = event.hash
            db.execute(
                "UPDATE trace_events SET data_hash = %s, prev_hash = %s, hash = %s WHERE id = %s",
                (event.data_hash, event.prev_hash, event.hash, event.id),
            )
    finally:
        db.execute("ALTER TABLE trace_events ENABLE TRIGGER trace_events_append_only")
    broken = (await trail.verify()).breaks
    assert [(b.problem, b.conversation_id, b.anchor_id) for b in broken] == [
        ("anchor_mismatch", cid, first.id)
    ]
    # …and the next anchor refuses to vouch for it.
    add_event(db, cid, "c")
    fourth = await trail.write_anchor(created_by="system:test")
    assert fourth.anchor.chains == 0 and [b.conversation_id for b in fourth.breaks] == [cid]

    # An anchor changed after the fact is found too.
    db.execute("ALTER TABLE audit_anchors DISABLE TRIGGER audit_anchors_append_only")
    db.execute("UPDATE audit_anchors SET events = events + 1 WHERE id = %s", (second.id,))
    db.execute("ALTER TABLE audit_anchors ENABLE TRIGGER audit_anchors_append_only")
    problems = [b.problem for b in (await trail.verify()).breaks]
    assert "anchor_changed" in problems


async def test_the_daily_anchor_job(db):
    from traza.db.queue import app
    from traza.worker.audit import anchor_daily

    assert "audit_anchor" in app.tasks
    cid = bare_conversation(db)
    add_event(db, cid, "a")
    await anchor_daily(timestamp=1772409600)  # 2026-03-02 00:00 UTC
    row = db.execute("SELECT day, chains, created_by FROM audit_anchors").fetchone()
    assert (str(row["day"]), row["chains"], row["created_by"]) == ("2026-03-01", 1, "system:audit")


# --- who may ----------------------------------------------------------------------------


async def test_only_admins_and_team_supervisors_export_and_only_admins_erase(client, db):
    cid = await conversation(client, db)
    contact = db.execute("SELECT contact_id FROM conversations WHERE id = %s", (cid,)).fetchone()
    agent = await add_agent(client, "ana", role="agent")
    supervisor = await add_agent(client, "sol", role="supervisor")
    path = f"/conversations/{cid}/audit.jsonl"

    assert (await client.get(path, headers=agent)).status_code == 403
    denied = await client.get(path, headers=supervisor)  # not in a team yet: bot-only
    assert denied.status_code == 403
    assert (
        db.execute(
            "SELECT count(*) AS n FROM trace_events WHERE kind = 'access.denied' "
            "AND conversation_id = %s",
            (cid,),
        ).fetchone()["n"]
        == 1
    )
    db.execute("UPDATE conversations SET team = 'general' WHERE id = %s", (cid,))
    assert (await client.get(path, headers=supervisor)).status_code == 200
    assert (await client.get(path, headers=ADMIN)).status_code == 200
    assert (await client.get("/conversations/999999/audit.jsonl", headers=ADMIN)).status_code == 404
    assert (await client.get(path)).status_code == 401

    for headers in (agent, supervisor):
        export = await client.get(f"/contacts/{contact['contact_id']}/export", headers=headers)
        assert export.status_code == 403
        erase = await client.post(
            f"/contacts/{contact['contact_id']}/erase", json={"reason": "x"}, headers=headers
        )
        assert erase.status_code == 403
    assert (await client.get("/contacts/999999/export", headers=ADMIN)).status_code == 404
    empty = await client.post(
        f"/contacts/{contact['contact_id']}/erase", json={"reason": ""}, headers=ADMIN
    )
    assert empty.status_code == 422
    assert (await trail.verify()).ok


# --- the command line -------------------------------------------------------------------


async def test_cli_verify_anchor_export_and_erase(client, db, tmp_path):
    env = dict(os.environ)
    cid = await conversation(client, db)
    ok = traza_cli("audit", "verify", env=env)
    assert ok.returncode == 0, ok.stderr
    assert "audit trail verified" in ok.stdout

    anchored = traza_cli("audit", "anchor", env=env)
    assert anchored.returncode == 0, anchored.stderr
    assert "1 chain(s)" in anchored.stdout

    trail_file = tmp_path / "trail.jsonl"
    exported = await client.get(f"/conversations/{cid}/audit.jsonl", headers=ADMIN)
    trail_file.write_text(exported.text)
    offline = traza_cli("audit", "verify", "--file", str(trail_file), env=env)
    assert offline.returncode == 0 and "exported trail verified" in offline.stdout

    target = next(e for e in events_of(db, cid) if e["kind"] == "guardrail.verdict")
    tamper(
        db,
        "UPDATE trace_events SET data = jsonb_set(data, '{allowed}', 'false') WHERE id = %s",
        target["id"],
    )
    broken = traza_cli("audit", "verify", "--since", "2000-01-01", env=env)
    assert broken.returncode == 1
    assert f"conversation {cid}, event {target['id']} (seq {target['seq']}" in broken.stdout
    assert "data_changed" in broken.stdout and bytes(target["data_hash"]).hex() in broken.stdout
    as_json = traza_cli("audit", "verify", "--conversation", str(cid), "--json", env=env)
    assert as_json.returncode == 1
    assert json.loads(as_json.stdout)["breaks"][0]["event_id"] == target["id"]
    bad = traza_cli("audit", "verify", "--since", "yesterday", env=env)
    assert bad.returncode == 2 and "--since" in bad.stderr

    export = traza_cli("subjects", "export", f"+{WA}", env=env)
    assert export.returncode == 0, export.stderr
    assert json.loads(export.stdout)["contact"]["wa_id"] == WA
    erase = traza_cli("subjects", "erase", WA, "--reason", "request 7", "--yes", env=env)
    assert erase.returncode == 0, erase.stderr
    assert "erased" in erase.stdout
    again = traza_cli("subjects", "erase", WA, "--reason", "request 7", "--yes", env=env)
    assert again.returncode == 2 and "no contact" in again.stderr


def test_existing_events_are_chained_by_the_migration(database_url):
    """Upgrading a database that already has a trace backfills the chain."""
    from alembic import command

    from traza.db.migrate import alembic_config

    server = database_url.rsplit("/", 1)[0]
    name = f"traza_audit_mig_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(f"{server}/postgres", autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = f"{server}/{name}"
    try:
        cfg = alembic_config(url)
        command.upgrade(cfg, "0003")
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("INSERT INTO inboxes (phone_number_id) VALUES ('p')")
            conn.execute("INSERT INTO contacts (wa_id) VALUES ('1'), ('2')")
            conn.execute(
                "INSERT INTO conversations (inbox_id, contact_id, thread_id) "
                "VALUES (1, 1, 't1'), (1, 2, 't2')"
            )
            conn.execute(
                "INSERT INTO trace_events (conversation_id, kind, actor, data, duration_ms) "
                "VALUES (1, 'a', 'customer', '{\"x\": 1.50}', 0.1), (2, 'b', 'bot:x', '{}', NULL), "
                "(NULL, 'c', 'system:x', '{}', 12.5), (1, 'd', 'customer', '{\"é\": [1]}', 1e-7)"
            )
        command.upgrade(cfg, "head")
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(
                "INSERT INTO trace_events (conversation_id, kind, actor) VALUES (1, 'e', 'x')"
            )
            from psycopg.rows import dict_row

            rows = (
                conn.cursor(row_factory=dict_row)
                .execute(
                    "SELECT id, seq, conversation_id, at, kind, actor, duration_ms, message_id, "
                    "thread_id, step, llm, data::text AS data_text, data_hash, prev_hash, hash "
                    "FROM trace_events ORDER BY conversation_id NULLS FIRST, seq"
                )
                .fetchall()
            )
        chains: dict[Any, list[Event]] = {}
        for row in rows:
            chains.setdefault(row["conversation_id"], []).append(_event(row))
        assert {k: [e.seq for e in v] for k, v in chains.items()} == {
            None: [1],
            1: [1, 2, 3],
            2: [1],
        }
        for key, events in chains.items():
            assert chain.verify_chain(events, conversation_id=key).broken is None
        command.downgrade(cfg, "0003")
    finally:
        with psycopg.connect(f"{server}/postgres", autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
