"""What every `traza` command group shares: one way to fail, settings, logging, the database.

This module imports nothing from the other `traza.cli` modules; they all import it.

Imports go at the top of each module, except the heavy ones (SQLAlchemy, LangGraph,
FastAPI, numpy…): a command imports those when it runs, each line marked
`# noqa: PLC0415  (heavy: …)`, so that `traza --help` starts in well under a second.

Exit codes across the CLI: 0 done, 1 a check failed (or part of the work did), 2 the
input or the environment is unusable (`fail`'s default).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, NoReturn, TypeVar

import typer

from traza.logs import configure
from traza.settings import Settings, SettingsError, get_settings

T = TypeVar("T")


def fail(message: str, code: int = 2) -> NoReturn:
    """Print `error: message` in red on stderr and exit with `code` (2: unusable input)."""
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


def load_settings() -> Settings:
    """The settings, or one `error:` line naming the bad one (exit 2)."""
    try:
        return get_settings()
    except SettingsError as exc:
        fail(str(exc))


def log_format() -> str:
    """`TRAZA_LOG_FORMAT`, or text while the settings are invalid."""
    try:
        return get_settings().traza_log_format
    except SettingsError:  # reported by the command itself, in one line
        return "text"


def configure_logging(level: str) -> None:
    """Log at `level` in the configured format."""
    configure(level, log_format())


def database_ready(*, long_running: bool = False) -> str:
    """Migrate, or fail with one clear line; say which database it is.

    `long_running` (serve, worker): also warn about server settings that slow traza down.
    """
    from traza.db.engine import database_dsn  # noqa: PLC0415  (heavy: SQLAlchemy)
    from traza.db.migrate import server_warnings, upgrade  # noqa: PLC0415  (heavy: Alembic)

    try:
        dsn = database_dsn()
        asyncio.run(upgrade(dsn))
    except Exception as exc:  # a clear line, not a traceback, for the person at the shell
        fail(f"database not ready: {type(exc).__name__}: {str(exc).splitlines()[0][:300]}")
    _rules_ready(dsn)
    for warning in server_warnings(dsn) if long_running else []:
        typer.secho(f"  warning: {warning}", fg=typer.colors.YELLOW, err=True)
    where = "embedded PostgreSQL in " + str(load_settings().traza_home / "pgdata")
    return where if not load_settings().database_url else "DATABASE_URL"


def _rules_ready(dsn: str) -> None:
    """Refuse to start on an invalid rules file, naming each problem's line."""
    import psycopg  # noqa: PLC0415  (heavy: psycopg)

    from traza.recruiting.agents import load_agents  # noqa: PLC0415  (heavy: the guardrails, numpy)
    from traza.rules import active  # noqa: PLC0415  (heavy: SQLAlchemy)
    from traza.rules.loader import RulesError, load_file  # noqa: PLC0415  (heavy: yaml)

    try:
        load_agents()
    except RulesError as exc:
        fail(f"the follow-up agents are invalid, traza will not start:\n{exc}")
    path = active.rules_file()
    if path is None:
        return
    with psycopg.connect(dsn) as conn:
        teams = {r[0] for r in conn.execute("SELECT name FROM teams")}
    try:
        load_file(path, known_teams=teams)
    except RulesError as exc:
        fail(f"the rules are invalid, traza will not start:\n{exc}")


def run_async(main: Coroutine[Any, Any, T], *, expected: tuple[type[Exception], ...] = ()) -> T:
    """Run `main` to its end; an `expected` error ends with one `error:` line and exit 2."""
    try:
        return asyncio.run(main)
    except expected as exc:
        fail(str(exc).strip("'\""))


def run_with_database(
    work: Callable[[], Awaitable[T]], *, expected: tuple[type[Exception], ...] = ()
) -> T:
    """Migrate, then run `work()` and close what it opened (the graph, the engine).

    The `expected` errors (a missing conversation, contact…) end with one `error:` line
    and exit code 2, never a traceback.
    """
    from traza.db.engine import dispose_engine  # noqa: PLC0415  (heavy: SQLAlchemy)
    from traza.services.runtime import close_graph  # noqa: PLC0415  (heavy: LangGraph)

    configure_logging("warning")
    database_ready()

    async def main() -> T:
        try:
            return await work()
        finally:
            await close_graph()
            await dispose_engine()

    return run_async(main(), expected=expected)
