"""Data-subject requests: export everything held about a contact, or erase it.

Erasure is a recorded redaction, not a silent deletion. Personal data goes (names,
numbers, emails, profiles, message texts, raw webhook bodies, checkpoints, the data of
their trace events) while ids, times, kinds and actors stay, so the audit trail still
says who did what and when, and its hash chain still verifies: trace events keep their
hashes and their data becomes `{"$redacted": {...}}` through the one UPDATE the
database allows (`SET LOCAL traza.redaction = 'on'`), and a `subject.erased` event in
each chain touched lists the events it redacted. An erased contact stays erased: its
number is gone, so a new message from it starts a new contact.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from traza import clock, trace
from traza.audit.chain import ERASED_KIND, REDACTED
from traza.db.engine import session_scope
from traza.operations import handoffs
from traza.recruiting import followups
from traza.rules import active

ERASED_PREFIX = "erased:"
ERASED_NAME = "[erased]"


class SubjectNotFound(LookupError):
    """No contact with that id or WhatsApp number."""


class AlreadyErased(ValueError):
    """The contact was erased before; erasure cannot be undone or repeated."""


async def find_contact(session: AsyncSession, ref: str | int) -> int:
    """A contact by WhatsApp number (`wa_id`, `+` allowed) or by id."""
    value = str(ref).strip().removeprefix("+")
    found = await session.scalar(text("SELECT id FROM contacts WHERE wa_id = :v"), {"v": value})
    if found is None and value.isdigit() and len(value) < 19:
        found = await session.scalar(
            text("SELECT id FROM contacts WHERE id = :v"), {"v": int(value)}
        )
    if found is None:
        raise SubjectNotFound(f"no contact with id or wa_id '{ref}'")
    return int(found)


def _is_erased(contact: dict[str, Any]) -> bool:
    return str(contact.get("bsuid") or "").startswith(ERASED_PREFIX)


async def _rows(session: AsyncSession, sql: str, **params: Any) -> list[dict[str, Any]]:
    return [r[0] for r in await session.execute(text(sql), params)]


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


async def _scope(session: AsyncSession, contact_id: int) -> dict[str, Any]:
    """The contact and the ids of everything linked to it."""
    contact = await session.scalar(
        text("SELECT to_jsonb(c) FROM contacts c WHERE id = :id"), {"id": contact_id}
    )
    if contact is None:
        raise SubjectNotFound(f"no contact {contact_id}")
    candidates = await _rows(
        session,
        "SELECT to_jsonb(k) FROM candidates k WHERE contact_id = :id "
        "OR (CAST(:wa AS text) IS NOT NULL AND wa_id = :wa) ORDER BY id",
        id=contact_id,
        wa=contact.get("wa_id"),
    )
    conversations = await _rows(
        session,
        "SELECT to_jsonb(c) FROM conversations c WHERE contact_id = :id ORDER BY id",
        id=contact_id,
    )
    candidate_ids = [c["id"] for c in candidates]
    return {
        "contact": contact,
        "candidates": candidates,
        "conversations": conversations,
        "candidate_ids": candidate_ids,
        "candidate_texts": [str(i) for i in candidate_ids],
        "external_ids": [c["external_id"] for c in candidates if c.get("external_id")],
        "conversation_ids": [c["id"] for c in conversations],
        "thread_ids": [c["thread_id"] for c in conversations],
    }


async def export_subject(contact_id: int) -> dict[str, Any]:
    """Everything held about a contact, as one JSON-ready document."""
    async with session_scope() as session:
        await session.execute(text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY"))
        scope = await _scope(session, contact_id)
        cids, kids = scope["conversation_ids"], scope["candidate_ids"]
        conversations = []
        for conversation in scope["conversations"]:
            cid = conversation["id"]

            async def rows(sql: str, cid: int = cid) -> list[dict[str, Any]]:
                return await _rows(session, sql, cid=cid)

            conversations.append(
                {
                    "conversation": conversation,
                    "messages": await rows(
                        "SELECT to_jsonb(m) FROM messages m WHERE conversation_id = :cid "
                        "ORDER BY id"
                    ),
                    "message_statuses": await rows(
                        "SELECT to_jsonb(s) FROM message_statuses s JOIN messages m "
                        "ON m.wa_message_id = s.wa_message_id WHERE m.conversation_id = :cid "
                        "ORDER BY s.id"
                    ),
                    "handoffs": await rows(
                        "SELECT to_jsonb(h) FROM handoffs h WHERE conversation_id = :cid "
                        "ORDER BY id"
                    ),
                    "notes": await rows(
                        "SELECT to_jsonb(n) FROM notes n WHERE conversation_id = :cid ORDER BY id"
                    ),
                    "csat_ratings": await rows(
                        "SELECT to_jsonb(r) FROM csat_ratings r WHERE conversation_id = :cid "
                        "ORDER BY id"
                    ),
                    "integration_calls": await rows(
                        "SELECT to_jsonb(i) FROM integration_calls i WHERE conversation_id = :cid "
                        "ORDER BY id"
                    ),
                    "trace": await rows(
                        f"SELECT {TRACE_JSON} FROM trace_events e WHERE conversation_id = :cid "
                        "ORDER BY seq"
                    ),
                    "checkpoints": await session.scalar(
                        text("SELECT count(*) FROM checkpoints WHERE thread_id = :t"),
                        {"t": conversation["thread_id"]},
                    ),
                }
            )
        applications = await _rows(
            session,
            "SELECT to_jsonb(a) FROM applications a WHERE candidate_id = ANY(:k) ORDER BY id",
            k=kids,
        )
        application_ids = [a["id"] for a in applications]
        webhooks = await session.execute(
            text(
                "SELECT w.id, w.received_at, w.body FROM webhook_events w WHERE w.id IN ("
                "  SELECT webhook_event_id FROM messages WHERE conversation_id = ANY(:c)"
                "  UNION SELECT s.webhook_event_id FROM message_statuses s JOIN messages m"
                "  ON m.wa_message_id = s.wa_message_id WHERE m.conversation_id = ANY(:c)"
                ") ORDER BY w.id"
            ),
            {"c": cids},
        )
        return {
            "subject": {
                "contact_id": contact_id,
                "erased": _is_erased(scope["contact"]),
                "exported_at": clock.now().isoformat(),
            },
            "contact": scope["contact"],
            "candidates": scope["candidates"],
            "applications": applications,
            "stage_history": await _rows(
                session,
                "SELECT to_jsonb(s) FROM stage_history s WHERE application_id = ANY(:a) "
                "ORDER BY id",
                a=application_ids,
            ),
            "interviews": await _rows(
                session,
                "SELECT to_jsonb(i) FROM interviews i WHERE application_id = ANY(:a) ORDER BY id",
                a=application_ids,
            ),
            "followups": await _rows(
                session,
                "SELECT to_jsonb(f) FROM followups f WHERE candidate_id = ANY(:k) ORDER BY id",
                k=kids,
            ),
            "recruiting_events": await _rows(
                session,
                "SELECT to_jsonb(r) FROM recruiting_events r "
                "WHERE r.payload->'candidate'->>'external_id' = ANY(CAST(:x AS text[])) "
                "ORDER BY id",
                x=scope["external_ids"],
            ),
            "conversations": conversations,
            "trace_outside_conversations": await _rows(
                session,
                f"SELECT {TRACE_JSON} FROM trace_events e WHERE {OUTSIDE} ORDER BY e.seq",
                contact=contact_id,
                candidate_texts=scope["candidate_texts"],
            ),
            "webhook_events": [
                {
                    "id": w.id,
                    "received_at": w.received_at.isoformat(),
                    "body": bytes(w.body).decode("utf-8", errors="replace"),
                }
                for w in webhooks
            ],
        }


def _scrub_webhook(body: bytes, identities: set[str], marker: dict[str, Any]) -> bytes:
    """The webhook body without the subject's messages, contacts and statuses."""
    try:
        doc = json.loads(body)
    except ValueError:
        return json.dumps({REDACTED: marker}).encode()
    removed = 0
    for entry in doc.get("entry") or [] if isinstance(doc, dict) else []:
        for change in entry.get("changes") or []:
            value = change.get("value") or {}
            for key in ("messages", "contacts", "statuses"):
                items = value.get(key)
                if not isinstance(items, list):
                    continue
                kept = [
                    i
                    for i in items
                    if not (isinstance(i, dict) and identities & {str(v) for v in i.values()})
                ]
                removed += len(items) - len(kept)
                value[key] = kept
    if not isinstance(doc, dict):
        doc = {}
    doc[REDACTED] = {**marker, "removed": removed}
    return json.dumps(doc, ensure_ascii=False).encode()


