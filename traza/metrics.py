"""Prometheus metrics: what the database records, and what only a process sees.

Two kinds, because the API and the workers are separate processes:

- **From the database, at scrape time** (`DatabaseCollector`): messages, routing
  decisions, guardrail verdicts, handoffs, send errors, SLA outcomes and model fallbacks
  are counted from the append-only `trace_events`; queue depth and lag from
  `procrastinate_jobs`. Every process that serves `/metrics` shows the same totals,
  whichever worker did the work. Counting is incremental: events older than
  `SETTLE_SECONDS` are added to running totals once (walking the primary key), newer ones
  are counted afresh on each scrape, so a scrape reads only the last minute of events.
- **In-process** (`MODEL_SECONDS`, `MODEL_ERRORS`, `JOB_LATENESS`): observed where the
  work happens. A process only exposes its own, unless every process of a machine shares
  `PROMETHEUS_MULTIPROC_DIR` (prometheus-client's multiprocess mode).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import Counter, Histogram
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import CollectorRegistry
from sqlalchemy import text

from traza.jobs.defer import OPS_QUEUE
from traza.jobs.queues import SEND_QUEUE, TURN_QUEUE

log = logging.getLogger(__name__)

# --- in-process ------------------------------------------------------------------------

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


# --- from the database ------------------------------------------------------------------

SETTLE_SECONDS = 60.0
"""Events older than this are added to the running totals for good (a transaction that
writes trace events for longer than this could be missed: none does)."""

MODEL_STEP_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0)

# One pass over the events after the watermark. `settled` rows go into the running totals;
# the others are counted on every scrape until they settle. Labels are l1..l3.
TALLY_SQL = text(
    """
    WITH w AS (
      SELECT coalesce(max(id), CAST(:after AS bigint)) AS settled,
             (SELECT coalesce(max(id), 0) FROM trace_events) AS newest
        FROM trace_events
       WHERE id > :after AND at < now() - make_interval(secs => :settle)
    ), e AS (
      SELECT t.id, t.kind, t.data, t.message_id, t.llm, t.duration_ms,
             t.id <= w.settled AS settled
        FROM trace_events t, w
       WHERE t.id > :after
         AND (t.kind LIKE 'message.%' OR t.kind LIKE 'sla.%' OR t.llm OR t.kind IN
              ('routing.decision', 'guardrail.verdict', 'guardrail.unavailable',
               'handoff.created'))
    )
    SELECT 'messages' AS family, e.settled, m.direction AS l1, m.channel AS l2,
           CASE e.kind WHEN 'message.received' THEN 'received'
                       WHEN 'message.queued' THEN 'queued'
                       WHEN 'message.sent' THEN 'accepted'
                       WHEN 'message.status' THEN coalesce(e.data->>'status', 'unknown')
                       WHEN 'message.send_failed' THEN 'send_failed'
                       WHEN 'message.skipped' THEN 'skipped'
                       WHEN 'message.held_for_human' THEN 'held_for_human'
                       ELSE substr(e.kind, 9) END AS l3,
           count(*) AS n
      FROM e JOIN messages m ON m.id = e.message_id
     WHERE e.kind LIKE 'message.%'
     GROUP BY 1, 2, 3, 4, 5
    UNION ALL
    SELECT 'decisions', e.settled, coalesce(e.data->>'route', ''), coalesce(e.data->>'rule', ''),
           coalesce(e.data->'inputs'->>'intent', ''), count(*)
      FROM e WHERE e.kind = 'routing.decision' GROUP BY 1, 2, 3, 4, 5
    UNION ALL
    SELECT 'guardrails', e.settled,
           CASE WHEN (e.data->>'allowed')::boolean THEN 'allowed' ELSE 'blocked' END,
           coalesce(e.data->>'source', 'offline'), '', count(*)
      FROM e WHERE e.kind IN ('guardrail.verdict', 'guardrail.unavailable')
     GROUP BY 1, 2, 3, 4, 5
    UNION ALL
    SELECT 'guardrail_blocks', e.settled, p.policy, '', '', count(*)
      FROM e CROSS JOIN LATERAL jsonb_array_elements_text(
             CASE WHEN jsonb_typeof(e.data->'policies') = 'array'
                  THEN e.data->'policies' ELSE '[]'::jsonb END) AS p(policy)
     WHERE e.kind IN ('guardrail.verdict', 'guardrail.unavailable')
       AND NOT coalesce((e.data->>'allowed')::boolean, true)
     GROUP BY 1, 2, 3, 4, 5
    UNION ALL
    SELECT 'handoffs', e.settled, coalesce(e.data->>'rule', 'handoff'),
           coalesce(e.data->>'team', ''), '', count(*)
      FROM e WHERE e.kind = 'handoff.created' GROUP BY 1, 2, 3, 4, 5
    UNION ALL
    SELECT 'send_errors', e.settled, coalesce(e.data->>'error_code', 'none'),
           coalesce(e.data->>'channel', m.channel),
           CASE WHEN e.kind = 'message.status' THEN 'delivery' ELSE 'send' END, count(*)
      FROM e JOIN messages m ON m.id = e.message_id
     WHERE e.kind = 'message.send_failed'
        OR (e.kind = 'message.status' AND e.data->>'status' = 'failed')
     GROUP BY 1, 2, 3, 4, 5
    UNION ALL
    SELECT 'sla', e.settled, coalesce(e.data->>'metric', ''), substr(e.kind, 5), '', count(*)
      FROM e WHERE e.kind IN ('sla.met', 'sla.breached', 'sla.cancelled')
     GROUP BY 1, 2, 3, 4, 5
    UNION ALL
    SELECT 'model_fallbacks', e.settled, e.kind, '', '', count(*)
      FROM e WHERE e.llm AND e.data ? 'llm_error' GROUP BY 1, 2, 3, 4, 5
    UNION ALL
    SELECT 'watermark', true, w.settled::text, w.newest::text, '', 0 FROM w
    """
)

# The model's step durations (trace events written by steps that used the model).
STEP_SECONDS_SQL = text(
    """
    SELECT t.kind, t.id <= :settled AS settled, count(*) AS n,
           coalesce(sum(t.duration_ms), 0) / 1000.0 AS total,
           ARRAY[{buckets}] AS le
      FROM trace_events t
     WHERE t.id > :after AND t.llm AND t.duration_ms IS NOT NULL
     GROUP BY 1, 2
    """.format(
        buckets=", ".join(
            f"count(*) FILTER (WHERE t.duration_ms <= {b * 1000:g})" for b in MODEL_STEP_BUCKETS
        )
    )
)

QUEUE_SQL = text(
    """
    SELECT j.queue_name AS queue,
           CASE WHEN j.status = 'doing' THEN 'running'
                WHEN j.scheduled_at > now() THEN 'scheduled' ELSE 'waiting' END AS state,
           count(*) AS n,
           max(CASE WHEN j.status = 'todo' AND coalesce(j.scheduled_at, now()) <= now()
                    THEN extract(epoch FROM now() - coalesce(j.scheduled_at, (
                      SELECT min(ev.at) FROM procrastinate_events ev
                       WHERE ev.job_id = j.id AND ev.type = 'deferred'), now())) END) AS lag
      FROM procrastinate_jobs j
     WHERE j.status IN ('todo', 'doing')
     GROUP BY 1, 2
    """
)

QUEUES = (TURN_QUEUE, SEND_QUEUE, OPS_QUEUE)
"""traza's queues: always shown (0 when empty), with any other queue that has jobs."""

