"""The jobs: one conversation turn at a time, ordered delivery, and a safety sweep.

Locks: `conversation:<id>` runs one turn per conversation at a time and (as a queueing
lock) coalesces a burst of messages into one waiting job; `send:<id>` delivers one
conversation's outbox in order.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from procrastinate import JobContext, RetryStrategy
from procrastinate.exceptions import AlreadyEnqueued, UniqueViolation
from procrastinate.jobs import Status
from sqlalchemy import text

from graphs.conversation.tracing import current_scope
from traza import metrics
from traza.db.engine import autocommit, session_scope
from traza.ingest.store import repair_statuses
from traza.jobs.app import app, ensure_open
from traza.jobs.queues import PROCESS_CONVERSATION, SEND_QUEUE, TURN_QUEUE, conversation_lock
from traza.outbound.sender import RetryLater, deliver
from traza.settings import get_settings

log = logging.getLogger(__name__)


@app.task(
    name=PROCESS_CONVERSATION,
    queue=TURN_QUEUE,
    retry=RetryStrategy(max_attempts=5, exponential_wait=2),
    pass_context=True,
)
async def process_conversation(context: JobContext, conversation_id: int) -> None:
    """Run one turn over every unprocessed inbound message of the conversation."""
    from traza.conversations.turns import run_turn  # the graph loads only in workers

    outcome = await run_turn(conversation_id)
    log.info("conversation %s: %s (job %s)", conversation_id, outcome, context.job.id)


async def schedule_turn(conversation_id: int, *, delay: float | None = None) -> bool:
    """Queue a turn; False when one is already waiting (it will see the new messages)."""
    seconds = get_settings().traza_coalesce_seconds if delay is None else delay
    key = conversation_lock(conversation_id)
    options: dict[str, object] = {"lock": key, "queueing_lock": key}
    if seconds > 0:
        options["schedule_in"] = {"seconds": seconds}
    await ensure_open()
    try:
        await process_conversation.configure(**options).defer_async(  # type: ignore[arg-type]
            conversation_id=conversation_id
        )
    except AlreadyEnqueued:
        return False
    return True


# TRAZA_SEND_MAX_ATTEMPTS (at most 50) decides when a send gives up: on the last
# attempt a transient error fails the message instead of raising RetryLater, so the
# job's own limit is only a ceiling.
@app.task(
    name="deliver_outbox",
    queue=SEND_QUEUE,
    retry=RetryStrategy(max_attempts=50, exponential_wait=2, retry_exceptions={RetryLater}),
    pass_context=True,
)
async def deliver_outbox(context: JobContext, conversation_id: int) -> None:
    """Send the conversation's queued messages in order."""
    attempts = context.job.attempts or 0
    limit = get_settings().traza_send_max_attempts
    await deliver(conversation_id, final_attempt=attempts + 1 >= limit)


async def schedule_delivery(conversation_id: int, *, delay: float = 0) -> None:
    """Queue delivery of a conversation's outbox (one waiting job per conversation).

    Inside a worker turn the turn's own job delivers right after the graph run (no
    second job); everywhere else a `deliver_outbox` job is queued.
    """
    scope = current_scope()
    if scope is not None:
        scope.deliveries.add(conversation_id)
        return
    key = f"send:{conversation_id}"
    await ensure_open()
    options: dict[str, Any] = {"lock": key, "queueing_lock": key}
    if delay > 0:
        options["schedule_in"] = {"seconds": delay}
    try:
        await deliver_outbox.configure(**options).defer_async(conversation_id=conversation_id)
    except AlreadyEnqueued:
        pass


@app.periodic(cron="* * * * *", periodic_id="sweep")
@app.task(name="sweep", queue=TURN_QUEUE, queueing_lock="sweep", pass_context=True)
async def sweep(context: JobContext, timestamp: int) -> None:
    """Safety net: retry jobs of dead workers, and requeue work no job is carrying.

    Also folds the counters appended since the last sweep into their totals.
    """
    await recover(stalled_after=get_settings().traza_stalled_seconds)
    from traza.jobs.operations import recover_operations

    await recover_operations()
    async with autocommit() as conn:
        await metrics.compact(conn)


async def recover(*, stalled_after: float) -> dict[str, int]:
    """Repair what a crash or a race left behind.

    Retries stalled jobs, requeues unprocessed inbound and undelivered outbound
    messages, and applies statuses a race left unapplied.
    """
    stalled = 0
    for job in await app.job_manager.get_stalled_jobs(seconds_since_heartbeat=stalled_after):
        try:
            await app.job_manager.retry_job(job)
        except UniqueViolation:
            # A newer job with the same queueing lock is already waiting and will do the
            # same work (turns and deliveries read their work from the database).
            await app.job_manager.finish_job(job, status=Status.FAILED, delete_job=False)
        stalled += 1
    cutoff = datetime.now(UTC) - timedelta(seconds=max(stalled_after, 5))
    async with session_scope() as session:
        turns: Any = (
            await session.execute(
                text(
                    "SELECT DISTINCT conversation_id FROM messages WHERE direction = 'in' "
                    "AND processed_at IS NULL AND created_at < :cutoff"
                ),
                {"cutoff": cutoff},
            )
        ).scalars()
        turn_ids = list(turns)
        sends: Any = (
            await session.execute(
                text(
                    "SELECT DISTINCT conversation_id FROM messages WHERE direction = 'out' "
                    "AND status IN ('queued', 'sending') AND created_at < :cutoff"
                ),
                {"cutoff": cutoff},
            )
        ).scalars()
        send_ids = list(sends)
        repaired = await repair_statuses(await session.connection())
    for cid in turn_ids:
        await schedule_turn(cid, delay=0)
    for cid in send_ids:
        await schedule_delivery(cid)
    if stalled or turn_ids or send_ids or repaired:
        log.warning(
            "sweep: %d stalled jobs retried, %d turns and %d deliveries requeued, "
            "%d statuses applied late",
            stalled,
            len(turn_ids),
            len(send_ids),
            repaired,
        )
    return {
        "stalled": stalled,
        "turns": len(turn_ids),
        "sends": len(send_ids),
        "statuses": repaired,
    }
