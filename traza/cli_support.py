"""What the `traza` sub-commands share: a clear error line, and work run on the database."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import typer

T = TypeVar("T")


def fail(message: str) -> None:
    """Print `error: message` on stderr and exit with code 2 (unusable input)."""
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(2)


def run_with_database(
    work: Callable[[], Awaitable[T]], *, expected: tuple[type[Exception], ...] = ()
) -> T:
    """Migrate, then run `work()` and close what it opened (the graph, the engine).

    The `expected` errors (a missing conversation, contact…) end with one `error:` line
    and exit code 2, never a traceback.
    """
    from traza.cli import _database_ready, _logging
    from traza.db.engine import dispose_engine
    from traza.services.runtime import close_graph

    _logging("warning")
    _database_ready()

    async def main() -> T:
        try:
            return await work()
        finally:
            await close_graph()
            await dispose_engine()

    try:
        return asyncio.run(main())
    except expected as exc:
        fail(str(exc).strip("'\""))
        raise  # unreachable
