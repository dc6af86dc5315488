"""Prometheus metrics: what the database records, and what only a process sees.

Two kinds, because the API and the workers are separate processes:

- **From the database, at scrape time** (`traza.db.counters.DatabaseCollector`): messages by status,
  routing decisions, guardrail verdicts, handoffs, send errors, SLA outcomes, model
  fallbacks and step durations are **counters kept in the database**: a trigger on
  `trace_events` appends what each event counts to `metric_counts` in the transaction
  that writes the event (migration 0009), and `compact()` folds those rows into
  `metric_totals`. They only ever go up — whichever process did the work, across
  restarts, and after a data-subject erasure redacts the events they came from. Queue
  depth and lag come from `procrastinate_jobs`, the backlog of inbound messages from
  `messages`. Every process that serves `/metrics` shows the same figures.
- **In-process** (this module: model calls, job lateness, webhook requests and ack
  latency): observed where the work happens. A process only exposes its own, unless
  every process of a machine shares `PROMETHEUS_MULTIPROC_DIR` (prometheus-client's
  multiprocess mode).
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from typing import Any

from prometheus_client import REGISTRY, Counter, Histogram
from prometheus_client.registry import CollectorRegistry

MODEL_SECONDS = Histogram(
    "traza_model_call_seconds",
    "Duration of one model call (classify, write_reply, judge), by outcome",
    ["call", "outcome"],
    buckets=(0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0),
)
MODEL_ERRORS = Counter(
    "traza_model_errors_total",
    "Model calls that failed or timed out (the caller fell back)",
    ["call", "error"],
)
JOB_LATENESS = Histogram(
    "traza_job_lateness_seconds",
    "How long after its scheduled time a job started (worker middleware)",
    ["queue", "task"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0),
)


async def measure_job(call_next: Callable[[], Awaitable[Any]], context: Any, worker: Any) -> Any:
    """Procrastinate worker middleware: observe `JOB_LATENESS`, then run the job.

    Pass it to a worker: `run_worker_async(worker_middleware=[measure_job], ...)`. A job
    deferred without a schedule has no due time and is not measured.
    """
    job = context.job
    if job.scheduled_at is not None:
        late = max(0.0, context.start_timestamp - job.scheduled_at.timestamp())
        JOB_LATENESS.labels(job.queue, job.task_name).observe(late)
    return await call_next()


WEBHOOK_REQUESTS = Counter("traza_webhook_requests_total", "Webhook POSTs by outcome", ["outcome"])
MESSAGES_IN = Counter("traza_messages_in_total", "Inbound messages stored (new)")
DUPLICATES = Counter("traza_messages_duplicate_total", "Inbound deliveries already stored")
STATUSES = Counter("traza_statuses_total", "Status updates stored (new)")
ACK_SECONDS = Histogram(
    "traza_webhook_ack_seconds",
    "Time to acknowledge a webhook POST",
    buckets=(0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0),
)


def process_registry() -> CollectorRegistry:
    """This process's metrics, or every process's in multiprocess mode."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # Imported only in multiprocess mode: it reads the environment when imported.
        from prometheus_client import multiprocess  # noqa: PLC0415

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return registry
    return REGISTRY
