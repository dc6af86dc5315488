"""The audit's SQL: trace events read in chain order, anchors, a data subject's rows.

Every statement of `traza.audit.trail` and `traza.audit.subjects` lives here, verbatim;
each function runs on the caller's connection or session, in the caller's transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Result, Row
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncResult, AsyncSession

from traza.audit.chain import ERASED_KIND, REDACTED
from traza.db import locks

COLUMNS = (
    "e.id, e.seq, e.conversation_id, e.at, e.kind, e.actor, e.duration_ms, e.message_id, "
    "e.thread_id, e.step, e.llm, e.data::text AS data_text, e.data_hash, e.prev_hash, e.hash"
)
CHAIN = "coalesce(e.conversation_id, 0)"  # the chain's key, as the unique index spells it
ALL_EVENTS = f"SELECT {COLUMNS}, 1 AS start FROM trace_events e ORDER BY {CHAIN}, e.seq"
ONE_CHAIN = f"SELECT {COLUMNS}, 1 AS start FROM trace_events e WHERE {CHAIN} = :cid ORDER BY e.seq"
# From the first event at or after `since` in each chain; the event before it is the
# trusted base the verification starts from.
SINCE = f"""
WITH starts AS (
  SELECT conversation_id, min(seq) AS start FROM trace_events
   WHERE at >= :since AND (CAST(:cid AS bigint) IS NULL OR conversation_id = :cid)
   GROUP BY conversation_id
)
SELECT {COLUMNS}, s.start FROM trace_events e
  JOIN starts s ON {CHAIN} = coalesce(s.conversation_id, 0)
 WHERE e.seq >= s.start - 1
 ORDER BY {CHAIN}, e.seq
"""
CHAINS = """
SELECT count(*) FROM (SELECT DISTINCT conversation_id FROM trace_events
 WHERE (CAST(:since AS timestamptz) IS NULL OR at >= :since)
   AND (CAST(:cid AS bigint) IS NULL OR conversation_id = :cid)) c
"""
# The event at each anchored head (`heads`: a jsonb array of [conversation_id, seq, …]).
AT_HEADS = f"""
SELECT h.ord, x.* FROM jsonb_array_elements(CAST(:heads AS jsonb)) WITH ORDINALITY h(v, ord)
LEFT JOIN LATERAL (
  SELECT {COLUMNS} FROM trace_events e
   WHERE {CHAIN} = coalesce((h.v->>0)::bigint, 0) AND e.seq = (h.v->>1)::bigint
) x ON true
ORDER BY h.ord
"""
ANCHOR_COLUMNS = "id, day, created_at, created_by, events, chains, heads, prev_hash, hash"
HEADS = f"""
SELECT c.id AS conversation_id, h.seq, h.hash FROM conversations c
CROSS JOIN LATERAL (SELECT seq, hash FROM trace_events e WHERE {CHAIN} = c.id
                     ORDER BY seq DESC LIMIT 1) h
UNION ALL
SELECT NULL, seq, hash FROM (SELECT seq, hash FROM trace_events e WHERE {CHAIN} = 0
                              ORDER BY seq DESC LIMIT 1) n
"""
ANCHORED = """
SELECT h->>0 AS conversation_id, (h->>1)::bigint AS seq, h->>2 AS hash FROM (
  SELECT h, row_number() OVER (PARTITION BY h->>0 ORDER BY (h->>1)::bigint DESC) AS n
    FROM audit_anchors, jsonb_array_elements(heads) h
) last WHERE n = 1
"""
# Events from each moved chain's last anchored position (its base) to its head.
MOVED_EVENTS = f"""
SELECT {COLUMNS}, m.start FROM jsonb_to_recordset(CAST(:moved AS jsonb))
       AS m(conversation_id bigint, start bigint, head bigint)
  JOIN trace_events e ON {CHAIN} = coalesce(m.conversation_id, 0)
 WHERE e.seq BETWEEN m.start - 1 AND m.head
 ORDER BY {CHAIN}, e.seq
