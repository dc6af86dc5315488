"""Replay a past conversation through today's graph and compare the decisions.

Each recorded turn (a `turn.started` event and the events after it) is re-run with the
same inbound messages, the inputs the live turn recorded in its `turn.started` event
(contact, candidate, language, owner, opt-out, window, open handoff, the messages
before it, the unknown-answer streak; the time), and today's rules, prompts and model.
A contact renamed since, or a candidate record edited since, changes nothing. Turns
recorded before the inputs were (older traces) read the contact as it is today.
Nothing is sent and nothing is written: the effect nodes are recorders
(`graphs.conversation.replay`), the trace events stay in a buffer that is dropped, and the
read-only tools are the only database access besides the reads of
`traza.replay.recorded`.

Compared per turn: intent, route (route, rule, team, action), guardrail verdict, and the
reply (the text that went to the outbox, or none).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import nullcontext
from typing import Any

from graphs.conversation.replay import recording, replay_graph
from graphs.conversation.state import RECENT_WINDOW
from traza import clock
from traza.db.engine import autocommit
from traza.recruiting import people
from traza.replay.recorded import (
    ConversationReplay,
    Recorded,
    ReplayError,
    Summary,
    TurnReplay,
    compare,
    recorded_events,
    recorded_turns,
    replayed_conversation,
    replayed_messages,
    route_of,
    verdict_of,
)
from traza.services.turns import run_context
from traza.trace import kinds
from traza.trace.buffer import turn_scope

__all__ = ["ReplayError", "replay_conversation", "replay_many"]


async def replay_conversation(
    conversation_id: int, *, from_step: int | None = None, state: dict[str, Any] | None = None
) -> ConversationReplay:
    """Replay the conversation's recorded turns (those after `from_step`, when given).

    `state` seeds what carries between turns (language, unknown-answer streak), e.g. the
    values of the checkpoint a replay starts from.
    """
    async with autocommit() as conn:
        conv = await replayed_conversation(conn, conversation_id=conversation_id)
        if conv is None:
            raise ReplayError(f"conversation {conversation_id} not found")
        rows = await recorded_events(conn, conversation_id=conversation_id)
        messages = await replayed_messages(conn, conversation_id=conversation_id)
    by_id = {m.id: m for m in messages}
    carried: dict[str, Any] = {
        "language": (state or {}).get("language") or conv.locale or "es",
        "unknown_streak": int((state or {}).get("unknown_streak") or 0),
    }
    result = ConversationReplay(conversation_id=conversation_id, turns=[])
    for recorded in recorded_turns(rows):
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
                differs=compare(recorded, replayed),
            )
        )
    return result


async def _replay_turn(
    conv: Any,
    turn: list[Any],
    messages: Sequence[Any],
    recorded: Recorded,
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
    decision = events.get(kinds.ROUTING_DECISION)
    replayed = {
        "intent": (events.get("classification") or {}).get("intent"),
        "model": (events.get("classification") or {}).get("model"),
        "route": route_of(decision) if decision is not None else None,
        "guardrail": verdict_of(events.get(kinds.GUARDRAIL_VERDICT)),
        "reply": sent["text"] if sent else None,
        "handoff": {"rule": handoff["rule"], "team": handoff["team"]} if handoff else None,
    }
    return replayed, {
        "language": final.get("language") or carried["language"],
        "unknown_streak": final.get("unknown_streak", carried["unknown_streak"]),
    }


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
