"""System actions chosen by routing: consent, a CSAT answer, an interview button, an integration.

Consent: an opt-out (confirmed once), an ambiguous one (asked with two buttons), keeping
messages or opting back in. Each action runs in the caller's transaction and says what
it did (the `system.action` event's data) and whether it queued a message to deliver;
its messages are keyed, so a retried turn queues nothing new.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

import prompts
from traza.conversations.repository import mark_processed
from traza.decisions.routing import OPT_OUT_KEEP, OPT_OUT_STOP
from traza.operations import csat, repository
from traza.outbound.integrations import queue_call
from traza.outbound.outbox import queue_message
from traza.recruiting.interviews import confirm_by_button
from traza.rules.loader import LoadedRules


@dataclass(frozen=True)
class ActionOutcome:
    """What a system action did (for the trace) and whether it queued a message."""

    data: dict[str, Any]
    queued: bool


async def run_action(
    session: AsyncSession,
    rules: LoadedRules,
    *,
    action: str | None,
    rule: str,
    conversation_id: int,
    messages: Sequence[Mapping[str, Any]],
    actor: str,
    language: str | None,
    intent: str | None,
    scores: dict[str, Any] | None,
    contact_wa_id: str | None,
    contact_name: str | None,
    bot: str,
) -> ActionOutcome:
    """Carry out `action` for the turn's inbound `messages`, then mark them processed.

    Built-in actions come first, then the rules' integrations by name; an unknown action
    is recorded (`error`), not run. `actor` queues the messages; `bot` is credited with
    a CSAT answer.
    """
    cid = conversation_id
    ids = [i["id"] for i in messages]
    first_id = ids[0] if ids else 0
    payload = next((i.get("payload") for i in messages), None) or ""
    data: dict[str, Any] = {"action": action, "rule": rule, "rules_version": rules.version}
    queued = False
    if action == "opt_out":
        contact = await repository.lock_contact_of(session, conversation_id=cid)
        first_time = contact.opted_out_at is None
        if first_time:
            contact.opted_out_at = datetime.now(UTC)
            queued = (
                await queue_message(
                    session,
                    conversation_id=cid,
                    key=f"opt-out:{contact.id}:{contact.opted_out_at.isoformat()}",
                    actor=actor,
                    kind="text",
                    text_body=prompts.reply("opt_out_confirmation", language),
                )
                is not None
            )
        data |= {"opted_out": True, "confirmed": first_time}
    elif action == "confirm_opt_out":
        # Ambiguous: never act on it; ask with two buttons and let the answer decide.
        queued = (
            await queue_message(
                session,
                conversation_id=cid,
                key=f"opt-out-question:{cid}:{first_id}",
                actor=actor,
                kind="interactive",
                text_body=prompts.reply("opt_out_question", language),
                content={
                    "buttons": [
                        {"id": OPT_OUT_STOP, "title": prompts.reply("opt_out_stop", language)},
                        {"id": OPT_OUT_KEEP, "title": prompts.reply("opt_out_keep", language)},
                    ]
                },
            )
            is not None
        )
        data |= {"asked": True, "scores": scores}
    elif action in ("keep_messages", "opt_in"):
        contact = await repository.lock_contact_of(session, conversation_id=cid)
        was_opted_out = contact.opted_out_at is not None
        if action == "opt_in" and was_opted_out:
            contact.opted_out_at = None
        reply_key = "opt_in_confirmation" if action == "opt_in" else "opt_out_kept"
        queued = (
            await queue_message(
                session,
                conversation_id=cid,
                key=f"{action}:{cid}:{first_id}",
                actor=actor,
                kind="text",
                text_body=prompts.reply(reply_key, language),
            )
            is not None
        )
        data |= {
            "opted_out": action != "opt_in" and was_opted_out,
            "consent_restored": action == "opt_in" and was_opted_out,
        }
    elif action == "csat":
        data |= await csat.record(session, cid, payload, bot=bot, language=language)
        queued = bool(data.get("recorded"))
    elif action == "interview":
        data |= await confirm_by_button(session, cid, payload)
        if data.get("confirmed"):
            queued = (
                await queue_message(
                    session,
                    conversation_id=cid,
                    key=f"interview-confirmed:{data['interview_id']}",
                    actor=actor,
                    kind="text",
                    text_body=prompts.reply("interview_confirmed", language),
                )
                is not None
            )
    elif action in rules.rules.integrations:
        integration = rules.rules.integrations[action]
        data["call_id"] = await queue_call(
            session,
            integration=action,
            event="routing.action",
            payload={
                "rule": rule,
                "intent": intent,
                "contact": {"wa_id": contact_wa_id, "name": contact_name},
                "messages": [
                    {"id": i.get("id"), "type": i.get("type"), "text": i.get("text")}
                    for i in messages
                ],
                "rules_version": rules.version,
            },
            conversation_id=cid,
            actor=actor,
        )
        if integration.reply:
            queued = (
                await queue_message(
                    session,
                    conversation_id=cid,
                    key=f"integration-reply:{data['call_id']}",
                    actor=actor,
                    kind="text",
                    text_body=integration.reply,
                )
                is not None
            )
    else:
        data["error"] = "no such system action"
    await mark_processed(session, ids)
    return ActionOutcome(data=data, queued=queued)
