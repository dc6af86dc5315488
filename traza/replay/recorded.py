"""What a conversation's trace says each turn decided, read back to be replayed and compared.

A recorded turn is a `turn.started` event and the events after it: the inbound messages,
the inputs the live turn saw, and its intent, route, guardrail verdict and reply.
`traza.services.replay` re-runs each turn through today's graph and `compare`s; what it
reads (the conversation, its recorded events, its messages) is read here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Row, text
from sqlalchemy.ext.asyncio import AsyncConnection

from traza.db.engine import autocommit
from traza.trace import kinds

ASPECTS = ("intent", "route", "guardrail", "reply")

# The recorded decisions of a conversation, in order; turns are cut at `turn.started`.
RECORDED_SQL = text(
    """
    SELECT e.id, e.kind, e.actor, e.data, e.at, e.step, m.text AS message_text
      FROM trace_events e
      LEFT JOIN messages m ON m.id = e.message_id AND e.kind = 'message.queued'
     WHERE e.conversation_id = :cid
       AND e.kind IN ('turn.started', 'classification', 'routing.decision',
                      'guardrail.verdict', 'message.queued', 'handoff.created',
                      'system.action', 'followup.drafted', 'message.held_for_human')
     ORDER BY e.id
    """
)

CONVERSATION_SQL = text(
    """
    SELECT c.id, c.thread_id, ct.profile_name, ct.wa_id, ct.locale, ct.opted_out_at,
           (SELECT i.phone_number_id FROM inboxes i WHERE i.id = c.inbox_id) AS inbox,
           (SELECT k.id FROM candidates k WHERE k.contact_id = c.contact_id) AS candidate_id
      FROM conversations c JOIN contacts ct ON ct.id = c.contact_id
     WHERE c.id = :cid
    """
)

MESSAGES_SQL = text(
    """
    SELECT m.id, m.direction, m.actor, m.type, m.text, m.created_at,
           coalesce(m.content->>'reply_id', m.content->>'payload') AS payload
      FROM messages m
     WHERE m.conversation_id = :cid
     ORDER BY m.id
    """
)


async def replayed_conversation(conn: AsyncConnection, *, conversation_id: int) -> Row[Any] | None:
    """The conversation with its contact, inbox and candidate, as a replay reads them."""
    return (await conn.execute(CONVERSATION_SQL, {"cid": conversation_id})).first()


async def recorded_events(conn: AsyncConnection, *, conversation_id: int) -> Sequence[Row[Any]]:
    """The conversation's recorded decisions, in order (`recorded_turns` cuts them)."""
    return (await conn.execute(RECORDED_SQL, {"cid": conversation_id})).all()


async def replayed_messages(conn: AsyncConnection, *, conversation_id: int) -> Sequence[Row[Any]]:
    """Every message of the conversation, in order, with its button payload."""
    return (await conn.execute(MESSAGES_SQL, {"cid": conversation_id})).all()


class ReplayError(LookupError):
    """The conversation or checkpoint asked for does not exist."""


@dataclass
class TurnReplay:
    """One turn: what was decided then, what today's graph decides."""

    number: int
    at: datetime
    messages: list[int]
    said: str
    recorded: dict[str, Any]
    replayed: dict[str, Any]
    differs: list[str] = field(default_factory=list)


@dataclass
class ConversationReplay:
    """A conversation's replay: its turns and which aspects differ."""

    conversation_id: int
    turns: list[TurnReplay]
    skipped: int = 0
    """Turns recorded before `--from`, or turns whose messages no longer exist."""

    @property
    def differences(self) -> int:
        """Turns where at least one aspect differs."""
        return sum(1 for t in self.turns if t.differs)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {
            "conversation_id": self.conversation_id,
            "turns": [asdict(t) | {"at": t.at.isoformat()} for t in self.turns],
            "skipped": self.skipped,
            "differences": self.differences,
        }


@dataclass
class Recorded:
    """One turn as the trace recorded it."""

    at: datetime
    step: int | None
    owner: str
    messages: list[int]
    intent: str | None = None
    language: str | None = None
    model: str | None = None
    """The judgment model version that classified the turn (None in older traces)."""
    route: dict[str, Any] | None = None
    guardrail: dict[str, Any] | None = None
    reply: str | None = None
    handoff: dict[str, Any] | None = None
    inputs: dict[str, Any] | None = None
    """What the turn read, as `load_context` recorded it (None in older traces)."""


def recorded_turns(rows: Sequence[Any]) -> list[Recorded]:
    """The recorded turns of a conversation's events (cut at `turn.started`)."""
    turns: list[Recorded] = []
    current: Recorded | None = None
    for r in rows:
        data = r.data or {}
        if r.kind == kinds.TURN_STARTED:
            current = Recorded(
                at=r.at,
                step=r.step,
                owner=str(data.get("owner") or "bot"),
                messages=[int(i) for i in data.get("messages") or []],
                inputs=data["inputs"] if isinstance(data.get("inputs"), dict) else None,
            )
            turns.append(current)
        elif r.kind in (kinds.FOLLOWUP_DRAFTED, kinds.MESSAGE_HELD_FOR_HUMAN):
            current = None  # not an inbound turn of the graph
        elif current is None:
            continue
        elif r.kind == "classification":
            current.intent, current.language = data.get("intent"), data.get("language")
            current.model = data.get("model")
        elif r.kind == kinds.ROUTING_DECISION:
            current.route = route_of(data)
        elif r.kind == kinds.GUARDRAIL_VERDICT:
            current.guardrail = verdict_of(data)
        elif r.kind == kinds.MESSAGE_QUEUED and str(r.actor).startswith("bot:"):
            if current.reply is None:
                current.reply = r.message_text
        elif r.kind == kinds.HANDOFF_CREATED and current.handoff is None:
            current.handoff = {"rule": data.get("rule"), "team": data.get("team")}
    return turns


def route_of(decision: dict[str, Any]) -> dict[str, Any]:
    """The parts of a routing decision a replay compares."""
    return {k: decision.get(k) for k in ("route", "rule", "team", "action")}


def verdict_of(verdict: dict[str, Any] | None) -> dict[str, Any] | None:
    """The parts of a guardrail verdict a replay compares."""
    if verdict is None:
        return None
    return {"allowed": verdict.get("allowed"), "policies": sorted(verdict.get("policies") or [])}


def compare(recorded: Recorded, replayed: dict[str, Any]) -> list[str]:
    """The aspects in which a replayed turn differs from the recorded one."""
    then = {
        "intent": recorded.intent,
        "route": recorded.route,
        "guardrail": recorded.guardrail,
        "reply": recorded.reply,
    }
    return [a for a in ASPECTS if then[a] != replayed[a]]


async def conversations_since(since: datetime) -> list[int]:
    """Conversations with a recorded turn at or after `since`, oldest first."""
    async with autocommit() as conn:
        rows = await conn.execute(
            text(
                "SELECT conversation_id FROM trace_events WHERE kind = 'turn.started' "
                "AND at >= :since AND conversation_id IS NOT NULL "
                "GROUP BY conversation_id ORDER BY min(id)"
            ),
            {"since": since},
        )
        return [int(r[0]) for r in rows]


@dataclass
class Summary:
    """What `replay --all` found."""

    conversations: int = 0
    turns: int = 0
    differing_turns: int = 0
    by_aspect: dict[str, int] = field(default_factory=lambda: dict.fromkeys(ASPECTS, 0))
    differing: list[int] = field(default_factory=list)
    failed: dict[int, str] = field(default_factory=dict)
