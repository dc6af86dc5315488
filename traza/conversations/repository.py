"""The conversation and its messages: the 24-hour window, language, Studio threads, turns consumed.

`pending_turn` reads what a worker's turn consumes and `load_turn_context` what it decides
with (conversation, contact, candidate, open handoff, recent messages), each in one round
trip; `awaiting_turn` and `awaiting_delivery` are what the sweep requeues. The handoff
aggregate lives in `traza.operations.handoffs`, the trace in `traza.trace`.

The operator endpoints and the dashboard read conversations, their messages and their
thread's checkpoints through the functions at the end, on the caller's session; `teams`
arguments are an operator's scope (the teams they see, or None for all: admins).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Row, and_, func, select, text, true, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from traza import clock, trace
from traza.db.engine import autocommit, direct, run, session_scope
from traza.db.models import Candidate, Contact, Conversation, Inbox, Message
from traza.trace import kinds

WINDOW = timedelta(hours=24)
STUDIO_PHONE_NUMBER_ID = "studio"


def in_teams(column: Any, teams: frozenset[str] | None) -> Any:
    """A WHERE clause limiting `column` (a team name) to `teams` (None: no limit)."""
    if teams is None:
        return true()
    return column.in_(sorted(teams))


async def set_language(conversation_id: int, language: str) -> None:
    """Store the language detected for a conversation (one statement, own transaction)."""
    async with autocommit() as conn:
        await conn.execute(
            text(
                "UPDATE conversations SET language = :l "
                "WHERE id = :id AND language IS DISTINCT FROM :l"
            ),
            {"id": conversation_id, "l": language},
        )


def in_service_window(last_inbound_at: datetime | None, now: datetime | None = None) -> bool:
    """Whether WhatsApp's 24-hour customer service window is open."""
    if last_inbound_at is None:
        return False
    return (now or clock.now()) - last_inbound_at < WINDOW


async def studio_conversation(session: AsyncSession, thread_id: str) -> Conversation:
    """A conversation for a thread started from LangGraph Studio (no WhatsApp contact).

    It lives on a `studio` inbox with a contact named after the thread, so a flow
    debugged in Studio leaves the same trace as a real one and sends through the
    local outbox.
    """
    inbox_id: int = (
        await session.execute(
            text(
                "INSERT INTO inboxes (phone_number_id, name) VALUES (:p, 'LangGraph Studio') "
                "ON CONFLICT (phone_number_id) DO UPDATE SET name = inboxes.name RETURNING id"
            ),
            {"p": STUDIO_PHONE_NUMBER_ID},
        )
    ).scalar_one()
    contact_id: int = (
        await session.execute(
            text(
                "INSERT INTO contacts (bsuid, profile_name) VALUES (:b, 'Studio') "
                "ON CONFLICT (bsuid) DO UPDATE SET bsuid = EXCLUDED.bsuid RETURNING id"
            ),
            {"b": f"studio-{thread_id}"},
        )
    ).scalar_one()
    conversation = Conversation(
        inbox_id=inbox_id, contact_id=contact_id, thread_id=thread_id, owner="bot", status="open"
    )
    session.add(conversation)
    await session.flush()
    return conversation


async def mark_processed(
    session: AsyncSession | AsyncConnection,
    message_ids: list[int],
    *,
    handoff_id: int | None = None,
) -> None:
    """Mark a turn's inbound messages consumed (and attach them to a handoff)."""
    if not message_ids:
        return
    values: dict[str, Any] = {"processed_at": datetime.now(UTC)}
    if handoff_id is not None:
        values["handoff_id"] = handoff_id
    await session.execute(
        update(Message)
        .where(Message.id.in_(message_ids), Message.processed_at.is_(None))
        .values(**values)
    )


# The conversation's owner and thread with its unprocessed inbound messages, in one read.
PENDING_SQL = text(
    """
    SELECT c.owner, c.thread_id, m.id, m.type, m.text,
           coalesce(m.content->>'reply_id', m.content->>'payload') AS payload
      FROM conversations c
      LEFT JOIN messages m ON m.conversation_id = c.id AND m.direction = 'in'
                          AND m.processed_at IS NULL
     WHERE c.id = :cid
     ORDER BY m.id
    """
)


async def pending_turn(conn: AsyncConnection, *, conversation_id: int) -> Sequence[Row[Any]]:
    """The conversation's owner and thread, one row per unprocessed inbound message."""
    return (await conn.execute(PENDING_SQL, {"cid": conversation_id})).all()


async def message_id_by_key(conn: AsyncConnection, *, idempotency_key: str) -> int | None:
    """The id of the message stored under `idempotency_key`, if there is one."""
    found: int | None = (
        await conn.execute(
            text("SELECT id FROM messages WHERE idempotency_key = :k"), {"k": idempotency_key}
        )
    ).scalar_one_or_none()
    return found


async def thread_of(conn: AsyncConnection, *, conversation_id: int) -> str | None:
    """The conversation's LangGraph thread id (None: no such conversation)."""
    thread: str | None = (
        await conn.execute(
            text("SELECT thread_id FROM conversations WHERE id = :id"), {"id": conversation_id}
        )
    ).scalar_one_or_none()
    return thread