async def erase_subject(contact_id: int, *, reason: str, by: str) -> dict[str, Any]:
    """Erase a contact's personal data, recording the redaction in every chain it touches.

    Returns counts of what was erased. Raises `AlreadyErased` the second time.
    """
    reason = reason.strip()
    if not reason:
        raise ValueError("an erasure needs a reason")
    async with session_scope() as session:
        await session.execute(
            text("SELECT 1 FROM contacts WHERE id = :id FOR UPDATE"), {"id": contact_id}
        )
        scope = await _scope(session, contact_id)
        contact = scope["contact"]
        if _is_erased(contact):
            raise AlreadyErased(f"contact {contact_id} was already erased")
        now = clock.now()
        marker = {
            "erased_at": now.isoformat(),
            "by": by,
            "reason": reason,
            "contact_id": contact_id,
        }
        cids, kids = scope["conversation_ids"], scope["candidate_ids"]
        counts: dict[str, int] = {}

        async def run(name: str, sql: str, **params: Any) -> None:
            result = await session.execute(text(sql), params)
            counts[name] = counts.get(name, 0) + int(getattr(result, "rowcount", 0) or 0)

        # Nothing more is sent or planned for them.
        for kid in kids:
            counts["followups_cancelled"] = counts.get(
                "followups_cancelled", 0
            ) + await followups.cancel(session, "subject erased", candidate_id=kid)
        await _close_conversations(session, cids, by=by, now=now)
        await run(
            "outbound_skipped",
            "UPDATE messages SET status = 'skipped', error_title = 'subject erased' "
            "WHERE conversation_id = ANY(:c) AND direction = 'out' "
            "AND status IN ('queued', 'sending')",
            c=cids,
        )
        identities = {
            str(v) for v in (contact.get("wa_id"), contact.get("bsuid")) if v is not None and str(v)
        }
        identities |= {
            str(k[f]) for k in scope["candidates"] for f in ("wa_id", "phone") if k.get(f)
        }
        await _erase_webhooks(session, cids, identities, marker, counts)
        # Personal data, row by row; ids and times stay.
        await run(
            "messages",
            "UPDATE messages SET text = NULL, content = CAST(:m AS jsonb), "
            "processed_at = coalesce(processed_at, now()) WHERE conversation_id = ANY(:c)",
            c=cids,
            m=json.dumps({REDACTED: marker}),
        )
        await run(
            "message_statuses",
            "UPDATE message_statuses s SET recipient_id = NULL FROM messages m "
            "WHERE m.wa_message_id = s.wa_message_id AND m.conversation_id = ANY(:c)",
            c=cids,
        )
        await run(
            "notes",
            "UPDATE notes SET body = :n WHERE conversation_id = ANY(:c)",
            c=cids,
            n=ERASED_NAME,
        )
        await run(
            "handoffs",
            "UPDATE handoffs SET summary = NULL WHERE conversation_id = ANY(:c)",
            c=cids,
        )
        await run(
            "integration_calls",
            "UPDATE integration_calls SET payload = CAST(:m AS jsonb), response = NULL "
            "WHERE conversation_id = ANY(:c)",
            c=cids,
            m=json.dumps({REDACTED: marker}),
        )
        await run(
            "recruiting_events",
            "UPDATE recruiting_events SET payload = jsonb_set(payload, '{candidate}', "
            "jsonb_build_object('external_id', payload->'candidate'->'external_id', "
            "CAST(:r AS text), CAST(:m AS jsonb))) "
            "WHERE payload->'candidate'->>'external_id' = ANY(CAST(:x AS text[]))",
            x=scope["external_ids"],
            r=REDACTED,
            m=json.dumps(marker),
        )
        await run(
            "candidates",
            "UPDATE candidates SET name = :n, wa_id = NULL, email = NULL, phone = NULL, "
            "profile = '{}', paused_at = coalesce(paused_at, :now), updated_at = :now "
            "WHERE id = ANY(:k)",
            k=kids,
            n=ERASED_NAME,
            now=now,
        )
        await run(
            "checkpoints",
            "DELETE FROM checkpoints WHERE thread_id = ANY(:t)",
            t=scope["thread_ids"],
        )
        for table in ("checkpoint_blobs", "checkpoint_writes"):
            await session.execute(
                text(f"DELETE FROM {table} WHERE thread_id = ANY(:t)"), {"t": scope["thread_ids"]}
            )
        await session.execute(
            text(
                "UPDATE contacts SET wa_id = NULL, bsuid = :b, profile_name = NULL, "
                "opted_out_at = coalesce(opted_out_at, :now) WHERE id = :id"
            ),
            {"b": f"{ERASED_PREFIX}{contact_id}", "now": now, "id": contact_id},
        )
        redacted = await _redact_trace(session, scope, marker)
        counts["trace_events"] = sum(len(ids) for ids in redacted.values())
        # One record per chain touched: each conversation's, and the one without.
        for cid in [*cids, None]:
            summary: dict[str, Any] = {}
            if cid is None:
                summary = {"conversations": cids, "candidates": kids, "erased": dict(counts)}
            await trace.record(
                session,
                conversation_id=cid,
                kind=ERASED_KIND,
                actor=by,
                data={
                    "contact_id": contact_id,
                    "reason": reason,
                    "redacted_event_ids": redacted.get(cid, []),
                    **summary,
                },
            )
    return {
        "contact_id": contact_id,
        "erased_at": now.isoformat(),
        "by": by,
        "reason": reason,
        "conversations": cids,
        "candidates": kids,
        "erased": dict(sorted(counts.items())),
    }


