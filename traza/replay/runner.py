"""Replay a past conversation through today's graph and compare the decisions.

Each recorded turn (a `turn.started` event and the events after it) is re-run with the
same inbound messages, the inputs the live turn recorded in its `turn.started` event
(contact, candidate, language, owner, opt-out, window, open handoff, the messages
before it, the unknown-answer streak; the time), and today's rules, prompts and model.
A contact renamed since, or a candidate record edited since, changes nothing. Turns
recorded before the inputs were (older traces) read the contact as it is today.
Nothing is sent and nothing is written: the effect nodes are recorders
(`traza.replay.recorder`), the trace events stay in a buffer that is dropped, and the
read-only tools are the only database access besides the reads here.

Compared per turn: intent, route (route, rule, team, action), guardrail verdict, and the
reply (the text that went to the outbox, or none).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import text

from graphs.conversation.state import RECENT_WINDOW
from graphs.conversation.tracing import turn_scope
from traza import clock
from traza.db.engine import autocommit
from traza.recruiting import people
from traza.replay.recorder import recording, replay_graph

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
class _Recorded:
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


def _recorded_turns(rows: Sequence[Any]) -> list[_Recorded]:
    turns: list[_Recorded] = []
    current: _Recorded | None = None
    for r in rows:
        data = r.data or {}
        if r.kind == "turn.started":
            current = _Recorded(
                at=r.at,
                step=r.step,
                owner=str(data.get("owner") or "bot"),
                messages=[int(i) for i in data.get("messages") or []],
                inputs=data["inputs"] if isinstance(data.get("inputs"), dict) else None,
            )
            turns.append(current)
        elif r.kind in ("followup.drafted", "message.held_for_human"):
            current = None  # not an inbound turn of the graph
        elif current is None:
            continue
        elif r.kind == "classification":
            current.intent, current.language = data.get("intent"), data.get("language")
            current.model = data.get("model")
        elif r.kind == "routing.decision":
            current.route = _route(data)
        elif r.kind == "guardrail.verdict":
            current.guardrail = _verdict(data)
        elif r.kind == "message.queued" and str(r.actor).startswith("bot:"):
            if current.reply is None:
                current.reply = r.message_text
        elif r.kind == "handoff.created" and current.handoff is None:
            current.handoff = {"rule": data.get("rule"), "team": data.get("team")}
    return turns


def _route(decision: dict[str, Any]) -> dict[str, Any]:
    return {k: decision.get(k) for k in ("route", "rule", "team", "action")}


def _verdict(verdict: dict[str, Any] | None) -> dict[str, Any] | None:
    if verdict is None:
        return None
    return {"allowed": verdict.get("allowed"), "policies": sorted(verdict.get("policies") or [])}


def _compare(recorded: _Recorded, replayed: dict[str, Any]) -> list[str]:
    then = {
        "intent": recorded.intent,
        "route": recorded.route,
        "guardrail": recorded.guardrail,
        "reply": recorded.reply,
    }
    return [a for a in ASPECTS if then[a] != replayed[a]]


async def replay_conversation(
    conversation_id: int, *, from_step: int | None = None, state: dict[str, Any] | None = None
) -> ConversationReplay:
    """Replay the conversation's recorded turns (those after `from_step`, when given).

    `state` seeds what carries between turns (language, unknown-answer streak), e.g. the
    values of the checkpoint a replay starts from.
    """
    async with autocommit() as conn:
        conv = (await conn.execute(CONVERSATION_SQL, {"cid": conversation_id})).first()
        if conv is None:
            raise ReplayError(f"conversation {conversation_id} not found")
        rows = (await conn.execute(RECORDED_SQL, {"cid": conversation_id})).all()
        messages = (await conn.execute(MESSAGES_SQL, {"cid": conversation_id})).all()
    by_id = {m.id: m for m in messages}
    carried: dict[str, Any] = {
        "language": (state or {}).get("language") or conv.locale or "es",
        "unknown_streak": int((state or {}).get("unknown_streak") or 0),
    }
    result = ConversationReplay(conversation_id=conversation_id, turns=[])
    for recorded in _recorded_turns(rows):
        if from_step is not None and (recorded.step is None or recorded.step <= from_step):
            result.skipped += 1
            continue
        turn = [by_id[i] for i in recorded.messages if i in by_id]
        if not turn:
            result.skipped += 1
            continue
        replayed, carried = await _replay_turn(conv, turn, messages, recorded, carried)
        result.turns.append(
            TurnReplay(
                number=len(result.turns) + 1,
                at=recorded.at,
                messages=[m.id for m in turn],
                said=" / ".join(m.text or f"[{m.type}]" for m in turn),
                recorded={
                    "intent": recorded.intent,
                    "model": recorded.model,
                    "route": recorded.route,
                    "guardrail": recorded.guardrail,
                    "reply": recorded.reply,
                    "handoff": recorded.handoff,
                },
                replayed=replayed,
                differs=_compare(recorded, replayed),
            )
        )
    return result


async def _replay_turn(
    conv: Any,
    turn: list[Any],
    messages: Sequence[Any],
    recorded: _Recorded,
    carried: dict[str, Any],
) -> tuple[dict[str, Any], dict[str, Any]]:
    context = {
        "turn": [{"id": m.id, "type": m.type, "text": m.text, "payload": m.payload} for m in turn],
        "conversation_id": conv.id,
        "owner": recorded.owner,
        "draft": None,
        "guardrail": None,
        "followup": None,
    }
    inputs = recorded.inputs
    if inputs is not None:  # exactly what the live turn read
        by_id = {m.id: m for m in messages}
        before = [by_id[i] for i in inputs.get("recent") or [] if i in by_id]
        context |= {
            key: inputs.get(key)
            for key in (
                "contact_name",
                "contact_wa_id",
                "candidate_id",
                "inbox",
                "opted_out",
                "in_window",
                "handoff_id",
            )
        }
        context["language"] = inputs.get("language") or carried["language"]
        context["unknown_streak"] = int(inputs.get("unknown_streak") or 0)
        candidate = inputs.get("candidate") if isinstance(inputs.get("candidate"), dict) else None
    else:  # an older trace: the contact as it is today
        first = turn[0].id
        before = [m for m in messages if m.id < first][-RECENT_WINDOW:]
        context |= {
            "contact_name": conv.profile_name,
            "contact_wa_id": conv.wa_id,
            "candidate_id": conv.candidate_id,
            "inbox": conv.inbox,
            "language": carried["language"],
            "opted_out": conv.opted_out_at is not None and conv.opted_out_at < recorded.at,
            "in_window": True,  # the customer has just written
            "handoff_id": None,
            "unknown_streak": carried["unknown_streak"],
        }
        candidate = None
    context["recent"] = [
        {
            "who": "customer" if m.direction == "in" else m.actor,
            "type": m.type,
            "text": (m.text or "")[:500],
        }
        for m in before
    ]
    from traza.conversations.turns import run_context

    own = people.as_recorded(
        contact_name=context["contact_name"],
        contact_wa_id=context["contact_wa_id"],
        candidate=candidate,
    )
    with (
        clock.scoped(clock.FrozenClock(recorded.at)),
        turn_scope() as scope,
        recording(context) as rec,
        own if inputs is not None else nullcontext(),
    ):
        final = await replay_graph().ainvoke({"turn": context["turn"]}, context=run_context())
        events = {e["kind"]: e["data"] for e in scope.events}  # the decisions, as recorded
        scope.events.clear()  # ... but a replay writes no trace
    sent = next((e for e in rec.effects if e["effect"] == "send"), None)
    handoff = next((e for e in rec.effects if e["effect"] == "handoff"), None)
    decision = events.get("routing.decision")
    replayed = {
        "intent": (events.get("classification") or {}).get("intent"),
        "model": (events.get("classification") or {}).get("model"),
        "route": _route(decision) if decision is not None else None,
        "guardrail": _verdict(events.get("guardrail.verdict")),
        "reply": sent["text"] if sent else None,
        "handoff": {"rule": handoff["rule"], "team": handoff["team"]} if handoff else None,
    }
    return replayed, {
        "language": final.get("language") or carried["language"],
        "unknown_streak": final.get("unknown_streak", carried["unknown_streak"]),
    }


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


async def replay_many(
    ids: list[int], *, progress: Callable[[int], None] | None = None
) -> tuple[Summary, list[ConversationReplay]]:
    """Replay each conversation; `progress(1)` after each."""
    summary = Summary()
    results: list[ConversationReplay] = []
    for cid in ids:
        try:
            result = await replay_conversation(cid)
        except Exception as exc:  # one broken conversation must not stop the regression run
            summary.failed[cid] = f"{type(exc).__name__}: {exc}"
        else:
            results.append(result)
            summary.conversations += 1
            summary.turns += len(result.turns)
            summary.differing_turns += result.differences
            for t in result.turns:
                for aspect in t.differs:
                    summary.by_aspect[aspect] += 1
            if result.differences:
                summary.differing.append(cid)
        if progress:
            progress(1)
    return summary, results
