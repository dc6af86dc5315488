"""Calendar tools: free interview slots, and booking, confirming or moving an interview.

An interviewer's `availability` is weekly ranges in their time zone, the same shape as a
team's business hours in the rules file (so the same validation and arithmetic apply):

    {"timezone": "Europe/Madrid",            # optional: the interviewer's time zone
     "weekly": {"mon": ["09:00-13:00", "15:00-18:00"], "wed": ["10:00-14:00"]},
     "holidays": {"country": "ES", "dates": ["2026-04-03"]},   # optional
     "video_link": "https://meet.example/abc", "location": "Oficina Madrid"}  # optional

`video_link` and `location` are the defaults of interviews booked here. A slot is free
when it lies inside the availability and overlaps no interview of the interviewer nor
another interview of the candidate (cancelled ones do not count). Answers carry times
only, in the candidate's time zone: never who holds the other interviews.

Which interviewer: the one of the application's latest interview, else the one who
interviews for the same vacancy, else the only interviewer there is. The schema has no
explicit application → interviewer link, so a caller that knows better passes
`interviewer_id` (never the model).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from tools.candidate import (
    ToolRefused,
    interview_view,
    local,
    own_application,
    own_candidate,
    own_interview,
    record_step,
    zone_of,
)
from traza import clock
from traza.db.models import Application, Interview, Interviewer
from traza.recruiting import followups, interviews, repository
from traza.recruiting.events import plan_interview_reminders
from traza.recruiting.interviews import ACTIVE
from traza.rules.hours import BusinessHours
from traza.rules.schema import Hours
from traza.trace import kinds

log = logging.getLogger(__name__)

DEFAULT_DURATION_MINUTES = 45
MIN_NOTICE = timedelta(hours=2)
"""The earliest a slot may start, from now: time for both sides to see the booking."""
GRID = timedelta(minutes=15)
"""Slots start on the quarter hour."""
MAX_DAYS = 31
_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
_EXTRAS = ("video_link", "location")


def availability_of(interviewer: Interviewer) -> BusinessHours | None:
    """The interviewer's weekly availability (None when missing or invalid)."""
    raw = {k: v for k, v in (interviewer.availability or {}).items() if k not in _EXTRAS}
    if not raw.get("weekly"):
        return None
    raw.setdefault("timezone", interviewer.timezone)
    try:
        return BusinessHours(Hours.model_validate(raw))
    except ValidationError as exc:
        log.warning("interviewer %s has invalid availability: %s", interviewer.id, exc)
        return None


def _extra(interviewer: Interviewer, key: str) -> str | None:
    value = (interviewer.availability or {}).get(key)
    return value if isinstance(value, str) and value.strip() else None


def _ceil(at: datetime) -> datetime:
    """`at` rounded up to the slot grid."""
    rest = (at - _EPOCH) % GRID
    return at if not rest else at + (GRID - rest)


def _open(
    hours: BusinessHours, start: datetime, end: datetime
) -> Iterator[tuple[datetime, datetime]]:
    """Available intervals between `start` and `end`, touching ranges merged (UTC)."""
    current: tuple[datetime, datetime] | None = None
    for a, b in hours.intervals(start):
        if a >= end:
            break
        if current is not None and a <= current[1]:
            current = (current[0], max(current[1], b))
            continue
        if current is not None:
            yield current[0], min(current[1], end)
        current = (a, b)
    if current is not None:
        yield current[0], min(current[1], end)


async def interviewer_for(
    session: AsyncSession,
    application: Application,
    *,
    interviewer_id: int | None = None,
    for_update: bool = False,
) -> Interviewer:
    """Who interviews for this application (see the module docstring)."""
    if interviewer_id is None:
        interviewer_id = await repository.latest_interviewer_of_application(
            session, application_id=application.id
        )
    if interviewer_id is None:
        interviewer_id = await repository.latest_interviewer_of_vacancy(
            session, vacancy_id=application.vacancy_id
        )
    if interviewer_id is None:
        interviewer_id = await repository.sole_interviewer_id(session)
    found = (
        await repository.interviewer_by_id(
            session, interviewer_id=interviewer_id, for_update=for_update
        )
        if interviewer_id is not None
        else None
    )
    if found is None:
        raise ToolRefused(
            "no interviewer is assigned to this application yet; a recruiter will propose times"
        )
    return found


