"""The database goes away under load, and nothing is lost, doubled, or restarted.

The test owns a PostgreSQL server (`tests.fakes.postgres`) and runs `traza serve
--no-worker` and `traza worker` against it as real processes, with the WhatsApp Cloud
API faked locally. Customers write at a steady rate while the server is restarted (fast,
under a second) and then stopped for four seconds and started again. A webhook post that
is not answered 200 is posted again a second later, as Meta redelivers. Afterwards every
acknowledged message has exactly one reply, and neither traza process was restarted.

Two states an outage leaves behind are checked on their own: a retry that meets a newer
waiting job with the same queueing lock, and a worker whose row was pruned meanwhile.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from tests.fakes.postgres import OwnedPostgres
from tests.fakes.servers import GraphAPI, LocalServer, free_port
from tests.support import ROOT, say, sign, text_message, traza_cli, wa_payload

RATE = 20.0  # messages per second, one new contact each
REDELIVERY_SECONDS = 1.0


@dataclass
class Load:
    """Customers writing at a steady rate; failed posts are posted again, as Meta does."""

    url: str
    acked: dict[str, float] = field(default_factory=dict)  # wa_id -> when acknowledged
    refused: int = 0
    posts: int = 0
    pending: list[tuple[float, bytes, str]] = field(default_factory=list)
    running: bool = True

    async def _post(self, client: httpx.AsyncClient, body: bytes, wa_id: str) -> None:
        self.posts += 1
        headers = {"Content-Type": "application/json", "X-Hub-Signature-256": sign(body)}
        try:
            response = await client.post("/webhooks/whatsapp", content=body, headers=headers)
            ok = response.status_code == 200
        except httpx.HTTPError:
            ok = False
        if ok:
            self.acked.setdefault(wa_id, time.monotonic())
        else:
            self.refused += 1
            self.pending.append((time.monotonic() + REDELIVERY_SECONDS, body, wa_id))

    async def run(self, seconds: float) -> None:
        tasks: set[asyncio.Task[None]] = set()
        async with httpx.AsyncClient(base_url=self.url, timeout=10) as client:
            started = time.monotonic()
            sent = 0
            while self.running and time.monotonic() - started < seconds:
                due = started + sent / RATE
                await asyncio.sleep(max(0.0, due - time.monotonic()))
                wa_id = f"52155{uuid.uuid4().int % 10**8:08d}"
                payload = wa_payload(messages=[text_message("hola", wa_id=wa_id)])
                body = json.dumps(payload).encode()
                task = asyncio.create_task(self._post(client, body, wa_id))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                sent += 1
                now = time.monotonic()
                for item in [p for p in self.pending if p[0] <= now]:
                    self.pending.remove(item)
                    retry = asyncio.create_task(self._post(client, item[1], item[2]))
                    tasks.add(retry)
                    retry.add_done_callback(tasks.discard)
            # Redeliver until everything is acknowledged.
            deadline = time.monotonic() + 60
            while (self.pending or tasks) and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
                now = time.monotonic()
                for item in [p for p in self.pending if p[0] <= now]:
                    self.pending.remove(item)
                    retry = asyncio.create_task(self._post(client, item[1], item[2]))
                    tasks.add(retry)
                    retry.add_done_callback(tasks.discard)


async def _process(*args: str, env: dict[str, str], log: Path) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "traza.cli", *args,
        env=env, cwd=ROOT, stdout=log.open("wb"), stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip


async def _until(predicate: Any, timeout: float, what: str) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if await predicate():
            return time.monotonic() - started
        await asyncio.sleep(0.2)
    raise AssertionError(f"{what}: not within {timeout} s")


@pytest.fixture
async def owned_server() -> AsyncIterator[OwnedPostgres]:
    server = OwnedPostgres()
    server.start()
    try:
        yield server
    finally:
        server.close()


@dataclass
class Answers:
    """When each contact's reply was first seen accepted by the provider."""

    dsn: str
    first: dict[str, float] = field(default_factory=dict)
    running: bool = True

    async def watch(self) -> None:
        while self.running:
            now = time.monotonic()
            for wa_id in await asyncio.to_thread(_answered, self.dsn):
                self.first.setdefault(wa_id, now)
            await asyncio.sleep(0.25)

    def resumed_after(self, at: float) -> float:
        """Seconds from `at` to the first reply seen after it."""
        return min((t for t in self.first.values() if t > at), default=float("inf")) - at


