"""Queue a procrastinate job inside the caller's transaction.

procrastinate's `defer_async` uses its own connection; timers and integration calls
must commit together with the row that describes them (or not at all), so this inserts
into `procrastinate_jobs` directly, exactly as the webhook's atomic enqueue does.
"""

from __future__ import annotations

import json
from typing import Any

import psycopg
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from traza.db.engine import run

OPS_QUEUE = "operations"

# A job due later gets a priority below 0 that rises with how early it is due (minus its
# due minute since the epoch). procrastinate fetches by (priority DESC, id): with every
# timer at 0, each fetch walked past all the not-yet-due timers queued before the due
# ones (100,000 follow-ups planned days ahead: ~100 ms a fetch). Now due timers come
# first, earliest due first, and work due now (turns, deliveries) still goes before them.
TIMER_PRIORITY = "-CAST(floor(extract(epoch FROM {due}) / 60) AS integer)"

DEFER = text(
    f"""
    WITH due AS (SELECT now() + make_interval(secs => :delay) AS at)
    INSERT INTO procrastinate_jobs (queue_name, task_name, priority, lock, queueing_lock,
                                    args, scheduled_at)
    SELECT :queue, :task,
           CASE WHEN :delay > 0 THEN {TIMER_PRIORITY.format(due="due.at")} ELSE 0 END,
           :lock, :qlock, CAST(:args AS jsonb), due.at
      FROM due
    ON CONFLICT (queueing_lock) WHERE status = 'todo' DO NOTHING
    RETURNING id
    """
)


async def defer_in(
    db: AsyncSession | AsyncConnection | psycopg.AsyncConnection[Any],
    task: str,
    args: dict[str, Any],
    *,
    delay: float = 0.0,
    lock: str | None = None,
    queueing_lock: str | None = None,
    queue: str = OPS_QUEUE,
) -> int | None:
    """Queue `task(**args)` in `delay` seconds; None when `queueing_lock` already waits.

    `db`: a SQLAlchemy session or connection, or a `direct()` psycopg connection.
    """
    params = {
        "queue": queue,
        "task": task,
        "lock": lock,
        "qlock": queueing_lock,
        "args": json.dumps(args),
        "delay": delay,
    }
    if isinstance(db, psycopg.AsyncConnection):
        row = await (await run(db, DEFER, params)).fetchone()
        return int(row[0]) if row is not None else None
    job_id: int | None = (await db.execute(DEFER, params)).scalar_one_or_none()
    return job_id


async def cancel_in(db: AsyncSession | AsyncConnection, job_id: int | None) -> bool:
    """Remove a job that has not started (a timer whose clock stopped)."""
    if job_id is None:
        return False
    result = await db.execute(
        text("DELETE FROM procrastinate_jobs WHERE id = :id AND status = 'todo'"), {"id": job_id}
    )
    return bool(getattr(result, "rowcount", 0))
