"""The job worker: procrastinate's worker, made to outlive the database.

Left alone, procrastinate's worker stops when a side task (heartbeat, periodic deferrer,
notification listener) fails, ends its fetch loop on a lost connection, and leaves a
job `doing` for good when recording the job's outcome fails, so its conversation's lock
is never free again. Here, at every point the connection can be lost:

- **fetching**: the worker waits for the database (one probe per process, with
  backoff; `traza.db.outage`) and polls again;
- **running**: a job that failed because the database went away runs again from its
  start once it answers (turns, deliveries and timers read their work from the database
  and key what they write, so a second run does not do anything twice), at most
  `RERUNS` times before its own retry strategy applies;
- **recording the outcome**: finishing or retrying a job is repeated until it commits;
  a retry that meets a newer waiting job with the same queueing lock finishes this one
  instead — the waiting job will do the same work — so that conflict is never fatal;
- **side tasks** restart after a failure instead of stopping the worker;
- **heartbeat**: if the worker's row was pruned while the database was away it
  registers again and keeps its running jobs; a job left `doing` under this worker that
  it is not running (a fetch whose answer was lost) goes back to the queue.

Stopping (SIGTERM) while the database is away does not wait for it: unfinished jobs
stay `doing` and are retried as stalled jobs once this worker's heartbeat is stale.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import psycopg
from procrastinate import exceptions, utils
from procrastinate import jobs as procrastinate_jobs
from procrastinate import worker as procrastinate_worker

from traza.db import engine, outage
from traza.db.queue import app
from traza.services import runtime
from traza.settings import get_settings
from traza.worker.tasks import recover

log = logging.getLogger(__name__)

RERUNS = 50
"""Runs of one job that may end on a lost connection before its retry strategy decides."""

HEARTBEAT = (
    "UPDATE procrastinate_workers SET last_heartbeat = now() WHERE id = %(worker_id)s RETURNING id"
)
MINE = "SELECT id FROM procrastinate_jobs WHERE worker_id = %(worker_id)s AND status = 'doing'"
REOWN = (
    "UPDATE procrastinate_jobs SET worker_id = %(worker_id)s "
    "WHERE id = ANY(%(ids)s) AND status = 'doing' AND worker_id IS NULL"
)


def _already_recorded(exc: BaseException) -> bool:
    """Whether procrastinate refused to finish or retry a job because it is no longer `doing`."""
    cause = exc.__cause__
    return isinstance(cause, psycopg.errors.RaiseException) and "Job was not found" in str(cause)


class Worker(procrastinate_worker.Worker):
    """A procrastinate worker that waits out database outages instead of stopping."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        """Take procrastinate's worker options; add the rerun middleware innermost."""
        super().__init__(*args, **kwargs)
        self.worker_middleware = [*self.worker_middleware, self._rerun_after_outage]
        self._suspects: set[int] = set()
        self._beating = asyncio.Lock()  # one heartbeat (and re-registration) at a time

    async def _wait_for_database(self, cause: str) -> bool:
        """Wait until the database answers (True) or the worker is asked to stop (False)."""
        if self._stop_event.is_set():
            return False
        waiter = asyncio.ensure_future(outage.wait_for_database(cause))
        await utils.wait_any(waiter, self._stop_event.wait())
        if not waiter.done() or waiter.cancelled():
            return False
        try:
            await self._beat()  # before anyone else takes this worker for dead
        except Exception as exc:
            log.debug("heartbeat right after the outage failed: %s", outage.first_line(exc))
        return True

    # --- running ---------------------------------------------------------------------

    async def _rerun_after_outage(
        self, call_next: Callable[[], Awaitable[Any]], context: Any, worker: Any
    ) -> Any:
        attempt = 0
        while True:
            try:
                return await call_next()
            except Exception as exc:
                if not outage.is_connection_error(exc) or attempt >= RERUNS:
                    raise
                attempt += 1
                log.warning(
                    "job %s lost the database (%s): it runs again once the database answers "
                    "(rerun %d)",
                    context.job.call_string,
                    outage.first_line(exc),
                    attempt,
                )
                await asyncio.sleep(outage.backoff(attempt))
                if not await self._wait_for_database(f"job {context.job.id}"):
                    raise

    # --- fetching ----------------------------------------------------------------------

    async def _fetch_and_process_jobs(self) -> None:
        try:
            await super()._fetch_and_process_jobs()  # type: ignore[no-untyped-call]
        except Exception as exc:
            if outage.is_connection_error(exc):
                await self._wait_for_database("fetching jobs")
                return
            log.exception("fetching a job failed; polling again in a second")
            try:
                await self._beat()  # e.g. the worker's row was pruned: register again
            except Exception as beat_error:
                log.debug("heartbeat after a failed fetch: %s", outage.first_line(beat_error))
            await asyncio.sleep(1.0)

    # --- recording the outcome -------------------------------------------------------

    async def _persist_job_status(
        self,
        job: procrastinate_jobs.Job,
        status: procrastinate_jobs.Status,
        retry_decision: Any,
        context: Any,
        job_result: Any,
    ) -> None:
        retried = False
        while True:
            try:
                await self._persist_once(job, status, retry_decision)
                break
            except Exception as exc:
                if retried and _already_recorded(exc):
                    break  # the previous attempt committed; only its answer was lost
                if not outage.is_connection_error(exc):
                    raise
                retried = True
                log.warning(
                    "recording the end of job %s lost the database (%s); retrying",
                    job.id,
                    outage.first_line(exc),
                )
                if not await self._wait_for_database(f"recording job {job.id}"):
                    log.warning(
                        "stopping while the database is away: job %s stays 'doing' and is "
                        "retried as a stalled job",
                        job.id,
                    )
                    return
        assert job.id is not None
        self._job_ids_to_abort.pop(job.id, None)

    async def _persist_once(
        self, job: procrastinate_jobs.Job, status: procrastinate_jobs.Status, retry_decision: Any
    ) -> None:
        manager = self.app.job_manager
        if retry_decision:
            try:
                await manager.retry_job(
                    job=job,
                    retry_at=retry_decision.retry_at,
                    lock=retry_decision.lock,
                    priority=retry_decision.priority,
                    queue=retry_decision.queue,
                )
            except exceptions.UniqueViolation:
                # A newer job with the same queueing lock waits already and reads the same
                # work from the database: this one ends here.
                log.info(
                    "job %s not retried: job waiting with queueing lock %s will do its work",
                    job.id,
                    job.queueing_lock,
                )
                await manager.finish_job(
                    job=job, status=procrastinate_jobs.Status.FAILED, delete_job=False
                )
            return
        delete = {
            procrastinate_jobs.DeleteJobCondition.ALWAYS: True,
            procrastinate_jobs.DeleteJobCondition.NEVER: False,
            procrastinate_jobs.DeleteJobCondition.SUCCESSFUL: (
                status == procrastinate_jobs.Status.SUCCEEDED
            ),
        }[self.delete_jobs]
        await manager.finish_job(job=job, status=status, delete_job=delete)

    # --- side tasks and heartbeat ----------------------------------------------------

    def _start_side_tasks(self) -> list[asyncio.Task[Any]]:
        factories: dict[str, Callable[[], Awaitable[Any]]] = {
            "update_heartbeats": self._update_heartbeat,
            "deferrer": self._periodic_deferrer,
            "poll_jobs_to_abort": self._poll_jobs_to_abort,
        }
        if self.listen_notify:

            def listener() -> Awaitable[None]:
                return self.app.job_manager.listen_for_jobs(
                    on_notification=self._handle_notification, queues=self.queues
                )

            factories["listener"] = listener
        return [
            asyncio.create_task(self._keep_running(name, factory), name=name)
            for name, factory in factories.items()
        ]

    async def _keep_running(self, name: str, factory: Callable[[], Awaitable[Any]]) -> None:
        """Run a side task again whenever it fails; one that ends on its own is done."""
        failures = 0
        while True:
            try:
                await factory()
                return
            except Exception as exc:
                failures += 1
                if outage.is_connection_error(exc):
                    if not await self._wait_for_database(name):
                        return
                else:
                    log.exception("worker side task %s failed; starting it again", name)
                    await asyncio.sleep(outage.backoff(failures))

    async def _update_heartbeat(self) -> None:
        while True:
            await asyncio.sleep(self.update_heartbeat_interval)
            try:
                await self._beat()
                await self._hand_back_lost_fetches()
            except Exception as exc:
                if not outage.is_connection_error(exc):
                    log.exception("worker heartbeat failed")
                # a lost connection is reported (and waited for) by the fetch loop

    async def _beat(self) -> None:
        """Update the heartbeat; register again if the worker's row is gone."""
        async with self._beating:
            await self._beat_once()

    async def _beat_once(self) -> None:
        if self.worker_id is None:
            return
        connector = self.app.connector
        rows = await connector.execute_query_all_async(HEARTBEAT, worker_id=self.worker_id)
        if rows:
            return
        old = self.worker_id
        self.worker_id = await self.app.job_manager.register_worker()
        running = [c.job.id for c in self._running_jobs.values() if c.job.id is not None]
        if running:
            await connector.execute_query_async(REOWN, worker_id=self.worker_id, ids=running)
        log.warning(
            "worker %s was taken for dead while the database was away: registered again as "
            "%s, keeping its %d running jobs",
            old,
            self.worker_id,
            len(running),
        )

    async def _hand_back_lost_fetches(self) -> None:
        """Requeue jobs `doing` under this worker that it does not run, seen twice in a row.

        Twice: a fetch may have committed a moment before its job shows as running here.
        """
        rows = await self.app.connector.execute_query_all_async(MINE, worker_id=self.worker_id)
        running = {c.job.id for c in self._running_jobs.values()}
        suspects = {int(r["id"]) for r in rows} - running
        lost, self._suspects = suspects & self._suspects, suspects - self._suspects
        manager = self.app.job_manager
        for job_id in sorted(lost):
            log.warning(
                "job %s was fetched but the answer was lost with the database: back to the queue",
                job_id,
            )
            try:
                await manager.retry_job_by_id_async(job_id=job_id, retry_at=utils.utcnow())
            except exceptions.UniqueViolation:
                await manager.finish_job_by_id_async(
                    job_id=job_id, status=procrastinate_jobs.Status.FAILED, delete_job=False
                )

    async def _shutdown(self, side_tasks: list[asyncio.Task[Any]]) -> None:
        try:
            await super()._shutdown(side_tasks)
        except Exception as exc:
            if not outage.is_connection_error(exc):
                raise
            log.warning(
                "stopped while the database is away: worker %s is not unregistered (its "
                "heartbeat goes stale; other workers retry what it left)",
                self.worker_id,
            )


