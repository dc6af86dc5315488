"""A conversation's unified timeline, and the answers to the seed's three questions.

Rows come from the trace (`trace_events`) joined with the messages they name; a message
no event names (should never happen) still gets a row of its own. Each row says who
acted (customer, `bot:<name>`, `human:<agent>`, `system:<name>`), what happened with the
facts that explain it (a decision's rule and reason, a guardrail's policies…), how long
the step took (`duration_ms`) and which graph step and checkpoint it belongs to.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from api.dashboard.i18n import Language, Translator, has
from traza.conversations import repository
from traza.db.models import Conversation, Message, TraceEvent
from traza.trace import kinds, reader

# The facts worth a line, per kind, in this order; other kinds show every plain value.
FIELDS: dict[str, tuple[str, ...]] = {
    kinds.MESSAGE_RECEIVED: ("type",),
    kinds.MESSAGE_QUEUED: ("type",),
    kinds.MESSAGE_SENT: ("channel", "by"),
    kinds.MESSAGE_STATUS: ("status", "error_code", "error_title"),
    kinds.TURN_STARTED: ("owner",),
    "classification": (
        "intent",
        "confidence",
        "language",
        "source",
        "matched",
        "frustration",
        "wants_human",
    ),
    kinds.ROUTING_DECISION: (
        "route",
        "rule",
        "reason",
        "team",
        "priority",
        "bot",
        "action",
        "rules_version",
    ),
    kinds.REPLY_DRAFTED: ("source", "template", "language"),
    kinds.REPLY_SENT_TO_OUTBOX: (),
    kinds.GUARDRAIL_VERDICT: ("allowed", "policies", "reason", "source", "blocked_text"),
    kinds.HANDOFF_CREATED: ("rule", "reason", "team", "priority", "out_of_hours"),
    kinds.OWNER_CHANGED: ("from", "to"),
    kinds.HANDOFF_ASSIGNED: ("agent", "rule"),
    kinds.HANDOFF_CLAIMED: ("agent",),
    kinds.HANDOFF_ACCEPTED: (),
    kinds.HANDOFF_TRANSFERRED: ("from_team", "to_team", "from_agent", "to_agent"),
    kinds.HANDOFF_RESUMED: ("response_type", "return_to_bot"),
    kinds.NOTE_ADDED: ("body",),
    kinds.ACCESS_DENIED: ("reason",),
}
# Identifiers that are noise on screen (the API timeline keeps them all).
NOISE = {
    "wa_message_id",
    "key",
    "handoff_id",
    "message_id",
    "sent_message_id",
    "followup_id",
    "note_id",
    "messages",
    "answers",
    "inputs",
    "now",
}
# How a row looks: a customer's words, something said to them, a decision, a warning.
TONES = {
    kinds.MESSAGE_RECEIVED: "in",
    kinds.MESSAGE_QUEUED: "out",
    kinds.ROUTING_DECISION: "decision",
    "classification": "decision",
    kinds.GUARDRAIL_VERDICT: "decision",
    kinds.HANDOFF_CREATED: "handoff",
    kinds.HANDOFF_ASSIGNED: "handoff",
    kinds.HANDOFF_CLAIMED: "handoff",
    kinds.HANDOFF_ACCEPTED: "handoff",
    kinds.HANDOFF_TRANSFERRED: "handoff",
    kinds.HANDOFF_RESUMED: "handoff",
    kinds.OWNER_CHANGED: "handoff",
    kinds.ACCESS_DENIED: "warning",
    kinds.MESSAGE_SEND_FAILED: "warning",
    kinds.SLA_BREACHED: "warning",
}


@dataclass
class Actor:
    """Who acted: kind (customer, bot, human, system) and name."""

    raw: str
    kind: str
    name: str

    @classmethod
    def parse(cls, raw: str) -> Actor:
        """`bot:traza` → (bot, traza); `customer` → (customer, customer)."""
        kind, _, name = raw.partition(":")
        if kind not in ("customer", "bot", "human", "system"):
            return cls(raw=raw, kind="system", name=raw)
        return cls(raw=raw, kind=kind, name=name or kind)


@dataclass
class Row:
    """One line of the timeline."""

    id: int
    at: datetime
    kind: str
    title: str
    actor: Actor
    tone: str
    text: str | None = None
    facts: list[tuple[str, str]] = field(default_factory=list)
    inputs: dict[str, Any] | None = None
    duration_ms: float | None = None
    since_previous_ms: float | None = None
    step: int | None = None
    checkpoint_id: str | None = None
    blocked: bool = False


@dataclass
class Decision:
    """A routing decision (or a blocked reply) for the header: who, which rule, why."""

    at: datetime
    actor: Actor
    rule: str
    route: str
    reason: str | None


@dataclass
class Answer:
    """Something sent to the customer, when, by whom, and how long after they wrote."""

    at: datetime
    actor: Actor
    text: str
    status: str
    after_ms: float | None


@dataclass
class Timeline:
    """The page's data: rows plus the three questions' answers."""

    rows: list[Row]
    inbound: list[Message]
    answers: list[Answer]
    decisions: list[Decision]
    participants: dict[str, list[str]]
    events: int
    checkpoints: int


def _value(value: Any, t: Translator) -> str | None:
    if value is None or value == "" or value == []:
        return None
    if isinstance(value, bool):
        return t("yes") if value else t("no")
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    if isinstance(value, dict):
        return None
    return str(value)


def _facts(
    kind: str, data: dict[str, Any], t: Translator, language: Language
) -> list[tuple[str, str]]:
    keys = FIELDS.get(kind) or tuple(k for k in data if k not in NOISE)
    out: list[tuple[str, str]] = []
    for key in keys:
        shown = _value(data.get(key), t)
        if shown is None or (key == "type" and shown == "text"):
            continue
        if key == "route" and has(language, f"route.{shown}"):
            shown = f"{shown} ({t(f'route.{shown}')})"
        label = t(f"field.{key}") if has(language, f"field.{key}") else key
        out.append((label, shown))
    return out


def _title(kind: str, t: Translator, language: Language) -> str:
    return t(f"kind.{kind}") if has(language, f"kind.{kind}") else kind


def message_text(message: Message) -> str:
    """What a message said, whatever its type (text, template, buttons, a reply)."""
    if message.text:
        return message.text
    content = message.content or {}
    for key in ("title", "reply_title", "payload", "name"):
        if content.get(key):
            return str(content[key])
    template = content.get("template")
    if isinstance(template, dict) and template.get("name"):
        return f"[{template['name']}]"
    return f"[{message.type}]"


async def build(
    session: AsyncSession, conversation: Conversation, t: Translator, language: Language
) -> Timeline:
    """Read the conversation's trace and messages and shape them for the page."""
    events = await reader.trace_events(session, conversation.id)
    messages = {
        m.id: m for m in await repository.messages_of(session, conversation_id=conversation.id)
    }
    checkpoints = await repository.checkpoints_by_step(session, thread_id=conversation.thread_id)
    shown_text: set[int] = set()
    rows: list[Row] = []
    for event in events:
        data = event.data or {}
        message = messages.get(event.message_id) if event.message_id else None
        text = None
        if (
            message is not None
            and event.message_id not in shown_text
            and event.kind
            in (
                kinds.MESSAGE_RECEIVED,
                kinds.MESSAGE_QUEUED,
            )
        ):
            text = message_text(message)
            shown_text.add(message.id)
        blocked = event.kind == kinds.GUARDRAIL_VERDICT and data.get("allowed") is False
        rows.append(
            Row(
                id=event.id,
                at=event.at,
                kind=event.kind,
                title=_title(event.kind, t, language),
                actor=Actor.parse(event.actor),
                tone="warning" if blocked else TONES.get(event.kind, "plain"),
                text=text,
                facts=_facts(event.kind, data, t, language),
                inputs=data.get("inputs") if isinstance(data.get("inputs"), dict) else None,
                duration_ms=event.duration_ms,
                step=event.step,
                checkpoint_id=checkpoints.get(event.step) if event.step is not None else None,
                blocked=blocked,
            )
        )
    for message in messages.values():  # a message the trace never named: still shown
        if not any(e.message_id == message.id for e in events):
            rows.append(
                Row(
                    id=0,
                    at=message.created_at,
                    kind=kinds.MESSAGE_RECEIVED
                    if message.direction == "in"
                    else kinds.MESSAGE_QUEUED,
                    title=_title(
                        kinds.MESSAGE_RECEIVED
                        if message.direction == "in"
                        else kinds.MESSAGE_QUEUED,
                        t,
                        language,
                    ),
                    actor=Actor.parse(message.actor),
                    tone="in" if message.direction == "in" else "out",
                    text=message_text(message),
                )
            )
    rows.sort(key=lambda r: (r.at, r.id))
    for previous, row in zip(rows, rows[1:], strict=False):
        row.since_previous_ms = (row.at - previous.at).total_seconds() * 1000

    return Timeline(
        rows=rows,
        inbound=[m for m in messages.values() if m.direction == "in"],
        answers=_answers(messages.values()),
        decisions=_decisions(events),
        participants=_participants(events, messages.values()),
        events=len(events),
        checkpoints=len(checkpoints),
    )


