"""What every dashboard page shares: language, session, rendering, flashes and errors."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fastapi import Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape

from api.dashboard import i18n, session
from api.deps import INTEGRATION_ONLY, deny
from traza import clock
from traza.db.engine import autocommit
from traza.db.health import oldest_unprocessed_seconds
from traza.operations.agents import Operator
from traza.rules import active
from traza.settings import get_settings

HERE = Path(__file__).resolve().parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"
FLASH_COOKIE = "traza_flash"
ZONE_COOKIE = "traza_tz"

# Scripts and styles only from this origin: no inline script can run even if some text
# escaped escaping; forms post only here; no other site may frame the dashboard.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


class LoginRequired(Exception):
    """No valid session: the browser is sent to the login page."""

    def __init__(self, next_url: str) -> None:
        super().__init__(next_url)
        self.next_url = next_url


def safe_next(value: str | None) -> str:
    """A same-site dashboard path to go back to (anything else goes home)."""
    if (
        value
        and value.startswith("/dashboard")
        and "//" not in value
        and "\\" not in value
        and not any(ord(c) < 32 for c in value)
    ):
        return value
    return "/dashboard"


def _duration(value: float | None) -> str:
    """12.3 ms, 4.2 s, 3 min, 2 h."""
    if value is None:
        return ""
    if value < 1:
        return f"{value:.2f} ms"
    if value < 1000:
        return f"{value:.1f} ms" if value < 100 else f"{value:.0f} ms"
    seconds = value / 1000
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def _percent(value: float | None) -> str:
    return "—" if value is None else f"{value:g}%"


def _environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["ms"] = _duration
    env.filters["pct"] = _percent
    return env


ENV = _environment()


def _zone(name: str | None) -> ZoneInfo | None:
    if not name:
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


async def display_zone(query: str | None, cookie: str | None) -> tuple[ZoneInfo, bool]:
    """The zone times are shown in, and whether `?tz=` chose it (so remember it).

    `?tz=<IANA name>` (kept in a cookie), else the default team's business hours, else UTC.
    """
    if chosen := _zone(query):
        return chosen, True
    if remembered := _zone(cookie):
        return remembered, False
    rules = (await active.current()).rules
    team = rules.teams.get(rules.default_team)
    return ZoneInfo(team.hours.timezone if team and team.hours else "UTC"), False


@dataclass
class Page:
    """One request's view of the dashboard: language, operator, and how to answer."""

    request: Request
    language: i18n.Language
    remember_language: bool
    zone: ZoneInfo
    remember_zone: bool
    now: datetime
    session: session.Session | None = None
    flash: dict[str, str] | None = None
    backlog: float | None = None
    """Seconds the oldest unprocessed inbound message has waited, when beyond the warning."""
    cookies: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)

    @property
    def t(self) -> i18n.Translator:
        """The page's translator."""
        return i18n.translator(self.language)

    @property
    def operator(self) -> Operator:
        """The signed-in operator (pages behind `SignedIn` always have one)."""
        assert self.session is not None
        return self.session.operator

    def local(self, at: datetime | None, *, seconds: bool = False) -> str:
        """A time in the display zone: "10:30" today, "02/03 10:30" otherwise."""
        if at is None:
            return ""
        here = at.astimezone(self.zone)
        if seconds:
            return here.strftime("%d/%m %H:%M:%S")
        if here.date() == self.now.astimezone(self.zone).date():
            return here.strftime("%H:%M")
        return here.strftime("%d/%m %H:%M")

    def lang_url(self, language: str) -> str:
        """This page in another language."""
        url = self.request.url.include_query_params(lang=language)
        return f"{url.path}?{url.query}"

    def render(self, template: str, *, status: int = 200, **context: Any) -> Response:
        """The page as HTML with the session's CSRF token and the security headers."""
        html = ENV.get_template(template).render(
            page=self,
            t=self.t,
            has=lambda key: i18n.has(self.language, key),
            lang=self.language,
            languages=i18n.LANGUAGES,
            csrf=self.session.csrf if self.session else None,
            operator=self.session.operator if self.session else None,
            flash=self.flash,
            backlog=self.backlog,
            backlog_limit=get_settings().traza_backlog_warn_seconds,
            path=self.request.url.path,
            here=_here(self.request),
            **context,
        )
        response = HTMLResponse(html, status_code=status, headers=SECURITY_HEADERS)
        if self.request.headers.get("hx-request"):
            response.headers["HX-Push-Url"] = _here(self.request)
        return self.finish(response)

    def finish(self, response: Response) -> Response:
        """Apply the cookies this request decided on (language, flash)."""
        if self.remember_language:
            response.set_cookie(
                i18n.COOKIE,
                self.language,
                max_age=365 * 86400,
                path="/dashboard",
                httponly=True,
                samesite="strict",
            )
        if self.remember_zone:
            response.set_cookie(
                ZONE_COOKIE,
                self.zone.key,
                max_age=365 * 86400,
                path="/dashboard",
                httponly=True,
                samesite="strict",
            )
        if self.flash is not None:
            response.delete_cookie(FLASH_COOKIE, path="/dashboard")
        for name, value, options in self.cookies:
            response.set_cookie(name, value, **options)
        return response

    def redirect(
        self, to: str, *, ok: str | None = None, error: str | None = None, detail: str = ""
    ) -> Response:
        """303 to `to`, with a message for the next page (a short-lived cookie)."""
        response = RedirectResponse(to, status_code=303, headers=SECURITY_HEADERS)
        if ok or error:
            value = {"kind": "ok" if ok else "error", "key": ok or error or "", "detail": detail}
            encoded = base64.urlsafe_b64encode(json.dumps(value).encode()).decode()
            self.flash = None  # the one being shown now is consumed; this is a new one
            self.cookies.append(
                (
                    FLASH_COOKIE,
                    encoded,
                    {"max_age": 60, "path": "/dashboard", "httponly": True, "samesite": "strict"},
                )
            )
        return self.finish(response)

    def error(self, status: int, title: str, body: str, *, detail: str | None = None) -> Response:
        """An error page (403 forbidden, 404 not found, 400 bad form) in the page's language."""
        return self.render(
            "error.html", status=status, title=self.t(title), body=self.t(body), detail=detail
        )


