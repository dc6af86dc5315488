"""Dashboard sessions: a random session id in a cookie, and a CSRF token per session.

Logging in checks the key exactly as `Authorization: Bearer` does (an agent's key, or
the bootstrap `TRAZA_ADMIN_KEY`), then opens a server-side session
(`traza.operations.agents.open_session`) and puts only its random id in the
`traza_session` cookie: HttpOnly (page scripts cannot read it), `SameSite=Strict` (other
sites cannot make the browser send it), `Secure` over HTTPS, limited to `/dashboard`.
The id is not the key and is stored only as a hash, so a copied cookie is no API key,
and it stops working at logout, after `TRAZA_SESSION_IDLE_MINUTES` idle, at
`TRAZA_SESSION_MAX_HOURS` after login, and as soon as the key is revoked (`traza agents
revoke`, `DELETE /keys/{prefix}`) or the agent disabled.

Forms and htmx requests that change anything carry a CSRF token, an HMAC keyed by the
session id: a page from another origin can neither read it nor compute it, and it
changes at every login.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import parse_qs

from fastapi import Request
from fastapi.responses import Response

from traza.db.engine import session_scope
from traza.operations import agents
from traza.operations.agents import Operator
from traza.settings import get_settings

COOKIE = "traza_session"
PATH = "/dashboard"
CSRF_FIELD = "csrf"
CSRF_HEADER = "x-csrf-token"
MAX_FORM_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True)
class Session:
    """A logged-in operator and the token their forms must send back."""

    operator: Operator
    csrf: str


class FormError(ValueError):
    """A POST body the dashboard does not accept (too large, or not a form)."""


def csrf_token(session_id: str) -> str:
    """The session's CSRF token."""
    return hmac.new(session_id.encode(), b"traza-dashboard-csrf", hashlib.sha256).hexdigest()


async def current(request: Request) -> Session | None:
    """The session the request's cookie names, if it is still live (and its key valid)."""
    session_id = request.cookies.get(COOKIE, "")
    if not session_id or len(session_id) > 128:
        return None
    settings = get_settings()
    async with session_scope() as db:
        operator = await agents.session_operator(
            db,
            session_id,
            admin_key=settings.admin_key(),
            idle=timedelta(minutes=settings.traza_session_idle_minutes),
        )
    if operator is None:
        return None
    return Session(operator=operator, csrf=csrf_token(session_id))


async def start(response: Response, request: Request, key: str) -> bool:
    """Open a session for `key` and set its cookie; False (nothing set) for a bad key."""
    settings = get_settings()
    lifetime = timedelta(hours=settings.traza_session_max_hours)
    async with session_scope() as db:
        session_id = await agents.open_session(
            db, key, admin_key=settings.admin_key(), lifetime=lifetime
        )
    if session_id is None:
        return False
    response.set_cookie(
        COOKIE,
        session_id,
        max_age=int(lifetime.total_seconds()),
        path=PATH,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return True


async def end(response: Response, request: Request) -> None:
    """End the request's session on the server and forget it in this browser."""
    session_id = request.cookies.get(COOKIE, "")
    if session_id:
        async with session_scope() as db:
            await agents.end_session(db, session_id, reason="logout")
    response.delete_cookie(COOKIE, path=PATH, httponly=True, samesite="strict")


async def form(request: Request) -> dict[str, str]:
    """The urlencoded body of a form POST (what browsers and htmx send), first values."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind not in ("", "application/x-www-form-urlencoded"):
        raise FormError(f"expected a form (application/x-www-form-urlencoded), got {kind}")
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        raise FormError("form too large")
    parsed = parse_qs(body.decode("utf-8", errors="replace"), keep_blank_values=True)
    return {name: values[0] for name, values in parsed.items()}


def csrf_ok(session: Session, request: Request, fields: dict[str, str]) -> bool:
    """Whether the POST carries this session's token (form field or htmx header)."""
    sent = fields.get(CSRF_FIELD) or request.headers.get(CSRF_HEADER) or ""
    return hmac.compare_digest(sent.encode(), session.csrf.encode())
