"""A report's period and time zone, checked with messages that say what is wrong."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

MAX_DAYS = 366
"""Longest period a report covers (a day-by-day report has at most this many rows)."""


class ReportError(ValueError):
    """A report cannot be computed as asked; `field` names the parameter."""

    def __init__(self, field: str, message: str) -> None:
        """`field` is the query parameter at fault (`from`, `team`…)."""
        super().__init__(message)
        self.field = field
        self.message = message


@dataclass(frozen=True, slots=True)
class Period:
    """[start, end) in real time; days are counted in `zone`."""

    start: datetime
    end: datetime
    zone: ZoneInfo

    def days(self) -> list[date]:
        """Every local day the period touches, in order."""
        first = self.start.astimezone(self.zone).date()
        last = (self.end - timedelta(microseconds=1)).astimezone(self.zone).date()
        return [first + timedelta(days=i) for i in range((last - first).days + 1)]

    def day_bounds(self, day: date) -> tuple[datetime, datetime]:
        """The part of the period that falls on local `day`."""
        a = datetime.combine(day, time(0), self.zone)
        b = datetime.combine(day + timedelta(days=1), time(0), self.zone)
        return max(a, self.start), min(b, self.end)


def zone(name: str | None, field: str = "tz") -> ZoneInfo:
    """An IANA time zone (default UTC)."""
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        raise ReportError(
            field, f"unknown time zone '{name}' (use an IANA name like Europe/Madrid)"
        ) from None


def instant(value: str, field: str, tz: ZoneInfo) -> datetime:
    """`2026-03-02` (midnight in `tz`), `2026-03-02T10:00` (in `tz`) or with an offset."""
    text = value.strip()
    try:
        if len(text) == 10:
            return datetime.combine(date.fromisoformat(text), time(0), tz)
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ReportError(
            field,
            f"'{value}' is not a date or time: use 2026-03-02, 2026-03-02T09:30 or "
            "2026-03-02T09:30:00+01:00",
        ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=tz)


def period(start: str, end: str, tz: str | None) -> Period:
    """The period [start, end): start before end, at most `MAX_DAYS` long."""
    z = zone(tz)
    a, b = instant(start, "from", z), instant(end, "to", z)
    if a >= b:
        raise ReportError("to", f"'to' ({end}) must be after 'from' ({start})")
    if b - a > timedelta(days=MAX_DAYS):
        raise ReportError("to", f"a report covers at most {MAX_DAYS} days")
    return Period(a, b, z)


def open_period(
    start: str | None, end: str | None, tz: str | None
) -> tuple[datetime | None, datetime | None, ZoneInfo]:
    """Like `period`, but either side may be left open (None)."""
    z = zone(tz)
    a = instant(start, "from", z) if start else None
    b = instant(end, "to", z) if end else None
    if a is not None and b is not None and a >= b:
        raise ReportError("to", f"'to' ({end}) must be after 'from' ({start})")
    return a, b, z
