"""Dashboard sessions: the operator's API key in a cookie, and a CSRF token per session.

Logging in checks the key exactly as `Authorization: Bearer` does (an agent's key, or
the bootstrap `TRAZA_ADMIN_KEY`), then stores `<nonce>.<key>` in the `traza_session`
cookie: HttpOnly (page scripts cannot read it), `SameSite=Strict` (other sites cannot
make the browser send it), `Secure` over HTTPS, limited to `/dashboard`. Every request
authenticates the key again, so revoking a key (`traza agents revoke`,
`DELETE /keys/{prefix}`) or disabling an agent ends their dashboard sessions at once.

Forms and htmx requests that change anything carry a CSRF token, an HMAC of the
session's random nonce keyed by the API key: a page from another origin can neither
read it nor compute it, and it changes at every login.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from urllib.parse import parse_qs

from fastapi import Request
from fastapi.responses import Response

from traza.db.engine import get_sessionmaker
from traza.operations.agents import Operator, authenticate
from traza.settings import get_settings

COOKIE = "traza_session"
PATH = "/dashboard"
MAX_AGE = 12 * 3600
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


async def operator_for_key(key: str) -> Operator | None:
    """The operator a key belongs to (as `api.deps.get_operator` decides), or None."""
    key = key.strip()
    if not key:
        return None
    admin = get_settings().admin_key()
    if admin and hmac.compare_digest(key.encode(), admin.encode()):
        return Operator(name="admin", role="admin", teams=frozenset())
    async with get_sessionmaker()() as session:
        return await authenticate(session, key)


def csrf_token(key: str, nonce: str) -> str:
    """The session's CSRF token."""
    message = f"traza-dashboard-csrf:{nonce}".encode()
    return hmac.new(key.encode(), message, hashlib.sha256).hexdigest()


async def current(request: Request) -> Session | None:
    """The session the request's cookie holds, if the key still authenticates."""
    raw = request.cookies.get(COOKIE)
    if not raw or "." not in raw:
        return None
    nonce, encoded = raw.split(".", 1)
    try:
        key = base64.urlsafe_b64decode(encoded.encode()).decode()
    except (ValueError, UnicodeDecodeError):
        return None
    operator = await operator_for_key(key)
    if operator is None:
        return None
    return Session(operator=operator, csrf=csrf_token(key, nonce))


def start(response: Response, request: Request, key: str) -> None:
    """Set the session cookie for `key` (a fresh nonce, so a fresh CSRF token)."""
    encoded = base64.urlsafe_b64encode(key.strip().encode()).decode()
    response.set_cookie(
        COOKIE,
        f"{secrets.token_urlsafe(16)}.{encoded}",
        max_age=MAX_AGE,
        path=PATH,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )


def end(response: Response) -> None:
    """Forget the session in this browser."""
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
