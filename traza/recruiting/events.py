"""Events from the ATS: applications, stage changes, interviews, candidate updates.

Each event is stored once per `id` (a replay is a no-op) and applied in the same
transaction as the follow-ups it plans or cancels.
"""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from traza import clock, trace
from traza.db.models import (
    Application,
    Candidate,
    Interview,
    Interviewer,
    RecruitingEvent,
    StageChange,
    Vacancy,
)
from traza.recruiting import followups
from traza.recruiting.agents import Agent, active_agents

EventType = Literal[
    "application.created",
    "application.stage_changed",
    "interview.scheduled",
    "interview.rescheduled",
    "interview.cancelled",
    "interview.completed",
    "candidate.updated",
]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CandidateIn(_In):
    """A candidate as the ATS knows them."""

    external_id: str = Field(min_length=1, max_length=128)
    name: str | None = Field(default=None, min_length=1, max_length=200)
    wa_id: Annotated[str, Field(pattern=r"^\+?\d{8,15}$")] | None = None
    email: str | None = Field(default=None, max_length=320, pattern=r"^[^@\s]+@[^@\s]+\.\w+$")
    phone: Annotated[str, Field(pattern=r"^\+?\d{8,15}$")] | None = None
    locale: str | None = Field(default=None, min_length=2, max_length=16)
    timezone: str | None = None
    consent_source: str | None = Field(default=None, max_length=200)
    consent_at: datetime | None = None
    profile: dict[str, Any] | None = None

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str | None) -> str | None:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        if value is not None:
            try:
                ZoneInfo(value)
            except (ZoneInfoNotFoundError, ValueError):
                raise ValueError(f"unknown time zone '{value}'") from None
        return value


class VacancyIn(_In):
    """A vacancy as the ATS knows it."""

    external_id: str = Field(min_length=1, max_length=128)
    title: str = Field(min_length=1, max_length=300)
    location: str | None = None
    required_fields: list[str] = []


class InterviewerIn(_In):
    """An interviewer and their weekly availability."""

    external_id: str = Field(min_length=1, max_length=128)
    name: str = Field(min_length=1, max_length=200)
    email: str | None = None
    timezone: str = "Europe/Madrid"
    availability: dict[str, Any] = {}


class EventIn(_In):
    """`POST /recruiting/events`: one ATS event."""

    id: str = Field(min_length=1, max_length=200)
    type: EventType
    occurred_at: datetime | None = None
    agent: str | None = None
    candidate: CandidateIn | None = None
    vacancy: VacancyIn | None = None
    application_id: str | None = None
    """The ATS's id of the application (`external_id`)."""
    stage: str | None = Field(default=None, min_length=1, max_length=64)
    changed_by: str | None = None
    interview_id: str | None = None
    interviewer: InterviewerIn | None = None
    starts_at: datetime | None = None
    ends_at: datetime | None = None
    location: str | None = None
    video_link: str | None = None


class EventError(ValueError):
    """An event that names something that does not exist, or lacks a needed field."""


def _need(value: Any, what: str) -> Any:
    if value is None:
        raise EventError(f"this event needs '{what}'")
    return value


async def upsert_candidate(session: AsyncSession, data: CandidateIn) -> Candidate:
    """Create or update a candidate (by external id) and link their WhatsApp contact."""
    values = data.model_dump(exclude_unset=True, exclude={"external_id", "profile"})
    if "wa_id" in values:
        values["wa_id"] = values["wa_id"].lstrip("+")
    candidate = await session.scalar(
        select(Candidate).where(Candidate.external_id == data.external_id).with_for_update()
    )
    if candidate is None and values.get("wa_id"):
        # Someone the ATS has not named yet (imported from a talent pool without its id):
        # the same WhatsApp number is the same person, who now gets the ATS's id.
        candidate = await session.scalar(
            select(Candidate).where(Candidate.wa_id == values["wa_id"]).with_for_update()
        )
        if candidate is not None and candidate.external_id is not None:
            raise EventError(
                f"WhatsApp number {values['wa_id']} belongs to candidate "
                f"'{candidate.external_id}', not '{data.external_id}'"
            )
        if candidate is not None:
            candidate.external_id = data.external_id
    if candidate is None:
        if data.name is None:
            raise EventError("a new candidate needs a 'name'")
        candidate = Candidate(
            external_id=data.external_id, name=data.name, profile={}, created_at=clock.now()
        )
        session.add(candidate)
    for key, value in values.items():
        setattr(candidate, key, value)
    if data.profile:
        candidate.profile = {**(candidate.profile or {}), **data.profile}
    candidate.updated_at = clock.now()
    if candidate.wa_id and candidate.contact_id is None:
        contact_id: int = (
            await session.execute(
                text(
                    "INSERT INTO contacts (wa_id, profile_name, locale, opted_in_at) "
                    "VALUES (:w, :n, :l, :c) ON CONFLICT (wa_id) DO UPDATE "
                    "SET locale = coalesce(contacts.locale, EXCLUDED.locale) RETURNING id"
                ),
                {
                    "w": candidate.wa_id,
                    "n": candidate.name,
                    "l": candidate.locale,
                    "c": candidate.consent_at,
                },
            )
        ).scalar_one()
        candidate.contact_id = contact_id
    await session.flush()
    return candidate


