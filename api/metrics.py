"""Prometheus metrics exported at `/metrics`."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

WEBHOOK_REQUESTS = Counter("traza_webhook_requests_total", "Webhook POSTs by outcome", ["outcome"])
MESSAGES_IN = Counter("traza_messages_in_total", "Inbound messages stored (new)")
DUPLICATES = Counter("traza_messages_duplicate_total", "Inbound deliveries already stored")
STATUSES = Counter("traza_statuses_total", "Status updates stored (new)")
ACK_SECONDS = Histogram(
    "traza_webhook_ack_seconds",
    "Time to acknowledge a webhook POST",
    buckets=(0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0),
)
