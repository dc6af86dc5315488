"""The seed's "Monitorear Agente" figures, computed from the same tables as the trace.

For one follow-up agent, optionally within a period [since, until):

- **messages sent**: follow-ups the agent sent (status `sent` with a message) that fired
  in the period; an alert to the team (interview not confirmed) is not a message.
- **open rate**: of those sent on WhatsApp, the share with a read receipt. Only WhatsApp
  reports reads; e-mail and SMS are left out of both sides (None when nothing was sent
  on WhatsApp).
- **reply rate** (`answer_rate`): the share of sent follow-ups after which the candidate
  wrote at least once (in any of their conversations).
- **escalations**: handoffs in the conversations of candidates the agent contacted,
  opened after its first message to them, created in the period.
- **satisfaction**: the average CSAT rating (1-5) given in the period for those handoffs.
- **recent activity**: the follow-ups that fired and the escalations, newest first, each
  with a line like the seed's "10:30 – Envió confirmación a María G." (wording in
  `prompts/monitor.yaml`, Spanish or English).
- **escalated cases**: those handoffs with the candidate, why, and their state.

`teams` (a non-admin caller's teams) limits escalations, satisfaction and cases to
handoffs of those teams, and the activity lines, which name candidates, to candidates of
those teams (`candidates.team`, or a conversation or handoff of theirs that went to one
of them). The other figures are counts, the same for every caller.
"""

from __future__ import annotations

from datetime import UTC, datetime, tzinfo
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

import prompts
from traza import clock
from traza.recruiting import repository


def _rate(part: int, whole: int) -> float | None:
    return round(100.0 * part / whole, 1) if whole else None


def short_name(name: str | None) -> str:
    """First name and the next name's initial: "María García" → "María G."."""
    words = (name or "").split()
    if len(words) < 2:
        return words[0] if words else "?"
    return f"{words[0]} {words[1][0].upper()}."


def _say(entry: Any, language: str) -> str:
    if isinstance(entry, dict):
        return str(entry.get(language) or entry.get(prompts.DEFAULT_LANGUAGE) or "")
    return str(entry)


def _when(at: datetime, zone: tzinfo, now: datetime) -> str:
    local = at.astimezone(zone)
    if local.date() == now.astimezone(zone).date():
        return local.strftime("%H:%M")
    return local.strftime("%d/%m %H:%M")


def reason_text(reason: str | None, language: str, part: str) -> str:
    """The tag (`part="tag"`) or description (`"case"`) of an escalation's rule."""
    entry = prompts.load("monitor")["reasons"].get(reason or "")
    return _say(entry[part], language) if entry else (reason or "?")


def state_text(status: str, language: str) -> str:
    """A handoff's status as the monitor shows it ("Pendiente", "Resuelto"…)."""
    entry = prompts.load("monitor")["states"].get(status)
    return _say(entry, language) if entry else status


def activity_line(item: dict[str, Any], *, language: str, zone: tzinfo, now: datetime) -> str:
    """An activity line like "10:30 – Envió confirmación a María G."."""
    wording = prompts.load("monitor")
    name = short_name(item["candidate"])
    if item["kind"] == "escalation":
        what = _say(wording["activity"]["escalated"], language).format(
            name=name, tag=reason_text(item["reason"], language, "tag")
        )
    else:
        action = wording["actions"].get(item["trigger"]) or wording["actions"]["other"]
        template = wording["activity"].get(item["status"]) or wording["activity"]["sent"]
        what = _say(template, language).format(action=_say(action, language), name=name)
    return f"{_when(item['at'], zone, now)} – {what}"


async def agent_stats(
    session: AsyncSession,
    agent: str,
    *,
    limit: int = 10,
    since: datetime | None = None,
    until: datetime | None = None,
    teams: frozenset[str] | None = None,
    language: str = "es",
    zone: tzinfo = UTC,
) -> dict[str, Any]:
    """Messages sent, open and reply rates, escalations, satisfaction, activity, cases."""
    period: dict[str, Any] = {
        "agent": agent,
        "since": since,
        "until": until,
        "teams": sorted(teams) if teams is not None else None,
    }
    row = await repository.agent_figures(session, **period)
    now = clock.now()
    recent = await repository.agent_activity(session, **period, limit=limit)
    for item in recent:
        item["line"] = activity_line(item, language=language, zone=zone, now=now)
    cases = await repository.agent_escalated_cases(session, **period, limit=limit)
    for case in cases:
        case["state"] = state_text(case["status"], language)
        case["description"] = reason_text(case["reason"], language, "case")
        case["line"] = f"{short_name(case['candidate'])} – {case['description']} [{case['state']}]"
    reply_rate = _rate(row.answered, row.sent)
    return {
        "agent": agent,
        "messages_sent": row.sent,
        "sent_on_whatsapp": row.sent_whatsapp,
        "opened": row.opened,
        "open_rate": _rate(row.opened, row.sent_whatsapp),
        "answered": row.answered,
        "reply_rate": reply_rate,
        "answer_rate": reply_rate,
        "escalations": row.escalations,
        "satisfaction": round(float(row.satisfaction), 2) if row.satisfaction else None,
        "ratings": row.ratings,
        "scheduled": row.scheduled,
        "paused": row.paused,
        "not_sent": row.not_sent,
        "recent_activity": recent,
        "escalated_cases": cases,
    }
