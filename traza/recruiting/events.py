"""Events from the ATS: applications, stage changes, interviews, candidate updates.

Each event is stored once per `id` (a replay is a no-op) and applied in the same
transaction as the follow-ups it plans or cancels.

Who may write: an integration's key writes for its teams. A candidate belongs to the
team that first wrote them (`candidates.team`), or, until one has, to the teams their
conversations went to; an event that touches a candidate of another team raises
`OutOfScope` and changes nothing. The admin key writes for every team.
"""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)
from sqlalchemy.ext.asyncio import AsyncSession

from traza import clock, trace
from traza.db.models import (
    Application,
    Candidate,
    Interview,
    StageChange,
    Vacancy,
)
from traza.db.storable import refuse_unstorable
from traza.recruiting import followups, repository
from traza.recruiting.agents import BotAgentConfig, active_agents
from traza.trace import kinds

EventType = Literal[
    "application.created",
    "application.stage_changed",
    "interview.scheduled",
    "interview.rescheduled",
    "interview.cancelled",
    "interview.completed",
    "candidate.updated",
]


def _plausible(value: datetime) -> datetime:
    """A moment with an offset, in years where adding a follow-up's wait cannot overflow."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("needs a UTC offset, e.g. 2026-03-02T10:00:00+01:00")
    if not 1900 <= value.year <= 2999:
        raise ValueError("must be between the years 1900 and 2999")
    return value


When = Annotated[datetime, AfterValidator(_plausible)]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _storable(cls, data: Any) -> Any:
        return refuse_unstorable(data)  # NUL or a lone surrogate: a 422 naming the field


class CandidateIn(_In):
    """A candidate as the ATS knows them."""

    external_id: str = Field(min_length=1, max_length=128)
    name: str | None = Field(default=None, min_length=1, max_length=200)
    wa_id: Annotated[str, Field(pattern=r"^\+?\d{8,15}$")] | None = None
    email: str | None = Field(default=None, max_length=320, pattern=r"^[^@\s]+@[^@\s]+\.\w+$")
    phone: Annotated[str, Field(pattern=r"^\+?\d{8,15}$")] | None = None
    locale: str | None = Field(default=None, min_length=2, max_length=16)
    timezone: str | None = Field(default=None, max_length=64)
    consent_source: str | None = Field(default=None, max_length=200)
    consent_at: When | None = None
    profile: dict[str, Any] | None = None

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str | None) -> str | None:
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
    location: str | None = Field(default=None, max_length=200)
    required_fields: list[str] = []


class InterviewerIn(_In):
    """An interviewer and their weekly availability."""

    external_id: str = Field(min_length=1, max_length=128)
    name: str = Field(min_length=1, max_length=200)
    email: str | None = Field(default=None, max_length=320)
    timezone: str = Field(default="Europe/Madrid", max_length=64)
    availability: dict[str, Any] = {}


class EventIn(_In):
    """`POST /recruiting/events`: one ATS event."""

    id: str = Field(min_length=1, max_length=200)
    type: EventType
    occurred_at: When | None = None
    agent: str | None = Field(default=None, max_length=100)
    candidate: CandidateIn | None = None
    vacancy: VacancyIn | None = None
    application_id: str | None = Field(default=None, min_length=1, max_length=128)
    """The ATS's id of the application (`external_id`)."""
    stage: str | None = Field(default=None, min_length=1, max_length=64)
    changed_by: str | None = Field(default=None, max_length=200)
    interview_id: str | None = Field(default=None, min_length=1, max_length=128)
    interviewer: InterviewerIn | None = None
    starts_at: When | None = None
    ends_at: When | None = None
    location: str | None = Field(default=None, max_length=300)
    video_link: str | None = Field(default=None, max_length=500)
    team: str | None = Field(default=None, min_length=1, max_length=64)
    """The team the candidate belongs to (needed from a key that writes for several)."""


class EventError(ValueError):
    """An event that names something that does not exist, or lacks a needed field."""


