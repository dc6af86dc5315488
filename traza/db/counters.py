"""The metrics kept in the database: counters folded by a trigger, queue depth and backlog.

Read at scrape time by `DatabaseCollector` (see `traza.metrics` for the two kinds of
metrics and why): every process that serves `/metrics` shows the same figures.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import CollectorRegistry
from sqlalchemy import text

from traza.db.engine import autocommit
from traza.db.health import oldest_unprocessed_seconds
from traza.db.queue import OPS_QUEUE, SEND_QUEUE, TURN_QUEUE

log = logging.getLogger(__name__)

MODEL_STEP_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0)
"""Upper bounds of `traza_model_step_seconds` (the trigger of migration 0009 files each
step under the first bound it fits, as `f"{bound:g}"`, or `+Inf`)."""

# The counters: folded totals plus the rows appended since the last fold, read in one
# statement (one snapshot), so a fold running meanwhile is seen either before or after.
COUNTERS_SQL = text(
    """
    SELECT family, l1, l2, l3, sum(n) AS n, sum(total) AS total FROM (
      SELECT family, l1, l2, l3, n, total FROM metric_totals
      UNION ALL
      SELECT family, l1, l2, l3, n, total FROM metric_counts
    ) c
    GROUP BY 1, 2, 3, 4
    """
)
COMPACT_SQL = text("SELECT traza_compact_metrics()")


async def compact(conn: Any) -> int:
    """Fold the appended counter rows into the totals; return how many rows were folded.

    `conn`: a SQLAlchemy async connection or session. Safe to run from several
    processes at once (one folds, the others return 0).
    """
    folded = (await conn.execute(COMPACT_SQL)).scalar_one()
    return int(folded or 0)


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

    def add(self, le: str, count: int, total: float) -> None:
        """Count `count` steps filed under the bound `le` (cumulative buckets)."""
        self.count += count
        self.total += total
        for index, bound in enumerate(MODEL_STEP_BUCKETS):
            if le != "+Inf" and float(le) <= bound:
                self.buckets[index] += count


@dataclass
class _Snapshot:
    counters: dict[Key, int] = field(default_factory=dict)
    steps: dict[str, _Histogram] = field(default_factory=dict)
    queues: list[tuple[str, str, int, float | None]] = field(default_factory=list)
    oldest_unprocessed: float = 0.0
    up: bool = False
    seconds: float = 0.0


class DatabaseCollector:
    """Counters and gauges read from the database; `refresh()` before each exposition."""

    def __init__(self) -> None:
        """Nothing read yet (the first scrape reads everything: it is all in the database)."""
        self._lock = asyncio.Lock()
        self.reset()

    def reset(self) -> None:
        """Forget the last reading (the counters themselves live in the database)."""
        self._snapshot = _Snapshot()

    async def refresh(self) -> None:
        """Read the counters and gauges; on failure, report `up 0`."""
        async with self._lock:
            started = time.perf_counter()
            try:
                async with autocommit() as conn:
                    await self._refresh(conn)
            except Exception as exc:  # a scrape must answer even when the database does not
                log.warning("metrics: reading the database failed: %s", type(exc).__name__)
                self._snapshot = _Snapshot(up=False)
            self._snapshot.seconds = time.perf_counter() - started

    async def _refresh(self, conn: Any) -> None:
        counters: dict[Key, int] = {}
        steps: dict[str, _Histogram] = {}
        for r in (await conn.execute(COUNTERS_SQL)).all():
            if r.family == "model_steps":
                steps.setdefault(r.l1, _Histogram()).add(r.l2, int(r.n), float(r.total))
            else:
                counters[(r.family, r.l1, r.l2, r.l3)] = int(r.n)
        queues = [
            (r.queue, r.state, int(r.n), float(r.lag) if r.lag is not None else None)
            for r in (await conn.execute(QUEUE_SQL)).all()
        ]
        self._snapshot = _Snapshot(
            counters=counters,
            steps=steps,
            queues=queues,
            oldest_unprocessed=await oldest_unprocessed_seconds(conn),
            up=True,
        )

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
        backlog = GaugeMetricFamily(
            "traza_oldest_unprocessed_seconds",
            "How long the oldest inbound message no turn has taken yet has waited (0: none)",
        )
        backlog.add_metric([], snap.oldest_unprocessed)
        yield backlog


DATABASE = DatabaseCollector()
DATABASE_REGISTRY = CollectorRegistry(auto_describe=False)
DATABASE_REGISTRY.register(DATABASE)