def _here(request: Request) -> str:
    url = request.url.remove_query_params(["lang", "tz"])
    return f"{url.path}?{url.query}" if url.query else url.path


def _read_flash(request: Request) -> dict[str, str] | None:
    raw = request.cookies.get(FLASH_COOKIE)
    if not raw:
        return None
    try:
        value = json.loads(base64.urlsafe_b64decode(raw.encode()))
    except ValueError:
        return None
    if not isinstance(value, dict) or not isinstance(value.get("key"), str):
        return None
    key = value["key"]
    if not i18n.has(i18n.DEFAULT, key):  # only messages of our own catalogue
        return None
    return {
        "kind": "ok" if value.get("kind") == "ok" else "error",
        "key": key,
        "detail": str(value.get("detail") or "")[:500],
    }


async def open_page(request: Request) -> Page:
    """Language, display zone, flash and (if any) session of this request."""
    language, remember = i18n.choose(
        request.query_params.get("lang"),
        request.cookies.get(i18n.COOKIE),
        request.headers.get("accept-language"),
    )
    zone, remember_zone = await display_zone(
        request.query_params.get("tz"), request.cookies.get(ZONE_COOKIE)
    )
    return Page(
        request=request,
        language=language,
        remember_language=remember,
        zone=zone,
        remember_zone=remember_zone,
        now=clock.now(),
        session=await session.current(request),
        flash=_read_flash(request),
    )


async def signed_in(page: Annotated[Page, Depends(open_page)]) -> Page:
    """The page, when a valid session exists; else the browser is sent to log in."""
    if page.session is None:
        url = page.request.url
        raise LoginRequired(f"{url.path}?{url.query}" if url.query else url.path)
    if page.session.operator.is_integration:  # a system's key has no dashboard
        raise await deny(
            page.request, page.session.operator, conversation_id=None, reason=INTEGRATION_ONLY
        )
    page.backlog = await _backlog()
    return page


async def _backlog() -> float | None:
    """The backlog the banner warns about: inbound messages waiting beyond the setting."""
    async with autocommit() as conn:
        waited = await oldest_unprocessed_seconds(conn)
    return waited if waited > get_settings().traza_backlog_warn_seconds else None


AnyPage = Annotated[Page, Depends(open_page)]
SignedIn = Annotated[Page, Depends(signed_in)]


def login_redirect(request: Request, exc: Exception) -> Response:
    """The handler for `LoginRequired`: 303 to the login page, back here afterwards."""
    assert isinstance(exc, LoginRequired)
    target = f"/dashboard/login?next={quote(safe_next(exc.next_url), safe='/')}"
    return RedirectResponse(target, status_code=303, headers=SECURITY_HEADERS)
