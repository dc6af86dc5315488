"""The seed's "Monitorear Agente" figures, computed from the same tables as the trace."""

from __future__ import annotations

from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

FIGURES_SQL = text(
    """
    WITH f AS (
      SELECT f.id, f.status, f.fired_at, k.contact_id, m.read_at, m.delivered_at,
             m.created_at AS msg_at
        FROM followups f
        JOIN candidates k ON k.id = f.candidate_id
        LEFT JOIN messages m ON m.id = f.message_id
       WHERE f.agent = :agent
    ), contacted AS (
      SELECT contact_id, min(msg_at) AS first_at FROM f
       WHERE status = 'sent' AND contact_id IS NOT NULL GROUP BY contact_id
    ), conv AS (
      SELECT c.id, c.contact_id, contacted.first_at FROM conversations c
        JOIN contacted ON contacted.contact_id = c.contact_id
    )
    SELECT
      (SELECT count(*) FROM f WHERE status = 'sent') AS sent,
      (SELECT count(*) FROM f WHERE status = 'sent' AND read_at IS NOT NULL) AS opened,
      (SELECT count(*) FROM f WHERE status = 'sent' AND EXISTS (
          SELECT 1 FROM messages i JOIN conv ON conv.id = i.conversation_id
           WHERE conv.contact_id = f.contact_id AND i.direction = 'in'
             AND i.created_at > f.msg_at)) AS answered,
      (SELECT count(*) FROM f WHERE status = 'scheduled') AS scheduled,
      (SELECT count(*) FROM f WHERE status = 'paused') AS paused,
      (SELECT count(*) FROM f WHERE status IN ('skipped', 'cancelled')) AS not_sent,
      (SELECT count(*) FROM handoffs h JOIN conv ON conv.id = h.conversation_id
        WHERE h.created_at >= conv.first_at) AS escalations,
      (SELECT avg(r.rating) FROM csat_ratings r JOIN conv ON conv.id = r.conversation_id)
        AS satisfaction
    """
)

RECENT_SQL = text(
    """
    SELECT f.fired_at AS at, f.trigger, f.status, f.reason, k.name AS candidate
      FROM followups f JOIN candidates k ON k.id = f.candidate_id
     WHERE f.agent = :agent AND f.fired_at IS NOT NULL
     ORDER BY f.fired_at DESC, f.id DESC LIMIT :limit
    """
)

ESCALATED_SQL = text(
    """
    SELECT DISTINCT ON (h.id) h.id AS handoff_id, k.name AS candidate, h.reason,
           h.summary, h.status, h.created_at
      FROM handoffs h
      JOIN conversations c ON c.id = h.conversation_id
      JOIN candidates k ON k.contact_id = c.contact_id
      JOIN followups f ON f.candidate_id = k.id AND f.agent = :agent AND f.status = 'sent'
     ORDER BY h.id DESC LIMIT :limit
    """
)


def _rate(part: int, whole: int) -> float | None:
    return round(100.0 * part / whole, 1) if whole else None


async def agent_stats(session: AsyncSession, agent: str, *, limit: int = 10) -> dict[str, Any]:
    """Messages sent, open and answer rates, escalations, satisfaction, recent activity."""
    row = (await session.execute(FIGURES_SQL, {"agent": agent})).one()
    recent = (await session.execute(RECENT_SQL, {"agent": agent, "limit": limit})).mappings()
    cases = (await session.execute(ESCALATED_SQL, {"agent": agent, "limit": limit})).mappings()
    return {
        "agent": agent,
        "messages_sent": row.sent,
        "open_rate": _rate(row.opened, row.sent),
        "answer_rate": _rate(row.answered, row.sent),
        "escalations": row.escalations,
        "satisfaction": round(float(row.satisfaction), 2) if row.satisfaction else None,
        "scheduled": row.scheduled,
        "paused": row.paused,
        "not_sent": row.not_sent,
        "recent_activity": [dict(r) for r in recent],
        "escalated_cases": [dict(r) for r in cases],
    }
