"""`/webhooks/whatsapp`: Meta's verification handshake and its signed event posts.

The POST verifies the signature over the raw body, stores it with its messages and
statuses in one transaction, queues the conversations' turns, and answers 200.
No model call and no outbound HTTP happen here. A signed body is never refused: text
PostgreSQL cannot hold is repaired (`traza.ingest.payload.decode`), and a body that is
not JSON, not Meta's shape or not storable is kept raw, flagged with why, and answered
200 — only a database that cannot be reached leaves it unacknowledged, for Meta to retry.
"""

from __future__ import annotations

import hmac
import logging
import time
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request, status
from fastapi.responses import PlainTextResponse
from sqlalchemy.exc import DataError

from api.deps import SettingsDep
from traza import metrics
from traza.ingest import signature
from traza.ingest.payload import MalformedBody, PayloadError, decode, parse
from traza.ingest.store import ingest, store_flagged

router = APIRouter(prefix="/webhooks", tags=["webhooks"])
log = logging.getLogger(__name__)

MAX_BODY = 3 * 1024 * 1024


@router.get("/whatsapp", response_class=PlainTextResponse)
async def verify(
    settings: SettingsDep,
    mode: Annotated[str | None, Query(alias="hub.mode")] = None,
    token: Annotated[str | None, Query(alias="hub.verify_token")] = None,
    challenge: Annotated[str | None, Query(alias="hub.challenge")] = None,
) -> PlainTextResponse:
    """Meta's subscription check: echo `hub.challenge` when the verify token matches."""
    expected = settings.whatsapp_verify_token
    expected_value = expected.get_secret_value() if expected is not None else ""
    if (
        mode == "subscribe"
        and expected_value  # an empty token would verify anyone's subscription
        and token is not None
        and challenge is not None
        and hmac.compare_digest(token.encode(), expected_value.encode())
    ):
        return PlainTextResponse(challenge)
    raise HTTPException(status.HTTP_403_FORBIDDEN, detail="verification failed")


@router.post("/whatsapp")
async def receive(request: Request, settings: SettingsDep) -> dict[str, Any]:
    """Store a signed webhook durably and acknowledge it."""
    started = time.perf_counter()
    body = await _read_body(request)
    secret = settings.webhook_secret()
    if not secret:  # unset, or empty: anyone can sign with an empty key
        metrics.WEBHOOK_REQUESTS.labels("no_secret").inc()
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            detail="webhook refused: WHATSAPP_APP_SECRET is not set (or start with --dev)",
        )
    header = request.headers.get("x-hub-signature-256")
    if not signature.is_valid(body, header, secret):
        metrics.WEBHOOK_REQUESTS.labels("bad_signature").inc()
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            detail="missing or invalid X-Hub-Signature-256",
        )
    # From here on the body is Meta's (or signed with our secret): it is acknowledged
    # once stored, never refused, or Meta would redeliver it for days.
    try:
        parsed = parse(decode(body))
    except MalformedBody as exc:
        return await _flagged(body, header, "malformed", f"body is not valid JSON: {exc}")
    except PayloadError as exc:
        return await _flagged(body, header, "not_whatsapp", f"not a WhatsApp payload: {exc}")
    # Messages and their turn jobs commit together (one statement on the hot path).
    try:
        result = await ingest(
            body=body,
            signature=header,
            parsed=parsed,
            coalesce_seconds=settings.traza_coalesce_seconds,
        )
    except (DataError, UnicodeError) as exc:
        # The same body would fail at every redelivery. Any other error (the database
        # unreachable or busy) leaves it unstored and unacknowledged, for Meta to retry.
        return await _flagged(body, header, "refused", _refused(exc))
    metrics.MESSAGES_IN.inc(result.new_messages)
    metrics.DUPLICATES.inc(result.duplicate_messages)
    metrics.STATUSES.inc(result.new_statuses)
    metrics.WEBHOOK_REQUESTS.labels("stored").inc()
    metrics.ACK_SECONDS.observe(time.perf_counter() - started)
    return {
        "event_id": result.event_id,
        "messages": result.new_messages,
        "duplicates": result.duplicate_messages,
        "statuses": result.new_statuses,
    }


async def _flagged(body: bytes, header: str | None, outcome: str, problem: str) -> dict[str, Any]:
    """Store a signed body that cannot be ingested, flagged with why, and acknowledge it."""
    event_id = await store_flagged(body=body, signature=header, problem=problem)
    metrics.WEBHOOK_REQUESTS.labels(outcome).inc()
    log.warning("webhook event %s stored but not ingested (%s)", event_id, outcome)
    return {"event_id": event_id, "messages": 0, "duplicates": 0, "statuses": 0, "flagged": problem}


def _refused(exc: Exception) -> str:
    """Why the database refused the body's content, without its values (personal data).

    A data exception (SQLSTATE class 22) or text the driver cannot encode.
    """
    if isinstance(exc, DataError):
        state = getattr(exc.orig, "sqlstate", None) or "client-side"
        return f"not ingested: the database refused its content (SQLSTATE {state})"
    return f"not ingested: text the database cannot hold ({type(exc).__name__})"


def _too_large() -> HTTPException:
    metrics.WEBHOOK_REQUESTS.labels("too_large").inc()
    return HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, detail="body over 3 MB")


async def _read_body(request: Request) -> bytes:
    """The raw body, refused with 413 as soon as it passes `MAX_BODY` (declared or not)."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > MAX_BODY:
        raise _too_large()
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY:
            raise _too_large()
        chunks.append(chunk)
    return b"".join(chunks)