class OutOfScope(PermissionError):
    """An event that would write a candidate of a team the caller does not write for."""

    def __init__(self, reason: str, conversation_id: int | None = None) -> None:
        super().__init__(reason)
        self.conversation_id = conversation_id


def _need(value: Any, what: str) -> Any:
    if value is None:
        raise EventError(f"this event needs '{what}'")
    return value


async def upsert_candidate(session: AsyncSession, data: CandidateIn) -> Candidate:
    """Create or update a candidate (by external id) and link their WhatsApp contact."""
    values = data.model_dump(exclude_unset=True, exclude={"external_id", "profile"})
    for required in ("name", "locale", "timezone"):  # never empty: null leaves them as they are
        if required in values and values[required] is None:
            del values[required]
    if values.get("wa_id"):
        values["wa_id"] = values["wa_id"].lstrip("+")
    candidate = await repository.candidate_by_external_id(
        session, external_id=data.external_id, for_update=True
    )
    if candidate is None and values.get("wa_id"):
        # Someone the ATS has not named yet (imported from a talent pool without its id):
        # the same WhatsApp number is the same person, who now gets the ATS's id.
        candidate = await repository.candidate_by_wa_id(
            session, wa_id=values["wa_id"], for_update=True
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
        candidate.contact_id = await repository.contact_of_candidate(
            session,
            wa_id=candidate.wa_id,
            name=candidate.name,
            locale=candidate.locale,
            consent_at=candidate.consent_at,
        )
    await session.flush()
    return candidate


async def _vacancy(session: AsyncSession, data: VacancyIn) -> Vacancy:
    vacancy_id = await repository.upsert_vacancy(
        session,
        external_id=data.external_id,
        title=data.title,
        location=data.location,
        required_fields=data.required_fields,
    )
    vacancy = await session.get(Vacancy, vacancy_id)
    assert vacancy is not None
    return vacancy


def agent_for(application: Application, agents: dict[str, BotAgentConfig]) -> BotAgentConfig | None:
    """The agent following this application (named on it, else the only/first one)."""
    if application.agent:
        return agents.get(application.agent)
    return agents[sorted(agents)[0]] if agents else None


async def _application(session: AsyncSession, external_id: str | None) -> Application:
    application = await repository.application_by_external_id(
        session, external_id=_need(external_id, "application_id"), for_update=True
    )
    if application is None:
        raise EventError(f"unknown application '{external_id}'")
    return application


async def apply(
    session: AsyncSession, event: EventIn, *, teams: frozenset[str] | None = None
) -> str:
    """Store and apply one event; 'duplicate' when its id was seen before.

    `teams` are the teams the caller writes for (None: all, the admin key). An event that
    touches another team's candidate raises `OutOfScope` before anything is written.
    """
    await _authorise(session, event, teams)
    stored = await repository.store_event(
        session, event_id=event.id, event_type=event.type, payload=event.model_dump(mode="json")
    )
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
    await _assign_team(session, event, teams)
    return "applied"


# --- who may write -------------------------------------------------------------------------


async def owners(session: AsyncSession, candidate: Candidate) -> frozenset[str]:
    """The teams a candidate belongs to: the one that wrote them, else their conversations'."""
    if candidate.team:
        return frozenset({candidate.team})
    if candidate.contact_id is None:
        return frozenset()
    return await repository.teams_of_contact(session, contact_id=candidate.contact_id)


async def _touched(session: AsyncSession, event: EventIn) -> list[Candidate]:
    """The stored candidates the event would change (found as `upsert_candidate` finds them)."""
    found: list[Candidate | None] = []
    if event.candidate is not None:
        by_id = await repository.candidate_by_external_id(
            session, external_id=event.candidate.external_id
        )
        if by_id is None and event.candidate.wa_id:
            by_id = await repository.candidate_by_wa_id(
                session, wa_id=event.candidate.wa_id.lstrip("+")
            )
        found.append(by_id)
    if event.application_id is not None:
        found.append(
            await repository.candidate_of_application(session, external_id=event.application_id)
        )
    if event.interview_id is not None:
        found.append(
            await repository.candidate_of_interview(session, external_id=event.interview_id)
        )
    unique = {c.id: c for c in found if c is not None}
    return list(unique.values())


async def _authorise(session: AsyncSession, event: EventIn, teams: frozenset[str] | None) -> None:
    """`OutOfScope` unless every candidate the event touches is the caller's to write."""
    if event.team is not None and not await repository.team_id_by_name(session, name=event.team):
        raise EventError(f"unknown team '{event.team}'")
    if teams is None:
        return
    if not teams:
        raise OutOfScope("this key writes for no team")
    if event.team is not None and event.team not in teams:
        raise OutOfScope(f"team '{event.team}' is not one this key writes for")
    for candidate in await _touched(session, event):
        owned = await owners(session, candidate)
        if owned and not owned & teams:
            raise OutOfScope(
                f"candidate '{candidate.external_id or candidate.id}' belongs to team "
                f"{', '.join(sorted(owned))}, not to one this key writes for",
                await followups.conversation_of(session, candidate.id),
            )


async def _assign_team(session: AsyncSession, event: EventIn, teams: frozenset[str] | None) -> None:
    """Give the event's candidates their team: the one named, else the writer's own."""
    for candidate in await _touched(session, event):
        if event.team is not None:
            candidate.team = event.team
        elif candidate.team is None and teams is not None:
            mine = sorted(teams & await owners(session, candidate)) or sorted(teams)
            if len(mine) > 1:
                raise EventError(
                    f"this key writes for teams {', '.join(mine)}: "
                    "name the candidate's team in 'team'"
                )
            candidate.team = mine[0]
    await session.flush()


async def _created(
    session: AsyncSession, event: EventIn, at: datetime, agents: dict[str, BotAgentConfig]
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
    session: AsyncSession, agent: BotAgentConfig, application: Application, at: datetime
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
    session: AsyncSession, event: EventIn, at: datetime, agents: dict[str, BotAgentConfig]
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
    return await repository.upsert_interviewer(
        session,
        external_id=data.external_id,
        name=data.name,
        email=data.email,
        timezone=data.timezone,
        availability=data.availability,
        calendar_token=secrets.token_urlsafe(24),
    )


async def _interview(
    session: AsyncSession, event: EventIn, at: datetime, agents: dict[str, BotAgentConfig]
) -> None:
    application = await _application(session, event.application_id)
    starts = _need(event.starts_at, "starts_at")
    ends = event.ends_at or starts + timedelta(minutes=45)
    interview = await repository.interview_by_external_id(
        session, external_id=_need(event.interview_id, "interview_id"), for_update=True
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
    agents: dict[str, BotAgentConfig] | None = None,
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
    session: AsyncSession, event: EventIn, at: datetime, agents: dict[str, BotAgentConfig]
) -> None:
    interview = await _interview_row(session, event)
    interview.status = "cancelled"
    interview.sequence += 1
    interview.updated_at = clock.now()
    await followups.cancel(session, "the interview was cancelled", interview_id=interview.id)


async def _interview_row(session: AsyncSession, event: EventIn) -> Interview:
    interview = await repository.interview_by_external_id(
        session, external_id=_need(event.interview_id, "interview_id"), for_update=True
    )
    if interview is None:
        raise EventError(f"unknown interview '{event.interview_id}'")
    return interview


async def _interview_completed(
    session: AsyncSession, event: EventIn, at: datetime, agents: dict[str, BotAgentConfig]
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
    session: AsyncSession, event: EventIn, at: datetime, agents: dict[str, BotAgentConfig]
) -> None:
    candidate = await upsert_candidate(session, _need(event.candidate, "candidate"))
    await trace.record(
        session,
        conversation_id=await followups.conversation_of(session, candidate.id),
        kind=kinds.CANDIDATE_UPDATED,
        actor=trace.system("ats"),
        data={"candidate_id": candidate.id, "event_id": event.id},
    )
