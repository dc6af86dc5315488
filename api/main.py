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
from sqlalchemy.exc import DataError

from api import dashboard
from api.routes import (
    agents,
    audit,
    calendar,
    conversations,
    handoffs,
    health,
    metrics,
    recruiting,
    replay,
    reports,
    rules,
    webhooks,
)
from traza import __version__
from traza.db.engine import dispose_engine
from traza.db.queue import app as jobs
from traza.ingest.payload import sanitise
from traza.outbound.sender import close_http_client
from traza.rules import active
from traza.rules.loader import RulesError
from traza.services.runtime import close_graph
from traza.settings import get_settings
from traza.worker import run as traza_worker

log = logging.getLogger(__name__)

# What the SQLSTATEs of data exceptions mean, in a 422's words (never with the value).
_WHY = {
    "22001": "a text longer than its field allows",
    "22003": "a number out of range",
    "22007": "an invalid date or time",
    "22008": "a date or time out of range",
    "22021": "text with U+0000",
    "22P02": "a value of the wrong type",
    "22P05": "text with U+0000",
    "client-side": "text with U+0000",
}


def _unstorable_value(message: str) -> JSONResponse:
    """A 422 shaped like the validation errors, for a value the database refused."""
    detail = [{"loc": ["request"], "msg": message, "type": "unstorable_value"}]
    return JSONResponse(status_code=422, content={"detail": detail})


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
            task = asyncio.create_task(
                traza_worker.run_worker(name="serve", concurrency=concurrency)
            )
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
        # A message or location may echo input that JSON cannot encode (a lone surrogate).
        return JSONResponse(status_code=422, content={"detail": sanitise(errors)})

    # The last line of "never a 500 for bad input": a value the database refuses (out of
    # range, too long, NUL) or text the driver cannot encode, whatever the endpoint.
    @app.exception_handler(DataError)
    async def _unstorable(request: Request, exc: DataError) -> JSONResponse:
        state = getattr(exc.orig, "sqlstate", None) or "client-side"
        log.warning("%s %s refused: SQLSTATE %s", request.method, request.url.path, state)
        return _unstorable_value(f"a value the database cannot hold ({_WHY.get(state, state)})")

    @app.exception_handler(UnicodeEncodeError)
    async def _unencodable(request: Request, exc: UnicodeEncodeError) -> JSONResponse:
        log.warning("%s %s refused: a lone surrogate", request.method, request.url.path)
        return _unstorable_value("text with a lone UTF-16 surrogate cannot be stored")

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
