"""A turn's unit of work: trace events not yet written, deliveries to make, rows queued.

Inside a worker turn (`turn_scope()`), events are buffered and written together with
the turn's effect (outbox row, handoff, opt-out) in that node's transaction: the trace
and what it describes commit atomically, in one round trip. Outside a scope (LangGraph
Studio) each event is written at once. The service that runs the turn opens the scope,
flushes what is left and makes the deliveries the turn asked for.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from traza.db.engine import session_scope
from traza.trace.writer import write_events


@dataclass
class TurnScope:
    """What one worker turn collects: unwritten trace events, deliveries, queued rows.

    `queued`: the outbox rows the turn queued, by idempotency key.
    """

    events: list[dict[str, Any]] = field(default_factory=list)
    deliveries: set[int] = field(default_factory=set)
    queued: dict[str, int] = field(default_factory=dict)


_scope: ContextVar[TurnScope | None] = ContextVar("traza_turn_scope", default=None)


@contextmanager
def turn_scope() -> Iterator[TurnScope]:
    """Buffer trace events (and collect deliveries) for the graph run inside this block."""
    token = _scope.set(TurnScope())
    try:
        scope = _scope.get()
        assert scope is not None
        yield scope
    finally:
        _scope.reset(token)


def current_scope() -> TurnScope | None:
    """The running turn's scope, if any."""
    return _scope.get()


async def add(event: dict[str, Any], session: AsyncSession | None = None) -> None:
    """Buffer `event` in the turn's scope, or write it (in `session`, or on its own).

    With a session it is written there after any buffered ones.
    """
    scope = current_scope()
    if session is None and scope is not None:
        scope.events.append(event)
        return
    if session is None:
        async with session_scope() as own:
            await flush(own, [event])
        return
    await flush(session, [event])


async def flush(
    session: AsyncSession | AsyncConnection, extra: list[dict[str, Any]] | None = None
) -> None:
    """Write the buffered events (then `extra`) in the caller's transaction, one INSERT."""
    scope = current_scope()
    events = [*(scope.events if scope else []), *(extra or [])]
    if scope is not None:
        scope.events.clear()
    await write_events(session, events)
