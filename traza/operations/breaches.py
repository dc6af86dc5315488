"""What happens when an SLA clock runs out: the actions the rules name, in order.

`reassign` (another online agent of the team with room), `escalate` (a supervisor of
the team), `raise_priority` (one step up the rules' priority list), `notify:<name>`
(an outbound webhook). The breach and each action's outcome are recorded.
"""

from __future__ import annotations

from typing import Any

from traza import clock, trace
from traza.db.engine import session_scope
from traza.db.models import Contact, Conversation, Handoff, SlaTimer
from traza.operations import assignment, repository, sla
from traza.outbound.integrations import queue_call
from traza.rules.loader import LoadedRules
from traza.trace import kinds


async def fire(timer_id: int, rules: LoadedRules) -> str:
    """Run a timer's job: breach it when its deadline has passed and its clock still runs."""
    async with session_scope() as session:
        timer = await session.get(SlaTimer, timer_id, with_for_update=True)
        if timer is None or timer.status != "running":
            return f"timer {timer_id} is {timer.status if timer else 'gone'}"
        if timer.due_at > clock.now():  # fired early (clock skew, a re-armed job): wait
            await sla.rearm(session, timer)
            return f"timer {timer_id} not due until {timer.due_at.isoformat()}"
        handoff = await session.get(Handoff, timer.handoff_id, with_for_update=True)
        assert handoff is not None
        timer.status, timer.stopped_at = "breached", clock.now()
        handoff.sla_state = "breached"
        policy = sla.sla_for(rules, handoff.team, handoff.priority)
        actions = list(policy.on_breach.get(timer.metric, [])) if policy else []  # type: ignore[call-overload]
        outcomes = [await _act(session, rules, handoff, timer, a) for a in actions]
        timer.actions = outcomes
        await trace.record(
            session,
            conversation_id=handoff.conversation_id,
            kind=kinds.SLA_BREACHED,
            actor=trace.system("sla"),
            data={
                "handoff_id": handoff.id,
                "metric": timer.metric,
                "due_at": timer.due_at.isoformat(),
                "late_by_seconds": round((clock.now() - timer.due_at).total_seconds(), 3),
                "actions": outcomes,
                "rules_version": rules.version,
            },
        )
        return f"timer {timer_id} breached ({timer.metric}), {len(outcomes)} action(s)"


async def _act(
    session: Any, rules: LoadedRules, handoff: Handoff, timer: SlaTimer, action: str
) -> dict[str, Any]:
    actor = trace.system("sla")
    team = handoff.team or rules.rules.default_team
    if action == "reassign":
        current = handoff.assigned_agent
        chosen = await assignment.pick(session, team, exclude=(current,) if current else ())
        if chosen is None:
            return {"action": action, "done": False, "why": "no other agent online with room"}
        await assignment.give(
            session,
            handoff,
            chosen[0],
            actor=actor,
            kind=kinds.HANDOFF_REASSIGNED,
            rule=f"sla:{timer.metric}",
        )
        return {"action": action, "done": True, "from": current, "to": chosen[0]}
    if action == "escalate":
        chosen = await assignment.pick(session, team, role="supervisor")
        supervisor = chosen[0] if chosen else await repository.any_supervisor(session, team=team)
        if supervisor is None:
            return {"action": action, "done": False, "why": f"team '{team}' has no supervisor"}
        handoff.escalated_to = supervisor
        await trace.record(
            session,
            conversation_id=handoff.conversation_id,
            kind=kinds.HANDOFF_ESCALATED,
            actor=actor,
            data={"handoff_id": handoff.id, "supervisor": supervisor, "metric": timer.metric},
        )
        return {"action": action, "done": True, "to": supervisor}
    if action == "raise_priority":
        order = rules.rules.priorities
        at = order.index(handoff.priority) if handoff.priority in order else len(order)
        if at == 0:
            return {"action": action, "done": False, "why": "already the highest priority"}
        before, handoff.priority = handoff.priority, order[at - 1]
        return {"action": action, "done": True, "from": before, "to": handoff.priority}
    if action.startswith("notify:"):
        name = action[7:]
        conversation = await session.get(Conversation, handoff.conversation_id)
        contact = await session.get(Contact, conversation.contact_id) if conversation else None
        call_id = await queue_call(
            session,
            integration=name,
            event="sla.breached",
            payload={
                "metric": timer.metric,
                "due_at": timer.due_at.isoformat(),
                "handoff": {
                    "id": handoff.id,
                    "team": handoff.team,
                    "priority": handoff.priority,
                    "assigned_agent": handoff.assigned_agent,
                    "created_at": handoff.created_at.isoformat(),
                },
                "contact": {"wa_id": contact.wa_id if contact else None},
                "rules_version": rules.version,
            },
            conversation_id=handoff.conversation_id,
            handoff_id=handoff.id,
            actor=actor,
        )
        return {"action": action, "done": True, "call_id": call_id}
    return {"action": action, "done": False, "why": "unknown action"}
