"""monotonic counters: incremented with each trace event, in its transaction

A trigger on `trace_events` appends what each event counts (messages by status,
decisions, guardrail verdicts, handoffs, send errors, SLA outcomes, model fallbacks and
step durations) to `metric_counts`, in the transaction that writes the event, so a
counter never misses an event nor counts a rolled-back one, and nothing that erasure
redacts or deletes later takes a count back. `traza_compact_metrics()` folds the
appended rows into `metric_totals` (the sweep runs it every minute). Appending instead
of updating one row per counter keeps concurrent transactions from queueing on (or
deadlocking over) the same counter row.

Existing events are counted once here, as the scrape counted them until now.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03 18:00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Upper bounds (seconds) of `traza_model_step_seconds`, as the exposition labels them.
STEP_BUCKETS = ("0.1", "0.25", "0.5", "1", "2", "4", "8", "16", "32")

TABLES = """
CREATE TABLE metric_counts (
    family text NOT NULL,
    l1 text NOT NULL DEFAULT '',
    l2 text NOT NULL DEFAULT '',
    l3 text NOT NULL DEFAULT '',
    n bigint NOT NULL DEFAULT 1,
    total double precision NOT NULL DEFAULT 0
);
CREATE TABLE metric_totals (
    family text NOT NULL,
    l1 text NOT NULL,
    l2 text NOT NULL,
    l3 text NOT NULL,
    n bigint NOT NULL,
    total double precision NOT NULL DEFAULT 0,
    PRIMARY KEY (family, l1, l2, l3)
);
"""

_BUCKET = (
    "CASE "
    + " ".join(f"WHEN e.duration_ms <= {float(b) * 1000:g} THEN '{b}'" for b in STEP_BUCKETS)
    + " ELSE '+Inf' END"
)

# What one event counts. Written so that no event data can make it fail (no casts of
# values from `data`): a trace insert must never be refused because of a counter.
COUNT_FUNCTION = """
CREATE FUNCTION traza_count_event(e trace_events) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
  m_direction text;
  m_channel text;
  ids bigint[];
