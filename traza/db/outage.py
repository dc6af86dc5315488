"""When the database goes away: recognise it, wait for it with backoff, and carry on.

A restart, a fail-over or a network cut shows up as a connection error anywhere a
statement runs. `is_connection_error` tells those apart from errors a retry would not
fix; `wait_for_database` blocks until the server answers again (one probe per process,
whatever the number of waiters, backing off up to `MAX_BACKOFF` seconds); `after_outage`
registers what a process must do once it is back (drop the pools' dead connections).
`persist` runs a write that must not be lost (a send the provider already accepted)
until it commits.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import psycopg

from traza.db.engine import database_dsn

log = logging.getLogger(__name__)

T = TypeVar("T")

FIRST_BACKOFF = 0.1
MAX_BACKOFF = 5.0
PROBE_TIMEOUT = 2  # seconds a probe may take to connect

# SQLSTATEs that mean "this connection (or the server) went away", not "this statement
# was wrong": class 08 (connection exception), and the server shutting down, crashing,
# starting up, or dropping an idle session.
_GONE = frozenset({"57P01", "57P02", "57P03", "57P05"})


def is_connection_error(exc: BaseException | None) -> bool:
    """Whether `exc` (or what caused it) is the database being unreachable.

    Recognises psycopg's errors (also wrapped by SQLAlchemy as `.orig`, or by
    procrastinate as the cause of a `ConnectorException`), a pool that cannot hand out
    a connection, and socket errors. A cancelled query or a constraint is not one.
    """
    seen = 0
    while exc is not None and seen < 8:
        seen += 1
        if isinstance(exc, psycopg.OperationalError):
            state = getattr(exc, "sqlstate", None)
            return state is None or state.startswith("08") or state in _GONE
        if isinstance(exc, psycopg.InterfaceError | ConnectionError):
            return True
        if getattr(exc, "connection_invalidated", False):  # SQLAlchemy saw a disconnect
            return True
        orig = getattr(exc, "orig", None)  # SQLAlchemy's DBAPIError
        exc = orig if isinstance(orig, BaseException) else exc.__cause__
    return False


def first_line(exc: BaseException) -> str:
    """The error in one short line, for logs."""
    while exc.__cause__ is not None and not str(exc).strip():
        exc = exc.__cause__
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:200] if text else ''}".rstrip(": ")


Hook = Callable[[], Awaitable[None]]
_hooks: list[Hook] = []
_probe: asyncio.Task[float] | None = None
_probe_loop: asyncio.AbstractEventLoop | None = None


def after_outage(hook: Hook) -> Hook:
    """Run `hook` each time the database answers again after an outage (usable as a decorator)."""
    if hook not in _hooks:
        _hooks.append(hook)
    return hook


async def _probe_once(dsn: str) -> None:
    conn = await psycopg.AsyncConnection.connect(
        dsn, connect_timeout=PROBE_TIMEOUT, autocommit=True
    )
    async with conn:
        await conn.execute("SELECT 1")


async def _until_up(dsn: str, cause: str) -> float:
    started = time.monotonic()
    delay = FIRST_BACKOFF
    attempts = 0
    while True:
        try:
            await _probe_once(dsn)
            break
        except (psycopg.Error, OSError) as exc:
            attempts += 1
            if attempts == 1:
                log.warning(
                    "database unreachable (%s; %s): waiting for it, probing with backoff",
                    cause,
                    first_line(exc),
                )
            await asyncio.sleep(delay)
            delay = min(delay * 2, MAX_BACKOFF)
    waited = time.monotonic() - started
    if attempts:
        log.warning("database answers again (waited %.1f s, %d failed probes)", waited, attempts)
    for hook in list(_hooks):
        try:
            await hook()
        except Exception:  # a hook that fails must not keep the process waiting
            log.exception("after the database outage: %s failed", getattr(hook, "__name__", hook))
    return waited


async def wait_for_database(cause: str = "connection lost") -> float:
    """Block until the database answers; return how long this waited.

    Every caller in the process shares one probe, so a hundred jobs that lost their
    connection at once cost one connection attempt per backoff step.
    """
    global _probe, _probe_loop
    loop = asyncio.get_running_loop()
    if _probe is None or _probe.done() or _probe_loop is not loop:
        _probe = loop.create_task(_until_up(database_dsn(), cause))
        _probe_loop = loop
    started = time.monotonic()
    await asyncio.shield(_probe)
    return time.monotonic() - started


async def persist(write: Callable[[], Awaitable[T]], *, what: str) -> T:
    """Run `write` until it succeeds, waiting out database outages in between.

    For writes that record something that already happened outside (the provider
    accepted a message): losing them would make a retry do it twice. Errors that are
    not connection errors are raised at once.
    """
    while True:
        try:
            return await write()
        except Exception as exc:
            if not is_connection_error(exc):
                raise
            log.warning("%s: database lost (%s); retrying once it answers", what, first_line(exc))
            await wait_for_database(what)


def backoff(attempt: int) -> float:
    """Seconds before retry number `attempt` (1, 2, …): 0.2, 0.4, … up to `MAX_BACKOFF`."""
    return float(min(MAX_BACKOFF, 0.1 * 2 ** max(1, attempt)))
