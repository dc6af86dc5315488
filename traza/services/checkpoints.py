"""LangGraph time travel on a conversation's thread: its checkpoints, and forks of them.

A fork copies one checkpoint into a new scratch thread (`scratch-<conversation>-<hex>`),
so it can be opened in LangGraph Studio or replayed from, while the conversation's own
thread stays as it was. A scratch thread has no conversation: running it in the service
would not reach a customer.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from traza.conversations import repository
from traza.db.engine import autocommit
from traza.replay.recorded import ReplayError
from traza.services.runtime import conversation_graph, thread_config


@dataclass
class CheckpointInfo:
    """One checkpoint of a thread, newest first in listings."""

    checkpoint_id: str
    step: int | None
    source: str | None
    created_at: datetime | None
    next: list[str]
    values: dict[str, Any]


async def thread_of(conversation_id: int) -> str:
    """The conversation's thread id."""
    async with autocommit() as conn:
        thread = await repository.thread_of(conn, conversation_id=conversation_id)
    if thread is None:
        raise ReplayError(f"conversation {conversation_id} not found")
    return str(thread)


async def history(thread_id: str, *, limit: int = 100) -> list[CheckpointInfo]:
    """The thread's checkpoints, newest first."""
    graph = await conversation_graph()
    found: list[CheckpointInfo] = []
    async for snap in graph.aget_state_history(thread_config(thread_id), limit=limit):
        meta = snap.metadata or {}
        found.append(
            CheckpointInfo(
                checkpoint_id=str(snap.config["configurable"]["checkpoint_id"]),
                step=meta.get("step"),
                source=meta.get("source"),
                created_at=datetime.fromisoformat(snap.created_at) if snap.created_at else None,
                next=list(snap.next),
                values=dict(snap.values or {}),
            )
        )
    return found


async def checkpoint(thread_id: str, checkpoint_id: str) -> CheckpointInfo:
    """One checkpoint of the thread (ReplayError when it has no such checkpoint)."""
    graph = await conversation_graph()
    config = thread_config(thread_id)
    config["configurable"]["checkpoint_id"] = checkpoint_id
    snap = await graph.aget_state(config)
    if not snap.created_at or snap.config["configurable"].get("checkpoint_id") != checkpoint_id:
        raise ReplayError(f"thread {thread_id} has no checkpoint {checkpoint_id}")
    meta = snap.metadata or {}
    return CheckpointInfo(
        checkpoint_id=checkpoint_id,
        step=meta.get("step"),
        source=meta.get("source"),
        created_at=datetime.fromisoformat(snap.created_at),
        next=list(snap.next),
        values=dict(snap.values or {}),
    )


async def fork(conversation_id: int, checkpoint_id: str) -> dict[str, str]:
    """Copy a checkpoint of the conversation's thread into a new scratch thread."""
    thread_id = await thread_of(conversation_id)
    graph = await conversation_graph()
    saver = graph.checkpointer
    assert saver is not None and not isinstance(saver, bool)
    source = thread_config(thread_id)
    source["configurable"] |= {"checkpoint_ns": "", "checkpoint_id": checkpoint_id}
    found = await saver.aget_tuple(source)
    if found is None:
        raise ReplayError(f"thread {thread_id} has no checkpoint {checkpoint_id}")
    scratch = f"scratch-{conversation_id}-{uuid.uuid4().hex[:12]}"
    metadata: Any = {
        **found.metadata,
        "source": "fork",
        "forked_from": {"thread_id": thread_id, "checkpoint_id": checkpoint_id},
    }
    target = thread_config(scratch)
    target["configurable"]["checkpoint_ns"] = ""
    written = await saver.aput(
        target, found.checkpoint, metadata, dict(found.checkpoint["channel_versions"])
    )
    return {
        "thread_id": scratch,
        "checkpoint_id": str(written["configurable"]["checkpoint_id"]),
        "forked_from": checkpoint_id,
    }