Key = tuple[str, str, str, str]

FAMILIES: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "messages": (
        "traza_messages",
        "Message events by direction, channel and what happened (received, queued, "
        "accepted, delivered, read, failed, send_failed, skipped, held_for_human)",
        ("direction", "channel", "status"),
    ),
    "decisions": (
        "traza_decisions",
        "Routing decisions by route, winning rule and classified intent",
        ("route", "rule", "intent"),
    ),
    "guardrails": (
        "traza_guardrail_verdicts",
        "Guardrail verdicts on bot replies by outcome and deciding layer (entities, people, "
        "classifier, judge; offline or judge when it passed)",
        ("outcome", "source"),
    ),
    "guardrail_blocks": (
        "traza_guardrail_blocks",
        "Policies broken by blocked replies (a reply may break several)",
        ("policy",),
    ),
    "handoffs": (
        "traza_handoffs",
        "Handoffs to humans by reason (rule) and team",
        ("reason", "team"),
    ),
    "send_errors": (
        "traza_send_errors",
        "Send errors by provider code and channel; stage 'send' is our call (each attempt), "
        "'delivery' a failed status webhook",
        ("code", "channel", "stage"),
    ),
    "sla": ("traza_sla_clocks", "SLA clocks ended, by metric and outcome", ("metric", "outcome")),
    "model_fallbacks": (
        "traza_model_fallbacks",
        "Steps whose model call failed and fell back (from the trace, every process)",
        ("step",),
    ),
}


@dataclass
class _Histogram:
    buckets: list[int] = field(default_factory=lambda: [0] * len(MODEL_STEP_BUCKETS))
    count: int = 0
    total: float = 0.0

    def add(self, le: Iterable[int], count: int, total: float) -> _Histogram:
        return _Histogram(
            [a + b for a, b in zip(self.buckets, le, strict=True)],
            self.count + count,
            self.total + total,
        )


@dataclass
class _Snapshot:
    counters: dict[Key, int] = field(default_factory=dict)
    steps: dict[str, _Histogram] = field(default_factory=dict)
    queues: list[tuple[str, str, int, float | None]] = field(default_factory=list)
    up: bool = False
    seconds: float = 0.0


