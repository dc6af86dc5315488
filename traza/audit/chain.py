r"""What an audit hash covers, and how a chain of trace events is verified.

Every trace event is hashed when it is inserted, by a database trigger (migration
0004), and chained to the previous event of its conversation; events without a
conversation form one more chain. This module is the reference definition of those
hashes: `traza audit verify` and the offline check of an exported trail
(`verify_export`) recompute them here, in Python, without trusting the database.

Canonical JSON (`canonical`) is PostgreSQL's `jsonb` text form:

- objects: keys sorted by the length of their UTF-8 bytes, then bytewise; `", "`
  between members and `": "` after each key; arrays `[a, b]`; no other whitespace;
- strings: UTF-8, with `\"`, `\\`, `\b`, `\f`, `\n`, `\r`, `\t` escaped and other
  characters below U+0020 as `\u00xx` (lower-case hex); everything else as is;
- numbers: plain decimal notation, never an exponent, with the scale they were written
  with (`1.50` stays `1.50`, `1e2` is `100`, `-0` is `0`); `true`, `false`, `null`.

Read JSON with `parse_json` (numbers as `Decimal`) to keep every digit; a float is
taken as Python's `repr` of it, which is what `json.dumps` wrote to the database.

An event's hashes (hex in exports, bytes in the table):

- `data_hash = sha256(canonical(data))`;
- `hash = sha256(canonical(record))`, where `record` (`event_record`) is
  `{"v": 1, "id", "seq", "conversation_id", "at", "kind", "actor", "duration_ms",
  "message_id", "thread_id", "step", "llm", "data_hash", "prev_hash"}` with `at` as
  `YYYY-MM-DDTHH:MM:SS.ffffffZ` (UTC), `duration_ms` rounded to 15 significant digits
  (`float8::numeric`), `data_hash` and `prev_hash` as lower-case hex (`prev_hash` is
  the previous event's `hash`, `null` for the first event of a chain) and `seq` the
  event's 1-based position in its chain.

A redacted event (data-subject erasure) keeps its hashes and `data` becomes
`{"$redacted": {...}}`; the chain still verifies through the stored `data_hash`, and the
redaction is valid only if a later `subject.erased` event of the same chain lists the
event's id in `redacted_event_ids`.

An anchor hashes `anchor_record`: the heads (`[conversation_id, seq, hash]`) of the
chains that moved since the previous anchor, chained to that anchor's hash.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

FORMAT = "traza.audit/1"
REDACTED = "$redacted"
ERASED_KIND = "subject.erased"
RECORD_FIELDS = (
    "v",
    "id",
    "seq",
    "conversation_id",
    "at",
    "kind",
    "actor",
    "duration_ms",
    "message_id",
    "thread_id",
    "step",
    "llm",
    "data_hash",
    "prev_hash",
)
DESCRIPTION = (
    "hash = sha256(canonical(record)); data_hash = sha256(canonical(data)); record = "
    "{v: 1, id, seq, conversation_id, at (UTC, YYYY-MM-DDTHH:MM:SS.ffffffZ), kind, actor, "
    "duration_ms (15 significant digits), message_id, thread_id, step, llm, data_hash (hex), "
    "prev_hash (hex of the previous event's hash, null first)}; canonical = PostgreSQL jsonb "
    "text (keys sorted by UTF-8 length then bytes, ', ' and ': ' separators, numbers in plain "
    'decimal notation); redacted data is {"$redacted": {...}}, verified through data_hash '
    "and listed by a later subject.erased event"
)

_ESCAPES = {chr(c): f"\\u{c:04x}" for c in range(0x20)}
_ESCAPES.update({'"': '\\"', "\\": "\\\\", "\b": "\\b", "\f": "\\f", "\n": "\\n"})
_ESCAPES.update({"\r": "\\r", "\t": "\\t"})
_ESCAPED = re.compile(r'[\x00-\x1f"\\]')


def parse_json(text: str | bytes) -> Any:
    """JSON with its numbers as `Decimal`, so `canonical` gives back every digit."""
    return json.loads(text, parse_float=Decimal)


def _string(value: str) -> str:
    return '"' + _ESCAPED.sub(lambda m: _ESCAPES[m.group()], value) + '"'


def _number(value: Decimal) -> str:
    if not value.is_finite():
        raise ValueError(f"{value} cannot be stored in jsonb")
    if value.is_zero():
        value = value.copy_abs()
    return format(value, "f")


def _key(key: str) -> tuple[int, bytes]:
    raw = key.encode()
    return len(raw), raw


def canonical(value: Any) -> str:
    """The PostgreSQL `jsonb` text of `value` (see the module docstring)."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, Decimal):
        return _number(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{value} cannot be stored in jsonb")
        return _number(Decimal(repr(value)))
    if isinstance(value, Mapping):
        keys = sorted(value, key=_key)
        return "{" + ", ".join(f"{_string(k)}: {canonical(value[k])}" for k in keys) + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(canonical(v) for v in value) + "]"
    raise TypeError(f"cannot hash a {type(value).__name__}")


def sha256(text: str) -> bytes:
    """SHA-256 of the UTF-8 bytes of `text`."""
    return hashlib.sha256(text.encode()).digest()


def data_hash(data: Any) -> bytes:
    """The `data_hash` of an event's data."""
    return sha256(canonical(data))


def at_text(at: datetime | str) -> str:
    """An event's time as hashed: UTC, microseconds, `Z`."""
    if isinstance(at, str):
        return at
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def duration_value(value: float | Decimal | str | None) -> Decimal | str | None:
    """`duration_ms` as hashed: `float8::numeric`, 15 significant digits."""
    if value is None or isinstance(value, str):
        return value
    number = float(value)
    if math.isnan(number):
        return "NaN"
    if math.isinf(number):
        return "Infinity" if number > 0 else "-Infinity"
    return Decimal(format(number, ".15g"))


def is_redacted(data: Any) -> bool:
    """Whether `data` is the marker erasure left in place of an event's data."""
    return isinstance(data, dict) and len(data) == 1 and isinstance(data.get(REDACTED), dict)


@dataclass(slots=True)
class Event:
    """A trace event as stored: its fields, its data and its three hashes."""

    id: int
    seq: int
    conversation_id: int | None
    at: datetime | str
    kind: str
    actor: str
    duration_ms: float | Decimal | str | None
    message_id: int | None
    thread_id: str | None
    step: int | None
    llm: bool
    data_hash: bytes
    prev_hash: bytes | None
    hash: bytes
    data_text: str | None = None
    """The data exactly as PostgreSQL prints it (from the database), if known."""
    data_value: Any = None

    @property
    def data(self) -> Any:
        """The event's data (numbers as `Decimal` when read from text)."""
        if self.data_value is None and self.data_text is not None:
            self.data_value = parse_json(self.data_text)
        return self.data_value

    @property
    def redacted(self) -> bool:
        """Whether the data is erasure's redaction marker."""
        if self.data_text is not None and f'"{REDACTED}"' not in self.data_text:
            return False
        return is_redacted(self.data)

    def computed_data_hash(self) -> bytes:
        """The hash of the data as it is now."""
        if self.data_text is not None:
            return sha256(self.data_text)
        return data_hash(self.data)


def event_record(event: Event) -> dict[str, Any]:
    """The object whose canonical text an event's `hash` covers."""
    return {
        "v": 1,
        "id": event.id,
        "seq": event.seq,
        "conversation_id": event.conversation_id,
        "at": at_text(event.at),
        "kind": event.kind,
        "actor": event.actor,
        "duration_ms": duration_value(event.duration_ms),
        "message_id": event.message_id,
        "thread_id": event.thread_id,
        "step": event.step,
        "llm": event.llm,
        "data_hash": event.data_hash.hex(),
        "prev_hash": event.prev_hash.hex() if event.prev_hash is not None else None,
    }


def event_hash(event: Event) -> bytes:
    """The hash an event must carry, given its fields, `data_hash` and `prev_hash`."""
    return sha256(canonical(event_record(event)))


@dataclass(frozen=True, slots=True)
class Break:
    """The first broken link of a chain (or of the anchors), said precisely."""

    problem: str
    """`events_missing`, `link_broken`, `data_changed`, `fields_changed`, `hash_changed`,
    `unauthorised_redaction`, `anchor_changed`, `anchor_link_broken`, `anchor_mismatch`,
    `anchored_event_missing`."""
    detail: str
    conversation_id: int | None = None
    event_id: int | None = None
    seq: int | None = None
    kind: str | None = None
    expected: str | None = None
    found: str | None = None
    anchor_id: int | None = None

    def where(self) -> str:
        """`conversation 12, event 345 (seq 7, routing.decision)` or `anchor 3`."""
        parts = []
        if self.anchor_id is not None:
            parts.append(f"anchor {self.anchor_id}")
        chain = (
            f"conversation {self.conversation_id}"
            if self.conversation_id is not None
            else "events without a conversation"
        )
        if self.event_id is not None:
            parts.append(f"{chain}, event {self.event_id} (seq {self.seq}, {self.kind})")
        elif self.seq is not None:
            parts.append(f"{chain}, seq {self.seq}")
        return "; ".join(parts) or chain

    def as_dict(self) -> dict[str, Any]:
        """The break as JSON-ready fields."""
        return {
            "problem": self.problem,
            "where": self.where(),
            "detail": self.detail,
            "conversation_id": self.conversation_id,
            "event_id": self.event_id,
            "seq": self.seq,
            "kind": self.kind,
            "expected": self.expected,
            "found": self.found,
            "anchor_id": self.anchor_id,
        }


@dataclass(slots=True)
class ChainResult:
    """What verifying one chain found."""

    conversation_id: int | None
    events: int = 0
    redacted: list[int] = field(default_factory=list)
    head: tuple[int, bytes] | None = None
    """(seq, hash) of the last event verified."""
    base: tuple[int, bytes] | None = None
    """(seq, hash) of the event the verification started after, if not the chain's start."""
    broken: Break | None = None


def _hex(value: bytes | None) -> str:
    return value.hex() if value is not None else "null"


def _break(problem: str, event: Event, detail: str, expected: str, found: str) -> Break:
    return Break(
        problem=problem,
        detail=detail,
        conversation_id=event.conversation_id,
        event_id=event.id,
        seq=event.seq,
        kind=event.kind,
        expected=expected,
        found=found,
    )


def _hash_break(event: Event, recomputed: bytes, following: Event | None) -> Break:
    """The stored hash disagrees with the fields: say which side the next link supports."""
    if following is not None and following.prev_hash == recomputed:
        detail = (
            "the event's stored hash was overwritten: its fields still hash to the value "
            f"the next event (id {following.id}) links to"
        )
        problem = "hash_changed"
    elif following is not None and following.prev_hash == event.hash:
        detail = (
            "the event's fields (kind, actor, at, duration, ids or data_hash) were changed "
            f"after it was chained: the next event (id {following.id}) links to the stored hash"
        )
        problem = "fields_changed"
    else:
        detail = (
            "the event's fields (kind, actor, at, duration, ids or data_hash) or its stored "
            "hash were changed"
        )
        problem = "fields_changed"
    return _break(problem, event, detail, expected=recomputed.hex(), found=event.hash.hex())


class ChainVerifier:
    """Verify one chain event by event, in `seq` order; keeps only one event in memory.

    `base` is (seq, hash) of the event just before the first one given, when the chain
    is verified from the middle (`--since`); otherwise the first event must be seq 1.
    """

    def __init__(self, conversation_id: int | None, base: tuple[int, bytes] | None = None):
        """Start a chain (from its beginning, or after `base`)."""
        self.result = ChainResult(conversation_id=conversation_id, head=base, base=base)
        self._prev: tuple[int, bytes | None, int | None] = (
            (base[0], base[1], None) if base is not None else (0, None, None)
        )
        self._pending: Event | None = None
        self._authorised: set[int] = set()
        self._redactions: list[Event] = []

    def add(self, event: Event) -> None:
        """The next event of the chain."""
        if self._pending is not None:
            self._process(self._pending, following=event)
        self._pending = event

    def finish(self) -> ChainResult:
        """The chain's result: its head, its redactions, its first broken link."""
        if self._pending is not None:
            self._process(self._pending, following=None)
            self._pending = None
        result = self.result
        for event in self._redactions:
            if event.id in self._authorised:
                continue
            if result.broken is None or event.seq < (result.broken.seq or 0):
                result.broken = _break(
                    "unauthorised_redaction",
                    event,
                    f"the event's data was replaced by a redaction marker but no later "
                    f"{ERASED_KIND} event of this chain lists it",
                    expected=f"{ERASED_KIND} listing event {event.id}",
                    found="none",
                )
            break
        return result

    def _process(self, event: Event, following: Event | None) -> None:
        result = self.result
        result.events += 1
        if event.kind == ERASED_KIND and not event.redacted and isinstance(event.data, dict):
            listed = event.data.get("redacted_event_ids")
            self._authorised.update(int(i) for i in listed or [])
        if result.broken is None:
            prev_seq, prev_hash, prev_id = self._prev
            result.broken = _check(event, following, prev_seq, prev_hash, prev_id)
            if result.broken is None:
                result.head = (event.seq, event.hash)
        if event.redacted:
            result.redacted.append(event.id)
            self._redactions.append(event)
        self._prev = (event.seq, event.hash, event.id)


def verify_chain(
    events: Iterable[Event],
    *,
    conversation_id: int | None,
    base: tuple[int, bytes] | None = None,
) -> ChainResult:
    """Verify one chain, in `seq` order, and report its first broken link."""
    verifier = ChainVerifier(conversation_id, base)
    for event in events:
        verifier.add(event)
    return verifier.finish()


def _check(
    event: Event,
    following: Event | None,
    prev_seq: int,
    prev_hash: bytes | None,
    prev_id: int | None,
) -> Break | None:
    after = f"after event {prev_id}" if prev_id is not None else "at the start of the chain"
    if event.seq != prev_seq + 1:
        if event.seq > prev_seq + 1:
            missing = event.seq - prev_seq - 1
            span = f"seq {prev_seq + 1}" if missing == 1 else f"seq {prev_seq + 1}..{event.seq - 1}"
            detail = f"{missing} event(s) missing {after} ({span}): deleted from the chain"
            problem = "events_missing"
        else:
            detail = f"seq {event.seq} repeats or goes back {after}"
            problem = "link_broken"
        return _break(
            problem, event, detail, expected=f"seq {prev_seq + 1}", found=f"seq {event.seq}"
        )
    if event.prev_hash != prev_hash:
        detail = (
            f"prev_hash does not match the hash of the previous event ({after}): that event "
            "was rewritten and re-hashed, or this link was changed"
        )
        return _break("link_broken", event, detail, _hex(prev_hash), _hex(event.prev_hash))
    if not event.redacted:
        computed = event.computed_data_hash()
        if computed != event.data_hash:
            return _break(
                "data_changed",
                event,
                "the event's data no longer matches the data_hash recorded when it was "
                "written: the data was changed",
                expected=event.data_hash.hex(),
                found=computed.hex(),
            )
    recomputed = event_hash(event)
    if recomputed != event.hash:
        return _hash_break(event, recomputed, following)
    return None


# --- anchors --------------------------------------------------------------------------


@dataclass(slots=True)
class Anchor:
    """A stored anchor: the chain heads it covers and its place in the anchor chain."""

    id: int
    day: date | str
    created_at: datetime | str
    created_by: str
    events: int
    chains: int
    heads: list[list[Any]]
    prev_hash: bytes | None
    hash: bytes


def anchor_record(anchor: Anchor) -> dict[str, Any]:
    """The object whose canonical text an anchor's `hash` covers."""
    return {
        "v": 1,
        "day": anchor.day if isinstance(anchor.day, str) else anchor.day.isoformat(),
        "created_at": at_text(anchor.created_at),
        "created_by": anchor.created_by,
        "events": anchor.events,
        "chains": anchor.chains,
        "heads": anchor.heads,
        "prev_hash": anchor.prev_hash.hex() if anchor.prev_hash is not None else None,
    }


def anchor_hash(anchor: Anchor) -> bytes:
    """The hash an anchor must carry."""
    return sha256(canonical(anchor_record(anchor)))


def verify_anchor(anchor: Anchor, previous: Anchor | None, *, linked: bool = True) -> Break | None:
    """An anchor's own hash, and (when `linked`) its link to the previous anchor."""
    recomputed = anchor_hash(anchor)
    if recomputed != anchor.hash:
        return Break(
            problem="anchor_changed",
            detail="the anchor's heads, counts or dates no longer match its hash",
            anchor_id=anchor.id,
            expected=recomputed.hex(),
            found=anchor.hash.hex(),
        )
    if linked:
        expected = previous.hash if previous is not None else None
        if anchor.prev_hash != expected:
            return Break(
                problem="anchor_link_broken",
                detail="prev_hash does not match the previous anchor's hash: an anchor was "
                "removed or rewritten",
                anchor_id=anchor.id,
                expected=_hex(expected),
                found=_hex(anchor.prev_hash),
            )
    return None


def check_head(anchor: Anchor, head: list[Any], event: Event | None) -> Break | None:
    """An anchored chain head against the event now at that position."""
    cid, seq, anchored = head[0], int(head[1]), str(head[2])
    if event is None:
        return Break(
            problem="anchored_event_missing",
            detail=f"anchor {anchor.id} covers seq {seq} of this chain, which no longer exists",
            conversation_id=cid,
            seq=seq,
            anchor_id=anchor.id,
            expected=anchored,
            found="none",
        )
    if event.hash.hex() != anchored:
        return Break(
            problem="anchor_mismatch",
            detail=f"anchor {anchor.id} recorded another hash for this event: the chain was "
            "rewritten and re-hashed after it was anchored",
            conversation_id=cid,
            event_id=event.id,
            seq=seq,
            kind=event.kind,
            anchor_id=anchor.id,
            expected=anchored,
            found=event.hash.hex(),
        )
    return None


# --- exports --------------------------------------------------------------------------


def export_header(conversation_id: int | None, *, events: int, exported_at: datetime) -> str:
    """The first line of an exported trail: what it is and how to verify it."""
    return json.dumps(
        {
            "type": "header",
            "format": FORMAT,
            "conversation_id": conversation_id,
            "events": events,
            "exported_at": at_text(exported_at),
            "hash": "sha256",
            "record_fields": list(RECORD_FIELDS),
            "redaction_marker": REDACTED,
            "description": DESCRIPTION,
        },
        ensure_ascii=False,
    )


def export_event_line(event: Event) -> str:
    """One event of an exported trail: its record, `hash`, and data exactly as stored."""
    fields = {"type": "event", **event_record(event), "hash": event.hash.hex()}
    fields["redacted"] = event.redacted
    data = event.data_text if event.data_text is not None else canonical(event.data)
    return canonical(fields)[:-1] + f', "data": {data}}}'


def export_anchor_line(anchor: Anchor) -> str:
    """An anchor covering the exported conversation (all its heads, to check its hash)."""
    return canonical({"type": "anchor", "id": anchor.id, **anchor_record(anchor)})[:-1] + (
        f', "hash": "{anchor.hash.hex()}"}}'
    )


@dataclass(slots=True)
class ExportReport:
    """What the offline check of an exported trail found."""

    conversation_id: int | None
    events: int
    redacted: list[int]
    anchors: int
    broken: Break | None

    @property
    def ok(self) -> bool:
        """Whether the trail verified."""
        return self.broken is None


def _event_from_line(line: dict[str, Any]) -> Event:
    return Event(
        id=int(line["id"]),
        seq=int(line["seq"]),
        conversation_id=line["conversation_id"],
        at=str(line["at"]),
        kind=line["kind"],
        actor=line["actor"],
        duration_ms=line["duration_ms"],
        message_id=line["message_id"],
        thread_id=line["thread_id"],
        step=line["step"],
        llm=line["llm"],
        data_hash=bytes.fromhex(line["data_hash"]),
        prev_hash=bytes.fromhex(line["prev_hash"]) if line["prev_hash"] else None,
        hash=bytes.fromhex(line["hash"]),
        data_value=line["data"],
    )


def _anchor_from_line(line: dict[str, Any]) -> Anchor:
    return Anchor(
        id=int(line["id"]),
        day=str(line["day"]),
        created_at=str(line["created_at"]),
        created_by=line["created_by"],
        events=int(line["events"]),
        chains=int(line["chains"]),
        heads=line["heads"],
        prev_hash=bytes.fromhex(line["prev_hash"]) if line["prev_hash"] else None,
        hash=bytes.fromhex(line["hash"]),
    )


def verify_export(lines: Iterable[str]) -> ExportReport:
    """Verify an exported trail (`GET /conversations/{id}/audit.jsonl`) with no database.

    Recomputes every `data_hash` from the data and every `hash` from the record, checks
    each link and the `seq` sequence, that redactions are recorded, and that each anchor
    in the file matches its hash and the chain head it records.
    """
    header: dict[str, Any] | None = None
    events: list[Event] = []
    anchors: list[Anchor] = []
    for raw in lines:
        if not raw.strip():
            continue
        line = parse_json(raw)
        kind = line.get("type")
        if kind == "header":
            header = line
        elif kind == "event":
            events.append(_event_from_line(line))
        elif kind == "anchor":
            anchors.append(_anchor_from_line(line))
    if header is None or header.get("format") != FORMAT:
        raise ValueError(f"not a {FORMAT} export: the first line must be its header")
    cid = header.get("conversation_id")
    events.sort(key=lambda e: e.seq)
    result = verify_chain(events, conversation_id=cid)
    broken = result.broken
    if broken is None and header.get("events") != len(events):
        broken = Break(
            problem="events_missing",
            detail=f"the header announces {header.get('events')} events, the file has "
            f"{len(events)}",
            conversation_id=cid,
            expected=str(header.get("events")),
            found=str(len(events)),
        )
    by_seq = {e.seq: e for e in events}
    for anchor in anchors:
        if broken is not None:
            break
        broken = verify_anchor(anchor, None, linked=False)
        for head in anchor.heads:
            if broken is None and head[0] == cid:
                broken = check_head(anchor, head, by_seq.get(int(head[1])))
    return ExportReport(
        conversation_id=cid,
        events=len(events),
        redacted=result.redacted,
        anchors=len(anchors),
        broken=broken,
    )
