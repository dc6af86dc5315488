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

from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncResult

from traza import clock
from traza.audit import repository
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
from traza.db.engine import get_engine, session_scope

log = logging.getLogger(__name__)


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


async def _chains(stream: AsyncResult[Any]) -> AsyncIterator[ChainResult]:
    """Verify each chain of a stream of events in chain order as it goes by."""
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
        value = await repository.count_chains(
            conn, conversation_id=conversation_id, since=_start_of(since)
        )
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
    async with get_engine().connect() as conn:
        await repository.read_one_snapshot(conn)
        events = await repository.stream_events(
            conn, conversation_id=conversation_id, since=_start_of(since)
        )
        async for result in _chains(events):
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
    rows = await repository.all_anchors(conn)
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
        found = await repository.events_at_heads(conn, heads=json.dumps(heads))
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
        await repository.lock_anchors(conn)
        previous_row = await repository.last_anchor(conn)
        previous = _anchor(previous_row) if previous_row is not None else None
        anchored: dict[int | None, tuple[int, str]] = {
            (int(r.conversation_id) if r.conversation_id is not None else None): (r.seq, r.hash)
            for r in await repository.anchored_heads(conn)
        }
        moved = []
        for row in await repository.chain_heads(conn):
            last = anchored.get(row.conversation_id, (0, ""))[0]
            if row.seq > last:
                moved.append(
                    {"conversation_id": row.conversation_id, "start": last + 1, "head": row.seq}
                )
        breaks: list[Break] = []
        heads: list[list[Any]] = []
        events = 0
        moved_events = await repository.stream_moved_events(conn, moved=json.dumps(moved))
        async for result in _chains(moved_events):
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
        anchor.id = await repository.insert_anchor(
            conn,
            day=anchor.day,
            created_at=now,
            created_by=created_by,
            events=events,
            chains=len(heads),
            heads=json.dumps(heads),
            prev_hash=anchor.prev_hash,
            hash=anchor.hash,
        )
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
        await repository.read_one_snapshot(conn)
        count = await repository.count_conversation_events(conn, conversation_id=conversation_id)
        yield export_header(conversation_id, events=int(count or 0), exported_at=clock.now())
        stream = await repository.stream_conversation_events(conn, conversation_id=conversation_id)
        async for row in stream:
            yield export_event_line(_event(row))
        anchors = await repository.anchors_covering(conn, conversation_id=conversation_id)
        for row in anchors:
            yield export_anchor_line(_anchor(row))