def _answered(dsn: str) -> dict[str, int]:
    """Outbound messages the provider accepted, per contact."""
    try:
        with psycopg.connect(dsn, connect_timeout=2) as conn:
            rows = conn.execute(
                "SELECT ct.wa_id, count(*) FROM messages m "
                "JOIN conversations c ON c.id = m.conversation_id "
                "JOIN contacts ct ON ct.id = c.contact_id "
                "WHERE m.direction = 'out' AND m.status = 'accepted' GROUP BY 1"
            ).fetchall()
    except psycopg.OperationalError:
        return {}
    return {str(r[0]): int(r[1]) for r in rows}


async def test_restart_and_stop_start_under_load_lose_and_double_nothing(
    owned_server: OwnedPostgres, tmp_path: Path
) -> None:
    dsn = owned_server.create_database("traza")
    graph = GraphAPI()
    async with LocalServer(graph.app()) as fake_graph:
        port = free_port()
        env = {
            **os.environ,
            "DATABASE_URL": dsn,
            "TRAZA_HOME": str(tmp_path / "home"),
            "WHATSAPP_API_BASE": fake_graph.url,
            "WHATSAPP_ACCESS_TOKEN": graph.token,
            "TRAZA_STALLED_SECONDS": "10",
            "TRAZA_COALESCE_SECONDS": "0",
            "TRAZA_WORKER_CONCURRENCY": "4",
        }
        for key in ("TRAZA_CONFIG_DIR", "OPENAI_API_KEY", "TRAZA_LLM_MODEL"):
            env.pop(key, None)
        upgraded = await asyncio.to_thread(traza_cli, "db", "upgrade", env=env)
        assert upgraded.returncode == 0, upgraded.stderr
        api = await _process(
            "serve", "--no-worker", "--port", str(port), env=env, log=tmp_path / "api.log"
        )
        worker = await _process("worker", env=env, log=tmp_path / "worker.log")
        processes = {"api": api, "worker": worker}
        try:

            async def api_up() -> bool:
                try:
                    async with httpx.AsyncClient() as c:
                        return (await c.get(f"http://127.0.0.1:{port}/healthz")).status_code == 200
                except httpx.HTTPError:
                    return False

            await _until(api_up, 60, "the API starts")
            load = Load(url=f"http://127.0.0.1:{port}")
            answers = Answers(dsn)
            watcher = asyncio.create_task(answers.watch())
            traffic = asyncio.create_task(load.run(seconds=16))
            await asyncio.sleep(4)
            restart = await asyncio.to_thread(owned_server.restart)
            restarted_at = time.monotonic()
            await asyncio.sleep(4)
            down = time.monotonic()
            await asyncio.to_thread(owned_server.stop)
            await asyncio.sleep(1)
            async with httpx.AsyncClient(base_url=load.url, timeout=10) as c:
                during = await c.get("/metrics")  # answers, and says what it cannot read
            await asyncio.sleep(3)
            await asyncio.to_thread(owned_server.start)
            started_at = time.monotonic()
            outage = started_at - down
            await traffic
            load_ended = time.monotonic()

            async def all_answered() -> bool:
                return all(w in answers.first for w in load.acked)

            catch_up = await _until(all_answered, 60, "every acknowledged message is answered")
            await asyncio.sleep(2)  # room for a wrong second reply to show up
            answers.running = False
            await watcher
            answered = _answered(dsn)
            sends: dict[str, int] = {}
            for body in graph.sent:
                sends[body["to"]] = sends.get(body["to"], 0) + 1
            latency = sorted(answers.first[w] - t for w, t in load.acked.items())
            print(
                f"\nposted {load.posts} (refused {load.refused}, posted again), acked "
                f"{len(load.acked)}, answered {sum(1 for w in load.acked if answered.get(w))}, "
                f"answered twice {sum(1 for n in sends.values() if n > 1)}\n"
                f"restart: unavailable {restart:.2f} s, replies again "
                f"{answers.resumed_after(restarted_at):.2f} s after it was back\n"
                f"stop/start: unavailable {outage:.2f} s, replies again "
                f"{answers.resumed_after(started_at):.2f} s after it was back\n"
                f"ack to reply: median {latency[len(latency) // 2]:.2f} s, max "
                f"{latency[-1]:.2f} s; backlog gone {catch_up:.1f} s after the load ended "
                f"({load_ended - started_at:.1f} s after the server was back)"
            )
            assert during.status_code == 200
            assert "traza_metrics_database_up 0.0" in during.text
            async with httpx.AsyncClient(base_url=load.url, timeout=10) as c:
                after = (await c.get("/metrics")).text
            assert "traza_metrics_database_up 1.0" in after
            assert "traza_oldest_unprocessed_seconds 0.0" in after
            check = await asyncio.to_thread(traza_cli, "worker", "--check", env=env)
            assert check.returncode == 0 and check.stdout.startswith("ok: 1 worker alive")
            assert len(load.acked) >= RATE * 12
            assert {w for w in load.acked if answered.get(w) != 1} == set()
            assert {w for w in load.acked if sends.get(w) != 1} == set()
            assert all(n == 1 for n in sends.values())
            for name, process in processes.items():
                assert process.returncode is None, f"{name} exited"
        finally:
            for process in processes.values():
                if process.returncode is None:
                    os.killpg(process.pid, signal.SIGTERM)
            for process in processes.values():
                try:
                    await asyncio.wait_for(process.wait(), 15)
                except TimeoutError:
                    os.killpg(process.pid, signal.SIGKILL)


