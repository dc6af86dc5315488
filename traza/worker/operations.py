"""Jobs of human operations: assignment rounds, SLA timers and integration calls.

All three are queued inside the transaction that decides them (`traza.db.queue`);
each re-reads its row when it runs, so a duplicate or late job does nothing.
"""

from __future__ import annotations

import logging

from procrastinate import JobContext

from traza import clock
from traza.db.engine import session_scope
from traza.db.queue import OPS_QUEUE, app
from traza.operations import assignment, breaches, sla
from traza.operations.handoffs import ASSIGN_TASK, queue_assignment
from traza.outbound import integrations
from traza.rules import active

log = logging.getLogger(__name__)


@app.task(name=ASSIGN_TASK, queue=OPS_QUEUE, pass_context=True)
async def assign_team(context: JobContext, team: str) -> None:
    """Assign the team's waiting handoffs to online agents with room."""
    rules = await active.current()
    async with session_scope() as session:
        if not assignment.is_open(rules.rules, team):  # closed: run again at opening
            opens = sla.hours_for(rules, team).next_open(clock.now())
            if opens is not None:
                await queue_assignment(session, team, at=opens)
            return
        assigned = await assignment.assign_waiting(session, rules, team)
    if assigned:
        log.info("team %s: assigned handoffs %s", team, assigned)


@app.task(name=sla.SLA_TASK, queue=OPS_QUEUE, pass_context=True)
async def sla_timer(context: JobContext, timer_id: int) -> None:
    """An SLA deadline: breach and act, unless the clock stopped in time."""
    log.info(await breaches.fire(timer_id, await active.current()))


@app.task(name=integrations.CALL_TASK, queue=OPS_QUEUE, pass_context=True)
async def call_integration(context: JobContext, call_id: int) -> None:
    """One attempt of an outbound webhook (the next one is queued on failure)."""
    status = await integrations.attempt(call_id, await active.current())
    log.info("integration call %s: %s", call_id, status)


async def recover_operations() -> dict[str, int]:
    """Sweep: re-arm timers without a job, queue assignment for teams with waiting work."""
    async with session_scope() as session:
        timers = await sla.rearm_orphans(session)
        teams = await assignment.waiting_teams(session)
        rules = await active.current()
        now = clock.now()
        for team in teams:
            opens = sla.hours_for(rules, team).next_open(now)
            await queue_assignment(session, team, at=opens if opens and opens > now else None)
    return {"timers": timers, "teams": len(teams)}
