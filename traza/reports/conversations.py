"""The conversation report: what happened in a period, for an inbox, team, agent or bot.

**Which conversations.** Filters choose conversations: `inbox` (the business number's
`phone_number_id`), `team` (handled by the team: its current team, or any of its
handoffs went to it), `agent` (a handoff assigned to the human agent, or the agent wrote
in it), `bot` (the bot, `bot:<name>` in the trace, wrote in it). A caller who is not an
admin sees only conversations of their teams.

**What is counted.** Each figure counts what happened inside the period [from, to):

- `conversations.started`: conversations created in the period; of those,
  `handed_off` (handed to a human before `to`), `bot_resolved` (never handed over before
  `to`, and a bot's message went out) and `other` (nobody answered: opt-outs, silence);
  `conversations.active`: conversations with at least one message in the period.
- `messages.in`: messages the customers wrote; `messages.out`: messages that went out
  (accepted by the channel, later delivered or read), also `out_by_sender` (bot, human,
  system); `messages.out_not_sent`: outgoing messages that did not go out (failed,
  skipped, held, still waiting).
- `handoffs.created` and `handoffs.by_reason`: handoffs opened, by the rule that opened
  them.
- `first_response`: handoffs a human first answered in the period, timed from the
  handoff to that answer; `resolution`: handoffs resolved in the period, timed from the
  handoff to the resolution.
- `sla`: SLA clocks that ended in the period, met or breached, per metric.
- `csat`: ratings given in the period: count, average and distribution 1-5.

With `agent`, messages out, handoffs, times and SLA clocks are the agent's own (handoffs
assigned to them; for CSAT, ratings attributed to them); with `bot`, messages out and
CSAT are the bot's; with `team`, handoffs, SLA clocks and CSAT are the team's.

**Business hours.** Response and resolution times count only the open time of the
handoff's team, from the hours of the rules active now (a team without hours is always
open), so a handoff opened on Friday evening and answered on Monday at 09:05 took five
minutes. Each time is summarised by its median and 90th percentile (linear interpolation
between the closest ranks, as numpy's default) and its mean, in seconds.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Literal

from sqlalchemy.ext.asyncio import AsyncSession

from traza.operations.sla import hours_for
from traza.reports import repository
from traza.reports.period import Period, ReportError
from traza.reports.repository import ReportScope
from traza.rules.hours import BusinessHours
from traza.rules.loader import LoadedRules
from traza.settings import get_settings

METRICS = ("first_response", "next_response", "resolution")


@dataclass(frozen=True, slots=True)
class Filters:
    """What the report is about; None means any."""

    inbox: str | None = None
    team: str | None = None
    agent: str | None = None
    bot: str | None = None

    def as_dict(self) -> dict[str, str | None]:
        """As the report echoes them."""
        return {"inbox": self.inbox, "team": self.team, "agent": self.agent, "bot": self.bot}


def quantile(values: list[float], q: float) -> float:
    """The q-quantile of sorted `values`, interpolating between the closest ranks."""
    pos = q * (len(values) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (pos - lo)


def summary(values: list[float]) -> dict[str, Any]:
    """Count, median, 90th percentile and mean of durations in seconds."""
    if not values:
        return {"count": 0, "median_seconds": None, "p90_seconds": None, "mean_seconds": None}
    ordered = sorted(values)
    return {
        "count": len(ordered),
        "median_seconds": round(quantile(ordered, 0.5), 1),
        "p90_seconds": round(quantile(ordered, 0.9), 1),
        "mean_seconds": round(sum(ordered) / len(ordered), 1),
    }


@dataclass
class Figures:
    """The figures of one day, or of the whole period."""

    started: int = 0
    active: int = 0
    handed_off: int = 0
    bot_resolved: int = 0
    msg_in: int = 0
    msg_out: int = 0
    out_bot: int = 0
    out_human: int = 0
    out_system: int = 0
    out_not_sent: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    first_response: list[float] = field(default_factory=list)
    resolution: list[float] = field(default_factory=list)
    sla: Counter[tuple[str, str]] = field(default_factory=Counter)
    csat: Counter[int] = field(default_factory=Counter)

    def as_dict(self) -> dict[str, Any]:
        """The JSON shape of the figures."""
        met = sum(n for (_, status), n in self.sla.items() if status == "met")
        breached = sum(n for (_, status), n in self.sla.items() if status == "breached")
        ratings = sum(self.csat.values())
        return {
            "conversations": {
                "started": self.started,
                "active": self.active,
                "bot_resolved": self.bot_resolved,
                "handed_off": self.handed_off,
                "other": self.started - self.bot_resolved - self.handed_off,
            },
            "messages": {
                "in": self.msg_in,
                "out": self.msg_out,
                "out_by_sender": {
                    "bot": self.out_bot,
                    "human": self.out_human,
                    "system": self.out_system,
                },
                "out_not_sent": self.out_not_sent,
            },
            "handoffs": {
                "created": sum(self.reasons.values()),
                "by_reason": dict(sorted(self.reasons.items())),
            },
            "first_response": summary(self.first_response),
            "resolution": summary(self.resolution),
            "sla": {
                "met": met,
                "breached": breached,
                "hit_rate": round(100.0 * met / (met + breached), 1) if met + breached else None,
                "by_metric": {
                    m: {"met": self.sla[(m, "met")], "breached": self.sla[(m, "breached")]}
                    for m in METRICS
                },
            },
            "csat": {
                "count": ratings,
                "average": (
                    round(sum(r * n for r, n in self.csat.items()) / ratings, 2)
                    if ratings
                    else None
                ),
                "distribution": {str(r): self.csat[r] for r in range(1, 6)},
            },
        }


async def check_filters(session: AsyncSession, filters: Filters, rules: LoadedRules) -> int | None:
    """Refuse filters naming nothing known (`ReportError`); return the inbox's id."""
    if filters.agent and filters.bot:
        raise ReportError("bot", "filter by agent or by bot, not both")
    inbox_id: int | None = None
    if filters.inbox is not None:
        inbox_id = await repository.inbox_of_number(session, phone_number_id=filters.inbox)
        if inbox_id is None:
            known = await repository.known_inbox_numbers(session)
            raise ReportError(
                "inbox",
                f"unknown inbox '{filters.inbox}' (an inbox is its phone_number_id; "
                f"known: {', '.join(known) or 'none'})",
            )
    tables: tuple[tuple[str, Literal["teams", "agents"]], ...] = (
        ("team", "teams"),
        ("agent", "agents"),
    )
    for name, table in tables:
        value = getattr(filters, name)
        if value is None:
            continue
        if not await repository.is_known_name(session, table=table, name=value):
            names = await repository.known_names(session, table=table)
            raise ReportError(
                name, f"unknown {name} '{value}' (known: {', '.join(names) or 'none'})"
            )
    if filters.bot is not None:
        configured = {get_settings().traza_bot_name} | {r.bot for r in rules.rules.routing if r.bot}
        if filters.bot not in configured:
            if not await repository.has_spoken(session, actor=f"bot:{filters.bot}"):
                raise ReportError(
                    "bot",
                    f"unknown bot '{filters.bot}' (bots: {', '.join(sorted(configured))})",
                )
    return inbox_id


