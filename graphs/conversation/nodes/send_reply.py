"""Queue the approved reply in the outbox; the turn's job delivers it right after."""

from __future__ import annotations

import json
import time
from typing import Any

from langgraph.runtime import Runtime
from sqlalchemy import text

from graphs.conversation.context import Context
from graphs.conversation.state import ConversationState
from graphs.conversation.tracing import run_position
from traza import trace
from traza.db.engine import direct, run
from traza.outbound.outbox import request_delivery
from traza.trace.buffer import current_scope

# One statement: the outbox row (unique on its key, so a retried turn queues nothing new),
# "these messages are answered", the follow-up it carries marked sent, and the turn's
# trace — buffered events plus the two this node adds — commit together.
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


async def send_reply(state: ConversationState, runtime: Runtime[Context]) -> dict[str, Any]:
    """Write the reply to the outbox, keyed by the turn's last message, and ask for delivery."""
    started = time.perf_counter()
    draft = state.get("draft") or {}
    ids = [i["id"] for i in state.get("turn") or []]
    actor = trace.bot((state.get("decision") or {}).get("bot") or runtime.context.bot_name)
    cid = state["conversation_id"]
    key = draft.get("key") or f"reply:{cid}:{max(ids) if ids else 'none'}"
    kind = draft.get("kind") or "text"
    content = draft.get("content") or {"body": draft.get("text"), "source": draft.get("source")}
    scope = current_scope()
    buffered = list(scope.events) if scope else []
    thread, step = run_position()
    followup = (state.get("followup") or {}).get("id")
    async with direct() as conn:
        written = await (
            await run(
                conn,
                WRITE_REPLY,
                {
                    "cid": cid,
                    "key": key,
                    "type": kind,
                    "content": json.dumps(content),
                    "body": str(draft.get("text") or ""),
                    "actor": actor,
                    "channel": str(content.get("channel") or "whatsapp"),
                    "ids": ids,
                    "events": json.dumps(buffered, default=str),
                    "queued": json.dumps({"type": kind, "key": key}),
                    "answers": json.dumps(ids),
                    "ms": round((time.perf_counter() - started) * 1000, 3),
                    "thread": thread,
                    "step": step,
                    "followup": followup,
                },
            )
        ).fetchone()
    message_id: int | None = written.id if written is not None else None
    if scope is not None:
        del scope.events[: len(buffered)]
        if message_id is not None:
            scope.queued[key] = message_id
    await request_delivery(cid)
    return {"turn": [], "followup": None}
