"""The follow-up agent monitor's period selector and the numbers behind its charts.

The figures, activity lines and escalated cases are `traza.reports.monitor`
(`traza.recruiting.stats`): one definition shared with `GET /recruiting/agents/{name}`
and `GET /reports/agents/{name}`. Only what the charts draw is counted here, from
`traza.recruiting.repository.sent_followups`, which counts "sent" exactly as those figures
do (a follow-up sent with a message, fired in the period).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession

from traza.recruiting import repository

Period = Literal["7d", "30d", "90d", "all"]
PERIODS: tuple[Period, ...] = ("7d", "30d", "90d", "all")
DAYS: dict[Period, int | None] = {"7d": 7, "30d": 30, "90d": 90, "all": None}


@dataclass
class Charts:
    """Sent follow-ups per day (or week), per trigger, and how many were delivered."""

    buckets: list[tuple[date, int]]
    weekly: bool
    per_trigger: list[tuple[str, int]]
    delivered: int


def since(period: Period, now: datetime) -> datetime | None:
    """Where a period starts (None: the beginning)."""
    days = DAYS[period]
    return now - timedelta(days=days) if days else None


def buckets(
    sent_at: list[datetime], *, start: datetime | None, now: datetime, zone: ZoneInfo
) -> tuple[list[tuple[date, int]], bool]:
    """Counts per local day (up to 31 days) or per week (Mondays), gaps filled with 0."""
    days = [s.astimezone(zone).date() for s in sent_at]
    first = start.astimezone(zone).date() if start else (min(days) if days else None)
    if first is None:
        return [], False
    last = max([now.astimezone(zone).date(), *days])
    weekly = (last - first).days > 31
    if weekly:
        first -= timedelta(days=first.weekday())
        days = [d - timedelta(days=d.weekday()) for d in days]
    counts: dict[date, int] = {}
    for day in days:
        counts[day] = counts.get(day, 0) + 1
    step = timedelta(days=7 if weekly else 1)
    out: list[tuple[date, int]] = []
    cursor = first
    while cursor <= last:
        out.append((cursor, counts.get(cursor, 0)))
        cursor += step
    return out, weekly


async def charts(
    session: AsyncSession, agent: str, *, start: datetime | None, now: datetime, zone: ZoneInfo
) -> Charts:
    """What the monitor's charts draw for `agent` since `start`."""
    rows = await repository.sent_followups(session, agent=agent, since=start)
    per_day, weekly = buckets([r.fired_at for r in rows], start=start, now=now, zone=zone)
    per_trigger: dict[str, int] = {}
    for row in rows:
        per_trigger[row.trigger] = per_trigger.get(row.trigger, 0) + 1
    return Charts(
        buckets=per_day,
        weekly=weekly,
        per_trigger=sorted(per_trigger.items(), key=lambda item: (-item[1], item[0])),
        delivered=sum(1 for r in rows if r.delivered),
    )
