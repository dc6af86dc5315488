"""The `traza` command as a user runs it: clear errors, and the README's quick start."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.fakes.servers import free_port
from tests.support import traza_cli

ROOT = Path(__file__).resolve().parents[2]


traza = traza_cli


def test_an_invalid_setting_stops_with_one_line_naming_it():
    env = {**os.environ, "TRAZA_COALESCE_SECONDS": "soon"}
    result = traza("db", "upgrade", env=env)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines == [lines[0]] and "TRAZA_COALESCE_SECONDS" in lines[0]

    env = {**os.environ, "DATABASE_URL": "mysql://root@localhost/x"}
    result = traza("db", "upgrade", env=env)
    assert result.returncode == 2 and "DATABASE_URL" in result.stderr
    assert "Traceback" not in result.stderr


def test_simulate_without_a_running_service_says_how_to_start_it(tmp_path):
    env = {**os.environ, "TRAZA_HOME": str(tmp_path)}
    result = traza("simulate", "hola", "--url", f"http://127.0.0.1:{free_port()}", env=env)
    assert result.returncode == 2
    assert "traza serve --dev" in result.stderr and "Traceback" not in result.stderr


def test_quick_start_embedded_postgres_serve_and_simulate(tmp_path):
    """`traza serve --dev` with no DATABASE_URL: embedded PostgreSQL, a reply, a clean stop."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DATABASE_URL", "WHATSAPP_APP_SECRET", "TRAZA_ADMIN_KEY")
    }
    env["TRAZA_HOME"] = str(tmp_path / "home")
    port = free_port()
    url = f"http://127.0.0.1:{port}"

    def start() -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            [sys.executable, "-m", "traza.cli", "serve", "--dev", "--port", str(port)],
            env=env,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                    return proc
            except httpx.TransportError:
                pass
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
            time.sleep(0.3)
        raise AssertionError("traza serve did not come up")

    def stop(proc: subprocess.Popen[str]) -> str:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
        return out

    proc = start()
    try:
        result = traza("simulate", "Hola, ¿cómo va mi aplicación?", "--url", url, env=env)
        assert result.returncode == 0, result.stderr
        assert "routing.decision" in result.stdout and "default-bot" in result.stdout
        assert "← Tu aplicación sigue en revisión" in result.stdout
    finally:
        banner = stop(proc)
    assert f"Docs     {url}/docs" in banner and "embedded PostgreSQL" in banner
    # simulate looked the contact up by ?wa_id=: the access log must not show the number
    assert "GET /conversations" in banner and "5215550001111" not in banner

    pgdata = Path(env["TRAZA_HOME"]) / "pgdata"
    assert (pgdata / "PG_VERSION").exists()
    assert not (pgdata / "postmaster.pid").exists(), "embedded PostgreSQL left running"

    # Data survives a restart.
    proc = start()
    try:
        key = (Path(env["TRAZA_HOME"]) / "dev-admin-key").read_text().strip()
        conversations = httpx.get(
            url + "/conversations", headers={"Authorization": f"Bearer {key}"}
        ).json()
        assert len(conversations) == 1
    finally:
        stop(proc)
