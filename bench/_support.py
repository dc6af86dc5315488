"""Shared bench plumbing: a scratch database, a server subprocess, an open-loop load generator."""

from __future__ import annotations

import asyncio
import json
import os
import statistics
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


def server_uri() -> str:
    """PostgreSQL on 127.0.0.1:5432 when it answers, else an embedded one in a temp folder."""
    local = os.environ.get("TRAZA_BENCH_SERVER", "postgresql://postgres@127.0.0.1:5432/postgres")
    try:
        with psycopg.connect(local, connect_timeout=2):
            return local
    except psycopg.OperationalError:
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
        for _ in range(300):
            try:
                httpx.get(url + "/docs", timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.1)
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


async def open_loop(
    url: str, make: Callable[[int], tuple[bytes, dict[str, str]]], rate: float, seconds: float
) -> dict[str, Any]:
    """Send `rate` requests/s for `seconds` regardless of answers; latency per request."""
    latencies: list[float] = []
    errors = 0
    limits = httpx.Limits(max_connections=400, max_keepalive_connections=400)
    async with httpx.AsyncClient(timeout=10, limits=limits) as client:

        async def one(i: int) -> None:
            nonlocal errors
            body, headers = make(i)
            started = time.perf_counter()
            try:
                response = await client.post(url, content=body, headers=headers)
                if response.status_code != 200:
                    errors += 1
            except httpx.HTTPError:
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
    async with httpx.AsyncClient(timeout=10) as client:

        async def caller() -> None:
            nonlocal done
            while time.perf_counter() < deadline:
                body, headers = make(next(counter))
                response = await client.post(url, content=body, headers=headers)
                if response.status_code == 200:
                    done += 1

        start = time.perf_counter()
        await asyncio.gather(*(caller() for _ in range(clients)))
        return done / (time.perf_counter() - start)


def fmt(value: float) -> str:
    return f"{value:8.1f}"


def dumps(payload: Any) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode()


_ = statistics
