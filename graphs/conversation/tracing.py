"""Trace helpers for nodes: every event names the thread and step that produced it.

Inside a worker turn (`turn_scope()`), events are buffered and written together with
the turn's effect (outbox row, handoff, opt-out) in that node's transaction: the trace
and what it describes commit atomically, in one round trip. Outside a scope (LangGraph
Studio) each event is written at once.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from langgraph.config import get_config
from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from traza.db.engine import session_scope
from traza.db.models import TraceEvent


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


def run_position() -> tuple[str | None, int | None]:
    """The (thread id, step) of the running node; the step's checkpoint carries both."""
    try:
        config = get_config()
    except RuntimeError:
        return None, None
    thread_id = config.get("configurable", {}).get("thread_id")
    step = config.get("metadata", {}).get("langgraph_step")
    return (str(thread_id) if thread_id else None), (int(step) if step is not None else None)


def thread_id() -> str:
    """The running thread's id (every conversation run has one)."""
    tid, _ = run_position()
    if tid is None:
        raise RuntimeError("a conversation run needs configurable.thread_id")
    return tid


def elapsed_ms(started: float) -> float:
    """Milliseconds since `started` (a `time.perf_counter()` reading)."""
    return round((time.perf_counter() - started) * 1000, 3)


async def record_step(
    session: AsyncSession | None = None,
    *,
    conversation_id: int,
    kind: str,
    actor: str,
    data: dict[str, Any],
    started: float | None = None,
    message_id: int | None = None,
    llm: bool = False,
) -> None:
    """Record a node's event with its duration and checkpoint position.

    Without a session the event is buffered in the turn's scope (or, outside a turn,
    written in its own transaction); with one, it is written there after any buffered ones.
    """
    tid, step = run_position()
    event = {
        "conversation_id": conversation_id,
        "at": datetime.now(UTC),
        "kind": kind,
        "actor": actor,
        "data": data,
        "duration_ms": elapsed_ms(started) if started is not None else None,
        "message_id": message_id,
        "thread_id": tid,
        "step": step,
        "llm": llm,
    }
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
    if events:
        await session.execute(insert(TraceEvent), events)
