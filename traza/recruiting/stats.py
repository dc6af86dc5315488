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

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

import prompts
from traza import clock

# Candidates the agent has written to, the time of its first message to each, and the
# handoffs opened in their conversations after it (all time, then filtered).
_ESCALATIONS = """
    contacted AS (
      SELECT k.contact_id, min(k.name) AS candidate, min(m.created_at) AS first_at
        FROM followups f
        JOIN candidates k ON k.id = f.candidate_id
        JOIN messages m ON m.id = f.message_id
       WHERE f.agent = :agent AND f.status = 'sent' AND k.contact_id IS NOT NULL
       GROUP BY k.contact_id
    ), conv AS (
      SELECT c.id, c.contact_id, contacted.first_at, contacted.candidate
        FROM conversations c JOIN contacted ON contacted.contact_id = c.contact_id
    ), esc_all AS (
      SELECT h.id, h.reason, h.summary, h.status, h.team, h.created_at, conv.candidate
        FROM handoffs h JOIN conv ON conv.id = h.conversation_id
       WHERE h.created_at >= conv.first_at
         AND (CAST(:teams AS text[]) IS NULL OR h.team = ANY(CAST(:teams AS text[])))
    ), esc AS (
      SELECT * FROM esc_all
       WHERE (CAST(:since AS timestamptz) IS NULL OR created_at >= CAST(:since AS timestamptz))
         AND (CAST(:until AS timestamptz) IS NULL OR created_at < CAST(:until AS timestamptz))
    )
"""

# A candidate `k` the caller may see named (every candidate when :teams is NULL).
_VISIBLE = """
    (CAST(:teams AS text[]) IS NULL OR k.team = ANY(CAST(:teams AS text[])) OR EXISTS (
        SELECT 1 FROM conversations vc
         WHERE vc.contact_id = k.contact_id
           AND (vc.team = ANY(CAST(:teams AS text[])) OR EXISTS (
                SELECT 1 FROM handoffs vh
                 WHERE vh.conversation_id = vc.id AND vh.team = ANY(CAST(:teams AS text[]))))))
"""

_IN_PERIOD = """
    (CAST(:since AS timestamptz) IS NULL OR {col} >= CAST(:since AS timestamptz))
    AND (CAST(:until AS timestamptz) IS NULL OR {col} < CAST(:until AS timestamptz))
"""

FIGURES_SQL = text(
    f"""
    WITH f AS (
      SELECT f.id, f.status, f.fired_at, f.due_at, f.message_id, k.contact_id, m.read_at,
             m.channel, m.created_at AS msg_at
        FROM followups f
        JOIN candidates k ON k.id = f.candidate_id
        LEFT JOIN messages m ON m.id = f.message_id
       WHERE f.agent = :agent
    ), sent AS (
      SELECT * FROM f
       WHERE status = 'sent' AND message_id IS NOT NULL AND {_IN_PERIOD.format(col="fired_at")}
    ), {_ESCALATIONS}
    SELECT
      (SELECT count(*) FROM sent) AS sent,
      (SELECT count(*) FROM sent WHERE channel = 'whatsapp') AS sent_whatsapp,
      (SELECT count(*) FROM sent WHERE channel = 'whatsapp' AND read_at IS NOT NULL) AS opened,
      (SELECT count(*) FROM sent s WHERE EXISTS (
          SELECT 1 FROM messages i JOIN conv ON conv.id = i.conversation_id
           WHERE conv.contact_id = s.contact_id AND i.direction = 'in'
             AND i.created_at > s.msg_at)) AS answered,
      (SELECT count(*) FROM f WHERE status = 'scheduled') AS scheduled,
      (SELECT count(*) FROM f WHERE status = 'paused'
          AND {_IN_PERIOD.format(col="coalesce(fired_at, due_at)")}) AS paused,
      (SELECT count(*) FROM f WHERE status IN ('skipped', 'cancelled')
          AND {_IN_PERIOD.format(col="coalesce(fired_at, due_at)")}) AS not_sent,
      (SELECT count(*) FROM esc) AS escalations,
      (SELECT avg(r.rating) FROM csat_ratings r JOIN esc_all e ON e.id = r.handoff_id
        WHERE {_IN_PERIOD.format(col="r.created_at")}) AS satisfaction,
      (SELECT count(*) FROM csat_ratings r JOIN esc_all e ON e.id = r.handoff_id
        WHERE {_IN_PERIOD.format(col="r.created_at")}) AS ratings
    """
)

RECENT_SQL = text(
    f"""
    WITH {_ESCALATIONS}
    SELECT * FROM (
      SELECT f.fired_at AS at, 'followup' AS kind, f.trigger, f.status, f.reason,
             k.name AS candidate, CAST(NULL AS bigint) AS handoff_id
        FROM followups f JOIN candidates k ON k.id = f.candidate_id
       WHERE f.agent = :agent AND f.fired_at IS NOT NULL
         AND NOT (f.status = 'sent' AND f.message_id IS NULL)  -- an alert: see its escalation
         AND {_IN_PERIOD.format(col="f.fired_at")}
         AND {_VISIBLE}
      UNION ALL
      SELECT created_at, 'escalation', NULL, status, reason, candidate, id FROM esc
    ) a
     ORDER BY at DESC, handoff_id DESC NULLS LAST LIMIT :limit
    """
)

ESCALATED_SQL = text(
    f"""
    WITH {_ESCALATIONS}
    SELECT id AS handoff_id, candidate, reason, summary, status, team, created_at
      FROM esc ORDER BY created_at DESC, id DESC LIMIT :limit
    """
)


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
    params = {
        "agent": agent,
        "since": since,
        "until": until,
        "teams": sorted(teams) if teams is not None else None,
    }
    row = (await session.execute(FIGURES_SQL, params)).one()
    now = clock.now()
    recent = [
        dict(r) for r in (await session.execute(RECENT_SQL, params | {"limit": limit})).mappings()
    ]
    for item in recent:
        item["line"] = activity_line(item, language=language, zone=zone, now=now)
    cases = [
        dict(r)
        for r in (await session.execute(ESCALATED_SQL, params | {"limit": limit})).mappings()
    ]
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
