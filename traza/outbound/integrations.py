"""Outbound webhooks to other systems ("se dispara un proceso en otro sistema").

A call is an `integration_calls` row and a procrastinate job, committed together. The
body is JSON; `X-Traza-Signature: t=<unix time>,v1=<hex HMAC-SHA256 of "<t>.<body>">`
signed with the integration's secret. Network errors, timeouts, 408, 429 and 5xx are
retried with exponential backoff up to `max_attempts`; other 4xx answers and the last
failure dead-letter the call. Every attempt is in the conversation's trace, and a JSON
answer can be attached to the conversation.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import time
from datetime import UTC, datetime
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncSession

from traza import trace
from traza.db.engine import session_scope
from traza.db.models import IntegrationCall
from traza.db.queue import defer_in
from traza.rules.loader import LoadedRules
from traza.rules.schema import Integration
from traza.trace import kinds

CALL_TASK = "call_integration"
MAX_ATTACHED_BYTES = 64 * 1024
BACKOFF_BASE_SECONDS = 5.0
BACKOFF_CAP_SECONDS = 900.0
RETRYABLE = {408, 425, 429}


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """The `X-Traza-Signature` header value for a body sent at `timestamp`."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def secret_of(integration: Integration) -> str | None:
    """The signing secret: inline, or read from the environment variable named."""
    if integration.secret:
        return integration.secret
    return os.environ.get(integration.secret_env or "") or None


async def queue_call(
    session: AsyncSession,
    *,
    integration: str,
    event: str,
    payload: dict[str, Any],
    conversation_id: int | None,
    handoff_id: int | None = None,
    actor: str,
) -> int:
    """Record a call and queue its first attempt (in the caller's transaction)."""
    call = IntegrationCall(
        integration=integration,
        event=event,
        payload=payload,
        conversation_id=conversation_id,
        handoff_id=handoff_id,
    )
    session.add(call)
    await session.flush()
    await defer_in(session, CALL_TASK, {"call_id": call.id}, queueing_lock=f"integration:{call.id}")
    await trace.record(
        session,
        conversation_id=conversation_id,
        kind=kinds.INTEGRATION_QUEUED,
        actor=actor,
        data={"call_id": call.id, "integration": integration, "event": event},
    )
    return call.id


def _envelope(call: IntegrationCall) -> bytes:
    return json.dumps(
        {
            "id": call.id,
            "event": call.event,
            "integration": call.integration,
            "conversation_id": call.conversation_id,
            "handoff_id": call.handoff_id,
            "created_at": call.created_at.isoformat(),
            "attempt": call.attempts + 1,
            "data": call.payload,
        },
        separators=(",", ":"),
        default=str,
    ).encode()


def _answer(response: httpx.Response) -> dict[str, Any] | None:
    if len(response.content) > MAX_ATTACHED_BYTES:
        return {"truncated": True, "bytes": len(response.content)}
    try:
        data = response.json()
    except ValueError:
        return {"text": response.text[:2000]} if response.text else None
    return data if isinstance(data, dict) else {"value": data}


async def _post(integration: Integration, body: bytes, call: IntegrationCall) -> httpx.Response:
    secret = secret_of(integration)
    if not secret:
        raise LookupError(f"signing secret missing (set {integration.secret_env})")
    ts = int(time.time())
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "traza-integrations/1",
        "X-Traza-Event": call.event,
        "X-Traza-Delivery": str(call.id),
        "X-Traza-Signature": signature(secret, ts, body),
    }
    async with httpx.AsyncClient(timeout=integration.timeout_seconds) as client:
        return await client.post(str(integration.url), content=body, headers=headers)


async def attempt(call_id: int, rules: LoadedRules) -> str:
    """One delivery attempt; returns the call's new status."""
    async with session_scope() as session:
        call = await session.get(IntegrationCall, call_id, with_for_update=True)
        if call is None or call.status != "pending":
            return call.status if call else "missing"
        integration = rules.rules.integrations.get(call.integration)
        actor = trace.system(f"integration:{call.integration}")
        error: str | None
        retry = False
        response: httpx.Response | None = None
        if integration is None:
            error = f"integration '{call.integration}' is not in rules {rules.version}"
        else:
            try:
                response = await _post(integration, _envelope(call), call)
            except LookupError as exc:
                error = str(exc)
            except httpx.HTTPError as exc:
                error, retry = f"{type(exc).__name__}: {exc}".strip(": "), True
            else:
                error = None if response.is_success else f"HTTP {response.status_code}"
                retry = response.status_code in RETRYABLE or response.status_code >= 500
        call.attempts += 1
        call.last_error = error
        data: dict[str, Any] = {
            "call_id": call.id,
            "integration": call.integration,
            "event": call.event,
            "attempt": call.attempts,
        }
        if response is not None:
            call.response_status = response.status_code
            data["status_code"] = response.status_code
        if error is None and response is not None:
            call.status, call.delivered_at = "delivered", datetime.now(UTC)
            if integration is not None and integration.attach_response:
                call.response = _answer(response)
                data["response"] = call.response
            kind = kinds.INTEGRATION_DELIVERED
        elif retry and integration is not None and call.attempts < integration.max_attempts:
            delay = min(BACKOFF_BASE_SECONDS * 2 ** (call.attempts - 1), BACKOFF_CAP_SECONDS)
            await defer_in(
                session,
                CALL_TASK,
                {"call_id": call.id},
                delay=delay,
                queueing_lock=f"integration:{call.id}",
            )
            data |= {"error": error, "retry_in_seconds": delay}
            kind = kinds.INTEGRATION_FAILED
        else:
            call.status = "dead"
            data["error"] = error
            kind = kinds.INTEGRATION_DEAD_LETTERED
        await trace.record(
            session, conversation_id=call.conversation_id, kind=kind, actor=actor, data=data
        )
        return call.status
