"""Queue plumbing: the procrastinate app, queue and task names, and deferring in a transaction.

The app's pool connects lazily, to whatever `database_dsn()` resolves. The task modules
(`traza.worker.*`) register on it; code below the worker queues their jobs by name
(`procrastinate.tasks.configure_task`, which `App.configure_task` falls back to for a
task it does not know), so nothing here or in the domain imports the worker — and no
job is deferred by importing the task modules in the middle of a run (`App.configure_task`
would, and `langgraph dev` refuses blocking imports inside the event loop).

procrastinate's `defer_async` uses its own connection; timers and integration calls
must commit together with the row that describes them (or not at all), so `defer_in`
inserts into `procrastinate_jobs` directly, exactly as the webhook's atomic enqueue does.
"""

from __future__ import annotations

import json
from typing import Any

import procrastinate
import psycopg
from procrastinate import tasks
from procrastinate.exceptions import AlreadyEnqueued
from psycopg_pool import AsyncConnectionPool
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from traza.db.engine import database_dsn, run
from traza.metrics import measure_job
from traza.settings import get_settings

TURN_QUEUE = "turns"
SEND_QUEUE = "sends"
OPS_QUEUE = "operations"
PROCESS_CONVERSATION = "process_conversation"
DELIVER_OUTBOX = "deliver_outbox"


def turn_job_lock(conversation_id: int) -> str:
    """The procrastinate lock (and queueing lock) that serialises one conversation's turns."""
    return f"conversation:{conversation_id}"


def send_job_lock(conversation_id: int) -> str:
    """The procrastinate lock (and queueing lock) that delivers one conversation's outbox."""
    return f"send:{conversation_id}"


def _pool(**kwargs: Any) -> AsyncConnectionPool:
    kwargs.setdefault("min_size", 1)
    kwargs.setdefault("max_size", 10)
    kwargs.setdefault("kwargs", {"prepare_threshold": get_settings().prepare_threshold()})
    return AsyncConnectionPool(conninfo=database_dsn(), **kwargs)


app = procrastinate.App(
    connector=procrastinate.PsycopgConnector(pool_factory=_pool),
    import_paths=[
        "traza.worker.tasks",
        "traza.worker.operations",
        "traza.worker.recruiting",
        "traza.worker.audit",
    ],
    # Every worker (serve, worker, tests) observes how late each scheduled job starts.
    worker_defaults={"worker_middleware": [measure_job]},
)


async def ensure_open() -> None:
    """Open the app's pool if this process has not (e.g. the graph run by `langgraph dev`)."""
    try:
        app.connector.pool  # type: ignore[attr-defined]  # noqa: B018  (AppNotOpen until opened)
    except procrastinate.exceptions.AppNotOpen:
        await app.open_async()


async def _defer_once(task: str, queue: str, key: str, conversation_id: int, delay: float) -> bool:
    """Queue `task` by name under `key` (lock and queueing lock); False when one waits.

    By name: the task modules (`traza.worker.*`) register on `app`, and the worker applies
    each task's retry policy.
    """
    options: dict[str, Any] = {"queue": queue, "lock": key, "queueing_lock": key}
    if delay > 0:
        options["schedule_in"] = {"seconds": delay}
    await ensure_open()
    deferrer = tasks.configure_task(name=task, job_manager=app.job_manager, **options)
    try:
        await deferrer.defer_async(conversation_id=conversation_id)
    except AlreadyEnqueued:
        return False
    return True


async def defer_turn(conversation_id: int, *, delay: float) -> bool:
    """Queue a turn; False when one is already waiting (it will see the new messages)."""
    key = turn_job_lock(conversation_id)
    return await _defer_once(PROCESS_CONVERSATION, TURN_QUEUE, key, conversation_id, delay)


async def defer_delivery(conversation_id: int, *, delay: float = 0) -> None:
    """Queue delivery of a conversation's outbox (one waiting job per conversation)."""
    key = send_job_lock(conversation_id)
    await _defer_once(DELIVER_OUTBOX, SEND_QUEUE, key, conversation_id, delay)


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
