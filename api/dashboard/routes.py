"""The dashboard's pages and actions (`/dashboard/...`), server-rendered with Jinja2.

Pages read the database directly, scoped to the operator's teams as the API is. Actions
on a handoff call the very functions behind `POST /handoffs/{id}/...` and
`POST /conversations/{id}/resume`, so the same rules hold (an agent cannot take another
agent's handoff; every change is traced, every refusal recorded as `access.denied`).
"""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import Any

from fastapi import APIRouter, HTTPException
from fastapi.responses import Response

from api.dashboard import charts, monitor, session
from api.dashboard.pages import AnyPage, Page, SignedIn, safe_next
from api.dashboard.timeline import build as build_timeline
from api.deps import deny
from api.routes import conversations as conversations_api
from api.routes import handoffs as handoffs_api
from api.schemas import TransferRequest
from api.throttle import throttle_of
from traza.conversations import repository as conversations_repo
from traza.db.engine import get_sessionmaker
from traza.db.models import Contact, Conversation, Handoff
from traza.operations import repository as operations
from traza.operations.handoffs import OPEN
from traza.recruiting import repository as recruiting
from traza.recruiting.agents import active_agents
from traza.reports.monitor import follow_up_monitor
from traza.rules import active

router = APIRouter(prefix="/dashboard", include_in_schema=False)
LOGIN_NONCE = "traza_login"
INBOX_LIMIT = 200
CONVERSATIONS_LIMIT = 100


# --- login ---------------------------------------------------------------------------------


@router.get("/login")
async def login_form(page: AnyPage, next: str | None = None) -> Response:
    """The login form (a signed-in operator goes straight on)."""
    if page.session is not None:
        return page.redirect(safe_next(next))
    return _login_page(page, next=safe_next(next))


def _login_page(page: Page, *, next: str, status: int = 200, error: str | None = None) -> Response:
    # Login CSRF: the form must come back with the nonce this browser got with it.
    nonce = page.request.cookies.get(LOGIN_NONCE) or secrets.token_urlsafe(16)
    page.cookies.append(
        (
            LOGIN_NONCE,
            nonce,
            {"max_age": 3600, "path": "/dashboard", "httponly": True, "samesite": "strict"},
        )
    )
    return page.render("login.html", status=status, next=next, nonce=nonce, error=error)


@router.post("/login")
async def login(page: AnyPage) -> Response:
    """Check the key as the API would; on success, start a session (429 after too many)."""
    try:
        fields = await session.form(page.request)
    except session.FormError as exc:
        return page.error(400, "error.invalid", "error.invalid", detail=str(exc))
    next_url = safe_next(fields.get("next"))
    nonce = page.request.cookies.get(LOGIN_NONCE)
    if not nonce or not secrets.compare_digest(fields.get("csrf", "").encode(), nonce.encode()):
        return _login_page(page, next=next_url, status=403, error="error.csrf")
    throttle = throttle_of(page.request.app)
    if wait := await throttle.blocked(page.request):
        return _throttled(page, next_url, wait)
    key = fields.get("key", "").strip()
    response = page.redirect(next_url)
    if not await session.start(response, page.request, key):
        if wait := await throttle.failed(page.request, surface="dashboard", key=key):
            return _throttled(page, next_url, wait)
        return _login_page(page, next=next_url, status=401, error="login.invalid")
    response.delete_cookie(LOGIN_NONCE, path="/dashboard")
    return response


def _throttled(page: Page, next_url: str, wait: int) -> Response:
    """The login form again, answered 429 with `Retry-After`."""
    response = _login_page(page, next=next_url, status=429, error="login.throttled")
    response.headers["Retry-After"] = str(wait)
    return response


@router.post("/logout")
async def logout(page: SignedIn) -> Response:
    """End the session, on the server and in this browser."""
    problem = await _checked_form(page)
    if isinstance(problem, Response):
        return problem
    response = page.redirect("/dashboard/login", ok="login.logged_out")
    await session.end(response, page.request)
    return response


async def _checked_form(page: Page) -> dict[str, str] | Response:
    """The POSTed form, if it carries this session's CSRF token; else the error page."""
    assert page.session is not None
    try:
        fields = await session.form(page.request)
    except session.FormError as exc:
        return page.error(400, "error.invalid", "error.invalid", detail=str(exc))
    if not session.csrf_ok(page.session, page.request, fields):
        return page.error(403, "error.forbidden.title", "error.csrf")
    return fields


# --- home ----------------------------------------------------------------------------------


@router.get("")
async def home(page: SignedIn) -> Response:
    """Where to go: the inbox, the conversations, the follow-up agents."""
    name = page.operator.name
    async with get_sessionmaker()() as db:
        counts = await operations.inbox_counts(db, agent_name=name, teams=page.operator.scope)
        conversations = await conversations_repo.conversation_counts(db, teams=page.operator.scope)
        agents = await _agent_cards(page, db)
    return page.render(
        "home.html",
        inbox={"open": counts[0], "mine": counts[1], "total": counts[2]},
        conversations={"open": conversations[0], "human": conversations[1]},
        agents=agents,
    )


