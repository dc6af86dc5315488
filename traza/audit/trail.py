"""The trail in the database: verify every chain and anchor, write anchors, export a trail.

Verification reads events in chain order with a server-side cursor and recomputes every
hash in Python (`traza.audit.chain`), so it trusts neither the trigger nor the stored
hashes. Anchors are written under one advisory lock (they form a chain of their own)
and only after the events they cover have been verified.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from traza import clock
from traza.audit.chain import (
    Anchor,
    Break,
    ChainResult,
    ChainVerifier,
    Event,
    anchor_hash,
    check_head,
    export_anchor_line,
    export_event_line,
    export_header,
    verify_anchor,
)
from traza.db import locks
from traza.db.engine import get_engine, session_scope

log = logging.getLogger(__name__)

COLUMNS = (
    "e.id, e.seq, e.conversation_id, e.at, e.kind, e.actor, e.duration_ms, e.message_id, "
    "e.thread_id, e.step, e.llm, e.data::text AS data_text, e.data_hash, e.prev_hash, e.hash"
)
CHAIN = "coalesce(e.conversation_id, 0)"  # the chain's key, as the unique index spells it
ALL_EVENTS = f"SELECT {COLUMNS}, 1 AS start FROM trace_events e ORDER BY {CHAIN}, e.seq"
ONE_CHAIN = f"SELECT {COLUMNS}, 1 AS start FROM trace_events e WHERE {CHAIN} = :cid ORDER BY e.seq"
# From the first event at or after `since` in each chain; the event before it is the
# trusted base the verification starts from.
SINCE = f"""
WITH starts AS (
  SELECT conversation_id, min(seq) AS start FROM trace_events
   WHERE at >= :since AND (CAST(:cid AS bigint) IS NULL OR conversation_id = :cid)
   GROUP BY conversation_id
)
SELECT {COLUMNS}, s.start FROM trace_events e
  JOIN starts s ON {CHAIN} = coalesce(s.conversation_id, 0)
 WHERE e.seq >= s.start - 1
 ORDER BY {CHAIN}, e.seq
"""
CHAINS = """
SELECT count(*) FROM (SELECT DISTINCT conversation_id FROM trace_events
 WHERE (CAST(:since AS timestamptz) IS NULL OR at >= :since)
   AND (CAST(:cid AS bigint) IS NULL OR conversation_id = :cid)) c
"""
# The event at each anchored head (`heads`: a jsonb array of [conversation_id, seq, …]).
AT_HEADS = f"""
SELECT h.ord, x.* FROM jsonb_array_elements(CAST(:heads AS jsonb)) WITH ORDINALITY h(v, ord)
LEFT JOIN LATERAL (
  SELECT {COLUMNS} FROM trace_events e
   WHERE {CHAIN} = coalesce((h.v->>0)::bigint, 0) AND e.seq = (h.v->>1)::bigint
) x ON true
ORDER BY h.ord
"""
ANCHOR_COLUMNS = "id, day, created_at, created_by, events, chains, heads, prev_hash, hash"
HEADS = f"""
SELECT c.id AS conversation_id, h.seq, h.hash FROM conversations c
CROSS JOIN LATERAL (SELECT seq, hash FROM trace_events e WHERE {CHAIN} = c.id
                     ORDER BY seq DESC LIMIT 1) h
UNION ALL
SELECT NULL, seq, hash FROM (SELECT seq, hash FROM trace_events e WHERE {CHAIN} = 0
                              ORDER BY seq DESC LIMIT 1) n
"""
ANCHORED = """
SELECT h->>0 AS conversation_id, (h->>1)::bigint AS seq, h->>2 AS hash FROM (
  SELECT h, row_number() OVER (PARTITION BY h->>0 ORDER BY (h->>1)::bigint DESC) AS n
    FROM audit_anchors, jsonb_array_elements(heads) h
) last WHERE n = 1
"""
# Events from each moved chain's last anchored position (its base) to its head.
MOVED_EVENTS = f"""
SELECT {COLUMNS}, m.start FROM jsonb_to_recordset(CAST(:moved AS jsonb))
       AS m(conversation_id bigint, start bigint, head bigint)
  JOIN trace_events e ON {CHAIN} = coalesce(m.conversation_id, 0)
 WHERE e.seq BETWEEN m.start - 1 AND m.head
 ORDER BY {CHAIN}, e.seq
