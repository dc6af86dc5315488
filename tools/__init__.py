"""Tools the conversation graph and the model may call: the candidate pool and the calendar.

`tools_for(candidate_id)` builds LangChain tools bound to the conversation's candidate.
Their argument schemas have no candidate field: the model cannot name a candidate, and an
argument it invents is refused. Each call runs in its own transaction and answers a
JSON-able dict; a refusal is an answer (`{"error": ...}`), not an exception, so the model
can tell the candidate.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from langchain_core.tools import BaseTool, StructuredTool
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tools import calendar, candidate
from tools.candidate import ToolRefused
from traza.db.engine import session_scope

__all__ = ["ToolRefused", "tools_for"]


class _Args(BaseModel):
    model_config = ConfigDict(extra="forbid")


class NoArgs(_Args):
    """No arguments."""


class ApplicationArg(_Args):
    """Optionally, one application."""

    application_id: int | None = Field(
        default=None, description="One of the candidate's applications; omit for all of them."
    )


class RecordArgs(_Args):
    """Profile data the candidate gave."""

    fields: dict[str, str | int | float] = Field(
        description=(
            "Profile fields the candidate stated in this conversation, e.g. "
            '{"city": "Madrid", "years_experience": "5"}. Use the keys missing_fields '
            "reports; only what the candidate actually said."
        )
    )


class SlotsArgs(_Args):
    """Which application and how far ahead."""

    application_id: int = Field(description="The application the interview is for.")
    days: int = Field(default=7, ge=1, le=31, description="How many days ahead to look.")


class BookArgs(_Args):
    """An application and one of the offered slots."""

    application_id: int = Field(description="The application the interview is for.")
    starts_at: str = Field(
        description="Start of a slot returned by free_slots, ISO 8601 with its offset."
    )


class InterviewArg(_Args):
    """One of the candidate's interviews."""

    interview_id: int = Field(description="The interview, as application_status reports it.")


class RescheduleArgs(_Args):
    """An interview and its new start."""

    interview_id: int = Field(description="The interview to move.")
    starts_at: str = Field(
        description="Start of a slot returned by free_slots, ISO 8601 with its offset."
    )


def _refused_input(error: ValidationError) -> str:
    """What the model reads when its arguments do not fit the schema."""
    fields = sorted({".".join(str(p) for p in e["loc"]) for e in error.errors()})
    return json.dumps({"error": f"invalid arguments: {', '.join(fields) or 'input'}"})


Call = Callable[..., Awaitable[dict[str, Any]]]


def _bind(candidate_id: int, fn: Call, actor: str | None, writes: bool) -> Call:
    async def run(**kwargs: Any) -> dict[str, Any]:
        if writes:
            kwargs["actor"] = actor
        try:
            async with session_scope() as session:
                return await fn(session, candidate_id, **kwargs)
        except ToolRefused as refused:
            return {"error": str(refused)}

    return run


def _tool(
    candidate_id: int,
    fn: Callable[..., Awaitable[dict[str, Any]]],
    *,
    name: str,
    description: str,
    args: type[BaseModel],
    actor: str | None = None,
    writes: bool = False,
) -> BaseTool:
    return StructuredTool.from_function(
        coroutine=_bind(candidate_id, fn, actor, writes),
        name=name,
        description=description,
        args_schema=args,
        handle_validation_error=_refused_input,
    )


def tools_for(
    candidate_id: int, *, actor: str | None = None, read_only: bool = False
) -> list[BaseTool]:
    """The tools of one conversation, bound to its candidate.

    Args:
        candidate_id: The conversation's candidate (from the database, never the model).
        actor: Who the trace names for changes (default: the bot, `bot:<TRAZA_BOT_NAME>`).
        read_only: Only the tools that change nothing (status, missing fields, free slots),
            for a node that must route every change through its own step.
    """
    reads = [
        _tool(
            candidate_id,
            candidate.application_status,
            name="application_status",
            description=(
                "The candidate's own applications: vacancy, current stage and since when, "
                "and upcoming interviews (ids, times in the candidate's time zone, link). "
                "Use it before telling the candidate anything about their process."
            ),
            args=ApplicationArg,
        ),
        _tool(
            candidate_id,
            candidate.missing_fields,
            name="missing_fields",
            description=(
                "Profile fields the candidate's vacancies require that are still missing "
                "(e.g. cv_url, years_experience, city). Ask the candidate for these."
            ),
            args=ApplicationArg,
        ),
        _tool(
            candidate_id,
            calendar.free_slots,
            name="free_slots",
            description=(
                "Free interview times for one of the candidate's applications, in the "
                "candidate's time zone. Offer only these times."
            ),
            args=SlotsArgs,
        ),
    ]
    if read_only:
        return reads
    return [
        *reads,
        _tool(
            candidate_id,
            candidate.record_data,
            name="record_data",
            description=(
                "Save profile data the candidate just gave (only fields missing_fields "
                "lists, or email, city, years_experience, availability, cv_url, linkedin). "
                "Returns what was saved, what was refused and why, and what is still missing."
            ),
            args=RecordArgs,
            actor=actor,
            writes=True,
        ),
        _tool(
            candidate_id,
            calendar.book_interview,
            name="book_interview",
            description=(
                "Book an interview at a time free_slots offered, once the candidate chose it."
            ),
            args=BookArgs,
            actor=actor,
            writes=True,
        ),
        _tool(
            candidate_id,
            calendar.confirm_interview,
            name="confirm_interview",
            description="Record that the candidate confirmed they will attend an interview.",
            args=InterviewArg,
            actor=actor,
            writes=True,
        ),
        _tool(
            candidate_id,
            calendar.reschedule_interview,
            name="reschedule_interview",
            description=(
                "Move one of the candidate's interviews to another time free_slots offered, "
                "once the candidate chose it."
            ),
            args=RescheduleArgs,
            actor=actor,
            writes=True,
        ),
    ]
