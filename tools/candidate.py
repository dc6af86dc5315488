"""Candidate tools: the candidate's own application status, missing profile fields, new data.

Every function takes the conversation's `candidate_id`, bound by the caller and never
taken from the model. Applications and interviews are loaded by id *and* candidate, so an
id of another candidate is refused exactly like an id that does not exist: the model
learns nothing about other candidates, not even that an id is taken.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy.ext.asyncio import AsyncSession

from traza import clock, trace
from traza.db.models import Application, Candidate, Interview, Vacancy
from traza.recruiting import repository
from traza.recruiting.followups import conversation_of
from traza.settings import get_settings
from traza.trace import kinds

SAFE_FIELDS = frozenset({"email", "city", "years_experience", "availability", "cv_url", "linkedin"})
"""Profile keys a candidate may always give, on top of their vacancies' required fields."""

PROTECTED = frozenset({"name", "wa_id", "id", "contact_id", "external_id", "consent_at"})
"""Never written from a conversation, even when a vacancy lists them."""

MAX_VALUE = 500
MAX_FIELDS = 20
_KEY = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]{2,}$")
_URL = re.compile(r"^https?://[^\s/$.?#][^\s]*$", re.IGNORECASE)
_YEARS = re.compile(r"^\d{1,2}(?:[.,]\d{1,2})?$")
_COLUMNS = ("email", "phone")
"""Profile keys also held in a candidate column (a non-empty column counts as given)."""


class ToolRefused(Exception):  # noqa: N818 - a refusal, not a crash: the model reads it
    """The tool will not do this; the message is safe to show the model and the candidate."""


async def record_step(
    session: AsyncSession,
    candidate_id: int,
    *,
    kind: str,
    actor: str | None,
    data: dict[str, Any],
) -> None:
    """Trace a tool's change on the candidate's open conversation (when there is one)."""
    conversation_id = await conversation_of(session, candidate_id)
    if conversation_id is None:
        return
    await trace.record(
        session,
        conversation_id=conversation_id,
        kind=kind,
        actor=actor or trace.bot(get_settings().traza_bot_name),
        data={"candidate_id": candidate_id, **data},
    )


def zone_of(candidate: Candidate) -> ZoneInfo:
    """The candidate's time zone (Madrid when the stored name is unknown)."""
    try:
        return ZoneInfo(candidate.timezone or "Europe/Madrid")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("Europe/Madrid")


def local(at: datetime, zone: ZoneInfo) -> str:
    """An instant as ISO 8601 in `zone`, with its offset."""
    return at.astimezone(zone).isoformat()


async def own_candidate(
    session: AsyncSession, candidate_id: int, *, for_update: bool = False
) -> Candidate:
    """The conversation's candidate; refused when the binding is wrong."""
    candidate = await repository.candidate_by_id(
        session, candidate_id=candidate_id, for_update=for_update
    )
    if candidate is None:
        raise ToolRefused("this conversation has no candidate profile")
    return candidate


async def own_application(
    session: AsyncSession, candidate_id: int, application_id: int
) -> tuple[Application, Vacancy]:
    """One of the candidate's applications with its vacancy; refused otherwise."""
    found = await repository.application_of_candidate(
        session, candidate_id=candidate_id, application_id=application_id
    )
    if found is None:
        # Same words whether the id is unknown or another candidate's.
        raise ToolRefused("that application is not one of this candidate's")
    return found


async def own_applications(
    session: AsyncSession, candidate_id: int, application_id: int | None = None
) -> list[tuple[Application, Vacancy]]:
    """The candidate's applications (or just the one asked for), oldest first."""
    if application_id is not None:
        return [await own_application(session, candidate_id, application_id)]
    return await repository.applications_of_candidate(session, candidate_id=candidate_id)


async def own_interview(
    session: AsyncSession, candidate_id: int, interview_id: int, *, for_update: bool = False
) -> Interview:
    """One of the candidate's interviews; refused otherwise (same words either way)."""
    interview = await repository.interview_of_candidate(
        session, candidate_id=candidate_id, interview_id=interview_id, for_update=for_update
    )
    if interview is None:
        raise ToolRefused("that interview is not one of this candidate's")
    return interview


def interview_view(interview: Interview, zone: ZoneInfo) -> dict[str, Any]:
    """What the candidate may know about their own interview (no interviewer details)."""
    return {
        "interview_id": interview.id,
        "application_id": interview.application_id,
        "starts_at": local(interview.starts_at, zone),
        "ends_at": local(interview.ends_at, zone),
        "status": interview.status,
        "location": interview.location,
        "video_link": interview.video_link,
    }


def _given(candidate: Candidate, key: str) -> bool:
    value = (candidate.profile or {}).get(key)
    if isinstance(value, str):
        value = value.strip()
    if value not in (None, "", [], {}):
        return True
    return key in _COLUMNS and bool(getattr(candidate, key))


