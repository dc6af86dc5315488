"""The procrastinate app. Its pool connects lazily, to whatever `database_dsn()` resolves."""

from __future__ import annotations

from typing import Any

import procrastinate
from psycopg_pool import AsyncConnectionPool

from traza.db.engine import database_dsn
from traza.metrics import measure_job
from traza.settings import get_settings


def _pool(**kwargs: Any) -> AsyncConnectionPool:
    kwargs.setdefault("min_size", 1)
    kwargs.setdefault("max_size", 10)
    kwargs.setdefault("kwargs", {"prepare_threshold": get_settings().prepare_threshold()})
    return AsyncConnectionPool(conninfo=database_dsn(), **kwargs)


app = procrastinate.App(
    connector=procrastinate.PsycopgConnector(pool_factory=_pool),
    import_paths=[
        "traza.jobs.tasks",
        "traza.jobs.operations",
        "traza.jobs.recruiting",
        "traza.jobs.audit",
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
