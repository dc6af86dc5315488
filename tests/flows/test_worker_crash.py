"""A worker killed with SIGKILL mid-turn loses nothing: the turn is retried, answered once."""

from __future__ import annotations

import asyncio
import os
import signal
import sys

from tests.fakes.servers import LocalServer, OpenAICompatible
from tests.support import post_webhook, text_message, wa_payload


async def _worker(env: dict[str, str]) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "traza.cli", "worker", "--concurrency", "2",
        env=env, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip


async def _until(predicate, timeout: float) -> None:
    for _ in range(int(timeout / 0.1)):
        if predicate():
            return
        await asyncio.sleep(0.1)
    raise AssertionError("condition not met in time")


async def test_kill_9_mid_turn_then_restart_answers_exactly_once(client, db, database_url):
    fake = OpenAICompatible(delay=30)  # the first worker hangs in the model call
    async with LocalServer(fake.app()) as server:
        env = {
            **os.environ,
            "DATABASE_URL": database_url,
            "OPENAI_BASE_URL": server.url + "/v1",
            "OPENAI_API_KEY": "test",
            "TRAZA_LLM_MODEL": "fake-model",
            "TRAZA_LLM_TIMEOUT": "60",
            "TRAZA_STALLED_SECONDS": "2",
        }
        response = await post_webhook(client, wa_payload(messages=[text_message("hola")]))
        assert response.status_code == 200

        first = await _worker(env)
        await _until(lambda: len(fake.requests) >= 1, timeout=30)
        doing = db.execute(
            "SELECT status FROM procrastinate_jobs WHERE task_name='process_conversation'"
        ).fetchone()
        assert doing["status"] == "doing"
        os.killpg(first.pid, signal.SIGKILL)
        await first.wait()

        fake.delay = 0
        await asyncio.sleep(2.5)  # the dead worker's heartbeat goes stale
        second = await _worker(env)
        try:

            def answered() -> bool:
                row = db.execute(
                    "SELECT count(*) AS n FROM messages WHERE direction='out' AND status='accepted'"
                ).fetchone()
                return row["n"] >= 1

            await _until(answered, timeout=40)
            await asyncio.sleep(1.0)  # room for a wrong second reply to show up
        finally:
            os.killpg(second.pid, signal.SIGTERM)
            await second.wait()

    out = db.execute("SELECT actor, text FROM messages WHERE direction='out'").fetchall()
    assert len(out) == 1 and out[0]["actor"] == "bot:traza"
    inbound = db.execute("SELECT processed_at FROM messages WHERE direction='in'").fetchall()
    assert len(inbound) == 1 and inbound[0]["processed_at"] is not None
    # Succeeded jobs are deleted; nothing is left waiting or half-done.
    left = db.execute(
        "SELECT count(*) AS n FROM procrastinate_jobs "
        "WHERE task_name='process_conversation' AND status IN ('todo', 'doing')"
    ).fetchone()
    assert left["n"] == 0