"""


def _event(row: Row[Any]) -> Event:
    return Event(
        id=row.id,
        seq=row.seq,
        conversation_id=row.conversation_id,
        at=row.at,
        kind=row.kind,
        actor=row.actor,
        duration_ms=row.duration_ms,
        message_id=row.message_id,
        thread_id=row.thread_id,
        step=row.step,
        llm=row.llm,
        data_hash=bytes(row.data_hash),
        prev_hash=bytes(row.prev_hash) if row.prev_hash is not None else None,
        hash=bytes(row.hash),
        data_text=row.data_text,
    )


def _anchor(row: Row[Any]) -> Anchor:
    return Anchor(
        id=row.id,
        day=row.day,
        created_at=row.created_at,
        created_by=row.created_by,
        events=row.events,
        chains=row.chains,
        heads=row.heads,
        prev_hash=bytes(row.prev_hash) if row.prev_hash is not None else None,
        hash=bytes(row.hash),
    )


@dataclass(slots=True)
class Report:
    """What `traza audit verify` found."""

    chains: int = 0
    events: int = 0
    redacted: list[int] = field(default_factory=list)
    anchors: int = 0
    anchored_heads: int = 0
    breaks: list[Break] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Whether every chain and anchor verified."""
        return not self.breaks

    def as_dict(self) -> dict[str, Any]:
        """The report as JSON-ready fields."""
        return {
            "ok": self.ok,
            "chains": self.chains,
            "events": self.events,
            "redacted": self.redacted,
            "anchors": self.anchors,
            "anchored_heads": self.anchored_heads,
            "breaks": [b.as_dict() for b in self.breaks],
        }


async def _chains(
    conn: AsyncConnection, sql: str, params: dict[str, Any]
) -> AsyncIterator[ChainResult]:
    """Stream events in chain order and verify each chain as it goes by."""
    stream = await conn.stream(text(sql).execution_options(yield_per=2000), params)
    verifier: ChainVerifier | None = None
    key: object = object()
    async for rows in stream.partitions():
        for row in rows:
            if row.conversation_id != key:
                if verifier is not None:
                    yield verifier.finish()
                key = row.conversation_id
                verifier = None
            event = _event(row)
            if event.seq < row.start:  # the trusted base of a `--since` verification
                verifier = ChainVerifier(event.conversation_id, base=(event.seq, event.hash))
                continue
            if verifier is None:
                verifier = ChainVerifier(event.conversation_id)
            verifier.add(event)
    if verifier is not None:
        yield verifier.finish()


async def count_chains(*, conversation_id: int | None = None, since: date | None = None) -> int:
    """How many chains `verify` will read (for a progress bar)."""
    async with get_engine().connect() as conn:
        value = await conn.scalar(text(CHAINS), {"since": _start_of(since), "cid": conversation_id})
    return int(value or 0)


def _start_of(day: date | None) -> datetime | None:
    return datetime.combine(day, time(), tzinfo=UTC) if day is not None else None