async def _close_conversations(
    session: AsyncSession, cids: list[int], *, by: str, now: datetime
) -> None:
    """Open handoffs end (no CSAT is asked) and open conversations close."""
    rows = await session.execute(
        text(
            "SELECT id FROM handoffs WHERE conversation_id = ANY(:c) "
            "AND status IN ('open', 'assigned', 'accepted')"
        ),
        {"c": cids},
    )
    ids: list[int] = [int(r.id) for r in rows]
    if ids:
        rules = await active.current()
        for handoff_id in ids:
            await handoffs.close(
                session, rules, handoff_id, status="returned", actor=by, language=None
            )
    await session.execute(
        text(
            "UPDATE conversations SET status = 'closed', updated_at = :now "
            "WHERE id = ANY(:c) AND status = 'open'"
        ),
        {"c": cids, "now": now},
    )


async def _erase_webhooks(
    session: AsyncSession,
    cids: list[int],
    identities: set[str],
    marker: dict[str, Any],
    counts: dict[str, int],
) -> None:
    rows = await session.execute(
        text(
            "SELECT id, body FROM webhook_events WHERE id IN ("
            "  SELECT webhook_event_id FROM messages WHERE conversation_id = ANY(:c)"
            "  UNION SELECT s.webhook_event_id FROM message_statuses s JOIN messages m"
            "  ON m.wa_message_id = s.wa_message_id WHERE m.conversation_id = ANY(:c))"
        ),
        {"c": cids},
    )
    for row in rows.all():
        await session.execute(
            text("UPDATE webhook_events SET body = :b WHERE id = :id"),
            {"b": _scrub_webhook(bytes(row.body), identities, marker), "id": row.id},
        )
        counts["webhook_events"] = counts.get("webhook_events", 0) + 1


async def _redact_trace(
    session: AsyncSession, scope: dict[str, Any], marker: dict[str, Any]
) -> dict[int | None, list[int]]:
    """Replace the data of the subject's trace events by the marker (hashes stay)."""
    await session.execute(text("SET LOCAL traza.redaction = 'on'"))
    rows = await session.execute(
        text(
            "UPDATE trace_events e SET data = CAST(:m AS jsonb) "
            "WHERE (e.conversation_id = ANY(:c) OR (" + OUTSIDE + ")) "
            "AND e.data <> '{}' AND NOT e.data ? :r AND e.kind <> :erased "
            "RETURNING e.id, e.conversation_id"
        ),
        {
            "m": json.dumps({REDACTED: marker}),
            "c": scope["conversation_ids"],
            "contact": scope["contact"]["id"],
            "candidate_texts": scope["candidate_texts"],
            "r": REDACTED,
            "erased": ERASED_KIND,
        },
    )
    redacted: dict[int | None, list[int]] = {}
    for row in rows:
        redacted.setdefault(row.conversation_id, []).append(row.id)
    await session.execute(text("SET LOCAL traza.redaction = 'off'"))
    for ids in redacted.values():
        ids.sort()
    return redacted