async def awaiting_turn(session: AsyncSession, *, created_before: datetime) -> list[int]:
    """Conversations with inbound messages older than `created_before` no turn consumed."""
    rows = await session.execute(
        text(
            "SELECT DISTINCT conversation_id FROM messages WHERE direction = 'in' "
            "AND processed_at IS NULL AND created_at < :cutoff"
        ),
        {"cutoff": created_before},
    )
    return list(rows.scalars())


async def awaiting_delivery(session: AsyncSession, *, created_before: datetime) -> list[int]:
    """Conversations with outbound messages older than `created_before` still unsent."""
    rows = await session.execute(
        text(
            "SELECT DISTINCT conversation_id FROM messages WHERE direction = 'out' "
            "AND status IN ('queued', 'sending') AND created_at < :cutoff"
        ),
        {"cutoff": created_before},
    )
    return list(rows.scalars())


# One round trip: the conversation, its contact, its open handoff and its last messages
# before this turn.
CONTEXT_SQL = text(
    """
    SELECT c.id, c.owner, c.last_inbound_at, ct.profile_name, ct.locale, ct.opted_out_at,
           c.language,
           ct.wa_id, (SELECT i.phone_number_id FROM inboxes i WHERE i.id = c.inbox_id) AS inbox,
           (SELECT k.id FROM candidates k WHERE k.contact_id = c.contact_id) AS candidate_id,
           (SELECT json_build_object('name', k.name, 'email', k.email, 'phone', k.phone)
              FROM candidates k WHERE k.contact_id = c.contact_id) AS candidate,
           (SELECT h.id FROM handoffs h
             WHERE h.conversation_id = c.id
               AND h.status IN ('open', 'assigned', 'accepted')) AS handoff_id,
           (SELECT coalesce(json_agg(r ORDER BY r.id), '[]'::json) FROM (
               SELECT m.id, m.direction, m.actor, m.type, left(m.text, 500) AS text
                 FROM messages m
                WHERE m.conversation_id = c.id
                  AND (CAST(:before AS bigint) IS NULL OR m.id < CAST(:before AS bigint))
                ORDER BY m.id DESC LIMIT :window) r) AS recent
      FROM conversations c JOIN contacts ct ON ct.id = c.contact_id
     WHERE c.thread_id = :thread_id
    """
)


@dataclass(frozen=True, kw_only=True)
class TurnContext:
    """A conversation as one turn sees it, read before the turn's first message."""

    conversation_id: int
    owner: str
    contact_name: str | None
    contact_wa_id: str | None
    locale: str | None
    language: str | None
    """The conversation's detected language (None before the first detection)."""
    opted_out: bool
    in_window: bool
    """Whether WhatsApp's 24-hour window is open (`in_service_window`)."""
    inbox: str | None
    """The inbox's phone_number_id."""
    candidate_id: int | None
    candidate: dict[str, Any] | None
    """The candidate's own data: name, email, phone."""
    handoff_id: int | None
    """The open (queued, assigned or accepted) handoff."""
    recent: list[dict[str, Any]]
    """The last messages before the turn, oldest first: id, direction, actor, type, text."""
    turn: list[dict[str, Any]]
    """The turn's inbound messages, each stored (with its `id`)."""


async def load_turn_context(
    *, thread_id: str, turn: Sequence[Mapping[str, Any]], window: int
) -> TurnContext:
    """Read the thread's conversation, with the `window` messages before `turn`.

    Workers pass the stored, unprocessed messages (selected under the conversation lock):
    one read on a `direct()` connection, nothing written. Messages typed in LangGraph
    Studio have no `id`: they are stored first (with their `message.received` event), on
    a conversation created for the thread if it has none, and open the 24-hour window.
    """
    before = min((i["id"] for i in turn if "id" in i), default=None)
    params = {"thread_id": thread_id, "before": before, "window": window}
    typed_in_studio = any("id" not in i for i in turn)
    row = None
    stored: list[dict[str, Any]] = []
    last_inbound_at: datetime | None = None
    if not typed_in_studio:  # the worker's case: one read, nothing to write
        async with direct() as conn:
            row = await (await run(conn, CONTEXT_SQL, params)).fetchone()
        stored, last_inbound_at = [dict(i) for i in turn], row.last_inbound_at if row else None
    if row is None:
        async with session_scope() as session:
            row = (await session.execute(CONTEXT_SQL, params)).first()
            if row is None:  # a thread started from LangGraph Studio
                await studio_conversation(session, thread_id)
                row = (await session.execute(CONTEXT_SQL, params)).one()
            stored = [await _stored(session, row.id, item) for item in turn]
            last_inbound_at = row.last_inbound_at
            if typed_in_studio:
                last_inbound_at = datetime.now(UTC)
                await session.execute(
                    text("UPDATE conversations SET last_inbound_at = :at WHERE id = :id"),
                    {"at": last_inbound_at, "id": row.id},
                )
    return TurnContext(
        conversation_id=row.id,
        owner=row.owner,
        contact_name=row.profile_name,
        contact_wa_id=row.wa_id,
        locale=row.locale,
        language=row.language,
        opted_out=row.opted_out_at is not None,
        in_window=in_service_window(last_inbound_at),
        inbox=row.inbox,
        candidate_id=row.candidate_id,
        candidate=row.candidate,
        handoff_id=row.handoff_id,
        recent=list(row.recent),
        turn=stored,
    )