async def _vacancy(session: AsyncSession, data: VacancyIn) -> Vacancy:
    stmt = (
        insert(Vacancy)
        .values(
            external_id=data.external_id,
            title=data.title,
            location=data.location,
            required_fields=data.required_fields,
        )
        .on_conflict_do_update(
            index_elements=["external_id"],
            set_={"title": data.title, "required_fields": data.required_fields},
        )
        .returning(Vacancy.id)
    )
    vacancy_id = (await session.execute(stmt)).scalar_one()
    vacancy = await session.get(Vacancy, vacancy_id)
    assert vacancy is not None
    return vacancy


def agent_for(application: Application, agents: dict[str, Agent]) -> Agent | None:
    """The agent following this application (named on it, else the only/first one)."""
    if application.agent:
        return agents.get(application.agent)
    return agents[sorted(agents)[0]] if agents else None


async def _application(session: AsyncSession, external_id: str | None) -> Application:
    application = await session.scalar(
        select(Application)
        .where(Application.external_id == _need(external_id, "application_id"))
        .with_for_update()
    )
    if application is None:
        raise EventError(f"unknown application '{external_id}'")
    return application


async def apply(session: AsyncSession, event: EventIn) -> str:
    """Store and apply one event; 'duplicate' when its id was seen before."""
    stored = (
        await session.execute(
            insert(RecruitingEvent)
            .values(event_id=event.id, type=event.type, payload=event.model_dump(mode="json"))
            .on_conflict_do_nothing(index_elements=["event_id"])
            .returning(RecruitingEvent.id)
        )
    ).scalar_one_or_none()
    if stored is None:
        return "duplicate"
    at = event.occurred_at or clock.now()
    agents = active_agents()
    handler = {
        "application.created": _created,
        "application.stage_changed": _stage_changed,
        "interview.scheduled": _interview,
        "interview.rescheduled": _interview,
        "interview.cancelled": _interview_cancelled,
        "interview.completed": _interview_completed,
        "candidate.updated": _candidate_updated,
    }[event.type]
    await handler(session, event, at, agents)
    return "applied"


async def _created(
    session: AsyncSession, event: EventIn, at: datetime, agents: dict[str, Agent]
) -> None:
    candidate = await upsert_candidate(session, _need(event.candidate, "candidate"))
    vacancy = await _vacancy(session, _need(event.vacancy, "vacancy"))
    stage = event.stage or "applied"
    application = Application(
        external_id=_need(event.application_id, "application_id"),
        candidate_id=candidate.id,
        vacancy_id=vacancy.id,
        stage=stage,
        stage_changed_at=at,
        agent=event.agent,
    )
    session.add(application)
    await session.flush()
    session.add(StageChange(application_id=application.id, to_stage=stage, changed_by="ats", at=at))
    agent = agent_for(application, agents)
    if agent is None:
        return
    wait = agent.trigger("application_received").wait or timedelta(0)
    await followups.schedule(
        session,
        agent=agent,
        trigger="application_received",
        key=f"application_received:{application.id}",
        candidate_id=candidate.id,
        application_id=application.id,
        due_at=at + wait,
    )
    await _plan_no_activity(session, agent, application, at)


async def _plan_no_activity(
    session: AsyncSession, agent: Agent, application: Application, at: datetime
) -> None:
    after = agent.trigger("no_activity").after
    if after is not None:
        await followups.schedule(
            session,
            agent=agent,
            trigger="no_activity",
            key=f"no_activity:{application.id}:{application.stage}:{at.isoformat()}",
            candidate_id=application.candidate_id,
            application_id=application.id,
            due_at=at + after,
            expect={"stage": application.stage},
        )


async def _stage_changed(
    session: AsyncSession, event: EventIn, at: datetime, agents: dict[str, Agent]
) -> None:
    application = await _application(session, event.application_id)
    stage = _need(event.stage, "stage")
    if stage == application.stage:
        return
    session.add(
        StageChange(
            application_id=application.id,
            from_stage=application.stage,
            to_stage=stage,
            changed_by=event.changed_by or "ats",
            at=at,
        )
    )
    application.stage, application.stage_changed_at = stage, at
    await followups.cancel(
        session,
        f"the stage moved to '{stage}'",
        triggers=("no_activity", "application_received"),
        application_id=application.id,
    )
    agent = agent_for(application, agents)
    if agent is None:
        return
    for trigger in ("stage_changed", "closure"):
        if stage in (agent.trigger(trigger).stages or []):
            await followups.schedule(
                session,
                agent=agent,
                trigger=trigger,
                key=f"{trigger}:{application.id}:{stage}",
                candidate_id=application.candidate_id,
                application_id=application.id,
                due_at=at,
                expect={"stage": stage},
            )
    if stage not in (agent.trigger("closure").stages or []):
        await _plan_no_activity(session, agent, application, at)