async def run_worker(*, name: str, concurrency: int, **options: Any) -> None:
    """Run traza's worker for every queue until cancelled or signalled.

    Jobs of workers that died (kill -9, a lost machine) are retried first.
    """
    outage.after_outage(engine.drop_dead_connections)
    outage.after_outage(runtime.drop_dead_connections)
    settings = get_settings()
    while True:
        try:
            await recover(stalled_after=settings.traza_stalled_seconds)
            break
        except Exception as exc:
            if not outage.is_connection_error(exc):
                raise
            await outage.wait_for_database("recovering stalled jobs")
    app.perform_import_paths()  # type: ignore[no-untyped-call]
    worker = Worker(
        app=app,
        **{
            **app.worker_defaults,
            "name": name,
            "concurrency": concurrency,
            "install_signal_handlers": False,
            "update_heartbeat_interval": max(1.0, settings.traza_stalled_seconds / 4),
            "stalled_worker_timeout": settings.traza_stalled_seconds,
            "fetch_job_polling_interval": 1.0,
            "delete_jobs": "successful",
            **options,
        },
    )
    while True:
        try:
            await worker.run()  # type: ignore[no-untyped-call]
            return
        except Exception as exc:
            # Only starting (pruning, registering) can raise here: the loop itself waits.
            if worker.worker_id is not None or not outage.is_connection_error(exc):
                raise
            await outage.wait_for_database("starting the worker")
