"""A worker's health is visible: `traza worker --check`, a backlog gauge, a dashboard warning."""

from __future__ import annotations

import os
import re
from typing import Any

import httpx
import psycopg

from tests.fakes.servers import free_port
from tests.support import ADMIN, traza_cli
from tests.support.dashboard import login


def _waiting_message(db: psycopg.Connection[Any], *, seconds_ago: int) -> None:
    """A stored inbound message no turn has taken, received `seconds_ago`."""
    db.execute("INSERT INTO inboxes (phone_number_id) VALUES ('109876543210')")
    db.execute("INSERT INTO contacts (wa_id) VALUES ('5215550009999')")
    db.execute(
        "INSERT INTO conversations (inbox_id, contact_id, thread_id) "
        "SELECT i.id, c.id, 'backlog-thread' FROM inboxes i, contacts c"
    )
    db.execute(
        "INSERT INTO messages (conversation_id, direction, type, text, actor, status, created_at) "
        "SELECT id, 'in', 'text', 'hola', 'customer', 'received', "
        "now() - make_interval(secs => %s) FROM conversations",
        (seconds_ago,),
    )


def test_worker_check_says_what_is_wrong_in_one_line(
    database_url: str, db: psycopg.Connection[Any]
) -> None:
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "TRAZA_BACKLOG_WARN_SECONDS": "60",
        "TRAZA_STALLED_SECONDS": "120",
    }

    none = traza_cli("worker", "--check", env=env)
    assert none.returncode == 1
    assert "not ready: no worker heartbeat in the last 120 s (none registered" in none.stderr

    db.execute("INSERT INTO procrastinate_workers DEFAULT VALUES")  # a heartbeat, now
    alive = traza_cli("worker", "--check", env=env)
    assert alive.returncode == 0, alive.stderr
    assert alive.stdout.startswith("ok: 1 worker alive (last heartbeat ")

    _waiting_message(db, seconds_ago=300)
    stuck = traza_cli("worker", "--check", env=env)
    assert stuck.returncode == 1
    assert re.fullmatch(
        r"not ready: backlog: the oldest inbound message has waited 3\d\d s "
        r"\(TRAZA_BACKLOG_WARN_SECONDS=60\)\n",
        stuck.stderr,
    ), stuck.stderr

    gone = traza_cli(
        "worker",
        "--check",
        env={**env, "DATABASE_URL": f"postgresql://postgres@127.0.0.1:{free_port()}/traza"},
    )
    assert gone.returncode == 1
    assert gone.stderr.startswith("not ready: database unreachable: OperationalError")
    assert "Traceback" not in gone.stderr


async def test_the_backlog_is_a_gauge_and_a_dashboard_warning(
    client: httpx.AsyncClient, db: psycopg.Connection[Any]
) -> None:
    quiet = (await client.get("/metrics")).text
    assert "traza_oldest_unprocessed_seconds 0.0" in quiet
    await login(client, ADMIN["Authorization"].removeprefix("Bearer "))
    page = await client.get("/dashboard")
    assert page.status_code == 200 and 'data-testid="backlog"' not in page.text

    _waiting_message(db, seconds_ago=95)
    found = [
        line
        for line in (await client.get("/metrics")).text.splitlines()
        if line.startswith("traza_oldest_unprocessed_seconds ")
    ]
    assert len(found) == 1 and 95 <= float(found[0].split()[1]) < 150
    page = await client.get("/dashboard", params={"lang": "en"})
    assert 'data-testid="backlog"' in page.text
    assert "Customer messages have waited 95 s without being processed" in page.text
    assert "traza worker --check" in page.text