async def verify(
    *,
    conversation_id: int | None = None,
    since: date | None = None,
    on_chain: Callable[[ChainResult], None] | None = None,
) -> Report:
    """Verify every chain (or one conversation's, or from `since`) and every anchor."""
    report = Report()
    if since is not None:
        sql, params = SINCE, {"since": _start_of(since), "cid": conversation_id}
    elif conversation_id is not None:
        sql, params = ONE_CHAIN, {"cid": conversation_id}
    else:
        sql, params = ALL_EVENTS, {}
    async with get_engine().connect() as conn:
        await conn.execute(text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY"))
        async for result in _chains(conn, sql, params):
            report.chains += 1
            report.events += result.events
            report.redacted.extend(result.redacted)
            if result.broken is not None:
                report.breaks.append(result.broken)
            if on_chain is not None:
                on_chain(result)
        await _verify_anchors(conn, report, conversation_id=conversation_id, since=since)
    return report


async def _verify_anchors(
    conn: AsyncConnection, report: Report, *, conversation_id: int | None, since: date | None
) -> None:
    rows = await conn.execute(text(f"SELECT {ANCHOR_COLUMNS} FROM audit_anchors ORDER BY id"))
    previous: Anchor | None = None
    broken_anchor = False
    for anchor in (_anchor(r) for r in rows):
        report.anchors += 1
        problem = verify_anchor(anchor, previous)
        previous = anchor
        if problem is not None:
            if not broken_anchor:
                report.breaks.append(problem)
            broken_anchor = True
            continue
        if since is not None and str(anchor.day) < since.isoformat():
            continue
        heads = [h for h in anchor.heads if conversation_id is None or h[0] == conversation_id]
        if not heads:
            continue
        found = await conn.execute(text(AT_HEADS), {"heads": json.dumps(heads)})
        for head, row in zip(heads, found, strict=True):
            report.anchored_heads += 1
            event = _event(row) if row.id is not None else None
            problem = check_head(anchor, head, event)
            if problem is not None and not any(
                b.conversation_id == problem.conversation_id and b.anchor_id is not None
                for b in report.breaks
            ):
                report.breaks.append(problem)


# --- anchors ------------------------------------------------------------------------


@dataclass(slots=True)
class AnchorResult:
    """An anchor just written, and the chains left out of it because they are broken."""

    anchor: Anchor
    breaks: list[Break]


async def write_anchor(*, created_by: str, day: date | None = None) -> AnchorResult:
    """Anchor every chain that moved since the last anchor, after verifying the new events.

    A chain whose new events do not verify is left out (its head stays at its last
    anchored position) and reported, so an anchor never vouches for a broken chain.
    """
    async with session_scope() as session:
        conn = await session.connection()
        await conn.execute(text("SELECT pg_advisory_xact_lock(:ns, 0)"), {"ns": locks.AUDIT_ANCHOR})
        previous_row = (
            await conn.execute(
                text(f"SELECT {ANCHOR_COLUMNS} FROM audit_anchors ORDER BY id DESC LIMIT 1")
            )
        ).first()
        previous = _anchor(previous_row) if previous_row is not None else None
        anchored: dict[int | None, tuple[int, str]] = {
            (int(r.conversation_id) if r.conversation_id is not None else None): (r.seq, r.hash)
            for r in await conn.execute(text(ANCHORED))
        }
        moved = []
        for row in await conn.execute(text(HEADS)):
            last = anchored.get(row.conversation_id, (0, ""))[0]
            if row.seq > last:
                moved.append(
                    {"conversation_id": row.conversation_id, "start": last + 1, "head": row.seq}
                )
        breaks: list[Break] = []
        heads: list[list[Any]] = []
        events = 0
        async for result in _chains(conn, MOVED_EVENTS, {"moved": json.dumps(moved)}):
            cid = result.conversation_id
            base = anchored.get(cid)
            problem = result.broken
            if problem is None and base is not None:
                problem = _base_changed(cid, base, result)
            if problem is not None:
                breaks.append(problem)
                continue
            assert result.head is not None
            heads.append([cid, result.head[0], result.head[1].hex()])
            events += result.head[0] - (base[0] if base is not None else 0)
        heads.sort(key=lambda h: (h[0] is not None, h[0] or 0))
        now = clock.now()
        anchor = Anchor(
            id=0,
            day=day or now.date(),
            created_at=now,
            created_by=created_by,
            events=events,
            chains=len(heads),
            heads=heads,
            prev_hash=previous.hash if previous is not None else None,
            hash=b"",
        )
        anchor.hash = anchor_hash(anchor)
        anchor.id = (
            await conn.execute(
                text(
                    "INSERT INTO audit_anchors (day, created_at, created_by, events, chains, "
                    "heads, prev_hash, hash) VALUES (:day, :created_at, :created_by, :events, "
                    ":chains, CAST(:heads AS jsonb), :prev_hash, :hash) RETURNING id"
                ),
                {
                    "day": anchor.day,
                    "created_at": now,
                    "created_by": created_by,
                    "events": events,
                    "chains": len(heads),
                    "heads": json.dumps(heads),
                    "prev_hash": anchor.prev_hash,
                    "hash": anchor.hash,
                },
            )
        ).scalar_one()
    for problem in breaks:
        log.error("audit: not anchored, %s: %s", problem.where(), problem.detail)
    return AnchorResult(anchor=anchor, breaks=breaks)


def _base_changed(cid: int | None, base: tuple[int, str], result: ChainResult) -> Break | None:
    """The event at the last anchored position must still carry the anchored hash."""
    seq, anchored = base
    found = result.base[1].hex() if result.base is not None and result.base[0] == seq else None
    if found == anchored:
        return None
    return Break(
        problem="anchor_mismatch" if found else "anchored_event_missing",
        detail="the event at the chain's last anchored position no longer carries the "
        "anchored hash: the chain was rewritten after it was anchored",
        conversation_id=cid,
        seq=seq,
        expected=anchored,
        found=found or "none",
    )


# --- export ---------------------------------------------------------------------------


async def export_conversation(conversation_id: int) -> AsyncIterator[str]:
    """A conversation's trail as NDJSON lines: a header, every event, the anchors covering it."""
    async with get_engine().connect() as conn:
        await conn.execute(text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY"))
        count = await conn.scalar(
            text("SELECT count(*) FROM trace_events e WHERE coalesce(conversation_id, 0) = :c"),
            {"c": conversation_id},
        )
        yield export_header(conversation_id, events=int(count or 0), exported_at=clock.now())
        stream = await conn.stream(
            text(ONE_CHAIN).execution_options(yield_per=1000), {"cid": conversation_id}
        )
        async for row in stream:
            yield export_event_line(_event(row))
        anchors = await conn.execute(
            text(
                f"SELECT {ANCHOR_COLUMNS} FROM audit_anchors "
                "WHERE heads @> jsonb_build_array(jsonb_build_array(CAST(:c AS bigint))) "
                "ORDER BY id"
            ),
            {"c": conversation_id},
        )
        for row in anchors:
            yield export_anchor_line(_anchor(row))
