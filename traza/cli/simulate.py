"""`traza simulate`: post a signed customer message to a running traza, show the answer."""

from __future__ import annotations

import json
import time
import uuid
from typing import Annotated, Any

import httpx
import typer

from traza.cli.common import fail, load_settings
from traza.ingest.signature import sign
from traza.settings import Settings


def simulated_payload(
    *,
    text: str | None,
    wa_id: str,
    name: str,
    phone_number_id: str,
    button: str | None = None,
    message_id: str | None = None,
) -> dict[str, Any]:
    """A Meta webhook payload for one customer message (text or reply button)."""
    message: dict[str, Any] = {
        "from": wa_id,
        "id": message_id or f"wamid.sim.{uuid.uuid4().hex}",
        "timestamp": str(int(time.time())),
    }
    if button:
        message |= {
            "type": "interactive",
            "interactive": {
                "type": "button_reply",
                "button_reply": {"id": button, "title": text or button},
            },
        }
    else:
        message |= {"type": "text", "text": {"body": text or ""}}
    return {
        "object": "whatsapp_business_account",
        "entry": [
            {
                "id": "sim-waba",
                "changes": [
                    {
                        "field": "messages",
                        "value": {
                            "messaging_product": "whatsapp",
                            "metadata": {
                                "display_phone_number": "15550000000",
                                "phone_number_id": phone_number_id,
                            },
                            "contacts": [{"profile": {"name": name}, "wa_id": wa_id}],
                            "messages": [message],
                        },
                    }
                ],
            }
        ],
    }


def simulate(
    text: Annotated[str, typer.Argument(help="What the customer writes.")],
    wa_id: Annotated[str, typer.Option("--from", help="Customer's WhatsApp id.")] = "5215550001111",
    name: Annotated[str, typer.Option(help="Customer's profile name.")] = "Cliente de prueba",
    phone_number_id: Annotated[str, typer.Option(help="Business number id.")] = "sim-inbox",
    button: Annotated[
        str | None, typer.Option(help="Send as a reply-button press with this id.")
    ] = None,
    url: Annotated[str, typer.Option(help="Where traza is running.")] = "http://127.0.0.1:8000",
    wait: Annotated[float, typer.Option(help="Seconds to wait for the answer.")] = 15.0,
) -> None:
    """Post a correctly signed customer message to a running traza and show the answer."""
    settings = load_settings()
    secret = (
        settings.whatsapp_app_secret.get_secret_value() if settings.whatsapp_app_secret else None
    )
    if secret is None and settings.dev_secret_path.exists():
        secret = settings.dev_secret_path.read_text().strip()
    if secret is None:
        fail(
            "no webhook secret: start the service with `traza serve --dev`"
            " (or set WHATSAPP_APP_SECRET)"
        )
    body = json.dumps(
        simulated_payload(
            text=text, wa_id=wa_id, name=name, phone_number_id=phone_number_id, button=button
        )
    ).encode()
    headers = {"Content-Type": "application/json", "X-Hub-Signature-256": sign(body, secret)}
    try:
        with httpx.Client(base_url=url, timeout=10) as client:
            auth = _admin_headers(settings)
            _, after = _conversation_tail(client, auth, wa_id) if auth else (None, 0)
            response = client.post("/webhooks/whatsapp", content=body, headers=headers)
            if response.status_code != 200:
                fail(f"traza answered {response.status_code}: {response.text[:300]}")
            typer.echo(f"→ {name} ({wa_id}): {text}")
            if auth is None:
                typer.echo("(message accepted; set TRAZA_ADMIN_KEY to see the answer here)")
                return
            _show_answer(client, auth, wa_id, after, wait)
    except httpx.ConnectError:
        fail(f"nothing is listening at {url}: start it with `uv run traza serve --dev`")


def _admin_headers(settings: Settings) -> dict[str, str] | None:
    key = settings.admin_key()
    if key is None and settings.dev_admin_key_path.exists():
        key = settings.dev_admin_key_path.read_text().strip()
    return {"Authorization": f"Bearer {key}"} if key else None


def _conversation_tail(
    client: httpx.Client, auth: dict[str, str], wa_id: str
) -> tuple[int | None, int]:
    """The contact's open conversation and the id of its last trace event."""
    found = client.get("/conversations", params={"wa_id": wa_id, "status": "open"}, headers=auth)
    if found.status_code != 200 or not found.json():
        return None, 0
    cid = int(found.json()[0]["id"])
    events = client.get(f"/conversations/{cid}/timeline", headers=auth).json()
    return cid, max((e["id"] for e in events), default=0)


TERMINAL = ("message.sent", "message.held_for_human", "message.send_failed", "message.skipped")


def _show_answer(
    client: httpx.Client, auth: dict[str, str], wa_id: str, after: int, wait: float
) -> None:
    deadline = time.monotonic() + wait
    conversation_id: int | None = None
    answered = False
    while time.monotonic() < deadline and not answered:
        if conversation_id is None:
            conversation_id, _ = _conversation_tail(client, auth, wa_id)
        if conversation_id is not None:
            events = client.get(f"/conversations/{conversation_id}/timeline", headers=auth).json()
            for event in events:
                if event["id"] <= after:
                    continue
                after = event["id"]
                typer.echo(_describe(event))
                answered = answered or event["kind"] in TERMINAL
        time.sleep(0.25)
    if not answered:
        typer.echo("(no answer yet: is a worker running?)")
    if conversation_id is not None:
        typer.echo(f"trace: {client.base_url}/conversations/{conversation_id}/timeline")


def _describe(event: dict[str, Any]) -> str:
    data, message = event.get("data") or {}, event.get("message") or {}
    detail = ""
    if event["kind"] == "classification":
        detail = f"intent={data.get('intent')} lang={data.get('language')} ({data.get('source')})"
    elif event["kind"] == "routing.decision":
        detail = f"{data.get('route')} by rule '{data.get('rule')}'"
    elif event["kind"] == "guardrail.verdict":
        detail = "allowed" if data.get("allowed") else f"blocked: {data.get('reason')}"
    elif event["kind"] in ("message.sent", "message.received") and message:
        arrow = "→" if message.get("direction") == "in" else "←"
        detail = f"{arrow} {message.get('text')}"
    elif event["kind"] == "handoff.created":
        detail = f"handoff #{data.get('handoff_id')}: {data.get('reason')}"
    ms = f" {event['duration_ms']:.1f} ms" if event.get("duration_ms") else ""
    return f"  [{event['actor']}] {event['kind']}{ms} {detail}".rstrip()
