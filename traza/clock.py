"""The time every business decision reads: hours, out-of-hours, SLA deadlines.

Injectable so tests can freeze and advance it: `use(FrozenClock(...))`. Timers are
procrastinate jobs scheduled in real time, so `delay_until()` turns a deadline on this
clock into a real delay; a timer that fires early re-checks and waits again.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    """Something that tells the time (timezone-aware, UTC)."""

    def now(self) -> datetime:
        """The current instant."""
        ...


class SystemClock:
    """The machine's clock."""

    def now(self) -> datetime:  # noqa: D102
        return datetime.now(UTC)


class FrozenClock:
    """A clock that only moves when told to (tests, replays)."""

    def __init__(self, at: datetime) -> None:
        """Start frozen at `at` (must be timezone-aware)."""
        if at.tzinfo is None:
            raise ValueError("FrozenClock needs a timezone-aware datetime")
        self._at = at.astimezone(UTC)

    def now(self) -> datetime:  # noqa: D102
        return self._at

    def advance(self, delta: timedelta) -> datetime:
        """Move forward by `delta`; return the new time."""
        self._at += delta
        return self._at

    def set(self, at: datetime) -> None:
        """Jump to `at`."""
        self._at = at.astimezone(UTC)


_clock: Clock = SystemClock()


def use(clock: Clock) -> None:
    """Make `clock` the process's clock."""
    global _clock
    _clock = clock


# A replay reads each turn at the time it happened without moving the process's clock
# (other requests in the same process keep the real time).
_scoped: ContextVar[Clock | None] = ContextVar("traza_scoped_clock", default=None)


@contextmanager
def scoped(clock: Clock) -> Iterator[None]:
    """Use `clock` for the code running in this block (this task only)."""
    token = _scoped.set(clock)
    try:
        yield
    finally:
        _scoped.reset(token)


def now() -> datetime:
    """The current instant on this task's clock (the process's, unless scoped)."""
    return (_scoped.get() or _clock).now()


def delay_until(at: datetime) -> float:
    """Seconds from now until `at` on the process's clock (0 when it has passed)."""
    return max(0.0, (at - now()).total_seconds())
