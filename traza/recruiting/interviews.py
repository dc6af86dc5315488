"""Interviews: the one rule for confirming attendance, by button or through the model's tool."""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from traza import clock
from traza.db.models import Interview
from traza.recruiting import followups, repository

ACTIVE = repository.ACTIVE
"""Statuses of an interview that is still going to happen (the repository's statements'
own; named here too, where the rule is read)."""

CONFIRM = re.compile(r"^interview:confirm:(\d+)$")


class NotConfirmable(ValueError):
    """The interview cannot be confirmed (cancelled, completed, or already over)."""


async def confirm(session: AsyncSession, interview: Interview) -> bool:
    """The candidate will attend: status `confirmed`; the unconfirmed alert is moot.

    The caller holds the interview's row lock. Returns False when it was already
    confirmed (nothing changes); raises `NotConfirmable` when it is not going to happen.
    """
    if interview.status not in ACTIVE:
        raise NotConfirmable(f"interview {interview.id} is {interview.status}")
    now = clock.now()
    if interview.ends_at <= now:
        raise NotConfirmable(f"interview {interview.id} already took place")
    if interview.status == "confirmed":
        return False
    interview.status, interview.confirmed_at, interview.updated_at = "confirmed", now, now
    await session.flush()
    await followups.cancel(
        session,
        "the candidate confirmed",
        triggers=("interview_unconfirmed",),
        interview_id=interview.id,
    )
    return True


async def confirm_by_button(session: AsyncSession, cid: int, payload: str) -> dict[str, Any]:
    """Confirm attendance from the button `interview:confirm:<id>` of conversation `cid`."""
    m = CONFIRM.match(payload)
    iid = (
        await repository.own_interview_id(
            session, interview_id=int(m.group(1)), conversation_id=cid
        )
        if m
        else None
    )
    interview = await session.get(Interview, iid) if iid is not None else None
    if interview is None:
        return {"confirmed": False, "error": "not an interview of this candidate"}
    try:
        await confirm(session, interview)
    except NotConfirmable as exc:
        return {"confirmed": False, "interview_id": interview.id, "error": str(exc)}
    return {"confirmed": True, "interview_id": interview.id}