def parse_start(value: datetime | str, zone: ZoneInfo) -> datetime:
    """An ISO 8601 date-time (without an offset: in the candidate's time zone), in UTC."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.strip())
        except ValueError:
            raise ToolRefused(
                "starts_at must be a date and time like 2026-03-03T10:00:00+01:00"
            ) from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=zone)
    return value.astimezone(UTC)


def _duration(minutes: int) -> timedelta:
    if not 15 <= minutes <= 240:
        raise ToolRefused("an interview lasts between 15 and 240 minutes")
    return timedelta(minutes=minutes)


async def _check_slot(
    session: AsyncSession,
    *,
    interviewer: Interviewer,
    candidate_id: int,
    start: datetime,
    end: datetime,
    skip: int | None = None,
) -> None:
    """Refuse a slot that is too soon, outside the availability or taken."""
    if start < clock.now() + MIN_NOTICE:
        raise ToolRefused(
            f"that time is too soon: interviews start at least "
            f"{int(MIN_NOTICE.total_seconds() // 3600)} hours from now"
        )
    hours = availability_of(interviewer)
    inside = hours is not None and any(a <= start and end <= b for a, b in _open(hours, start, end))
    if not inside:
        raise ToolRefused("the interviewer is not available at that time; ask for free slots")
    busy = await repository.busy_times(
        session,
        interviewer_id=interviewer.id,
        candidate_id=candidate_id,
        start=start,
        end=end,
        skip=skip,
    )
    if busy:
        raise ToolRefused("that time is no longer free; ask for free slots")


async def free_slots(
    session: AsyncSession,
    candidate_id: int,
    application_id: int,
    days: int = 7,
    duration_minutes: int = DEFAULT_DURATION_MINUTES,
    now: datetime | None = None,
    *,
    limit: int = 8,
    per_day: int = 3,
    interviewer_id: int | None = None,
) -> dict[str, Any]:
    """Free interview slots for one of the candidate's applications in the next `days`.

    At most `limit` slots, at most `per_day` on one (candidate-local) day, so the offer
    spreads over the week; times are ISO 8601 in the candidate's time zone.
    """
    if not 1 <= days <= MAX_DAYS:
        raise ToolRefused(f"days must be between 1 and {MAX_DAYS}")
    duration = _duration(duration_minutes)
    candidate = await own_candidate(session, candidate_id)
    application, vacancy = await own_application(session, candidate_id, application_id)
    zone = zone_of(candidate)
    interviewer = await interviewer_for(session, application, interviewer_id=interviewer_id)
    now = now or clock.now()
    start, end = _ceil(now + MIN_NOTICE), now + timedelta(days=days)
    hours = availability_of(interviewer)
    slots: list[tuple[datetime, datetime]] = []
    if hours is not None and start < end:
        busy = await repository.busy_times(
            session,
            interviewer_id=interviewer.id,
            candidate_id=candidate_id,
            start=start,
            end=end,
        )
        taken_per_day: Counter[date] = Counter()
        for a, b in _open(hours, start, end):
            at = _ceil(a)
            while at + duration <= b and len(slots) < limit:
                clash = [e for s, e in busy if s < at + duration and e > at]
                if clash:
                    at = _ceil(max(clash))
                    continue
                day = at.astimezone(zone).date()
                if taken_per_day[day] >= per_day:
                    break
                slots.append((at, at + duration))
                taken_per_day[day] += 1
                at += duration
            if len(slots) >= limit:
                break
    return {
        "application_id": application.id,
        "vacancy": vacancy.title,
        "timezone": str(zone),
        "duration_minutes": duration_minutes,
        "slots": [{"starts_at": local(s, zone), "ends_at": local(e, zone)} for s, e in slots],
    }


async def book_interview(
    session: AsyncSession,
    candidate_id: int,
    application_id: int,
    starts_at: datetime | str,
    *,
    duration_minutes: int = DEFAULT_DURATION_MINUTES,
    interviewer_id: int | None = None,
    actor: str | None = None,
) -> dict[str, Any]:
    """Book an interview in a free slot (status `scheduled`); nothing else changes."""
    duration = _duration(duration_minutes)
    # Locks: the candidate, then the interviewer, so two bookings of one slot queue up.
    candidate = await own_candidate(session, candidate_id, for_update=True)
    application, _ = await own_application(session, candidate_id, application_id)
    zone = zone_of(candidate)
    start = parse_start(starts_at, zone)
    existing = await repository.upcoming_interview_id(session, application_id=application.id)
    if existing is not None:
        raise ToolRefused(
            f"this application already has interview {existing}; reschedule it instead"
        )
    interviewer = await interviewer_for(
        session, application, interviewer_id=interviewer_id, for_update=True
    )
    await _check_slot(
        session,
        interviewer=interviewer,
        candidate_id=candidate_id,
        start=start,
        end=start + duration,
    )
    now = clock.now()
    interview = Interview(
        application_id=application.id,
        interviewer_id=interviewer.id,
        starts_at=start,
        ends_at=start + duration,
        status="scheduled",
        sequence=0,
        location=_extra(interviewer, "location"),
        video_link=_extra(interviewer, "video_link"),
        created_at=now,
        updated_at=now,
    )
    session.add(interview)
    await session.flush()
    await plan_interview_reminders(session, application, interview, now)
    view = interview_view(interview, zone)
    await record_step(session, candidate_id, kind=kinds.TOOL_BOOK_INTERVIEW, actor=actor, data=view)
    return {"booked": True, **view}


async def confirm_interview(
    session: AsyncSession, candidate_id: int, interview_id: int, *, actor: str | None = None
) -> dict[str, Any]:
    """The candidate confirms they will attend (status `confirmed`, `confirmed_at`)."""
    candidate = await own_candidate(session, candidate_id)
    interview = await own_interview(session, candidate_id, interview_id, for_update=True)
    try:
        confirmed_now = await interviews.confirm(session, interview)
    except interviews.NotConfirmable as exc:
        raise ToolRefused(str(exc)) from exc
    if confirmed_now:
        await record_step(
            session,
            candidate_id,
            kind=kinds.TOOL_CONFIRM_INTERVIEW,
            actor=actor,
            data={"interview_id": interview.id},
        )
    return {"confirmed": True, **interview_view(interview, zone_of(candidate))}


async def reschedule_interview(
    session: AsyncSession,
    candidate_id: int,
    interview_id: int,
    starts_at: datetime | str,
    *,
    actor: str | None = None,
) -> dict[str, Any]:
    """Move an interview to another free slot of the same interviewer and length.

    Status becomes `rescheduled`, the confirmation is cleared and the iCalendar
    `sequence` goes up, so subscribed calendars move the event.
    """
    candidate = await own_candidate(session, candidate_id, for_update=True)
    interview = await own_interview(session, candidate_id, interview_id, for_update=True)
    zone = zone_of(candidate)
    if interview.status not in ACTIVE:
        raise ToolRefused(f"interview {interview_id} is {interview.status}")
    if interview.starts_at <= clock.now():
        raise ToolRefused(f"interview {interview_id} has already started")
    start = parse_start(starts_at, zone)
    if start == interview.starts_at:
        raise ToolRefused(f"interview {interview_id} is already at that time")
    application = await session.get(Application, interview.application_id)
    assert application is not None  # the foreign key guarantees it
    interviewer = await interviewer_for(
        session, application, interviewer_id=interview.interviewer_id, for_update=True
    )
    duration = interview.ends_at - interview.starts_at
    await _check_slot(
        session,
        interviewer=interviewer,
        candidate_id=candidate_id,
        start=start,
        end=start + duration,
        skip=interview.id,
    )
    before = local(interview.starts_at, zone)
    interview.starts_at, interview.ends_at = start, start + duration
    interview.interviewer_id = interviewer.id
    interview.status, interview.confirmed_at = "rescheduled", None
    interview.sequence += 1
    interview.updated_at = clock.now()
    await session.flush()
    await followups.cancel(session, "the interview moved", interview_id=interview.id)
    application = await session.get(Application, interview.application_id)
    assert application is not None
    await plan_interview_reminders(session, application, interview, clock.now())
    view = interview_view(interview, zone)
    await record_step(
        session,
        candidate_id,
        kind=kinds.TOOL_RESCHEDULE_INTERVIEW,
        actor=actor,
        data={**view, "previous_starts_at": before},
    )
    return {"rescheduled": True, "previous_starts_at": before, **view}
