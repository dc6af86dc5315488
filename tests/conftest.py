"""Test fixtures: a real PostgreSQL per test session, the app, a worker, signed payloads.

PostgreSQL: the server on 127.0.0.1:5432 when one answers (CI and dev machines), else
the embedded one started in a temporary folder. Each session gets a fresh database;
each test starts from empty tables.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from tests.fakes.servers import GraphAPI, LocalServer
from tests.support import MADRID, clear_caches, configure

_HOME = Path(tempfile.mkdtemp(prefix="traza-test-"))
for name in (
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
    "TRAZA_LLM_MODEL",
    "WHATSAPP_ACCESS_TOKEN",
    "TRAZA_DEV",
    "TRAZA_CONFIG_DIR",
):
    os.environ.pop(name, None)
os.environ.update(
    {
        "TRAZA_HOME": str(_HOME),
        "WHATSAPP_APP_SECRET": "test-app-secret",
        "WHATSAPP_VERIFY_TOKEN": "test-verify-token",
        "TRAZA_ADMIN_KEY": "test-admin-key",
        "TRAZA_COALESCE_SECONDS": "0",
        "TRAZA_STALLED_SECONDS": "5",
    }
)
# Trained models are cached by the hash of their data: one build per machine, not per run.
os.environ.setdefault("TRAZA_MODEL_CACHE", str(Path(tempfile.gettempdir()) / "traza-test-models"))

TABLES = (
    "followups, recruiting_events, interviews, interviewers, stage_history, applications, "
    "vacancies, candidates, trace_events, message_statuses, messages, csat_ratings, notes, "
    "sla_timers, metric_counts, metric_totals, "
    "integration_calls, handoffs, conversations, contacts, inboxes, api_keys, agent_teams, "
    "agents, teams, audit_anchors, "
    "webhook_events, procrastinate_events, procrastinate_periodic_defers, procrastinate_jobs, "
    "procrastinate_workers, checkpoints, checkpoint_blobs, checkpoint_writes"
)


def _server_uri() -> str:
    """A maintenance URI on a PostgreSQL server the tests may create databases on."""
    local = os.environ.get("TRAZA_TEST_SERVER", "postgresql://postgres@127.0.0.1:5432/postgres")
    try:
        with psycopg.connect(local, connect_timeout=2):
            return local
    except psycopg.OperationalError:
        from traza.db.embedded import start_embedded

        return start_embedded(_HOME).rsplit("/", 1)[0].replace("/traza?", "/postgres?")


def _embedded_admin(uri: str) -> str:
    return uri


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    server = _server_uri()
    name = f"traza_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    if "?" in server:  # unix-socket URI of the embedded server
        base, query = server.split("?", 1)
        url = base.rsplit("/", 1)[0] + f"/{name}?{query}"
    else:
        url = server.rsplit("/", 1)[0] + f"/{name}"
    os.environ["DATABASE_URL"] = url
    from traza.settings import get_settings

    get_settings.cache_clear()
    import asyncio

    from traza.db.migrate import upgrade

    asyncio.run(upgrade(url))
    yield url
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(autouse=True)
def settings_reset() -> Iterator[None]:
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)
    clear_caches()


@pytest.fixture(autouse=True)
def clean_db(database_url: str) -> Iterator[None]:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(f"TRUNCATE {TABLES} RESTART IDENTITY CASCADE")
        conn.execute("INSERT INTO teams (name, description) VALUES ('general', 'Default team')")
    from traza import clock
    from traza.ingest.store import forget_cached_inboxes
    from traza.rules import active

    forget_cached_inboxes()
    active.forget()
    clock.use(clock.SystemClock())
    yield
    active.forget()
    clock.use(clock.SystemClock())


@pytest.fixture
def db(database_url: str) -> Iterator[psycopg.Connection[Any]]:
    """A plain connection for assertions (autocommit; dict rows)."""
    from psycopg.rows import dict_row

    with psycopg.connect(database_url, autocommit=True, row_factory=dict_row) as conn:
        yield conn  # type: ignore[misc]


@pytest.fixture
async def client(database_url: str) -> AsyncIterator[httpx.AsyncClient]:
    from api.main import create_app

    app = create_app(worker=False)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://traza") as c:
            yield c


# --- operations: frozen clock, timers, rules files, agents ---------------------------------


@pytest.fixture
def frozen() -> Iterator[Any]:
    """The process clock frozen at Monday 2026-03-02 10:00 Madrid (09:00 UTC)."""
    from datetime import datetime
    from zoneinfo import ZoneInfo

    from traza import clock

    frozen_clock = clock.FrozenClock(datetime(2026, 3, 2, 10, 0, tzinfo=ZoneInfo(MADRID)))
    clock.use(frozen_clock)
    yield frozen_clock
    clock.use(clock.SystemClock())


@pytest.fixture
async def graph_api() -> AsyncIterator[GraphAPI]:
    """A fake WhatsApp Cloud API the sender is configured to call (base URL and token)."""
    api = GraphAPI()
    async with LocalServer(api.app()) as server:
        configure(WHATSAPP_API_BASE=server.url, WHATSAPP_ACCESS_TOKEN=api.token)
        yield api
