"""Trace helpers for nodes: every event names the thread and step that produced it.

The events go to the turn's buffer (`traza.trace.buffer`), written with the node's
effect in one transaction.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from langgraph.config import get_config
from sqlalchemy.ext.asyncio import AsyncSession

from traza.trace import buffer


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
    await buffer.add(event, session)
