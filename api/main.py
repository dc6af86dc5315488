"""The FastAPI app: routes, and a lifespan that opens pools once (and the in-process worker)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from api import dashboard, metrics
from api.routes import (
    agents,
    audit,
    calendar,
    conversations,
    handoffs,
    health,
    recruiting,
    replay,
    reports,
    rules,
    webhooks,
)
from traza import __version__
from traza.db.engine import dispose_engine
from traza.jobs.app import app as jobs
from traza.outbound.sender import close_http_client
from traza.rules import active
from traza.rules.loader import RulesError
from traza.runtime import close_graph
from traza.settings import get_settings

log = logging.getLogger(__name__)


async def run_worker(*, name: str, concurrency: int) -> None:
    """A procrastinate worker for every traza queue, until cancelled or signalled."""
    from traza.jobs.tasks import recover

    settings = get_settings()
    # Jobs of workers that died (kill -9, lost machine) are retried before we start.
    await recover(stalled_after=settings.traza_stalled_seconds)
    await jobs.run_worker_async(
        name=name,
        concurrency=concurrency,
        install_signal_handlers=False,
        update_heartbeat_interval=max(1.0, settings.traza_stalled_seconds / 4),
        stalled_worker_timeout=settings.traza_stalled_seconds,
        fetch_job_polling_interval=1.0,
        delete_jobs="successful",
    )


def create_app(*, worker: bool = False) -> FastAPI:
    """Build the API; with `worker=True` a procrastinate worker runs in the same process."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await jobs.open_async()
        try:
            await active.reload()
        except RulesError as exc:
            log.error("traza cannot start: the rules are invalid\n%s", exc)
            await jobs.close_async()
            await dispose_engine()
            raise
        task: asyncio.Task[None] | None = None
        if worker:
            concurrency = get_settings().traza_worker_concurrency
            task = asyncio.create_task(run_worker(name="serve", concurrency=concurrency))
        try:
            yield
        finally:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await jobs.close_async()
            await close_graph()
            await close_http_client()
            await dispose_engine()

    app = FastAPI(
        title="traza",
        version=__version__,
        summary="WhatsApp conversations decided by bots, humans and systems — traced.",
        lifespan=lifespan,
    )

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"loc": list(e.get("loc", [])), "msg": e.get("msg"), "type": e.get("type")}
            for e in exc.errors()
        ]
        return JSONResponse(status_code=422, content={"detail": errors})

    modules = (
        webhooks,
        conversations,
        audit,
        replay,
        handoffs,
        agents,
        rules,
        recruiting,
        calendar,
        reports,
        health,
        metrics,
    )
    for module in modules:
        app.include_router(module.router)
    dashboard.install(app)  # /dashboard: pages, static files, login redirect
    return app


app = create_app()
