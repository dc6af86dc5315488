"""The jobs: one conversation turn at a time, ordered delivery, and a safety sweep.

Locks: `conversation:<id>` runs one turn per conversation at a time and (as a queueing
lock) coalesces a burst of messages into one waiting job; `send:<id>` delivers one
conversation's outbox in order.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from procrastinate import JobContext, RetryStrategy
from procrastinate.exceptions import UniqueViolation
from procrastinate.jobs import Status

from traza.conversations import repository
from traza.db import counters, queue
from traza.db.engine import autocommit, session_scope
from traza.db.queue import DELIVER_OUTBOX, PROCESS_CONVERSATION, SEND_QUEUE, TURN_QUEUE, app
from traza.ingest.store import repair_statuses
from traza.outbound.sender import RetryLater, deliver
from traza.services.turns import run_turn
from traza.settings import get_settings
from traza.worker.operations import recover_operations

log = logging.getLogger(__name__)


@app.task(
    name=PROCESS_CONVERSATION,
    queue=TURN_QUEUE,
    retry=RetryStrategy(max_attempts=5, exponential_wait=2),
    pass_context=True,
)
async def process_conversation(context: JobContext, conversation_id: int) -> None:
    """Run one turn over every unprocessed inbound message of the conversation."""
    outcome = await run_turn(conversation_id)
    log.info("conversation %s: %s (job %s)", conversation_id, outcome, context.job.id)


# TRAZA_SEND_MAX_ATTEMPTS (at most 50) decides when a send gives up: on the last
# attempt a transient error fails the message instead of raising RetryLater, so the
# job's own limit is only a ceiling.
@app.task(
    name=DELIVER_OUTBOX,
    queue=SEND_QUEUE,
    retry=RetryStrategy(max_attempts=50, exponential_wait=2, retry_exceptions={RetryLater}),
    pass_context=True,
)
async def deliver_outbox(context: JobContext, conversation_id: int) -> None:
    """Send the conversation's queued messages in order."""
    attempts = context.job.attempts or 0
    limit = get_settings().traza_send_max_attempts
    await deliver(conversation_id, final_attempt=attempts + 1 >= limit)


@app.periodic(cron="* * * * *", periodic_id="sweep")
@app.task(name="sweep", queue=TURN_QUEUE, queueing_lock="sweep", pass_context=True)
async def sweep(context: JobContext, timestamp: int) -> None:
    """Safety net: retry jobs of dead workers, and requeue work no job is carrying.

    Also folds the counters appended since the last sweep into their totals.
    """
    await recover(stalled_after=get_settings().traza_stalled_seconds)
    await recover_operations()
    async with autocommit() as conn:
        await counters.compact(conn)


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
        turn_ids = await repository.awaiting_turn(session, created_before=cutoff)
        send_ids = await repository.awaiting_delivery(session, created_before=cutoff)
        repaired = await repair_statuses(await session.connection())
    for cid in turn_ids:
        await queue.defer_turn(cid, delay=0)
    for cid in send_ids:
        await queue.defer_delivery(cid)
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