async def test_a_retry_that_meets_a_newer_waiting_job_is_not_fatal(
    client: httpx.AsyncClient, graph_api: GraphAPI, db: psycopg.Connection[Any]
) -> None:
    """A job retried while a newer one with its queueing lock waits: this one ends, that runs.

    procrastinate refuses the retry (a unique violation of the queueing lock); left to
    itself, the job would stay `doing` for good and hold its conversation's lock.
    """
    from tests.support.handoffs import queue_bot_message
    from traza.db.queue import app as jobs
    from traza.outbound.outbox import request_delivery
    from traza.worker.run import Worker

    await say(client, "hola")
    cid = db.execute("SELECT id FROM conversations").fetchone()["id"]
    message = await queue_bot_message(cid, key="late:1", text="¿Seguimos?")
    graph_api.fail_next(131056, "pair rate limit hit")  # transient: the job is retried
    graph_api.delay = 1.0
    worker = Worker(
        app=jobs, wait=False, concurrency=1, listen_notify=False, install_signal_handlers=False
    )
    running = asyncio.create_task(worker.run())
    await _until(lambda: _async(len(graph_api.requests) > 1), 20, "the send is in flight")
    graph_api.delay = 0.0
    await request_delivery(cid)  # a newer delivery job waits with the same queueing lock
    await asyncio.wait_for(running, 30)

    row = db.execute("SELECT status FROM messages WHERE id = %s", (message,)).fetchone()
    assert row["status"] == "accepted"
    jobs_left = db.execute(
        "SELECT status, count(*) AS n FROM procrastinate_jobs WHERE task_name = 'deliver_outbox' "
        "GROUP BY status"
    ).fetchall()
    # The retried one ended (its work done by the newer one), the newer one sent it.
    assert sorted((r["status"], r["n"]) for r in jobs_left) == [("failed", 1), ("succeeded", 1)]


async def _async(value: bool) -> bool:
    return value


async def test_a_worker_taken_for_dead_registers_again_and_keeps_working(
    client: httpx.AsyncClient, db: psycopg.Connection[Any]
) -> None:
    """Its row pruned (its heartbeat looked stale while the database was away): it carries on."""
    from tests.support import post_webhook
    from traza.db.queue import app as jobs
    from traza.worker.run import Worker

    worker = Worker(
        app=jobs,
        concurrency=1,
        listen_notify=False,
        install_signal_handlers=False,
        update_heartbeat_interval=0.2,
        fetch_job_polling_interval=0.2,
    )
    running = asyncio.create_task(worker.run())
    try:
        await _until(lambda: _async(worker.worker_id is not None), 20, "the worker registers")
        first = worker.worker_id
        db.execute("DELETE FROM procrastinate_workers")  # what another worker's prune does
        await _until(lambda: _async(worker.worker_id != first), 20, "it registers again")
        response = await post_webhook(client, wa_payload(messages=[text_message("hola")]))
        assert response.status_code == 200

        async def answered() -> bool:
            row = db.execute(
                "SELECT count(*) AS n FROM messages WHERE direction = 'out'"
            ).fetchone()
            return bool(row["n"])

        await _until(answered, 30, "the new message is answered")
        alive = db.execute("SELECT id FROM procrastinate_workers").fetchall()
        assert [r["id"] for r in alive] == [worker.worker_id]
    finally:
        worker.stop()
        await asyncio.wait_for(running, 30)
