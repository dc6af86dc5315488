"""Fire a follow-up: the domain decides (`traza.recruiting.followups.prepare`), this runs it.

A due follow-up is re-checked, deferred to contact hours, skipped with its reason, turned
into an alert for the team (a handoff), or written, checked and queued by the graph in a
proactive turn.
"""

from __future__ import annotations

from traza.recruiting import followups
from traza.services.turns import hand_over, run_followup


async def fire(followup_id: int) -> str:
    """Run a follow-up's job; the outcome, in words, for the worker's log."""
    firing = await followups.prepare(followup_id)
    if firing.alert is not None:
        alert = firing.alert
        await hand_over(
            alert.conversation_id,
            rule=alert.rule,
            reason=alert.reason,
            created_by=alert.created_by,
        )
    if firing.send is None:
        assert firing.done is not None
        return firing.done
    send = firing.send
    message_id, marked = await run_followup(send.conversation_id, send.thread_id, send.payload)
    if message_id is None:
        return await followups.finish(
            followup_id, "skipped", "not sent (see the conversation's trace)"
        )
    if marked:  # the statement that queued the message marked the follow-up sent
        return f"follow-up {followup_id} sent"
    return await followups.finish(
        followup_id, "sent", None, message_id=message_id, channel=send.payload["channels"][0]
    )
