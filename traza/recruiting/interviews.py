"""What a candidate's interview buttons do."""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from traza import clock
from traza.recruiting import followups

CONFIRM = re.compile(r"^interview:confirm:(\d+)$")

# The interview, only if it belongs to the candidate of this conversation.
OWN_INTERVIEW = text(
    """
    SELECT i.id, i.status FROM interviews i
      JOIN applications a ON a.id = i.application_id
      JOIN candidates k ON k.id = a.candidate_id
      JOIN conversations c ON c.contact_id = k.contact_id
     WHERE i.id = :iid AND c.id = :cid
     FOR UPDATE OF i
    """
)


async def confirm_interview(session: AsyncSession, cid: int, payload: str) -> dict[str, Any]:
    """Confirm attendance (button `interview:confirm:<id>`); the unconfirmed alert is moot."""
    m = CONFIRM.match(payload)
    row = (
        (await session.execute(OWN_INTERVIEW, {"iid": int(m.group(1)), "cid": cid})).first()
        if m
        else None
    )
    if row is None:
        return {"confirmed": False, "error": "not an interview of this candidate"}
    if row.status in ("cancelled", "completed", "no_show"):
        return {"confirmed": False, "interview_id": row.id, "error": f"interview is {row.status}"}
    await session.execute(
        text(
            "UPDATE interviews SET status = 'confirmed', confirmed_at = :at, updated_at = :at "
            "WHERE id = :id"
        ),
        {"id": row.id, "at": clock.now()},
    )
    await followups.cancel(
        session,
        "the candidate confirmed",
        triggers=("interview_unconfirmed",),
        interview_id=row.id,
    )
    return {"confirmed": True, "interview_id": row.id}