def _scope(page: Page) -> frozenset[str] | None:
    """The teams whose candidates a monitor names (None: all, for admins)."""
    return page.operator.scope


async def _monitor(
    page: Page, db: Any, name: str, *, start: datetime | None, limit: int = 10
) -> dict[str, Any]:
    return await follow_up_monitor(
        db,
        name,
        since=start,
        until=None,
        zone=page.zone,
        language=page.language,
        teams=_scope(page),
        limit=limit,
    )


async def _agent_cards(page: Page, db: Any) -> list[dict[str, Any]]:
    return [await _monitor(page, db, name, start=None, limit=0) for name in sorted(active_agents())]


# --- follow-up agents ----------------------------------------------------------------------


@router.get("/agents")
async def agents(page: SignedIn) -> Response:
    """The configured follow-up agents and their headline figures."""
    async with get_sessionmaker()() as db:
        cards = await _agent_cards(page, db)
    return page.render("agents.html", agents=cards)


@router.get("/agents/{name}")
async def agent_monitor(page: SignedIn, name: str, period: str = "30d") -> Response:
    """The seed's "Monitorear Agente": figures, charts, recent activity, escalated cases."""
    if name not in active_agents():
        return page.error(404, "error.not_found.title", "error.not_found.body")
    chosen: monitor.Period = period if period in monitor.PERIODS else "30d"
    start = monitor.since(chosen, page.now)
    async with get_sessionmaker()() as db:
        figures = await _monitor(page, db, name, start=start)
        drawn = await monitor.charts(db, name, start=start, now=page.now, zone=page.zone)
        handoff_ids = [c["handoff_id"] for c in figures["escalated_cases"]]
        conversation_of = await operations.conversations_of_handoffs(db, handoff_ids=handoff_ids)
    t = page.t
    per_bucket = charts.bar_chart(
        [(d.strftime("%d/%m"), n) for d, n in drawn.buckets],
        title=t("monitor.per_week" if drawn.weekly else "monitor.per_day"),
        empty=t("monitor.no_data"),
    )
    per_trigger = charts.bar_chart(
        [(t(f"trigger.{trigger}"), n) for trigger, n in drawn.per_trigger],
        title=t("monitor.per_trigger"),
        empty=t("monitor.no_data"),
    )
    funnel = charts.funnel(
        [
            (t("funnel.sent"), figures["messages_sent"]),
            (t("funnel.delivered"), drawn.delivered),
            (t("funnel.read"), figures["opened"]),
            (t("funnel.replied"), figures["answered"]),
        ],
        title=t("monitor.funnel"),
        empty=t("monitor.no_data"),
    )
    cases = [
        c
        | {
            "conversation_id": conversation_of.get(c["handoff_id"]),
            "pending": c["status"] in OPEN,
        }
        for c in figures["escalated_cases"]
    ]
    return page.render(
        "agent.html",
        name=name,
        figures=figures,
        period=chosen,
        periods=monitor.PERIODS,
        cases=cases,
        per_bucket=per_bucket,
        weekly=drawn.weekly,
        per_trigger=per_trigger,
        funnel=funnel,
    )


# --- the handoff inbox ---------------------------------------------------------------------


async def _transfer_options(db: Any) -> dict[str, Any]:
    teams = await operations.team_names(db)
    return {"teams": teams, "agents": await operations.assignable_memberships(db)}


@router.get("/handoffs")
async def inbox(page: SignedIn, show: str = "all") -> Response:
    """Active handoffs of the operator's teams, highest priority first, then oldest."""
    rules = await active.current()
    if show not in ("mine", "unassigned"):
        show = "all"
    async with get_sessionmaker()() as db:
        rows = await operations.inbox_handoffs(
            db,
            priorities=rules.rules.priorities,
            teams=page.operator.scope,
            assigned_agent=page.operator.name if show == "mine" else None,
            unassigned=show == "unassigned",
            limit=INBOX_LIMIT,
        )
        options = await _transfer_options(db)
    items = [
        {
            "handoff": h,
            "contact": contact,
            "who": candidate or contact.profile_name or contact.wa_id,
            "waiting_ms": (page.now - h.created_at).total_seconds() * 1000,
            "can_act": _can_act(page, h),
        }
        for h, contact, candidate in rows
    ]
    return page.render("inbox.html", items=items, show=show, options=options)


def _can_act(page: Page, handoff: Handoff) -> bool:
    """Agents act on unassigned handoffs and their own; supervisors and admins on any."""
    operator = page.operator
    return (
        operator.role != "agent"
        or not handoff.assigned_agent
        or handoff.assigned_agent == operator.name
    )


DONE = {
    "claim": "flash.claimed",
    "reply": "flash.replied",
    "transfer": "flash.transferred",
    "resolve": "flash.resolved",
    "return": "flash.returned",
}


