"""SLA clocks: first response, next response and resolution, in the team's business hours.

A clock is an `sla_timers` row plus a procrastinate job at its deadline, committed
together. Stopping the clock (an agent answered, the handoff closed) marks the row and
deletes the waiting job in the same transaction. A job that fires re-checks the row, so
a late cancel or an early firing can never breach a met SLA.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from traza import clock, trace
from traza.db.models import Handoff, SlaTimer
from traza.db.queue import cancel_in, defer_in
from traza.operations import repository
from traza.rules.hours import BusinessHours
from traza.rules.loader import LoadedRules
from traza.rules.schema import Metric, Sla
from traza.trace import kinds

SLA_TASK = "sla_timer"


def sla_for(rules: LoadedRules, team: str | None, priority: str | None) -> Sla | None:
    """The most specific SLA for a team and priority (team+priority > team > priority > any)."""

    def score(s: Sla) -> int:
        return (2 if s.team else 0) + (1 if s.priority else 0)

    fitting = [
        s
        for s in rules.rules.slas
        if (s.team is None or s.team == team) and (s.priority is None or s.priority == priority)
    ]
    return max(fitting, key=score) if fitting else None


def hours_for(rules: LoadedRules, team: str | None) -> BusinessHours:
    """The team's business hours (always open when the rules give none)."""
    team_rules = rules.rules.teams.get(team or "")
    return BusinessHours(team_rules.hours if team_rules else None)


async def start(
    session: AsyncSession,
    rules: LoadedRules,
    handoff: Handoff,
    metric: Metric,
    *,
    at: datetime | None = None,
) -> SlaTimer | None:
    """Start `metric`'s clock for the handoff, unless it has no target or already runs."""
    sla = sla_for(rules, handoff.team, handoff.priority)
    target = getattr(sla, metric) if sla else None
    if target is None:
        return None
    running = await repository.running_timer_id(session, handoff_id=handoff.id, metric=metric)
    if running:
        return None
    started = at or clock.now()
    due = hours_for(rules, handoff.team).add(started, target)
    if due is None:  # the team never opens within the horizon: nothing to time
        return None
    timer = SlaTimer(
        handoff_id=handoff.id,
        metric=metric,
        started_at=started,
        due_at=due,
        rules_version=rules.version,
    )
    session.add(timer)
    await session.flush()
    timer.job_id = await defer_in(
        session, SLA_TASK, {"timer_id": timer.id}, delay=clock.delay_until(due)
    )
    await trace.record(
        session,
        conversation_id=handoff.conversation_id,
        kind=kinds.SLA_STARTED,
        actor=trace.system("sla"),
        data={
            "handoff_id": handoff.id,
            "metric": metric,
            "due_at": due.isoformat(),
            "target_seconds": target.total_seconds(),
            "rules_version": rules.version,
        },
    )
    return timer


async def stop(
    session: AsyncSession,
    handoff: Handoff,
    metrics: tuple[str, ...],
    *,
    status: str = "met",
    actor: str,
) -> list[str]:
    """Stop the handoff's running clocks for `metrics`; their jobs are removed."""
    timers = await repository.lock_running_timers(session, handoff_id=handoff.id, metrics=metrics)
    now = clock.now()
    for timer in timers:
        timer.status = status
        timer.stopped_at = now
        await cancel_in(session, timer.job_id)
        await trace.record(
            session,
            conversation_id=handoff.conversation_id,
            kind=kinds.sla_stopped(status),
            actor=actor,
            data={
                "handoff_id": handoff.id,
                "metric": timer.metric,
                "due_at": timer.due_at.isoformat(),
                "early_by_seconds": round((timer.due_at - now).total_seconds(), 3),
            },
        )
    return [t.metric for t in timers]


async def rearm(session: AsyncSession, timer: SlaTimer) -> None:
    """A timer fired before its deadline on this clock: wait again."""
    timer.job_id = await defer_in(
        session, SLA_TASK, {"timer_id": timer.id}, delay=clock.delay_until(timer.due_at)
    )


async def rearm_orphans(session: AsyncSession) -> int:
    """Give every running timer whose job is gone a job again (the sweep calls this)."""
    ids = await repository.orphaned_timer_ids(session)
    for timer in await repository.timers_by_id(session, ids=ids):
        await rearm(session, timer)
    return len(ids)


def describe(timer: SlaTimer) -> dict[str, Any]:
    """A timer as the API shows it."""
    return {
        "metric": timer.metric,
        "status": timer.status,
        "started_at": timer.started_at,
        "due_at": timer.due_at,
        "stopped_at": timer.stopped_at,
    }