async def _stored(
    session: AsyncSession, conversation_id: int, item: Mapping[str, Any]
) -> dict[str, Any]:
    """Messages typed in Studio have no row yet: store them like webhook messages."""
    if "id" in item:
        return dict(item)
    message = Message(
        conversation_id=conversation_id,
        direction="in",
        type=item.get("type") or "text",
        text=item.get("text"),
        content={"body": item.get("text")},
        actor=trace.CUSTOMER,
        status="received",
        channel="studio",
    )
    session.add(message)
    await session.flush()
    await trace.record(
        session,
        conversation_id=conversation_id,
        kind=kinds.MESSAGE_RECEIVED,
        actor=trace.CUSTOMER,
        data={"type": message.type, "source": "studio"},
        message_id=message.id,
    )
    return {"id": message.id, "type": message.type, "text": message.text}


# --- what the operator endpoints and the dashboard read --------------------------------------


async def conversations_with_inbox(
    session: AsyncSession,
    *,
    wa_id: str | None = None,
    status: str | None = None,
    owner: str | None = None,
    team: str | None = None,
    teams: frozenset[str] | None,
    limit: int,
    offset: int,
) -> list[tuple[Conversation, Contact, Inbox]]:
    """Conversations matching the filters, with contact and inbox, newest activity first."""
    query = (
        select(Conversation, Contact, Inbox)
        .join(Contact, Contact.id == Conversation.contact_id)
        .join(Inbox, Inbox.id == Conversation.inbox_id)
    )
    if wa_id:
        query = query.where(Contact.wa_id == wa_id)
    if status:
        query = query.where(Conversation.status == status)
    if owner:
        query = query.where(Conversation.owner == owner)
    if team:
        query = query.where(Conversation.team == team)
    if teams is not None:
        query = query.where(Conversation.team.in_(sorted(teams)))
    query = query.order_by(Conversation.updated_at.desc(), Conversation.id.desc())
    rows = (await session.execute(query.limit(limit).offset(offset))).all()
    return [(c, contact, inbox) for c, contact, inbox in rows]


async def conversations_with_candidate(
    session: AsyncSession,
    *,
    wa_id_contains: str | None = None,
    status: str | None = None,
    teams: frozenset[str] | None,
    limit: int,
) -> list[tuple[Conversation, Contact, str | None]]:
    """Conversations of `teams` with contact and candidate name, newest activity first."""
    query = (
        select(Conversation, Contact, Candidate.name)
        .join(Contact, Contact.id == Conversation.contact_id)
        .outerjoin(Candidate, Candidate.contact_id == Contact.id)
        .where(in_teams(Conversation.team, teams))
    )
    if wa_id_contains:
        query = query.where(Contact.wa_id.contains(wa_id_contains, autoescape=True))
    if status:
        query = query.where(Conversation.status == status)
    rows = (
        await session.execute(
            query.order_by(Conversation.updated_at.desc(), Conversation.id.desc()).limit(limit)
        )
    ).all()
    return [(c, contact, name) for c, contact, name in rows]


async def conversation_counts(
    session: AsyncSession, *, teams: frozenset[str] | None
) -> tuple[int, int]:
    """Open conversations of `teams`: (all, owned by a human)."""
    row = (
        await session.execute(
            select(
                func.count().filter(Conversation.status == "open"),
                func.count().filter(
                    and_(Conversation.status == "open", Conversation.owner == "human")
                ),
            ).where(in_teams(Conversation.team, teams))
        )
    ).one()
    return row[0], row[1]


async def messages_of(session: AsyncSession, *, conversation_id: int) -> list[Message]:
    """Every message of the conversation, in and out, in order."""
    rows = await session.execute(
        select(Message).where(Message.conversation_id == conversation_id).order_by(Message.id)
    )
    return list(rows.scalars())


async def messages_by_ids(session: AsyncSession, *, message_ids: Collection[int]) -> list[Message]:
    """These messages, in no particular order."""
    rows = await session.execute(select(Message).where(Message.id.in_(message_ids)))
    return list(rows.scalars())


async def checkpoints_by_step(session: AsyncSession, *, thread_id: str) -> dict[int, str]:
    """The checkpoint of each step of the thread, by step."""
    rows = await session.execute(
        text(
            "SELECT (metadata->>'step')::int AS step, checkpoint_id FROM checkpoints "
            "WHERE thread_id = :t AND checkpoint_ns = '' AND metadata ? 'step'"
        ),
        {"t": thread_id},
    )
    return {row.step: row.checkpoint_id for row in rows}
