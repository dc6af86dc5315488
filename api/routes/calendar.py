"""Each interviewer's interviews as an iCalendar feed that calendar clients subscribe to.

`GET /calendars/<token>.ics`: the token is the interviewer's unguessable `calendar_token`
(the URL is the credential, as with any subscribed calendar); an unknown token is 404.
One event per interview with a stable UID, so a client updates the event in place when
the interview moves (SEQUENCE goes up) and removes it when it is cancelled.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from fastapi import APIRouter, HTTPException, Response, status
from icalendar import Calendar, Event

from api.deps import SessionDep
from traza import clock
from traza.db.models import Interview, Interviewer
from traza.recruiting import repository

router = APIRouter(tags=["recruiting"])

HISTORY = timedelta(days=90)
"""Interviews that ended longer ago than this are left out of the feed."""
_TOKEN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_STATUS = {
    "confirmed": "CONFIRMED",
    "completed": "CONFIRMED",
    "no_show": "CONFIRMED",
    "scheduled": "TENTATIVE",
    "rescheduled": "TENTATIVE",
    "cancelled": "CANCELLED",
}


def calendar_url(interviewer: Interviewer) -> str:
    """The feed's path (prefix the public base URL; `webcal://` works in most clients)."""
    return f"/calendars/{interviewer.calendar_token}.ics"


def _utc(at: datetime) -> datetime:
    return at.astimezone(UTC)


def build_feed(interviewer: Interviewer, rows: list[tuple[Interview, str, str]]) -> bytes:
    """The VCALENDAR of one interviewer: rows are (interview, vacancy title, candidate name)."""
    cal = Calendar()
    cal.add("prodid", "-//traza//interviews//ES")
    cal.add("version", "2.0")
    cal.add("calscale", "GREGORIAN")
    cal.add("method", "PUBLISH")
    cal.add("x-wr-calname", f"Entrevistas · {interviewer.name}")
    cal.add("x-wr-timezone", interviewer.timezone)
    for interview, title, name in rows:
        event = Event()
        event.add("uid", f"interview-{interview.id}@traza")
        event.add("dtstamp", _utc(interview.updated_at))
        event.add("last-modified", _utc(interview.updated_at))
        event.add("dtstart", _utc(interview.starts_at))
        event.add("dtend", _utc(interview.ends_at))
        event.add("sequence", interview.sequence)
        first_name = name.split()[0] if name.split() else ""
        event.add("summary", f"Entrevista: {title}" + (f" ({first_name})" if first_name else ""))
        event.add("status", _STATUS.get(interview.status, "TENTATIVE"))
        if interview.location or interview.video_link:
            event.add("location", interview.location or interview.video_link)
        if interview.video_link:
            event.add("url", interview.video_link)
            event.add("description", f"Videollamada: {interview.video_link}")
        cal.add_component(event)
    return bytes(cal.to_ical())


@router.get(
    "/calendars/{token}.ics",
    response_class=Response,
    responses={
        200: {"content": {"text/calendar": {}}, "description": "The iCalendar feed"},
        404: {"description": "No interviewer has this calendar token"},
    },
)
async def interviewer_calendar(token: str, session: SessionDep) -> Response:
    """An interviewer's interviews as iCalendar (subscribe to this URL)."""
    interviewer = (
        await repository.interviewer_by_calendar_token(session, token=token)
        if _TOKEN.match(token)
        else None
    )
    if interviewer is None:
        raise HTTPException(status_code=status.HTTP_404_NOT_FOUND, detail="unknown calendar")
    rows = await repository.calendar_feed(
        session, interviewer_id=interviewer.id, ended_after=clock.now() - HISTORY
    )
    body = build_feed(interviewer, rows)
    return Response(
        content=body,
        media_type="text/calendar; charset=utf-8",
        headers={
            "Content-Disposition": 'inline; filename="interviews.ics"',
            "Cache-Control": "private, no-cache",
        },
    )
