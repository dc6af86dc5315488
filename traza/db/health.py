"""Is work getting done? Workers' heartbeats and the oldest inbound message still waiting.

Read by `traza worker --check`, the `traza_oldest_unprocessed_seconds` gauge and the
dashboard's backlog warning. Both statements are plain SQL without parameters, so the
same text runs on a SQLAlchemy connection and on a bare psycopg one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg
from sqlalchemy import text

from traza.db.outage import first_line

# Uses the partial index of unprocessed inbound messages (`ix_messages_unprocessed`).
OLDEST_UNPROCESSED = (
    "SELECT coalesce(extract(epoch FROM now() - min(created_at)), 0) AS seconds "
    "FROM messages WHERE direction = 'in' AND processed_at IS NULL"
)
HEARTBEATS = "SELECT extract(epoch FROM now() - last_heartbeat) AS age FROM procrastinate_workers"


async def oldest_unprocessed_seconds(conn: Any) -> float:
    """How long the oldest inbound message not yet taken by a turn has waited (0: none).

    `conn`: a SQLAlchemy async connection or session.
    """
    value = (await conn.execute(text(OLDEST_UNPROCESSED))).scalar_one()
    return float(value or 0.0)


@dataclass(frozen=True)
class WorkerHealth:
    """What `traza worker --check` found."""

    database_error: str | None
    heartbeats: tuple[float, ...] = ()
    """Seconds since each registered worker's last heartbeat."""
    oldest_unprocessed: float = 0.0

    def alive(self, stalled_after: float) -> int:
        """Workers whose heartbeat is fresher than `stalled_after` seconds."""
        return sum(1 for age in self.heartbeats if age < stalled_after)

    def problems(self, *, stalled_after: float, backlog_after: float) -> list[str]:
        """Why the workers are not doing their job, one line each (empty: healthy)."""
        if self.database_error is not None:
            return [f"database unreachable: {self.database_error}"]
        found = []
        if not self.alive(stalled_after):
            newest = min(self.heartbeats, default=None)
            seen = f"newest {newest:.0f} s ago" if newest is not None else "none registered"
            found.append(
                f"no worker heartbeat in the last {stalled_after:g} s ({seen}; is "
                "`traza worker` running?)"
            )
        if self.oldest_unprocessed > backlog_after:
            found.append(
                f"backlog: the oldest inbound message has waited {self.oldest_unprocessed:.0f} s "
                f"(TRAZA_BACKLOG_WARN_SECONDS={backlog_after:g})"
            )
        return found

    def summary(self, *, stalled_after: float) -> str:
        """One line for a healthy check."""
        newest = min(self.heartbeats, default=0.0)
        alive = self.alive(stalled_after)
        return (
            f"{alive} worker{'s' if alive != 1 else ''} alive (last heartbeat {newest:.1f} s ago); "
            f"oldest waiting inbound message {self.oldest_unprocessed:.1f} s"
        )


def check_workers(dsn: str, *, timeout: float = 3.0) -> WorkerHealth:
    """Ask the database (on a connection of its own, `timeout` seconds at most)."""
    try:
        with psycopg.connect(dsn, connect_timeout=max(1, round(timeout)), autocommit=True) as conn:
            conn.execute(f"SET statement_timeout = {int(timeout * 1000)}")
            ages = tuple(float(r[0]) for r in conn.execute(HEARTBEATS))
            row = conn.execute(OLDEST_UNPROCESSED).fetchone()
    except psycopg.Error as exc:
        return WorkerHealth(database_error=first_line(exc))
    return WorkerHealth(
        database_error=None, heartbeats=ages, oldest_unprocessed=float(row[0] if row else 0.0)
    )
