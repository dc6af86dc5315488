"""Log hygiene end to end: `traza serve` runs a whole scenario and every line it prints is
scanned for the personal data and secrets the scenario sent, and for tracebacks.

The server is a real subprocess (uvicorn's access log, the in-process worker, the
root logger), in both log formats; its stdout and stderr are the logs an operator keeps.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fakes.servers import GraphAPI, free_port
from tests.support import ADMIN, ROOT, sign, text_message, wa_payload

WA_ID = "5215550009876"
NAME = "Griselda Zárate"
EMAIL = "griselda.zarate@example.com"
TEXT = f"Hola, soy pelicanoturquesa, escribidme a {EMAIL}"
CALENDAR_TOKEN = "cal-Secreto_9f8e7d6c5b4a"
WRONG_KEY = "trz_deadbeef_AdivinanzaSecretaDeSeisPalabras"
MAX_ACCESS_LINE = {"text": 400, "json": 800}  # bytes, however long the URL


async def _wait_for(url: str, proc: subprocess.Popen[bytes], seconds: float = 120) -> int:
    """Wait until the server answers; the number of answers it gave (each is logged)."""
    answers = 0
    async with httpx.AsyncClient() as probe:
        for _ in range(int(seconds * 4)):
            if proc.poll() is not None:
                raise AssertionError("traza serve exited before answering")
            try:
                answers += 1
                if (await probe.get(f"{url}/healthz")).status_code == 200:
                    return answers
            except httpx.TransportError:
                answers -= 1
            await asyncio.sleep(0.25)
    raise AssertionError("traza serve did not start")


async def _scenario(base: str, graph_api: GraphAPI) -> tuple[int, list[str]]:
    """Run the scenario against `base`; (requests answered, secrets it used)."""
    answered = 0

    async def count(_: httpx.Response) -> None:
        nonlocal answered
        answered += 1

    async with httpx.AsyncClient(base_url=base, event_hooks={"response": [count]}) as http:
        created = await http.post(
            "/agents", json={"name": "vera", "teams": ["general"]}, headers=ADMIN
        )
        assert created.status_code == 201, created.text
        key = created.json()["api_key"]

        # Meta's handshake, right and wrong.
        verify = {"hub.mode": "subscribe", "hub.verify_token": "test-verify-token"}
        ok = await http.get("/webhooks/whatsapp", params=verify | {"hub.challenge": "4711"})
        assert ok.status_code == 200 and ok.text == "4711"
        wrong = verify | {"hub.verify_token": "otro-token-secreto", "hub.challenge": "1"}
        assert (await http.get("/webhooks/whatsapp", params=wrong)).status_code == 403

        # A candidate writes; the worker in the server answers through the Graph API.
        payload = wa_payload(
            messages=[text_message(TEXT, wa_id=WA_ID)],
            contacts=[{"profile": {"name": NAME}, "wa_id": WA_ID}],
        )
        body = json.dumps(payload).encode()
        posted = await http.post(
            "/webhooks/whatsapp",
            content=body,
            headers={"Content-Type": "application/json", "X-Hub-Signature-256": sign(body)},
        )
        assert posted.status_code == 200, posted.text
        for _ in range(240):
            if any(m.get("to") == WA_ID for m in graph_api.sent):
                break
            await asyncio.sleep(0.25)
        else:
            raise AssertionError("the message was never answered")

        # The API, with the key, with a wrong key, and searched by number and e-mail.
        bearer = {"Authorization": f"Bearer {key}"}
        found = await http.get("/conversations", params={"wa_id": WA_ID}, headers=bearer)
        assert found.is_success
        refused = await http.get("/me", headers={"Authorization": f"Bearer {WRONG_KEY}"})
        assert refused.status_code == 401
        assert (await http.get("/healthz", params={"email": EMAIL})).status_code == 200

        # The dashboard: log in with the key, search by number, log out.
        await http.get("/dashboard/login")
        nonce = http.cookies.get("traza_login")
        assert nonce
        login = await http.post(
            "/dashboard/login", data={"key": key, "csrf": nonce, "next": "/dashboard"}
        )
        assert login.status_code == 303, login.text
        session_id = http.cookies.get("traza_session")
        assert session_id
        page = await http.get("/dashboard/conversations", params={"wa_id": WA_ID})
        assert page.status_code == 200
        csrf = re.search(r'name="csrf" value="([0-9a-f]{64})"', page.text)
        assert csrf
        await http.post("/dashboard/logout", data={"csrf": csrf.group(1)})

        # The calendar feed (its URL is its credential), right and wrong.
        assert (await http.get(f"/calendars/{CALENDAR_TOKEN}.ics")).status_code == 200
        assert (await http.get("/calendars/Xy9-no-existe_1234.ics")).status_code == 404

        # A huge URL makes a line no longer than a short one.
        assert (await http.get("/healthz", params={"pad": "x" * 6000})).status_code == 200

    secrets = [key, key.split("_", 2)[2], session_id, "test-admin-key", "otro-token-secreto"]
    return answered, secrets


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


def _access_lines(lines: list[str], fmt: str) -> list[str]:
    if fmt == "json":
        return [line for line in lines if '"logger": "uvicorn.access"' in line]
    return [line for line in lines if re.search(r' - "[A-Z]+ .* HTTP/1\.1" \d{3}', line)]


@pytest.mark.parametrize("fmt", ["text", "json"])
async def test_a_whole_scenario_leaves_no_personal_data_secret_or_traceback_in_the_logs(
    db: Any, graph_api: GraphAPI, tmp_path: Path, fmt: str
) -> None:
    db.execute(
        "INSERT INTO interviewers (name, availability, calendar_token) VALUES (%s, %s, %s)",
        ("Lucía Gómez", json.dumps({"timezone": "Europe/Madrid"}), CALENDAR_TOKEN),
    )
    port = free_port()
    out, err = tmp_path / "stdout.log", tmp_path / "stderr.log"
    env = dict(os.environ) | {"TRAZA_LOG_FORMAT": fmt, "PYTHONUNBUFFERED": "1"}
    with out.open("wb") as stdout, err.open("wb") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-m", "traza.cli", "serve", "--port", str(port)],
            cwd=ROOT,
            env=env,
            stdout=stdout,
            stderr=stderr,
        )
        try:
            base = f"http://127.0.0.1:{port}"
            probes = await _wait_for(base, proc)
            answered, secrets = await _scenario(base, graph_api)
            answered += probes
        finally:
            _stop(proc)
    logs = out.read_text(encoding="utf-8") + err.read_text(encoding="utf-8")
    lines = logs.splitlines()

    sent = [
        WA_ID,
        NAME,
        "Griselda",
        "Zárate",
        "pelicanoturquesa",
        EMAIL,
        "griselda.zarate",
        "test-verify-token",
        CALENDAR_TOKEN,
        WRONG_KEY,
        "AdivinanzaSecretaDeSeisPalabras",
        "test-app-secret",
        *secrets,
    ]
    leaked = {s: [line for line in lines if s in line][:2] for s in sent if s in logs}
    assert not leaked, leaked
    assert "Traceback" not in logs and "Logging error" not in logs, logs[-3000:]
    assert "•••" in logs  # the masks are there: the requests were logged, masked

    access = _access_lines(lines, fmt)
    assert len(access) == answered, (answered, access)  # one line per request, no more
    assert max(len(line.encode()) for line in access) <= MAX_ACCESS_LINE[fmt]
    if fmt == "json":
        entries = [json.loads(line) for line in lines if line.startswith("{")]
        assert len(entries) >= answered
        assert all({"at", "level", "logger", "message"} <= set(e) for e in entries)
        assert not [line for line in lines if re.match(r"^(INFO|WARNING|ERROR):", line)]
        verify = [e for e in entries if e.get("path", "").startswith("/webhooks/whatsapp?")]
        assert verify and all("hub.verify_token=•••" in e["path"] for e in verify)
    else:
        assert any("/calendars/•••.ics" in line for line in access)
        assert any("hub.verify_token=•••" in line for line in access)
