"""Authentication failures, counted per client and per key prefix: too many are a 429.

Failed dashboard logins and API requests with a wrong key count against the client's IP
address (`TRAZA_AUTH_FAILURES_PER_CLIENT`, default 50 a minute) and against the key
prefix they named (`TRAZA_AUTH_FAILURES_PER_KEY`, default 10 a minute; keys look like
`trz_<prefix>_…`), in a moving window. Successes never count, nor do empty keys.

- A client over its limit is answered 429 with `Retry-After` before its key is even
  looked at, until the window lets it try again.
- A prefix over its limit answers 429 to further *wrong* keys that name it; the right
  key still works, so nobody can lock an agent out by knowing their prefix.

The failure that reaches a limit is recorded in the audit trail as `access.throttled`
(no conversation), once per block rather than once per refused request. Counts live in
this process's memory (the `limits` package's memory storage), one set per app: each
API process counts on its own, and a restart forgets them.
"""

from __future__ import annotations

import logging
import math
import re
import time
from typing import Any

from fastapi import FastAPI, HTTPException, Request, status
from limits import RateLimitItem, parse
from limits.aio.storage import MemoryStorage
from limits.aio.strategies import MovingWindowRateLimiter

from traza import trace
from traza.db.engine import session_scope
from traza.settings import get_settings
from traza.trace import kinds

log = logging.getLogger(__name__)

_PREFIX = re.compile(r"^trz_([A-Za-z0-9]{1,32})_")


def client_of(request: Request) -> str:
    """The client's address (a trusted proxy's `X-Forwarded-For`: `FORWARDED_ALLOW_IPS`)."""
    return request.client.host if request.client else "unknown"


def key_prefix(key: str) -> str | None:
    """The lookup prefix a presented key names (`trz_<prefix>_…`), if it has one."""
    found = _PREFIX.match(key.strip())
    return found.group(1) if found else None


def too_many(retry_after: int) -> HTTPException:
    """The 429 a throttled request is answered with."""
    return HTTPException(
        status.HTTP_429_TOO_MANY_REQUESTS,
        detail=f"too many failed authentications: try again in {retry_after} s",
        headers={"Retry-After": str(retry_after)},
    )


class Throttle:
    """The failure counts of one app (see the module's docstring)."""

    def __init__(self) -> None:
        """Empty counts in this process's memory."""
        self._limiter = MovingWindowRateLimiter(MemoryStorage())

    def _limits(self, client: str, prefix: str | None) -> list[tuple[str, RateLimitItem, str]]:
        settings = get_settings()
        limits = [("client", parse(settings.traza_auth_failures_per_client), client)]
        if prefix:
            limits.append(("key_prefix", parse(settings.traza_auth_failures_per_key), prefix))
        return limits

    async def _retry_after(self, item: RateLimitItem, scope: str, who: str) -> int:
        stats = await self._limiter.get_window_stats(item, scope, who)
        return max(1, math.ceil(stats.reset_time - time.time()))

    async def blocked(self, request: Request) -> int | None:
        """Seconds the request's client must wait before trying a key again, or None."""
        [(scope, item, who)] = self._limits(client_of(request), None)
        if await self._limiter.test(item, scope, who):
            return None
        return await self._retry_after(item, scope, who)

    async def failed(self, request: Request, *, surface: str, key: str) -> int | None:
        """Count one failed authentication; the seconds to wait if a limit is now reached."""
        if not key.strip():  # nothing was tried
            return None
        client, prefix = client_of(request), key_prefix(key)
        waits: list[int] = []
        for scope, item, who in self._limits(client, prefix):
            if not await self._limiter.test(item, scope, who):  # already blocked: no count
                waits.append(await self._retry_after(item, scope, who))
                continue
            await self._limiter.hit(item, scope, who)
            stats = await self._limiter.get_window_stats(item, scope, who)
            if stats.remaining > 0:
                continue
            wait = max(1, math.ceil(stats.reset_time - time.time()))
            waits.append(wait)
            await _record(
                request,
                {
                    "surface": surface,
                    "scope": scope,
                    "client": client,
                    "key_prefix": prefix,
                    "limit": str(item),
                    "retry_after": wait,
                },
            )
        return max(waits) if waits else None


async def _record(request: Request, data: dict[str, Any]) -> None:
    """`access.throttled` in the audit trail; a failure to write it never fails the request."""
    data |= {"method": request.method, "path": request.url.path}
    try:
        async with session_scope() as session:
            await trace.record(
                session,
                conversation_id=None,
                kind=kinds.ACCESS_THROTTLED,
                actor=trace.system("auth"),
                data=data,
            )
    except Exception:
        log.exception("could not record %s", kinds.ACCESS_THROTTLED)


def throttle_of(app: FastAPI) -> Throttle:
    """The app's throttle, created on first use."""
    throttle = getattr(app.state, "auth_throttle", None)
    if not isinstance(throttle, Throttle):
        throttle = app.state.auth_throttle = Throttle()
    return throttle