def _missing(candidate: Candidate, required: Sequence[Any]) -> list[str]:
    out: list[str] = []
    for key in required:
        if isinstance(key, str) and key not in out and not _given(candidate, key):
            out.append(key)
    return out


async def application_status(
    session: AsyncSession, candidate_id: int, application_id: int | None = None
) -> dict[str, Any]:
    """The candidate's applications: vacancy, stage, since when, and upcoming interviews."""
    candidate = await own_candidate(session, candidate_id)
    zone = zone_of(candidate)
    rows = await own_applications(session, candidate_id, application_id)
    interviews = (
        await repository.upcoming_interviews(session, application_ids=[a.id for a, _ in rows])
        if rows
        else []
    )
    return {
        "timezone": str(zone),
        "applications": [
            {
                "application_id": application.id,
                "vacancy": vacancy.title,
                "location": vacancy.location,
                "vacancy_open": vacancy.status == "open",
                "stage": application.stage,
                "since": local(application.stage_changed_at, zone),
                "interviews": [
                    interview_view(i, zone)
                    for i in interviews
                    if i.application_id == application.id
                ],
            }
            for application, vacancy in rows
        ],
    }


async def missing_fields(
    session: AsyncSession, candidate_id: int, application_id: int | None = None
) -> dict[str, Any]:
    """Profile fields the candidate's vacancies require and the profile does not have yet."""
    candidate = await own_candidate(session, candidate_id)
    rows = await own_applications(session, candidate_id, application_id)
    per_application: list[dict[str, Any]] = []
    union: list[str] = []
    for application, vacancy in rows:
        missing = _missing(candidate, vacancy.required_fields or [])
        union.extend(k for k in missing if k not in union)
        per_application.append(
            {"application_id": application.id, "vacancy": vacancy.title, "missing": missing}
        )
    return {"missing": union, "applications": per_application}


async def allowed_fields(session: AsyncSession, candidate_id: int) -> frozenset[str]:
    """Keys `record_data` accepts for this candidate."""
    required = await repository.required_fields_of_candidate(session, candidate_id=candidate_id)
    keys = {k for fields in required for k in (fields or []) if isinstance(k, str)}
    return frozenset((keys | SAFE_FIELDS) - PROTECTED)


def _check(key: str, value: str) -> str | None:
    """Why a value is refused (None: it is acceptable)."""
    if not value:
        return "empty value"
    if len(value) > MAX_VALUE:
        return f"longer than {MAX_VALUE} characters"
    if key == "email" and not _EMAIL.match(value):
        return "not an e-mail address"
    if key in ("cv_url", "linkedin") and not _URL.match(value):
        return "not an http(s) link"
    if key == "years_experience" and not _YEARS.match(value):
        return "not a number of years"
    return None


async def record_data(
    session: AsyncSession,
    candidate_id: int,
    fields: Mapping[str, object],
    *,
    actor: str | None = None,
) -> dict[str, Any]:
    """Store profile data the candidate gave in the conversation.

    Only keys their vacancies require or `SAFE_FIELDS` are written; identity (name,
    WhatsApp number) never is. Each refused key comes back with its reason.
    """
    candidate = await own_candidate(session, candidate_id, for_update=True)
    if not fields:
        raise ToolRefused("no fields given")
    if len(fields) > MAX_FIELDS:
        raise ToolRefused(f"at most {MAX_FIELDS} fields at once")
    allowed = await allowed_fields(session, candidate_id)
    recorded: dict[str, str] = {}
    refused: dict[str, str] = {}
    for raw_key, raw_value in fields.items():
        key = str(raw_key).strip().lower()
        shown = key if _KEY.match(key) else "(invalid key)"
        if not _KEY.match(key) or key in PROTECTED or key not in allowed:
            refused[shown] = "not a field this candidate can update"
            continue
        if isinstance(raw_value, bool) or not isinstance(raw_value, str | int | float):
            refused[key] = "the value must be text"
            continue
        value = " ".join(str(raw_value).split())
        if (why := _check(key, value)) is not None:
            refused[key] = why
            continue
        recorded[key] = value
    if recorded:
        candidate.profile = {**(candidate.profile or {}), **recorded}
        if "email" in recorded:
            candidate.email = recorded["email"]
        candidate.updated_at = clock.now()
        await session.flush()
    await record_step(
        session,
        candidate_id,
        kind=kinds.TOOL_RECORD_DATA,
        actor=actor,
        data={"recorded": recorded, "refused": refused},
    )
    still = await missing_fields(session, candidate_id)
    return {"recorded": sorted(recorded), "refused": refused, "missing": still["missing"]}
