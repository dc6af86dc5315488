"""A candidate, a vacancy, ATS events and a follow-up agent file, shared by the recruiting tests."""

from __future__ import annotations

import json
import tempfile
import time
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx

from tests.support import (
    ADMIN,
    PHONE_NUMBER_ID,
    configure,
    drain,
    post_webhook,
    wa_payload,
)

ROOT = Path(__file__).resolve().parents[2]


WA = "5215550001111"


MAD = ZoneInfo("Europe/Madrid")


def at(day: int, hour: int, minute: int = 0) -> datetime:
    """Day 1 is Monday 2026-03-02 (Madrid time)."""
    return datetime(2026, 3, 1, hour, minute, tzinfo=MAD) + timedelta(days=day)


def agent_config(**overrides: str) -> Path:
    """TRAZA_CONFIG_DIR with the example agent, adjusted for the test."""
    folder = Path(tempfile.mkdtemp(prefix="traza-agents-"))
    (folder / "agents").mkdir()
    text = (ROOT / "examples/config/agents/seguimiento.yaml").read_text(encoding="utf-8")
    text = text.replace(
        "channels: [whatsapp, email]", f"inbox: '{PHONE_NUMBER_ID}'\nchannels: [whatsapp, email]"
    )
    for old, new in overrides.items():
        assert old in text, old
        text = text.replace(old, new)
    (folder / "agents" / "seguimiento.yaml").write_text(text, encoding="utf-8")
    configure(TRAZA_CONFIG_DIR=str(folder))
    return folder


async def event(client: httpx.AsyncClient, **body: Any) -> dict[str, Any]:
    body.setdefault("id", f"evt-{uuid.uuid4().hex[:8]}")
    response = await client.post(
        "/recruiting/events",
        content=json.dumps(body, default=str),
        headers={**ADMIN, "content-type": "application/json"},
    )
    assert response.status_code == 200, response.text
    return dict(response.json())


CANDIDATE = {
    "external_id": "cand-1",
    "name": "María García",
    "wa_id": WA,
    "email": "maria@example.com",
    "locale": "es",
    "timezone": "Europe/Madrid",
    "consent_source": "formulario web",
    "consent_at": "2026-03-01T09:00:00+01:00",
    "profile": {"city": "Madrid"},
}


VACANCY = {
    "external_id": "vac-1",
    "title": "Desarrolladora Backend",
    "required_fields": ["cv_url", "city"],
}


def followups(db: Any) -> list[dict[str, Any]]:
    return db.execute(
        "SELECT id, trigger, status, reason, due_at, fired_at FROM followups ORDER BY id"
    ).fetchall()


def sent_bodies(graph_api: Any) -> list[dict[str, Any]]:
    """What the fake Graph API was asked to send (not read receipts)."""
    return [r["body"] for r in graph_api.requests if "to" in r["body"]]


async def candidate_sends(client: httpx.AsyncClient, kind: str, body: dict[str, Any]) -> None:
    """The candidate's WhatsApp sends one message of `kind` (`button`, `reaction`…); drained."""
    message = {
        "from": WA,
        "id": f"wamid.{uuid.uuid4().hex}",
        "timestamp": str(int(time.time())),
        "type": kind,
        kind: body,
    }
    response = await post_webhook(client, wa_payload(messages=[message]))
    assert response.status_code == 200
    await drain()