"""

TRACE_JSON = (
    "to_jsonb(e) - 'data_hash' - 'prev_hash' - 'hash' || jsonb_build_object("
    "'data_hash', encode(e.data_hash, 'hex'), 'prev_hash', encode(e.prev_hash, 'hex'), "
    "'hash', encode(e.hash, 'hex'))"
)
# Events outside the subject's conversations that name one of their candidates.
OUTSIDE = (
    "e.conversation_id IS NULL AND (e.data->>'contact_id' = CAST(:contact AS text) "
    "OR e.data->>'candidate_id' = ANY(CAST(:candidate_texts AS text[])))"
)


async def read_one_snapshot(conn: AsyncConnection | AsyncSession) -> None:
    """Make the caller's transaction one read-only snapshot (before its first read)."""
    await conn.execute(text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY"))


# --- the trail ------------------------------------------------------------------------


async def stream_events(
    conn: AsyncConnection, *, conversation_id: int | None, since: datetime | None
) -> AsyncResult[Any]:
    """Every chain's events in chain order (or one conversation's, or from `since`)."""
    if since is not None:
        sql, params = SINCE, {"since": since, "cid": conversation_id}
    elif conversation_id is not None:
        sql, params = ONE_CHAIN, {"cid": conversation_id}
    else:
        sql, params = ALL_EVENTS, {}
    return await conn.stream(text(sql).execution_options(yield_per=2000), params)


async def stream_moved_events(conn: AsyncConnection, *, moved: str) -> AsyncResult[Any]:
    """The events of each moved chain from its base to its head (`moved`: jsonb text)."""
    return await conn.stream(text(MOVED_EVENTS).execution_options(yield_per=2000), {"moved": moved})


async def count_chains(
    conn: AsyncConnection, *, conversation_id: int | None, since: datetime | None
) -> Any:
    """How many chains have events (at or after `since`, of one conversation)."""
    return await conn.scalar(text(CHAINS), {"since": since, "cid": conversation_id})


async def all_anchors(conn: AsyncConnection) -> Result[Any]:
    """Every anchor, in the order of the anchor chain."""
    return await conn.execute(text(f"SELECT {ANCHOR_COLUMNS} FROM audit_anchors ORDER BY id"))


async def events_at_heads(conn: AsyncConnection, *, heads: str) -> Result[Any]:
    """The event now at each anchored head (`heads`: jsonb text), in the heads' order."""
    return await conn.execute(text(AT_HEADS), {"heads": heads})


async def lock_anchors(conn: AsyncConnection) -> None:
    """Take the anchor chain's advisory lock for the caller's transaction."""
    await conn.execute(text("SELECT pg_advisory_xact_lock(:ns, 0)"), {"ns": locks.AUDIT_ANCHOR})


async def last_anchor(conn: AsyncConnection) -> Row[Any] | None:
    """The newest anchor, if any."""
    return (
        await conn.execute(
            text(f"SELECT {ANCHOR_COLUMNS} FROM audit_anchors ORDER BY id DESC LIMIT 1")
        )
    ).first()


async def anchored_heads(conn: AsyncConnection) -> Result[Any]:
    """Each chain's last anchored head: conversation_id (text), seq, hash (hex)."""
    return await conn.execute(text(ANCHORED))


async def chain_heads(conn: AsyncConnection) -> Result[Any]:
    """Each chain's head now: conversation_id, seq, hash."""
    return await conn.execute(text(HEADS))


async def insert_anchor(
    conn: AsyncConnection,
    *,
    day: Any,
    created_at: datetime,
    created_by: str,
    events: int,
    chains: int,
    heads: str,
    prev_hash: bytes | None,
    hash: bytes,
) -> int:
    """Store an anchor (`heads`: jsonb text) and return its id."""
    anchor_id: int = (
        await conn.execute(
            text(
                "INSERT INTO audit_anchors (day, created_at, created_by, events, chains, "
                "heads, prev_hash, hash) VALUES (:day, :created_at, :created_by, :events, "
                ":chains, CAST(:heads AS jsonb), :prev_hash, :hash) RETURNING id"
            ),
            {
                "day": day,
                "created_at": created_at,
                "created_by": created_by,
                "events": events,
                "chains": chains,
                "heads": heads,
                "prev_hash": prev_hash,
                "hash": hash,
            },
        )
    ).scalar_one()
    return anchor_id


async def count_conversation_events(conn: AsyncConnection, *, conversation_id: int) -> Any:
    """How many events a conversation's chain holds."""
    return await conn.scalar(
        text("SELECT count(*) FROM trace_events e WHERE coalesce(conversation_id, 0) = :c"),
        {"c": conversation_id},
    )


async def stream_conversation_events(
    conn: AsyncConnection, *, conversation_id: int
) -> AsyncResult[Any]:
    """A conversation's chain, in `seq` order."""
    return await conn.stream(
        text(ONE_CHAIN).execution_options(yield_per=1000), {"cid": conversation_id}
    )


async def anchors_covering(conn: AsyncConnection, *, conversation_id: int) -> Result[Any]:
    """The anchors that hold a head of the conversation's chain, in order."""
    return await conn.execute(
        text(
            f"SELECT {ANCHOR_COLUMNS} FROM audit_anchors "
            "WHERE heads @> jsonb_build_array(jsonb_build_array(CAST(:c AS bigint))) "
            "ORDER BY id"
        ),
        {"c": conversation_id},
    )


# --- a data subject -------------------------------------------------------------------


async def _rows(session: AsyncSession, sql: str, **params: Any) -> list[dict[str, Any]]:
    return [r[0] for r in await session.execute(text(sql), params)]


def _count(result: Result[Any]) -> int:
    return int(getattr(result, "rowcount", 0) or 0)


async def contact_by_wa_id(session: AsyncSession, *, wa_id: str) -> Any:
    """The id of the contact with that WhatsApp number, or None."""
    return await session.scalar(text("SELECT id FROM contacts WHERE wa_id = :v"), {"v": wa_id})


async def contact_by_id(session: AsyncSession, *, contact_id: int) -> Any:
    """The id of the contact with that id, or None."""
    return await session.scalar(text("SELECT id FROM contacts WHERE id = :v"), {"v": contact_id})


async def contact_document(session: AsyncSession, *, contact_id: int) -> Any:
    """The contact's row as JSON, or None."""
    return await session.scalar(
        text("SELECT to_jsonb(c) FROM contacts c WHERE id = :id"), {"id": contact_id}
    )


async def candidates_of_contact(
    session: AsyncSession, *, contact_id: int, wa_id: str | None
) -> list[dict[str, Any]]:
    """The candidates linked to the contact (by contact or WhatsApp number), as JSON."""
    return await _rows(
        session,
        "SELECT to_jsonb(k) FROM candidates k WHERE contact_id = :id "
        "OR (CAST(:wa AS text) IS NOT NULL AND wa_id = :wa) ORDER BY id",
        id=contact_id,
        wa=wa_id,
    )


async def conversations_of_contact(
    session: AsyncSession, *, contact_id: int
) -> list[dict[str, Any]]:
    """The contact's conversations, as JSON."""
    return await _rows(
        session,
        "SELECT to_jsonb(c) FROM conversations c WHERE contact_id = :id ORDER BY id",
        id=contact_id,
    )


async def conversation_holdings(
    session: AsyncSession, *, conversation: dict[str, Any]
) -> dict[str, Any]:
    """Everything one of the subject's conversations holds, one statement per table."""
    cid = conversation["id"]

    async def rows(sql: str, cid: int = cid) -> list[dict[str, Any]]:
        return await _rows(session, sql, cid=cid)

    return {
        "conversation": conversation,
        "messages": await rows(
            "SELECT to_jsonb(m) FROM messages m WHERE conversation_id = :cid ORDER BY id"
        ),
        "message_statuses": await rows(
            "SELECT to_jsonb(s) FROM message_statuses s JOIN messages m "
            "ON m.wa_message_id = s.wa_message_id WHERE m.conversation_id = :cid "
            "ORDER BY s.id"
        ),
        "handoffs": await rows(
            "SELECT to_jsonb(h) FROM handoffs h WHERE conversation_id = :cid ORDER BY id"
        ),
        "notes": await rows(
            "SELECT to_jsonb(n) FROM notes n WHERE conversation_id = :cid ORDER BY id"
        ),
        "csat_ratings": await rows(
            "SELECT to_jsonb(r) FROM csat_ratings r WHERE conversation_id = :cid ORDER BY id"
        ),
        "integration_calls": await rows(
            "SELECT to_jsonb(i) FROM integration_calls i WHERE conversation_id = :cid ORDER BY id"
        ),
        "trace": await rows(
            f"SELECT {TRACE_JSON} FROM trace_events e WHERE conversation_id = :cid ORDER BY seq"
        ),
        "checkpoints": await session.scalar(
            text("SELECT count(*) FROM checkpoints WHERE thread_id = :t"),
            {"t": conversation["thread_id"]},
        ),
    }


async def applications_of(
    session: AsyncSession, *, candidate_ids: list[int]
) -> list[dict[str, Any]]:
    """The candidates' applications, as JSON."""
    return await _rows(
        session,
        "SELECT to_jsonb(a) FROM applications a WHERE candidate_id = ANY(:k) ORDER BY id",
        k=candidate_ids,
    )


async def webhooks_of(session: AsyncSession, *, conversation_ids: list[int]) -> Result[Any]:
    """The raw webhook bodies that carried the conversations' messages or statuses."""
    return await session.execute(
        text(
            "SELECT w.id, w.received_at, w.body FROM webhook_events w WHERE w.id IN ("
            "  SELECT webhook_event_id FROM messages WHERE conversation_id = ANY(:c)"
            "  UNION SELECT s.webhook_event_id FROM message_statuses s JOIN messages m"
            "  ON m.wa_message_id = s.wa_message_id WHERE m.conversation_id = ANY(:c)"
            ") ORDER BY w.id"
        ),
        {"c": conversation_ids},
    )


async def stage_history_of(
    session: AsyncSession, *, application_ids: list[int]
) -> list[dict[str, Any]]:
    """The applications' stage history, as JSON."""
    return await _rows(
        session,
        "SELECT to_jsonb(s) FROM stage_history s WHERE application_id = ANY(:a) ORDER BY id",
        a=application_ids,
    )


async def interviews_of(
    session: AsyncSession, *, application_ids: list[int]
) -> list[dict[str, Any]]:
    """The applications' interviews, as JSON."""
    return await _rows(
        session,
        "SELECT to_jsonb(i) FROM interviews i WHERE application_id = ANY(:a) ORDER BY id",
        a=application_ids,
    )


async def followups_of(session: AsyncSession, *, candidate_ids: list[int]) -> list[dict[str, Any]]:
    """The candidates' follow-ups, as JSON."""
    return await _rows(
        session,
        "SELECT to_jsonb(f) FROM followups f WHERE candidate_id = ANY(:k) ORDER BY id",
        k=candidate_ids,
    )


async def recruiting_events_of(
    session: AsyncSession, *, external_ids: list[str]
) -> list[dict[str, Any]]:
    """The ATS events naming the candidates' external ids, as JSON."""
    return await _rows(
        session,
        "SELECT to_jsonb(r) FROM recruiting_events r "
        "WHERE r.payload->'candidate'->>'external_id' = ANY(CAST(:x AS text[])) "
        "ORDER BY id",
        x=external_ids,
    )


async def trace_outside_conversations(
    session: AsyncSession, *, contact_id: int, candidate_texts: list[str]
) -> list[dict[str, Any]]:
    """Trace events without a conversation that name the contact or its candidates."""
    return await _rows(
        session,
        f"SELECT {TRACE_JSON} FROM trace_events e WHERE {OUTSIDE} ORDER BY e.seq",
        contact=contact_id,
        candidate_texts=candidate_texts,
    )


async def lock_contact(session: AsyncSession, *, contact_id: int) -> None:
    """Lock the contact's row for the caller's transaction."""
    await session.execute(
        text("SELECT 1 FROM contacts WHERE id = :id FOR UPDATE"), {"id": contact_id}
    )


async def skip_queued_outbound(session: AsyncSession, *, conversation_ids: list[int]) -> int:
    """Outbound messages not yet sent are skipped; how many."""
    return _count(
        await session.execute(
            text(
                "UPDATE messages SET status = 'skipped', error_title = 'subject erased' "
                "WHERE conversation_id = ANY(:c) AND direction = 'out' "
                "AND status IN ('queued', 'sending')"
            ),
            {"c": conversation_ids},
        )
    )


async def erase_messages(session: AsyncSession, *, conversation_ids: list[int], marker: str) -> int:
    """Message texts and contents become the marker (`marker`: jsonb text); how many."""
    return _count(
        await session.execute(
            text(
                "UPDATE messages SET text = NULL, content = CAST(:m AS jsonb), "
                "processed_at = coalesce(processed_at, now()) WHERE conversation_id = ANY(:c)"
            ),
            {"c": conversation_ids, "m": marker},
        )
    )


async def erase_status_recipients(session: AsyncSession, *, conversation_ids: list[int]) -> int:
    """Statuses lose their recipient; how many."""
    return _count(
        await session.execute(
            text(
                "UPDATE message_statuses s SET recipient_id = NULL FROM messages m "
                "WHERE m.wa_message_id = s.wa_message_id AND m.conversation_id = ANY(:c)"
            ),
            {"c": conversation_ids},
        )
    )


async def erase_notes(session: AsyncSession, *, conversation_ids: list[int], body: str) -> int:
    """Notes' bodies become `body`; how many."""
    return _count(
        await session.execute(
            text("UPDATE notes SET body = :n WHERE conversation_id = ANY(:c)"),
            {"c": conversation_ids, "n": body},
        )
    )


async def erase_handoff_summaries(session: AsyncSession, *, conversation_ids: list[int]) -> int:
    """Handoffs lose their summary; how many."""
    return _count(
        await session.execute(
            text("UPDATE handoffs SET summary = NULL WHERE conversation_id = ANY(:c)"),
            {"c": conversation_ids},
        )
    )


async def erase_integration_calls(
    session: AsyncSession, *, conversation_ids: list[int], marker: str
) -> int:
    """Integration payloads become the marker (jsonb text), responses go; how many."""
    return _count(
        await session.execute(
            text(
                "UPDATE integration_calls SET payload = CAST(:m AS jsonb), response = NULL "
                "WHERE conversation_id = ANY(:c)"
            ),
            {"c": conversation_ids, "m": marker},
        )
    )


async def erase_recruiting_events(
    session: AsyncSession, *, external_ids: list[str], marker: str
) -> int:
    """ATS events keep only the candidate's external id and the marker; how many."""
    return _count(
        await session.execute(
            text(
                "UPDATE recruiting_events SET payload = jsonb_set(payload, '{candidate}', "
                "jsonb_build_object('external_id', payload->'candidate'->'external_id', "
                "CAST(:r AS text), CAST(:m AS jsonb))) "
                "WHERE payload->'candidate'->>'external_id' = ANY(CAST(:x AS text[]))"
            ),
            {"x": external_ids, "r": REDACTED, "m": marker},
        )
    )


async def erase_candidates(
    session: AsyncSession, *, candidate_ids: list[int], name: str, now: datetime
) -> int:
    """Candidates lose their name, numbers, email and profile and are paused; how many."""
    return _count(
        await session.execute(
            text(
                "UPDATE candidates SET name = :n, wa_id = NULL, email = NULL, phone = NULL, "
                "profile = '{}', paused_at = coalesce(paused_at, :now), updated_at = :now "
                "WHERE id = ANY(:k)"
            ),
            {"k": candidate_ids, "n": name, "now": now},
        )
    )


async def delete_checkpoints(session: AsyncSession, *, thread_ids: list[str]) -> int:
    """The threads' checkpoints, blobs and writes go; how many checkpoints."""
    deleted = _count(
        await session.execute(
            text("DELETE FROM checkpoints WHERE thread_id = ANY(:t)"), {"t": thread_ids}
        )
    )
    for table in ("checkpoint_blobs", "checkpoint_writes"):
        await session.execute(
            text(f"DELETE FROM {table} WHERE thread_id = ANY(:t)"), {"t": thread_ids}
        )
    return deleted


async def erase_contact(
    session: AsyncSession, *, contact_id: int, bsuid: str, now: datetime
) -> None:
    """The contact loses its number and profile name, takes `bsuid` and is opted out."""
    await session.execute(
        text(
            "UPDATE contacts SET wa_id = NULL, bsuid = :b, profile_name = NULL, "
            "opted_out_at = coalesce(opted_out_at, :now) WHERE id = :id"
        ),
        {"b": bsuid, "now": now, "id": contact_id},
    )


async def open_handoffs_of(session: AsyncSession, *, conversation_ids: list[int]) -> list[int]:
    """The ids of the conversations' handoffs not yet closed."""
    rows = await session.execute(
        text(
            "SELECT id FROM handoffs WHERE conversation_id = ANY(:c) "
            "AND status IN ('open', 'assigned', 'accepted')"
        ),
        {"c": conversation_ids},
    )
    return [int(r.id) for r in rows]


async def close_open_conversations(
    session: AsyncSession, *, conversation_ids: list[int], now: datetime
) -> None:
    """The conversations still open close."""
    await session.execute(
        text(
            "UPDATE conversations SET status = 'closed', updated_at = :now "
            "WHERE id = ANY(:c) AND status = 'open'"
        ),
        {"c": conversation_ids, "now": now},
    )


async def webhook_bodies_of(
    session: AsyncSession, *, conversation_ids: list[int]
) -> Sequence[Row[Any]]:
    """The id and body of each webhook that carried the conversations' messages or statuses."""
    rows = await session.execute(
        text(
            "SELECT id, body FROM webhook_events WHERE id IN ("
            "  SELECT webhook_event_id FROM messages WHERE conversation_id = ANY(:c)"
            "  UNION SELECT s.webhook_event_id FROM message_statuses s JOIN messages m"
            "  ON m.wa_message_id = s.wa_message_id WHERE m.conversation_id = ANY(:c))"
        ),
        {"c": conversation_ids},
    )
    return rows.all()


async def replace_webhook_body(
    session: AsyncSession, *, webhook_event_id: int, body: bytes
) -> None:
    """A stored webhook's body becomes `body`."""
    await session.execute(
        text("UPDATE webhook_events SET body = :b WHERE id = :id"),
        {"b": body, "id": webhook_event_id},
    )


async def redact_trace_events(
    session: AsyncSession,
    *,
    conversation_ids: list[int],
    contact_id: int,
    candidate_texts: list[str],
    marker: str,
) -> list[Row[Any]]:
    """The subject's trace events' data becomes the marker (hashes stay); their ids."""
    await session.execute(text("SET LOCAL traza.redaction = 'on'"))
    rows = await session.execute(
        text(
            "UPDATE trace_events e SET data = CAST(:m AS jsonb) "
            "WHERE (e.conversation_id = ANY(:c) OR (" + OUTSIDE + ")) "
            "AND e.data <> '{}' AND NOT e.data ? :r AND e.kind <> :erased "
            "RETURNING e.id, e.conversation_id"
        ),
        {
            "m": marker,
            "c": conversation_ids,
            "contact": contact_id,
            "candidate_texts": candidate_texts,
            "r": REDACTED,
            "erased": ERASED_KIND,
        },
    )
    redacted = list(rows)
    await session.execute(text("SET LOCAL traza.redaction = 'off'"))
    return redacted
