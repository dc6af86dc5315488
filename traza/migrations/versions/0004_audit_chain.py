"""audit chain: hash-chained, append-only trace events and daily anchors

Each trace event gets `seq` (its position in its conversation's chain; events without a
conversation form one chain of their own), `data_hash`, `prev_hash` and `hash`, all
computed by a BEFORE INSERT trigger; UPDATE and DELETE are refused except the recorded
redaction path of data-subject erasure. The canonical form hashed is defined (and
re-implemented for offline verification) in `traza.audit.chain`.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The record an event's hash covers: PostgreSQL's jsonb text of this object (keys sorted
# by byte length, then bytes). `traza.audit.chain.event_record` builds the same object.
# Written out inline (for the trigger, `{e}` is NEW): a function call per row costs more.
RECORD = """jsonb_build_object(
    'v', 1,
    'id', {e}.id,
    'seq', {e}.seq,
    'conversation_id', {e}.conversation_id,
    'at', to_char({e}.at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
    'kind', {e}.kind,
    'actor', {e}.actor,
    'duration_ms', {e}.duration_ms::numeric,
    'message_id', {e}.message_id,
    'thread_id', {e}.thread_id,
    'step', {e}.step,
    'llm', {e}.llm,
    'data_hash', encode({e}.data_hash, 'hex'),
    'prev_hash', encode({e}.prev_hash, 'hex'))"""


def _hash_of(e: str) -> str:
    return f"sha256(convert_to({RECORD.format(e=e)}::text, 'UTF8'))"


# One writer per chain at a time (a transaction-scoped advisory lock, namespace 7302),
# so `seq` and `prev_hash` follow commit order; the lock is released at commit. A chain
# is `coalesce(conversation_id, 0)` (ids start at 1), so its head is one backward step of
# the unique index. `enable_seqscan = off`: statistics of an empty table would otherwise
# plan a scan of the whole table per insert, for as long as the plan stays cached.
CHAIN_FUNCTION = """
CREATE FUNCTION traza_trace_chain() RETURNS trigger
LANGUAGE plpgsql SET enable_seqscan = off AS $$
DECLARE
  last_seq bigint;
  last_hash bytea;
BEGIN
  PERFORM pg_advisory_xact_lock(7302, coalesce(mod(NEW.conversation_id, 2147483647)::int, -1));
  SELECT seq, hash INTO last_seq, last_hash FROM trace_events
   WHERE coalesce(conversation_id, 0) = coalesce(NEW.conversation_id, 0)
   ORDER BY seq DESC LIMIT 1;
  NEW.seq := coalesce(last_seq, 0) + 1;
  NEW.prev_hash := last_hash;
  NEW.data_hash := sha256(convert_to(NEW.data::text, 'UTF8'));
  NEW.hash := {hash_new};
  RETURN NEW;
END
$$
""".replace("{hash_new}", _hash_of("NEW"))

# UPDATE and DELETE are refused. The one exception is erasure's recorded redaction: with
# `SET LOCAL traza.redaction = 'on'`, `data` (and nothing else) may be replaced by
# `{"$redacted": {...}}`, once; the hashes keep covering the original data.
GUARD_FUNCTION = """
CREATE FUNCTION traza_trace_guard() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'UPDATE'
     AND current_setting('traza.redaction', true) = 'on'
     AND (to_jsonb(NEW) - 'data') = (to_jsonb(OLD) - 'data')
     AND NOT (OLD.data ? '$redacted')
     AND jsonb_typeof(NEW.data -> '$redacted') = 'object'
     AND NOT EXISTS (SELECT 1 FROM jsonb_object_keys(NEW.data) k WHERE k <> '$redacted')
  THEN
    RETURN NEW;
  END IF;
  RAISE EXCEPTION 'trace_events is append-only: % of event % refused', TG_OP, OLD.id
    USING HINT = 'the audit trail cannot be changed; personal data is erased with '
                 '`traza subjects erase`, which records the redaction';
END
$$
"""

ANCHOR_GUARD_FUNCTION = """
CREATE FUNCTION traza_anchor_guard() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'audit_anchors is append-only: % of anchor % refused', TG_OP, OLD.id;
END
$$
"""

# Existing events are chained in id order, as if the trigger had written them.
BACKFILL = """
DO $$
DECLARE
  r record;
  prev bytea;
BEGIN
  UPDATE trace_events e
     SET seq = n.seq, data_hash = sha256(convert_to(e.data::text, 'UTF8'))
    FROM (SELECT id, row_number() OVER (PARTITION BY conversation_id ORDER BY id) AS seq
            FROM trace_events) n
   WHERE n.id = e.id;
  FOR r IN SELECT id, seq FROM trace_events ORDER BY conversation_id NULLS FIRST, seq LOOP
    IF r.seq = 1 THEN
      prev := NULL;
    END IF;
    UPDATE trace_events e SET prev_hash = prev WHERE e.id = r.id;
    UPDATE trace_events e
       SET hash = {hash_e}
     WHERE e.id = r.id
    RETURNING e.hash INTO prev;
  END LOOP;
END
$$
""".replace("{hash_e}", _hash_of("e"))


def upgrade() -> None:
    op.add_column("trace_events", sa.Column("seq", sa.BigInteger(), nullable=True))
    op.add_column("trace_events", sa.Column("data_hash", sa.LargeBinary(), nullable=True))
    op.add_column("trace_events", sa.Column("prev_hash", sa.LargeBinary(), nullable=True))
    op.add_column("trace_events", sa.Column("hash", sa.LargeBinary(), nullable=True))
    op.execute(BACKFILL)
    for column in ("seq", "data_hash", "hash"):
        op.alter_column("trace_events", column, nullable=False)
    op.create_index(
        "uq_trace_events_chain",
        "trace_events",
        [sa.text("coalesce(conversation_id, 0)"), "seq"],
        unique=True,
    )
    op.execute(CHAIN_FUNCTION)
    op.execute(GUARD_FUNCTION)
    op.execute(
        "CREATE TRIGGER trace_events_chain BEFORE INSERT ON trace_events "
        "FOR EACH ROW EXECUTE FUNCTION traza_trace_chain()"
    )
    op.execute(
        "CREATE TRIGGER trace_events_append_only BEFORE UPDATE OR DELETE ON trace_events "
        "FOR EACH ROW EXECUTE FUNCTION traza_trace_guard()"
    )

    op.create_table(
        "audit_anchors",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        sa.Column("events", sa.BigInteger(), nullable=False),
        sa.Column("chains", sa.Integer(), nullable=False),
        sa.Column(
            "heads", postgresql.JSONB(astext_type=sa.Text()), server_default="[]", nullable=False
        ),
        sa.Column("prev_hash", sa.LargeBinary(), nullable=True),
        sa.Column("hash", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_anchors")),
    )
    op.create_index("ix_audit_anchors_day", "audit_anchors", ["day"], unique=False)
    op.execute(ANCHOR_GUARD_FUNCTION)
    op.execute(
        "CREATE TRIGGER audit_anchors_append_only BEFORE UPDATE OR DELETE ON audit_anchors "
        "FOR EACH ROW EXECUTE FUNCTION traza_anchor_guard()"
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER audit_anchors_append_only ON audit_anchors")
    op.execute("DROP FUNCTION traza_anchor_guard()")
    op.drop_index("ix_audit_anchors_day", table_name="audit_anchors")
    op.drop_table("audit_anchors")
    op.execute("DROP TRIGGER trace_events_append_only ON trace_events")
    op.execute("DROP TRIGGER trace_events_chain ON trace_events")
    op.execute("DROP FUNCTION traza_trace_guard()")
    op.execute("DROP FUNCTION traza_trace_chain()")
    op.drop_index("uq_trace_events_chain", table_name="trace_events")
    for column in ("hash", "prev_hash", "data_hash", "seq"):
        op.drop_column("trace_events", column)
