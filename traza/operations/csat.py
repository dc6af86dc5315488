"""CSAT: after a resolved handoff, ask for a 1-5 rating and attribute the answer.

WhatsApp allows at most three reply buttons, so the five ratings go out as an
interactive list (one tap, same as a button). Outside the 24-hour window the question
would need a paid template, so it is skipped and the skip is recorded.
"""

from __future__ import annotations

import re

from sqlalchemy.ext.asyncio import AsyncSession

import prompts
from traza import trace
from traza.conversations.repository import in_service_window
from traza.db.models import Conversation, Handoff
from traza.operations import repository
from traza.outbound.outbox import queue_message
from traza.rules.loader import LoadedRules
from traza.trace import kinds

ANSWER = re.compile(r"^csat:(\d+):([1-5])$")


async def ask(
    session: AsyncSession, rules: LoadedRules, handoff: Handoff, language: str | None
) -> bool:
    """Queue the rating question for a resolved handoff; False when skipped."""
    conversation = await session.get(Conversation, handoff.conversation_id)
    assert conversation is not None
    actor = trace.system("csat")
    reason = None
    if not rules.rules.csat.enabled:
        reason = "disabled in rules"
    elif not in_service_window(conversation.last_inbound_at):
        reason = "outside the 24-hour window"
    if reason:
        await trace.record(
            session,
            conversation_id=conversation.id,
            kind=kinds.CSAT_SKIPPED,
            actor=actor,
            data={"handoff_id": handoff.id, "reason": reason},
        )
        return False
    labels = prompts.reply("csat_options", language).split("|")
    rows = [{"id": f"csat:{handoff.id}:{n}", "title": labels[n - 1].strip()} for n in range(1, 6)]
    await queue_message(
        session,
        conversation_id=conversation.id,
        key=f"csat:{handoff.id}",
        actor=actor,
        kind="interactive",
        text_body=rules.rules.csat.question or prompts.reply("csat_question", language),
        content={"list": {"button": prompts.reply("csat_button", language), "rows": rows}},
    )
    await trace.record(
        session,
        conversation_id=conversation.id,
        kind=kinds.CSAT_REQUESTED,
        actor=actor,
        data={"handoff_id": handoff.id},
    )
    return True


async def record(
    session: AsyncSession, conversation_id: int, payload: str, *, bot: str, language: str | None
) -> dict[str, object]:
    """Store a rating answer (`csat:<handoff>:<1-5>`); repeated answers keep the first."""
    m = ANSWER.match(payload)
    handoff = (
        await repository.handoff_of_conversation(
            session, handoff_id=int(m.group(1)), conversation_id=conversation_id
        )
        if m
        else None
    )
    if m is None or handoff is None:
        return {"recorded": False, "error": "not a rating for this conversation"}
    rating = int(m.group(2))
    stored = await repository.store_rating(
        session,
        handoff_id=handoff.id,
        conversation_id=conversation_id,
        rating=rating,
        agent=handoff.assigned_agent,
        team=handoff.team,
        bot=bot,
    )
    if stored is not None:
        await queue_message(
            session,
            conversation_id=conversation_id,
            key=f"csat-thanks:{handoff.id}",
            actor=trace.system("csat"),
            kind="text",
            text_body=prompts.reply("csat_thanks", language),
        )
    return {
        "recorded": stored is not None,
        "handoff_id": handoff.id,
        "rating": rating,
        "agent": handoff.assigned_agent,
        "team": handoff.team,
        "bot": bot,
    }
