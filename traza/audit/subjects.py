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

from sqlalchemy.ext.asyncio import AsyncSession

from traza import clock, trace
from traza.audit import repository
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
    found = await repository.contact_by_wa_id(session, wa_id=value)
    if found is None and value.isdigit() and len(value) < 19:
        found = await repository.contact_by_id(session, contact_id=int(value))
    if found is None:
        raise SubjectNotFound(f"no contact with id or wa_id '{ref}'")
    return int(found)


def _is_erased(contact: dict[str, Any]) -> bool:
    return str(contact.get("bsuid") or "").startswith(ERASED_PREFIX)


async def _scope(session: AsyncSession, contact_id: int) -> dict[str, Any]:
    """The contact and the ids of everything linked to it."""
    contact = await repository.contact_document(session, contact_id=contact_id)
    if contact is None:
        raise SubjectNotFound(f"no contact {contact_id}")
    candidates = await repository.candidates_of_contact(
        session, contact_id=contact_id, wa_id=contact.get("wa_id")
    )
    conversations = await repository.conversations_of_contact(session, contact_id=contact_id)
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
        await repository.read_one_snapshot(session)
        scope = await _scope(session, contact_id)
        cids, kids = scope["conversation_ids"], scope["candidate_ids"]
        conversations = [
            await repository.conversation_holdings(session, conversation=conversation)
            for conversation in scope["conversations"]
        ]
        applications = await repository.applications_of(session, candidate_ids=kids)
        application_ids = [a["id"] for a in applications]
        webhooks = await repository.webhooks_of(session, conversation_ids=cids)
        return {
            "subject": {
                "contact_id": contact_id,
                "erased": _is_erased(scope["contact"]),
                "exported_at": clock.now().isoformat(),
            },
            "contact": scope["contact"],
            "candidates": scope["candidates"],
            "applications": applications,
            "stage_history": await repository.stage_history_of(
                session, application_ids=application_ids
            ),
            "interviews": await repository.interviews_of(session, application_ids=application_ids),
            "followups": await repository.followups_of(session, candidate_ids=kids),
            "recruiting_events": await repository.recruiting_events_of(
                session, external_ids=scope["external_ids"]
            ),
            "conversations": conversations,
            "trace_outside_conversations": await repository.trace_outside_conversations(
                session, contact_id=contact_id, candidate_texts=scope["candidate_texts"]
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
        await repository.lock_contact(session, contact_id=contact_id)
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

        def count(name: str, rows: int) -> None:
            counts[name] = counts.get(name, 0) + rows

        # Nothing more is sent or planned for them.
        for kid in kids:
            counts["followups_cancelled"] = counts.get(
                "followups_cancelled", 0
            ) + await followups.cancel(session, "subject erased", candidate_id=kid)
        await _close_conversations(session, cids, by=by, now=now)
        count(
            "outbound_skipped",
            await repository.skip_queued_outbound(session, conversation_ids=cids),
        )
        identities = {
            str(v) for v in (contact.get("wa_id"), contact.get("bsuid")) if v is not None and str(v)
        }
        identities |= {
            str(k[f]) for k in scope["candidates"] for f in ("wa_id", "phone") if k.get(f)
        }
        await _erase_webhooks(session, cids, identities, marker, counts)
        # Personal data, row by row; ids and times stay.
        marked = json.dumps({REDACTED: marker})
        count(
            "messages",
            await repository.erase_messages(session, conversation_ids=cids, marker=marked),
        )
        count(
            "message_statuses",
            await repository.erase_status_recipients(session, conversation_ids=cids),
        )
        count(
            "notes", await repository.erase_notes(session, conversation_ids=cids, body=ERASED_NAME)
        )
        count("handoffs", await repository.erase_handoff_summaries(session, conversation_ids=cids))
        count(
            "integration_calls",
            await repository.erase_integration_calls(session, conversation_ids=cids, marker=marked),
        )
        count(
            "recruiting_events",
            await repository.erase_recruiting_events(
                session, external_ids=scope["external_ids"], marker=json.dumps(marker)
            ),
        )
        count(
            "candidates",
            await repository.erase_candidates(
                session, candidate_ids=kids, name=ERASED_NAME, now=now
            ),
        )
        count(
            "checkpoints",
            await repository.delete_checkpoints(session, thread_ids=scope["thread_ids"]),
        )
        await repository.erase_contact(
            session, contact_id=contact_id, bsuid=f"{ERASED_PREFIX}{contact_id}", now=now
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
    ids = await repository.open_handoffs_of(session, conversation_ids=cids)
    if ids:
        rules = await active.current()
        for handoff_id in ids:
            await handoffs.close(
                session, rules, handoff_id, status="returned", actor=by, language=None
            )
    await repository.close_open_conversations(session, conversation_ids=cids, now=now)


async def _erase_webhooks(
    session: AsyncSession,
    cids: list[int],
    identities: set[str],
    marker: dict[str, Any],
    counts: dict[str, int],
) -> None:
    for row in await repository.webhook_bodies_of(session, conversation_ids=cids):
        await repository.replace_webhook_body(
            session,
            webhook_event_id=row.id,
            body=_scrub_webhook(bytes(row.body), identities, marker),
        )
        counts["webhook_events"] = counts.get("webhook_events", 0) + 1


async def _redact_trace(
    session: AsyncSession, scope: dict[str, Any], marker: dict[str, Any]
) -> dict[int | None, list[int]]:
    """Replace the data of the subject's trace events by the marker (hashes stay)."""
    rows = await repository.redact_trace_events(
        session,
        conversation_ids=scope["conversation_ids"],
        contact_id=scope["contact"]["id"],
        candidate_texts=scope["candidate_texts"],
        marker=json.dumps({REDACTED: marker}),
    )
    redacted: dict[int | None, list[int]] = {}
    for row in rows:
        redacted.setdefault(row.conversation_id, []).append(row.id)
    for ids in redacted.values():
        ids.sort()
    return redacted