def _answers(messages: Any) -> list[Answer]:
    out: list[Answer] = []
    last_in: datetime | None = None
    for message in messages:
        if message.direction == "in":
            last_in = message.created_at
            continue
        at = message.sent_at or message.created_at
        after = (at - last_in).total_seconds() * 1000 if last_in and at >= last_in else None
        out.append(
            Answer(
                at=at,
                actor=Actor.parse(message.actor),
                text=message_text(message),
                status=message.status,
                after_ms=after,
            )
        )
    return out


def _decisions(events: list[TraceEvent]) -> list[Decision]:
    out: list[Decision] = []
    for event in events:
        data = event.data or {}
        if event.kind == kinds.ROUTING_DECISION:
            out.append(
                Decision(
                    at=event.at,
                    actor=Actor.parse(event.actor),
                    rule=str(data.get("rule") or "?"),
                    route=str(data.get("route") or "?"),
                    reason=data.get("reason"),
                )
            )
        elif event.kind == kinds.GUARDRAIL_VERDICT and data.get("allowed") is False:
            out.append(
                Decision(
                    at=event.at,
                    actor=Actor.parse(event.actor),
                    rule="guardrail",
                    route="human",
                    reason=data.get("reason") or ", ".join(data.get("policies") or []),
                )
            )
        elif event.kind == kinds.HANDOFF_CREATED and not event.actor.startswith("bot:"):
            out.append(
                Decision(
                    at=event.at,
                    actor=Actor.parse(event.actor),
                    rule=str(data.get("rule") or "?"),
                    route="human",
                    reason=data.get("reason"),
                )
            )
    return out


def _participants(events: list[TraceEvent], messages: Any) -> dict[str, list[str]]:
    found: dict[str, set[str]] = {"bot": set(), "human": set(), "system": set()}
    acted = [e.actor for e in events if e.kind != kinds.ACCESS_DENIED]
    for raw in acted + [m.actor for m in messages]:
        actor = Actor.parse(raw)
        if actor.kind in found:
            found[actor.kind].add(actor.name)
    return {kind: sorted(names) for kind, names in found.items()}