def _day(value: Any) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value))


async def conversation_report(
    session: AsyncSession,
    *,
    period: Period,
    filters: Filters,
    rules: LoadedRules,
    scope: frozenset[str] | None = None,
    group: Literal["day"] | None = None,
) -> dict[str, Any]:
    """The report's figures for the period (and per day with `group="day"`).

    `scope`: the teams a non-admin caller may see (None: everything).
    """
    inbox_id = await check_filters(session, filters, rules)
    params: ReportScope = {
        "start": period.start,
        "end": period.end,
        "tz": period.zone.key,
        "inbox_id": inbox_id,
        "team": filters.team,
        "agent": filters.agent,
        "agent_actor": f"human:{filters.agent}" if filters.agent else None,
        "bot": filters.bot,
        "bot_actor": f"bot:{filters.bot}" if filters.bot else None,
        "scope": sorted(scope) if scope is not None else None,
    }
    total = Figures()
    days: dict[date, Figures] = {d: Figures() for d in period.days()}

    def day_of(value: Any) -> Figures:
        return days.setdefault(_day(value), Figures())

    for r in await repository.started_by_day(session, scope=params):
        for f in (total, day_of(r.day)):
            f.started += r.started
            f.handed_off += r.handed_off
            f.bot_resolved += r.bot_resolved
    for r in await repository.messages_by_day(session, scope=params):
        f = total if r.total else day_of(r.day)
        f.msg_in, f.msg_out, f.active = r.msg_in, r.msg_out, r.active
        f.out_bot, f.out_human, f.out_system = r.out_bot, r.out_human, r.out_system
        f.out_not_sent = r.out_not_sent

    hours: dict[str | None, BusinessHours] = {}

    def open_time(team: str | None, a: datetime, b: datetime) -> float:
        if team not in hours:
            hours[team] = hours_for(rules, team)
        return hours[team].open_time_between(a, b).total_seconds() if b > a else 0.0

    def within(at: datetime | None) -> bool:
        return at is not None and period.start <= at < period.end

    local = period.zone
    for h in await repository.handoffs_in_period(session, scope=params):
        if within(h.created_at):
            for f in (total, day_of(h.created_at.astimezone(local).date())):
                f.reasons[h.reason] += 1
        if within(h.first_response_at):
            seconds = open_time(h.team, h.created_at, h.first_response_at)
            for f in (total, day_of(h.first_response_at.astimezone(local).date())):
                f.first_response.append(seconds)
        if h.status == "resolved" and within(h.closed_at):
            seconds = open_time(h.team, h.created_at, h.closed_at)
            for f in (total, day_of(h.closed_at.astimezone(local).date())):
                f.resolution.append(seconds)
    for r in await repository.sla_by_day(session, scope=params):
        for f in (total, day_of(r.day)):
            f.sla[(r.metric, r.status)] += r.n
    for r in await repository.csat_by_day(session, scope=params):
        for f in (total, day_of(r.day)):
            f.csat[int(r.rating)] += r.n

    report: dict[str, Any] = {
        "period": {
            "from": period.start.isoformat(),
            "to": period.end.isoformat(),
            "tz": period.zone.key,
        },
        "filters": filters.as_dict(),
        "scope": sorted(scope) if scope is not None else "all",
        "business_hours": {
            "source": "each handoff's team hours in the active rules",
            "rules_version": rules.version,
        },
        "totals": total.as_dict(),
    }
    if group == "day":
        report["days"] = []
        for d in sorted(days):
            start, end = period.day_bounds(d)
            report["days"].append(
                {"day": d.isoformat(), "from": start.isoformat(), "to": end.isoformat()}
                | days[d].as_dict()
            )
    return report