class DatabaseCollector:
    """Counters and gauges read from the database; `refresh()` before each exposition."""

    def __init__(self) -> None:
        """Start with nothing counted (the first refresh walks the whole trace once)."""
        self._lock = asyncio.Lock()
        self.reset()

    def reset(self) -> None:
        """Forget the running totals (the next refresh recounts from the first event)."""
        self._after = 0
        self._settled: dict[Key, int] = {}
        self._settled_steps: dict[str, _Histogram] = {}
        self._snapshot = _Snapshot()

    async def refresh(self) -> None:
        """Read what happened since the last refresh; on failure, report `up 0`."""
        from traza.db.engine import autocommit

        async with self._lock:
            started = time.perf_counter()
            try:
                async with autocommit() as conn:
                    await self._refresh(conn)
            except Exception:  # a scrape must answer even when the database does not
                log.exception("metrics: reading the database failed")
                self._snapshot = _Snapshot(up=False)
            self._snapshot.seconds = time.perf_counter() - started

    async def _refresh(self, conn: Any) -> None:
        rows = (
            await conn.execute(TALLY_SQL, {"after": self._after, "settle": SETTLE_SECONDS})
        ).all()
        watermark = next(r for r in rows if r.family == "watermark")
        settled_upto, newest = int(watermark.l1), int(watermark.l2)
        if newest < self._after:  # the table was emptied or restored: count again
            self.reset()
            await self._refresh(conn)
            return
        fresh: dict[Key, int] = {}
        for r in rows:
            if r.family == "watermark":
                continue
            key: Key = (r.family, r.l1 or "", r.l2 or "", r.l3 or "")
            target = self._settled if r.settled else fresh
            target[key] = target.get(key, 0) + int(r.n)
        step_rows = (
            await conn.execute(STEP_SECONDS_SQL, {"after": self._after, "settled": settled_upto})
        ).all()
        fresh_steps: dict[str, _Histogram] = {}
        for r in step_rows:
            target_steps = self._settled_steps if r.settled else fresh_steps
            target_steps[r.kind] = target_steps.get(r.kind, _Histogram()).add(
                r.le, int(r.n), float(r.total)
            )
        self._after = settled_upto
        counters = dict(self._settled)
        for key, n in fresh.items():
            counters[key] = counters.get(key, 0) + n
        steps = dict(self._settled_steps)
        for kind, h in fresh_steps.items():
            steps[kind] = steps.get(kind, _Histogram()).add(h.buckets, h.count, h.total)
        queues = [
            (r.queue, r.state, int(r.n), float(r.lag) if r.lag is not None else None)
            for r in (await conn.execute(QUEUE_SQL)).all()
        ]
        self._snapshot = _Snapshot(counters=counters, steps=steps, queues=queues, up=True)

    def collect(self) -> Iterator[Metric]:
        """The families of the last refresh."""
        snap = self._snapshot
        up = GaugeMetricFamily(
            "traza_metrics_database_up", "1 when the last scrape could read the database"
        )
        up.add_metric([], 1.0 if snap.up else 0.0)
        yield up
        took = GaugeMetricFamily(
            "traza_metrics_database_seconds", "Time the last scrape spent reading the database"
        )
        took.add_metric([], snap.seconds)
        yield took
        if not snap.up:
            return
        for family, (name, doc, labels) in FAMILIES.items():
            metric = CounterMetricFamily(name, doc, labels=list(labels))
            for (fam, l1, l2, l3), n in sorted(snap.counters.items()):
                if fam == family:
                    metric.add_metric([l1, l2, l3][: len(labels)], n)
            yield metric
        steps = HistogramMetricFamily(
            "traza_model_step_seconds",
            "Duration of trace steps that used the model (classification, reply, judge)",
            labels=["step"],
        )
        for kind, h in sorted(snap.steps.items()):
            buckets = [
                (f"{b:g}", float(n)) for b, n in zip(MODEL_STEP_BUCKETS, h.buckets, strict=True)
            ]
            steps.add_metric([kind], [*buckets, ("+Inf", float(h.count))], h.total)
        yield steps
        depth = GaugeMetricFamily(
            "traza_jobs",
            "procrastinate jobs by queue and state: waiting (due), scheduled (future), running",
            labels=["queue", "state"],
        )
        lag = GaugeMetricFamily(
            "traza_job_lag_seconds",
            "How long the oldest due job of each queue has been waiting to start (0: none)",
            labels=["queue"],
        )
        oldest: dict[str, float] = dict.fromkeys(QUEUES, 0.0)
        counts = {(q, state): 0 for q in QUEUES for state in ("waiting", "scheduled", "running")}
        for queue, state, n, late in snap.queues:
            counts[(queue, state)] = n
            oldest[queue] = max(oldest.get(queue, 0.0), late or 0.0)
        for (queue, state), n in sorted(counts.items()):
            depth.add_metric([queue, state], n)
        for queue, late in sorted(oldest.items()):
            lag.add_metric([queue], late)
        yield depth
        yield lag


DATABASE = DatabaseCollector()
DATABASE_REGISTRY = CollectorRegistry(auto_describe=False)
DATABASE_REGISTRY.register(DATABASE)
