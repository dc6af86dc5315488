"""Trace helpers for nodes: every event names the thread and step that produced it."""

from __future__ import annotations

import time
from typing import Any

from langgraph.config import get_config
from sqlalchemy.ext.asyncio import AsyncSession

from traza import trace


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
    session: AsyncSession,
    *,
    conversation_id: int,
    kind: str,
    actor: str,
    data: dict[str, Any],
    started: float | None = None,
    message_id: int | None = None,
    llm: bool = False,
) -> None:
    """Record a node's event with its duration and checkpoint position."""
    tid, step = run_position()
    await trace.record(
        session,
        conversation_id=conversation_id,
        kind=kind,
        actor=actor,
        data=data,
        duration_ms=elapsed_ms(started) if started is not None else None,
        message_id=message_id,
        thread_id=tid,
        step=step,
        llm=llm,
    )
