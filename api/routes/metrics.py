"""Prometheus metrics exported at `/metrics`.

The exposition joins three sources (see `traza.metrics` and `traza.db.counters`):

- this process's metrics (webhook counters and ack latency below, model calls, job
  lateness) — or, when `PROMETHEUS_MULTIPROC_DIR` is set, those of every process of the
  machine that shares the folder (prometheus-client's multiprocess mode);
- counters and gauges read from the database when scraped (messages, decisions,
  guardrails, handoffs, send errors, SLA clocks, model fallbacks, queues), the same in
  every process whichever worker did the work.

With `TRAZA_METRICS_TOKEN` set, a scrape must send `Authorization: Bearer <token>`;
unset, `/metrics` is open, as Prometheus endpoints usually are.
"""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import APIRouter, Header, HTTPException, Response, status
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from api.deps import SettingsDep
from traza.db.counters import DATABASE, DATABASE_REGISTRY
from traza.metrics import process_registry

router = APIRouter(tags=["health"])


@router.get(
    "/metrics",
    response_class=Response,
    responses={
        200: {"content": {"text/plain": {}}, "description": "Prometheus text format"},
        401: {"description": "TRAZA_METRICS_TOKEN is set and the bearer token is wrong"},
    },
)
async def metrics(
    settings: SettingsDep, authorization: Annotated[str | None, Header()] = None
) -> Response:
    """Prometheus metrics (bearer token required when TRAZA_METRICS_TOKEN is set)."""
    token = settings.traza_metrics_token.get_secret_value() if settings.traza_metrics_token else ""
    if token:
        given = ""
        if authorization and authorization.lower().startswith("bearer "):
            given = authorization[7:].strip()
        if not hmac.compare_digest(given.encode(), token.encode()):
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                detail="metrics need 'Authorization: Bearer <TRAZA_METRICS_TOKEN>'",
                headers={"WWW-Authenticate": "Bearer"},
            )
    await DATABASE.refresh()
    body = generate_latest(process_registry()) + generate_latest(DATABASE_REGISTRY)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
