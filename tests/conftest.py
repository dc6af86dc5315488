"""Test fixtures: a real PostgreSQL per test session, the app, a worker, signed payloads.

PostgreSQL: the server on 127.0.0.1:5432 when one answers (CI and dev machines), else
the embedded one started in a temporary folder. Each session gets a fresh database;
each test starts from empty tables.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from tests.fakes.servers import GraphAPI, LocalServer

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

APP_SECRET = "test-app-secret"
ADMIN = {"Authorization": "Bearer test-admin-key"}
PHONE_NUMBER_ID = "109876543210"
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


ROOT = Path(__file__).resolve().parent.parent


def traza_cli(
    *args: str, env: dict[str, str], timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run the `traza` command in a subprocess, as a user would (output captured)."""
    return subprocess.run(
        [sys.executable, "-m", "traza.cli", *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def configure(**env: str | None) -> None:
    """Change settings for the current test (restored by the `settings_reset` fixture)."""
    for key, value in env.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    _clear_caches()


def _clear_caches() -> None:
    from traza.decisions.llm import chat_model
    from traza.settings import get_settings

    get_settings.cache_clear()
    chat_model.cache_clear()


@pytest.fixture(autouse=True)
def settings_reset() -> Iterator[None]:
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)
    _clear_caches()


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


async def drain(concurrency: int = 4) -> None:
    """Run a worker until no job is ready (turns, deliveries, their follow-ups)."""
    from traza.db.queue import app as jobs

    for _ in range(50):
        await jobs.run_worker_async(
            wait=False,
            install_signal_handlers=False,
            concurrency=concurrency,
            listen_notify=False,
            delete_jobs="never",
        )
        with psycopg.connect(os.environ["DATABASE_URL"]) as conn:
            ready = conn.execute(
                "SELECT count(*) FROM procrastinate_jobs WHERE status = 'todo' "
                "AND (scheduled_at IS NULL OR scheduled_at <= now())"
            ).fetchone()
        if not ready or ready[0] == 0:
            return
    raise AssertionError("jobs keep coming: the worker never caught up")


def sign(body: bytes, secret: str = APP_SECRET) -> str:
    from traza.ingest.signature import sign as _sign

    return _sign(body, secret)


def wa_payload(
    *,
    messages: list[dict[str, Any]] | None = None,
    statuses: list[dict[str, Any]] | None = None,
    contacts: list[dict[str, Any]] | None = None,
    phone_number_id: str = PHONE_NUMBER_ID,
) -> dict[str, Any]:
    value: dict[str, Any] = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15551234567", "phone_number_id": phone_number_id},
    }
    if messages is not None:
        value["messages"] = messages
        value["contacts"] = contacts or [
            {"profile": {"name": "María G."}, "wa_id": m["from"]} for m in messages[:1]
        ]
    if statuses is not None:
        value["statuses"] = statuses
    return {
        "object": "whatsapp_business_account",
        "entry": [{"id": "WABA1", "changes": [{"field": "messages", "value": value}]}],
    }


def text_message(text: str, *, wa_id: str = "5215550001111", id: str | None = None) -> dict:
    return {
        "from": wa_id,
        "id": id or f"wamid.{uuid.uuid4().hex}",
        "timestamp": str(int(time.time())),
        "type": "text",
        "text": {"body": text},
    }


def status(wamid: str, state: str, *, ts: int | None = None, **extra: Any) -> dict[str, Any]:
    return {
        "id": wamid,
        "status": state,
        "timestamp": str(ts or int(time.time())),
        "recipient_id": "5215550001111",
        **extra,
    }


async def post_webhook(
    client: httpx.AsyncClient, payload: Any, *, secret: str = APP_SECRET
) -> httpx.Response:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return await client.post(
        "/webhooks/whatsapp",
        content=body,
        headers={"Content-Type": "application/json", "X-Hub-Signature-256": sign(body, secret)},
    )


async def say(client: httpx.AsyncClient, text: str, **kwargs: Any) -> httpx.Response:
    """Post one customer text message and run the worker until it is handled."""
    response = await post_webhook(client, wa_payload(messages=[text_message(text, **kwargs)]))
    assert response.status_code == 200, response.text
    await drain()
    return response


# --- operations: frozen clock, timers, rules files, agents ---------------------------------

MADRID = "Europe/Madrid"


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


async def fire_timers() -> None:
    """Make every waiting operations job due now and run the worker.

    Timers are scheduled in real time; under a frozen clock the test moves the clock and
    then calls this. A job that fires before its deadline on the clock waits again.
    """
    with psycopg.connect(os.environ["DATABASE_URL"], autocommit=True) as conn:
        conn.execute(
            "UPDATE procrastinate_jobs SET scheduled_at = now() WHERE status = 'todo' "
            "AND queue_name = 'operations' AND scheduled_at > now()"
        )
    await drain()


def use_rules(text: str) -> Path:
    """Write `text` as TRAZA_CONFIG_DIR/rules.yaml (a fresh folder) and drop loaded rules."""
    from traza.rules import active

    folder = Path(tempfile.mkdtemp(prefix="traza-rules-"))
    path = folder / "rules.yaml"
    path.write_text(text, encoding="utf-8")
    configure(TRAZA_CONFIG_DIR=str(folder))
    active.forget()
    return path


async def add_team(client: httpx.AsyncClient, name: str) -> None:
    response = await client.post("/teams", json={"name": name}, headers=ADMIN)
    assert response.status_code == 201, response.text


async def add_agent(
    client: httpx.AsyncClient,
    name: str,
    *,
    teams: list[str] | None = None,
    role: str = "agent",
    capacity: int = 5,
    status: str = "online",
) -> dict[str, str]:
    """Create an agent through the API; return their Authorization header."""
    response = await client.post(
        "/agents",
        json={"name": name, "teams": teams or ["general"], "role": role, "capacity": capacity},
        headers=ADMIN,
    )
    assert response.status_code == 201, response.text
    headers = {"Authorization": f"Bearer {response.json()['api_key']}"}
    if status != "offline":
        changed = await client.put("/me/status", json={"status": status}, headers=headers)
        assert changed.status_code == 200, changed.text
    return headers


@pytest.fixture
async def graph() -> AsyncIterator[GraphAPI]:
    """A fake WhatsApp Cloud API the sender is configured to call (base URL and token)."""
    api = GraphAPI()
    async with LocalServer(api.app()) as server:
        configure(WHATSAPP_API_BASE=server.url, WHATSAPP_ACCESS_TOKEN=api.token)
        yield api