@router.post("/handoffs/{handoff_id}/{action}")
async def act(page: SignedIn, handoff_id: int, action: str) -> Response:
    """Claim, reply, transfer, resolve or return a handoff (CSRF-checked form)."""
    fields = await _checked_form(page)
    if isinstance(fields, Response):
        return fields
    if action not in DONE:
        return page.error(404, "error.not_found.title", "error.not_found.body")
    back = safe_next(fields.get("next"))
    operator, request = page.operator, page.request
    async with get_sessionmaker()() as db:
        handoff = await db.get(Handoff, handoff_id)
        if handoff is None:
            return page.error(404, "error.not_found.title", "error.not_found.body")
        if not operator.sees_team(handoff.team):
            refused = await deny(
                request,
                operator,
                conversation_id=handoff.conversation_id,
                reason=f"handoff {handoff.id} belongs to team '{handoff.team}', not to your teams",
            )
            return page.error(
                403, "error.forbidden.title", "error.forbidden.body", detail=refused.detail
            )
        conversation = await db.get_one(Conversation, handoff.conversation_id)
        try:
            if action == "claim":
                await handoffs_api.claim(handoff, request, operator)
            elif action == "reply":
                reply = fields.get("text", "").strip()
                if not reply:
                    return page.redirect(back, error="error.empty_reply")
                await conversations_api.resume(
                    conversation, request, db, operator, {"type": "response", "args": reply}
                )
            elif action == "transfer":
                body = TransferRequest(
                    team=fields.get("team") or None,
                    agent=fields.get("agent") or None,
                    note=fields.get("note") or None,
                )
                await handoffs_api.transfer(handoff, request, operator, body)
            elif action == "resolve":
                await handoffs_api.resolve(handoff, request, operator)
            else:
                await handoffs_api.return_to_bot(handoff, request, operator)
        except HTTPException as exc:
            return _refused(page, exc, back)
        except ValueError as exc:  # a TransferRequest that does not validate
            return page.redirect(back, error="error.invalid", detail=str(exc))
    return page.redirect(back, ok=DONE[action])


def _refused(page: Page, exc: HTTPException, back: str) -> Response:
    """What the API would have answered, as a page or a message on the page."""
    detail = str(exc.detail)
    if exc.status_code == 403:  # already recorded as access.denied by the API's check
        return page.error(403, "error.forbidden.title", "error.forbidden.body", detail=detail)
    if exc.status_code == 404:
        return page.error(404, "error.not_found.title", "error.not_found.body", detail=detail)
    if exc.status_code == 409:
        return page.redirect(back, error="error.conflict", detail=detail)
    return page.redirect(back, error="error.invalid", detail=detail)


# --- conversations -------------------------------------------------------------------------


@router.get("/conversations")
async def conversations(
    page: SignedIn, wa_id: str | None = None, status: str | None = None
) -> Response:
    """Conversations of the operator's teams, newest activity first; search by number."""
    search = (wa_id or "").strip().lstrip("+")
    if status not in ("open", "closed"):
        status = None
    async with get_sessionmaker()() as db:
        rows = await conversations_repo.conversations_with_candidate(
            db,
            wa_id_contains=search or None,
            status=status,
            teams=page.operator.scope,
            limit=CONVERSATIONS_LIMIT,
        )
    items = [
        {"conversation": c, "contact": contact, "who": name or contact.profile_name or ""}
        for c, contact, name in rows
    ]
    return page.render("conversations.html", items=items, wa_id=search, chosen=status)


@router.get("/conversations/{conversation_id}")
async def conversation_page(page: SignedIn, conversation_id: int) -> Response:
    """The unified timeline, under a header answering the seed's three questions."""
    async with get_sessionmaker()() as db:
        conversation = await db.get(Conversation, conversation_id)
        if conversation is None:
            return page.error(404, "error.not_found.title", "error.not_found.body")
        if not page.operator.sees_team(conversation.team):
            where = f"team '{conversation.team}'" if conversation.team else "no team"
            refused = await deny(
                page.request,
                page.operator,
                conversation_id=conversation_id,
                reason=f"conversation {conversation_id} belongs to {where}, not to your teams",
            )
            return page.error(
                403, "error.forbidden.title", "error.forbidden.body", detail=refused.detail
            )
        contact = await db.get_one(Contact, conversation.contact_id)
        candidate = await recruiting.candidate_name_of_contact(db, contact_id=contact.id)
        handoff = await operations.active_handoff_of(db, conversation_id=conversation_id)
        timeline = await build_timeline(db, conversation, page.t, page.language)
        options = await _transfer_options(db)
    return page.render(
        "conversation.html",
        conversation=conversation,
        contact=contact,
        who=candidate or contact.profile_name or contact.wa_id,
        handoff=handoff,
        can_act=handoff is not None and _can_act(page, handoff),
        timeline=timeline,
        options=options,
    )
