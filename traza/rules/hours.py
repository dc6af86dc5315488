"""Business-hours arithmetic: is a team open, when does it open, and deadlines in open time.

Hand-written: no maintained library combines IANA time zones, several ranges per day and
the `holidays` package into "add N hours of open time".
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

from traza.rules.schema import WEEKDAYS, Hours

HORIZON_DAYS = 400  # a deadline further than this in open time is treated as never


@lru_cache(maxsize=64)
def _public_holidays(country: str, subdivision: str | None, year: int) -> frozenset[date]:
    import holidays  # noqa: PLC0415  (heavy: every country's calendar; only when configured)

    return frozenset(holidays.country_holidays(country, subdiv=subdivision, years=year))


class BusinessHours:
    """Open intervals of one team (None hours: always open)."""

    def __init__(self, hours: Hours | None) -> None:
        """Wrap a team's `hours` section."""
        self.hours = hours
        self.zone = ZoneInfo(hours.timezone) if hours else UTC

    def is_holiday(self, day: date) -> bool:
        """Closed all day: an explicit date or a public holiday of the configured country."""
        h = self.hours
        if h is None:
            return False
        if day in h.holidays.dates:
            return True
        return bool(h.holidays.country) and day in _public_holidays(
            h.holidays.country or "", h.holidays.subdivision, day.year
        )

    def _day_intervals(self, day: date) -> list[tuple[datetime, datetime]]:
        assert self.hours is not None
        if self.is_holiday(day):
            return []
        out = []
        for start, end in self.hours.weekly.get(WEEKDAYS[day.weekday()], []):  # type: ignore[call-overload]
            a = datetime.combine(day, start, self.zone)
            b = (
                datetime.combine(day + timedelta(days=1), time(0), self.zone)
                if end == time.max
                else datetime.combine(day, end, self.zone)
            )
            out.append((a.astimezone(UTC), b.astimezone(UTC)))
        return out

    def intervals(self, at: datetime) -> Iterator[tuple[datetime, datetime]]:
        """Open intervals (UTC) that end after `at`, in order, clipped to start at `at`."""
        at = at.astimezone(UTC)  # arithmetic below must be in real time, not wall time
        if self.hours is None:
            yield at, at + timedelta(days=HORIZON_DAYS)
            return
        day = at.astimezone(self.zone).date() - timedelta(days=1)
        for _ in range(HORIZON_DAYS):
            for a, b in self._day_intervals(day):
                if b > at:
                    yield max(a, at), b
            day += timedelta(days=1)

    def is_open(self, at: datetime) -> bool:
        """Whether the team is open at `at`."""
        first = next(self.intervals(at), None)
        return first is not None and first[0] <= at

    def next_open(self, at: datetime) -> datetime | None:
        """`at` itself when open, else the next opening (None: never within the horizon)."""
        first = next(self.intervals(at), None)
        return first[0] if first else None

    def add(self, start: datetime, amount: timedelta) -> datetime | None:
        """The instant when `amount` of open time has passed since `start`."""
        left = amount
        for a, b in self.intervals(start):
            if b - a >= left:
                return a + left
            left -= b - a
        return None

    def open_time_between(self, a: datetime, b: datetime) -> timedelta:
        """Open time in [a, b)."""
        total = timedelta()
        for x, y in self.intervals(a):
            if x >= b:
                break
            total += min(y, b) - x
        return total
