"""The outbox: graph nodes write what to say here; the sender job delivers it.

An outbound message is a `messages` row with `direction='out'`, unique on its
idempotency key, so a retried turn can never queue the same reply twice. Having queued
a row, the writer asks for its delivery (`request_delivery`): inside a turn the turn's
own job delivers right after the graph run; elsewhere a delivery job is queued.

A bot's reply (`queue_reply`) is one statement: the row, the messages it answers, the
follow-up it carries and the turn's trace commit together.
"""

from __future__ import annotations

import json
import time
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from traza import trace
from traza.db import queue
from traza.db.engine import direct, run
from traza.trace import kinds
from traza.trace.buffer import current_scope

QUEUE = text(
    """
    INSERT INTO messages (conversation_id, direction, idempotency_key, type, content, text,
                          actor, status, channel)
    VALUES (:cid, 'out', :key, :type, CAST(:content AS jsonb), :text, :actor, 'queued',
            :channel)
    ON CONFLICT (idempotency_key) DO NOTHING
    RETURNING id
    """
)


async def queue_message(
    session: AsyncSession | AsyncConnection,
    *,
    conversation_id: int,
    key: str,
    actor: str,
    kind: str,
    text_body: str,
    content: dict[str, Any] | None = None,
    channel: str = "whatsapp",
) -> int | None:
    """Queue one outbound message; None when this key was queued before."""
    message_id: int | None = (
        await session.execute(
            QUEUE,
            {
                "cid": conversation_id,
                "key": key,
                "type": kind,
                "content": json.dumps(content or {}),
                "text": text_body,
                "actor": actor,
                "channel": channel,
            },
        )
    ).scalar_one_or_none()
    if message_id is not None:
        await trace.record(
            session,
            conversation_id=conversation_id,
            kind=kinds.MESSAGE_QUEUED,
            actor=actor,
            data={"type": kind, "key": key},
            message_id=message_id,
        )
    return message_id


# One statement: the outbox row (unique on its key, so a retried turn queues nothing new),
# "these messages are answered", the follow-up it carries marked sent, and the turn's
# trace — buffered events plus the two this statement adds — commit together.
WRITE_REPLY = text(
    """
    WITH m AS (
      INSERT INTO messages (conversation_id, direction, idempotency_key, type, content, text,
                            actor, status, channel)
      VALUES (:cid, 'out', :key, :type, CAST(:content AS jsonb), :body, :actor, 'queued',
              :channel)
      ON CONFLICT (idempotency_key) DO NOTHING
      RETURNING id
    ), followup AS (
      UPDATE followups SET status = 'sent', reason = NULL, message_id = m.id, channel = :channel
        FROM m
       WHERE followups.id = CAST(:followup AS bigint)
    ), answered AS (
      UPDATE messages SET processed_at = now()
       WHERE id = ANY(CAST(:ids AS bigint[])) AND processed_at IS NULL
    ), events AS (
      SELECT 1 AS part, e.n, e.conversation_id, e.at, e.kind, e.actor, e.data, e.duration_ms,
             e.message_id, e.thread_id, e.step, e.llm
        FROM ROWS FROM (jsonb_to_recordset(CAST(:events AS jsonb)) AS (
               conversation_id bigint, at timestamptz, kind text, actor text, data jsonb,
               duration_ms float8, message_id bigint, thread_id text, step int, llm boolean))
             WITH ORDINALITY AS e(conversation_id, at, kind, actor, data, duration_ms,
                                  message_id, thread_id, step, llm, n)
      UNION ALL
      SELECT 2, 1, :cid, now(), 'message.queued', :actor, CAST(:queued AS jsonb), NULL,
             m.id, :thread, :step, false
        FROM m
      UNION ALL
      SELECT 3, 1, :cid, now(), 'reply.sent_to_outbox', :actor,
             jsonb_build_object('message_id', (SELECT id FROM m),
                                'answers', CAST(:answers AS jsonb)),
             :ms, (SELECT id FROM m), :thread, :step, false
    ), written AS (
      INSERT INTO trace_events (conversation_id, at, kind, actor, data, duration_ms,
                                message_id, thread_id, step, llm)
      SELECT conversation_id, at, kind, actor, data, duration_ms, message_id, thread_id,
             step, llm
        FROM events ORDER BY part, n
    )
    SELECT id FROM m
    """
)


def reply_key(*, conversation_id: int, answers: list[int]) -> str:
    """A reply's idempotency key: the last message it answers (one reply per turn)."""
    return f"reply:{conversation_id}:{max(answers) if answers else 'none'}"


async def queue_reply(
    *,
    conversation_id: int,
    answers: list[int],
    actor: str,
    kind: str,
    text_body: str,
    content: dict[str, Any],
    key: str | None = None,
    followup_id: int | None = None,
    thread_id: str | None = None,
    step: int | None = None,
    started: float,
) -> int | None:
    """Queue a reply to `answers` in one statement (`WRITE_REPLY`); None when queued before.

    Keyed by `key` (a follow-up's) or by `reply_key`. The inbound messages it answers are
    marked processed, the follow-up it carries (`followup_id`) is marked sent on the
    message's channel (`content["channel"]`, WhatsApp by default), and the turn's buffered
    trace events are written with `message.queued` and `reply.sent_to_outbox` (at
    `thread_id`/`step`, timed from `started`, a `time.perf_counter()` reading), then leave
    the buffer. The queued row is remembered in the turn's scope by its key.
    """
    key = key or reply_key(conversation_id=conversation_id, answers=answers)
    scope = current_scope()
    buffered = list(scope.events) if scope else []
    async with direct() as conn:
        written = await (
            await run(
                conn,
                WRITE_REPLY,
                {
                    "cid": conversation_id,
                    "key": key,
                    "type": kind,
                    "content": json.dumps(content),
                    "body": text_body,
                    "actor": actor,
                    "channel": str(content.get("channel") or "whatsapp"),
                    "ids": answers,
                    "events": json.dumps(buffered, default=str),
                    "queued": json.dumps({"type": kind, "key": key}),
                    "answers": json.dumps(answers),
                    "ms": round((time.perf_counter() - started) * 1000, 3),
                    "thread": thread_id,
                    "step": step,
                    "followup": followup_id,
                },
            )
        ).fetchone()
    message_id: int | None = written.id if written is not None else None
    if scope is not None:
        del scope.events[: len(buffered)]
        if message_id is not None:
            scope.queued[key] = message_id
    return message_id


async def request_delivery(conversation_id: int, *, delay: float = 0) -> None:
    """Ask for the conversation's outbox to be delivered (after the caller commits).

    Inside a worker turn the turn's own job delivers right after the graph run (no
    second job); everywhere else a `deliver_outbox` job is queued.
    """
    scope = current_scope()
    if scope is not None:
        scope.deliveries.add(conversation_id)
        return
    await queue.defer_delivery(conversation_id, delay=delay)
