"""Reports: conversation figures for a period (JSON or CSV) and a follow-up agent's monitor.

Admins see everything; supervisors and agents see only their teams' conversations, and
asking for another team's report is answered 403 and recorded (`access.denied`). Bad
dates, `from` not before `to`, unknown filter values and unknown parameters are 422
with the parameter named in `detail[].loc`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, Response, status

from api.deps import OperatorDep, SessionDep, deny
from traza.operations.agents import Operator
from traza.reports.conversations import Filters, conversation_report
from traza.reports.export import conversation_report_csv, monitor_csv
from traza.reports.monitor import follow_up_monitor
from traza.reports.period import ReportError, open_period, period
from traza.rules import active

router = APIRouter(prefix="/reports", tags=["reports"])

CONVERSATION_PARAMS = ("from", "to", "tz", "inbox", "team", "agent", "bot", "group")
MONITOR_PARAMS = ("from", "to", "tz", "lang", "limit")

From = Annotated[
    str,
    Query(
        alias="from",
        description="Start (inclusive): 2026-03-02 (midnight in tz), 2026-03-02T09:30 or "
        "with an offset",
    ),
]
To = Annotated[str, Query(description="End (exclusive), same formats as from")]
Tz = Annotated[str, Query(description="IANA time zone of dates without an offset and of days")]


def invalid(field: str, message: str) -> HTTPException:
    """A 422 shaped like FastAPI's own validation errors."""
    return HTTPException(
        status.HTTP_422_UNPROCESSABLE_CONTENT,
        detail=[{"loc": ["query", field], "msg": message, "type": "value_error"}],
    )


def only(request: Request, allowed: tuple[str, ...]) -> None:
    """422 for a parameter the endpoint does not know (a typo must not widen a report)."""
    unknown = sorted(set(request.query_params) - set(allowed))
    if unknown:
        raise invalid(
            unknown[0], f"unknown parameter '{unknown[0]}' (parameters: {', '.join(allowed)})"
        )


def scope_of(operator: Operator) -> frozenset[str] | None:
    """The teams a caller's reports cover (None: all, for admins)."""
    return operator.scope


@dataclass(frozen=True, slots=True)
class ConversationQuery:
    """The checked parameters of a conversation report."""

    request: Request
    start: str
    end: str
    tz: str
    filters: Filters
    group: Literal["day"] | None


async def conversation_query(
    request: Request,
    start: From,
    end: Annotated[str, Query(alias="to", description="End (exclusive), same formats as from")],
    tz: Tz = "UTC",
    inbox: Annotated[str | None, Query(description="phone_number_id of the inbox")] = None,
    team: Annotated[str | None, Query(description="team name")] = None,
    agent: Annotated[str | None, Query(description="human agent name")] = None,
    bot: Annotated[str | None, Query(description="bot name (bot:<name> in the trace)")] = None,
    group: Annotated[Literal["day"] | None, Query(description="day: one row per day")] = None,
) -> ConversationQuery:
    """Parameters of `/reports/conversations` and its CSV."""
    only(request, CONVERSATION_PARAMS)
    return ConversationQuery(request, start, end, tz, Filters(inbox, team, agent, bot), group)


ConversationQueryDep = Annotated[ConversationQuery, Depends(conversation_query)]


async def _conversations(
    q: ConversationQuery, session: SessionDep, operator: Operator
) -> dict[str, Any]:
    try:
        p = period(q.start, q.end, q.tz)
    except ReportError as exc:
        raise invalid(exc.field, exc.message) from None
    if q.filters.team is not None and not operator.sees_team(q.filters.team):
        raise await deny(
            q.request,
            operator,
            conversation_id=None,
            reason=f"team '{q.filters.team}' is not one of your teams",
        )
    rules = await active.current()
    try:
        return await conversation_report(
            session,
            period=p,
            filters=q.filters,
            rules=rules,
            scope=scope_of(operator),
            group=q.group,
        )
    except ReportError as exc:
        raise invalid(exc.field, exc.message) from None


def _csv(body: str, filename: str) -> Response:
    return Response(
        body,
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


@router.get("/conversations")
async def conversations_report(
    q: ConversationQueryDep, session: SessionDep, operator: OperatorDep
) -> dict[str, Any]:
    """Conversations, messages, handoffs, response and resolution times, SLAs and CSAT."""
    return await _conversations(q, session, operator)


@router.get(
    "/conversations.csv",
    response_class=Response,
    responses={200: {"content": {"text/csv": {}}, "description": "one row per day and a total"}},
)
async def conversations_report_csv(
    q: ConversationQueryDep, session: SessionDep, operator: OperatorDep
) -> Response:
    """The same report as CSV: a row per day (with group=day) and a `total` row."""
    report = await _conversations(q, session, operator)
    name = f"traza-conversations-{q.start[:10]}-{q.end[:10]}.csv"
    return _csv(conversation_report_csv(report), name)


AgentName = Annotated[str, Path(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")]


async def _monitor(
    request: Request,
    name: str,
    session: SessionDep,
    operator: Operator,
    start: str | None,
    end: str | None,
    tz: str,
    lang: str,
    limit: int,
) -> dict[str, Any]:
    only(request, MONITOR_PARAMS)
    try:
        since, until, zone = open_period(start, end, tz)
        return await follow_up_monitor(
            session,
            name,
            since=since,
            until=until,
            zone=zone,
            language=lang,
            teams=scope_of(operator),
            limit=limit,
        )
    except ReportError as exc:
        raise invalid(exc.field, exc.message) from None
    except LookupError as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=str(exc)) from None


OptionalFrom = Annotated[
    str | None, Query(alias="from", description="Start (inclusive); all time when omitted")
]
OptionalTo = Annotated[str | None, Query(alias="to", description="End (exclusive)")]
Lang = Annotated[Literal["es", "en"], Query(description="language of the activity lines")]
Limit = Annotated[int, Query(ge=1, le=500, description="activity lines and cases shown")]


@router.get(
    "/agents/{name}.csv",
    response_class=Response,
    responses={200: {"content": {"text/csv": {}}, "description": "figures, activity, cases"}},
)
async def follow_up_agent_csv(
    request: Request,
    name: AgentName,
    session: SessionDep,
    operator: OperatorDep,
    start: OptionalFrom = None,
    end: OptionalTo = None,
    tz: Tz = "UTC",
    lang: Lang = "es",
    limit: Limit = 50,
) -> Response:
    """The follow-up agent's monitor as CSV (section: figure, activity or case)."""
    data = await _monitor(request, name, session, operator, start, end, tz, lang, limit)
    return _csv(monitor_csv(data), f"traza-agent-{name}.csv")


@router.get("/agents/{name}")
async def follow_up_agent(
    request: Request,
    name: AgentName,
    session: SessionDep,
    operator: OperatorDep,
    start: OptionalFrom = None,
    end: OptionalTo = None,
    tz: Tz = "UTC",
    lang: Lang = "es",
    limit: Limit = 10,
) -> dict[str, Any]:
    """The seed's "Monitorear Agente" for a follow-up agent.

    Messages sent, open and reply rates, escalations, satisfaction, recent activity
    ("10:30 – Envió confirmación a María G.") and escalated cases with their state.
    """
    return await _monitor(request, name, session, operator, start, end, tz, lang, limit)
