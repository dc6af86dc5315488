"""Helpers shared by the tests: signed WhatsApp payloads, the CLI, settings, workers, agents.

Fixtures live in `tests/conftest.py`; these are plain functions and constants.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import psycopg

APP_SECRET = "test-app-secret"
ADMIN = {"Authorization": "Bearer test-admin-key"}
PHONE_NUMBER_ID = "109876543210"
ROOT = Path(__file__).resolve().parents[2]


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
    clear_caches()


def clear_caches() -> None:
    from traza.decisions.llm import chat_model
    from traza.settings import get_settings

    get_settings.cache_clear()
    chat_model.cache_clear()


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


MADRID = "Europe/Madrid"


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
