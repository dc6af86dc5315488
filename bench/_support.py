"""Shared bench plumbing: a scratch database, a server subprocess, an open-loop load generator."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import psycopg

ROOT = Path(__file__).resolve().parent.parent


# The local server, by its Unix socket first: the embedded server (traza's default) is
# reached by socket, and so is a server on the same host in a usual deployment; loopback
# TCP costs both sides measurably more CPU per round trip on a small machine.
LOCAL_SERVERS = (
    "postgresql://postgres@/postgres?host=/var/run/postgresql",
    "postgresql://postgres@127.0.0.1:5432/postgres",
)


def server_uri() -> str:
    """`TRAZA_BENCH_SERVER`, else the local server (socket, then TCP), else an embedded one.

    A local server with autovacuum off is passed over (a note says so): no deployment runs
    without it, and without it the queue's dead rows and plans cached on empty tables
    degrade every run. The embedded server is traza's own default.
    """
    chosen = os.environ.get("TRAZA_BENCH_SERVER")
    for uri in (chosen,) if chosen else LOCAL_SERVERS:
        try:
            with psycopg.connect(uri, connect_timeout=2) as conn:
                row = conn.execute("SHOW autovacuum").fetchone()
        except psycopg.OperationalError:
            continue
        if chosen or (row and row[0] == "on"):
            return uri
        print(f"note: {uri} has autovacuum off; using an embedded server instead", flush=True)
        break
    if chosen:
        raise SystemExit(f"TRAZA_BENCH_SERVER={chosen} does not answer")
    from traza.db.embedded import start_embedded

    home = Path(tempfile.mkdtemp(prefix="traza-bench-"))
    return start_embedded(home).replace("/traza?", "/postgres?")


@contextmanager
def scratch_database(prefix: str = "traza_bench"):
    """A fresh database (dropped afterwards); yields its URI."""
    server = server_uri()
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    if "?" in server:
        base, query = server.split("?", 1)
        url = base.rsplit("/", 1)[0] + f"/{name}?{query}"
    else:
        url = server.rsplit("/", 1)[0] + f"/{name}"
    try:
        yield url
    finally:
        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def uvicorn_process(app: str, env: dict[str, str]):
    """Run `uvicorn <app>` in its own process (one worker, like `traza serve`)."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", app, "--port", str(port), "--log-level", "warning"],
        cwd=ROOT,
        env={**os.environ, **env},
    )
    url = f"http://127.0.0.1:{port}"
    try:
        # A first start on a fresh TRAZA_HOME trains the judgment and reply models (about a
        # minute on two cores) before the app serves.
        for _ in range(3000):
            if proc.poll() is not None:
                raise RuntimeError(f"uvicorn {app} exited with {proc.returncode}")
            try:
                httpx.get(url + "/docs", timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.1)
        else:
            raise RuntimeError(f"uvicorn {app} did not answer on {url} within 300 s")
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[k]


class RawClient:
    """Keep-alive HTTP/1.1 POSTs over plain asyncio streams.

    Written by hand on purpose: on a 2-core machine httpx's per-request CPU cost is
    comparable to the server's own, so the load generator would distort what it measures.
    """

    def __init__(self, url: str, connections: int) -> None:
        parsed = httpx.URL(url)
        self.host, self.port, self.path = parsed.host, parsed.port or 80, parsed.raw_path.decode()
        self.size = connections
        self.pool: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = (
            asyncio.Queue()
        )

    async def __aenter__(self) -> RawClient:
        for _ in range(self.size):
            self.pool.put_nowait(await asyncio.open_connection(self.host, self.port))
        return self

    async def __aexit__(self, *exc: object) -> None:
        while not self.pool.empty():
            _, writer = self.pool.get_nowait()
            writer.close()

    async def post(self, body: bytes, headers: dict[str, str]) -> int:
        reader, writer = await self.pool.get()
        try:
            head = f"POST {self.path} HTTP/1.1\r\nHost: {self.host}\r\n"
            head += "".join(f"{k}: {v}\r\n" for k, v in headers.items())
            head += f"Content-Length: {len(body)}\r\n\r\n"
            writer.write(head.encode() + body)
            status_line = await reader.readline()
            length = 0
            while (line := await reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.decode().partition(":")
                if name.lower() == "content-length":
                    length = int(value)
            await reader.readexactly(length)
            return int(status_line.split()[1])
        finally:
            self.pool.put_nowait((reader, writer))


async def open_loop(
    url: str, make: Callable[[int], tuple[bytes, dict[str, str]]], rate: float, seconds: float
) -> dict[str, Any]:
    """Send `rate` requests/s for `seconds` regardless of answers; latency per request."""
    latencies: list[float] = []
    errors = 0
    async with RawClient(url, connections=200) as client:

        async def one(i: int) -> None:
            nonlocal errors
            body, headers = make(i)
            started = time.perf_counter()
            try:
                if await client.post(body, headers) != 200:
                    errors += 1
            except (OSError, asyncio.IncompleteReadError, ValueError):
                errors += 1
            latencies.append(time.perf_counter() - started)

        tasks = []
        total = int(rate * seconds)
        start = time.perf_counter()
        for i in range(total):
            due = start + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(i)))
        await asyncio.gather(*tasks)
    return {
        "sent": total,
        "errors": errors,
        "p50_ms": percentile(latencies, 50) * 1000,
        "p99_ms": percentile(latencies, 99) * 1000,
    }


async def closed_loop(
    url: str, make: Callable[[int], tuple[bytes, dict[str, str]]], clients: int, seconds: float
) -> float:
    """Maximum sustained rate: `clients` callers back to back for `seconds`; requests/s."""
    done = 0
    counter = iter(range(10**9))
    deadline = time.perf_counter() + seconds
    async with RawClient(url, connections=clients) as client:

        async def caller() -> None:
            nonlocal done
            while time.perf_counter() < deadline:
                body, headers = make(next(counter))
                if await client.post(body, headers) == 200:
                    done += 1

        start = time.perf_counter()
        await asyncio.gather(*(caller() for _ in range(clients)))
        return done / (time.perf_counter() - start)


def fmt(value: float) -> str:
    return f"{value:8.1f}"


def dumps(payload: Any) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode()