BEGIN
  IF e.kind = 'message.held_for_human' THEN
    SELECT array_agg((x #>> '{}')::bigint) INTO ids
      FROM jsonb_array_elements(CASE WHEN jsonb_typeof(e.data->'messages') = 'array'
                                     THEN e.data->'messages' ELSE '[]'::jsonb END) x
     WHERE jsonb_typeof(x) = 'number' AND (x #>> '{}') ~ '^[0-9]{1,18}$';
    INSERT INTO metric_counts (family, l1, l2, l3, n)
    SELECT 'messages', m.direction, coalesce(m.channel, ''), 'held_for_human', count(*)
      FROM messages m WHERE m.id = ANY(coalesce(ids, '{}'))
     GROUP BY 1, 2, 3, 4;
  ELSIF e.kind LIKE 'message.%' AND e.message_id IS NOT NULL THEN
    SELECT direction, coalesce(channel, '') INTO m_direction, m_channel
      FROM messages WHERE id = e.message_id;
    IF FOUND THEN
      INSERT INTO metric_counts (family, l1, l2, l3) VALUES (
        'messages', m_direction, m_channel,
        CASE e.kind WHEN 'message.received' THEN 'received'
                    WHEN 'message.queued' THEN 'queued'
                    WHEN 'message.sent' THEN 'accepted'
                    WHEN 'message.status' THEN coalesce(e.data->>'status', 'unknown')
                    WHEN 'message.send_failed' THEN 'send_failed'
                    WHEN 'message.skipped' THEN 'skipped'
                    ELSE substr(e.kind, 9) END);
      IF e.kind = 'message.send_failed'
         OR (e.kind = 'message.status' AND e.data->>'status' = 'failed') THEN
        INSERT INTO metric_counts (family, l1, l2, l3) VALUES (
          'send_errors', coalesce(e.data->>'error_code', 'none'),
          coalesce(e.data->>'channel', m_channel),
          CASE WHEN e.kind = 'message.status' THEN 'delivery' ELSE 'send' END);
      END IF;
    END IF;
  ELSIF e.kind = 'routing.decision' THEN
    INSERT INTO metric_counts (family, l1, l2, l3) VALUES (
      'decisions', coalesce(e.data->>'route', ''), coalesce(e.data->>'rule', ''),
      coalesce(e.data->'inputs'->>'intent', ''));
  ELSIF e.kind IN ('guardrail.verdict', 'guardrail.unavailable') THEN
    INSERT INTO metric_counts (family, l1, l2) VALUES (
      'guardrails',
      CASE WHEN e.data->'allowed' = 'true'::jsonb THEN 'allowed' ELSE 'blocked' END,
      coalesce(e.data->>'source', 'offline'));
    IF e.data->'allowed' = 'false'::jsonb THEN
      INSERT INTO metric_counts (family, l1)
      SELECT 'guardrail_blocks', p
        FROM jsonb_array_elements_text(CASE WHEN jsonb_typeof(e.data->'policies') = 'array'
                                            THEN e.data->'policies' ELSE '[]'::jsonb END) p;
    END IF;
  ELSIF e.kind = 'handoff.created' THEN
    INSERT INTO metric_counts (family, l1, l2) VALUES (
      'handoffs', coalesce(e.data->>'rule', 'handoff'), coalesce(e.data->>'team', ''));
  ELSIF e.kind IN ('sla.met', 'sla.breached', 'sla.cancelled') THEN
    INSERT INTO metric_counts (family, l1, l2) VALUES (
      'sla', coalesce(e.data->>'metric', ''), substr(e.kind, 5));
  END IF;
  IF e.llm THEN
    IF e.data ? 'llm_error' THEN
      INSERT INTO metric_counts (family, l1) VALUES ('model_fallbacks', e.kind);
    END IF;
    IF e.duration_ms IS NOT NULL THEN
      INSERT INTO metric_counts (family, l1, l2, total)
      VALUES ('model_steps', e.kind, {bucket}, e.duration_ms / 1000.0);
    END IF;
  END IF;
END
$$
""".replace("{bucket}", _BUCKET)

TRIGGER_FUNCTION = """
CREATE FUNCTION traza_count_trigger() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  PERFORM traza_count_event(NEW);
  RETURN NULL;
END
$$
"""

# Only the kinds that count call the function at all.
COUNTED = (
    "NEW.kind LIKE 'message.%' OR NEW.kind LIKE 'sla.%' OR NEW.llm OR NEW.kind IN "
    "('routing.decision', 'guardrail.verdict', 'guardrail.unavailable', 'handoff.created')"
)

# Fold the appended rows into the totals. One compactor at a time; DELETE … RETURNING
# takes exactly the rows it folds, so a row committed meanwhile waits for the next run.
COMPACT_FUNCTION = """
CREATE FUNCTION traza_compact_metrics() RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
  folded bigint;
BEGIN
  IF NOT pg_try_advisory_xact_lock(7303, 0) THEN
    RETURN 0;
  END IF;
  WITH d AS (
    DELETE FROM metric_counts RETURNING family, l1, l2, l3, n, total
  ), s AS (
    SELECT family, l1, l2, l3, sum(n) AS n, sum(total) AS total, count(*) AS folded_rows
      FROM d GROUP BY 1, 2, 3, 4
  ), i AS (
    INSERT INTO metric_totals (family, l1, l2, l3, n, total)
    SELECT family, l1, l2, l3, n, total FROM s
    ON CONFLICT (family, l1, l2, l3) DO UPDATE
      SET n = metric_totals.n + EXCLUDED.n, total = metric_totals.total + EXCLUDED.total
  )
  SELECT coalesce(sum(folded_rows), 0) INTO folded FROM s;
  RETURN folded;
END
$$
"""


def upgrade() -> None:
    op.execute(TABLES)
    op.execute(COUNT_FUNCTION)
    op.execute(TRIGGER_FUNCTION)
    op.execute(COMPACT_FUNCTION)
    op.execute(
        "CREATE TRIGGER trace_events_count AFTER INSERT ON trace_events FOR EACH ROW "
        f"WHEN ({COUNTED}) EXECUTE FUNCTION traza_count_trigger()"
    )
    # What the trace recorded so far, counted once.
    op.execute(
        "SELECT traza_count_event(t) FROM trace_events t WHERE "
        + COUNTED.replace("NEW.", "t.")
        + " ORDER BY t.id"
    )
    op.execute("SELECT traza_compact_metrics()")


def downgrade() -> None:
    op.execute("DROP TRIGGER trace_events_count ON trace_events")
    op.execute("DROP FUNCTION traza_count_trigger()")
    op.execute("DROP FUNCTION traza_count_event(trace_events)")
    op.execute("DROP FUNCTION traza_compact_metrics()")
    op.execute("DROP TABLE metric_totals")
    op.execute("DROP TABLE metric_counts")