async def _interviewer(session: AsyncSession, data: InterviewerIn | None) -> int | None:
    if data is None:
        return None
    stmt = (
        insert(Interviewer)
        .values(
            external_id=data.external_id,
            name=data.name,
            email=data.email,
            timezone=data.timezone,
            availability=data.availability,
            calendar_token=secrets.token_urlsafe(24),
        )
        .on_conflict_do_update(
            index_elements=["external_id"],
            set_={"name": data.name, "availability": data.availability},
        )
        .returning(Interviewer.id)
    )
    interviewer_id: int = (await session.execute(stmt)).scalar_one()
    return interviewer_id


async def _interview(
    session: AsyncSession, event: EventIn, at: datetime, agents: dict[str, Agent]
) -> None:
    application = await _application(session, event.application_id)
    starts = _need(event.starts_at, "starts_at")
    ends = event.ends_at or starts + timedelta(minutes=45)
    interview = await session.scalar(
        select(Interview)
        .where(Interview.external_id == _need(event.interview_id, "interview_id"))
        .with_for_update()
    )
    if interview is None:
        interview = Interview(
            external_id=event.interview_id,
            application_id=application.id,
            starts_at=starts,
            ends_at=ends,
        )
        session.add(interview)
    elif interview.application_id != application.id:
        raise EventError("the interview belongs to another application")
    else:
        await followups.cancel(session, "the interview moved", interview_id=interview.id)
        interview.sequence += 1
        interview.status = "rescheduled"
        interview.confirmed_at = None
    interview.starts_at, interview.ends_at = starts, ends
    interview.location = event.location or interview.location
    interview.video_link = event.video_link or interview.video_link
    interview.interviewer_id = await _interviewer(session, event.interviewer) or (
        interview.interviewer_id
    )
    interview.updated_at = clock.now()
    await session.flush()
    await followups.cancel(
        session, "an interview is planned", triggers=("no_activity",), application_id=application.id
    )
    await plan_interview_reminders(session, application, interview, at, agents)


async def plan_interview_reminders(
    session: AsyncSession,
    application: Application,
    interview: Interview,
    at: datetime,
    agents: dict[str, Agent] | None = None,
) -> None:
    """Plan the 24 h confirmation, the unconfirmed alert and the 1 h reminder."""
    agent = agent_for(application, active_agents() if agents is None else agents)
    if agent is None:
        return
    starts = interview.starts_at
    for trigger in ("interview_24h", "interview_unconfirmed", "interview_1h"):
        before = agent.trigger(trigger).before
        if before is None or starts - before <= at:
            continue
        await followups.schedule(
            session,
            agent=agent,
            trigger=trigger,
            key=f"{trigger}:{interview.id}:{interview.sequence}",
            candidate_id=application.candidate_id,
            application_id=application.id,
            interview_id=interview.id,
            due_at=starts - before,
            expect={"starts_at": starts.isoformat()},
        )


async def _interview_cancelled(
    session: AsyncSession, event: EventIn, at: datetime, agents: dict[str, Agent]
) -> None:
    interview = await _interview_row(session, event)
    interview.status = "cancelled"
    interview.sequence += 1
    interview.updated_at = clock.now()
    await followups.cancel(session, "the interview was cancelled", interview_id=interview.id)


async def _interview_row(session: AsyncSession, event: EventIn) -> Interview:
    interview = await session.scalar(
        select(Interview)
        .where(Interview.external_id == _need(event.interview_id, "interview_id"))
        .with_for_update()
    )
    if interview is None:
        raise EventError(f"unknown interview '{event.interview_id}'")
    return interview


async def _interview_completed(
    session: AsyncSession, event: EventIn, at: datetime, agents: dict[str, Agent]
) -> None:
    interview = await _interview_row(session, event)
    interview.status = "completed"
    await followups.cancel(session, "the interview happened", interview_id=interview.id)
    application = await session.get(Application, interview.application_id)
    assert application is not None
    agent = agent_for(application, agents)
    if agent is None:
        return
    await followups.schedule(
        session,
        agent=agent,
        trigger="post_interview",
        key=f"post_interview:{interview.id}",
        candidate_id=application.candidate_id,
        application_id=application.id,
        due_at=at + (agent.trigger("post_interview").wait or timedelta(0)),
    )


async def _candidate_updated(
    session: AsyncSession, event: EventIn, at: datetime, agents: dict[str, Agent]
) -> None:
    candidate = await upsert_candidate(session, _need(event.candidate, "candidate"))
    await trace.record(
        session,
        conversation_id=await followups.conversation_of(session, candidate.id),
        kind="candidate.updated",
        actor=trace.system("ats"),
        data={"candidate_id": candidate.id, "event_id": event.id},
    )
