"""`traza serve`, `traza worker` and `traza db upgrade`: run the service and its database."""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import Coroutine
from typing import Annotated, Any

import typer
import uvicorn

from traza import __version__
from traza.cli.common import configure_logging, database_ready, load_settings, log_format
from traza.logs import uvicorn_log_config
from traza.settings import Settings, get_settings

db_cli = typer.Typer(no_args_is_help=True, help="Database schema.")


def _enable_dev_mode() -> Settings:
    """Local dev mode: a webhook secret and an admin key kept under TRAZA_HOME."""
    os.environ["TRAZA_DEV"] = "1"
    get_settings.cache_clear()
    settings = load_settings()
    settings.traza_home.mkdir(parents=True, exist_ok=True)
    for path in (settings.dev_secret_path, settings.dev_admin_key_path):
        if not path.exists():
            path.write_text(secrets.token_urlsafe(24))
            path.chmod(0o600)
    return settings


def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    dev: Annotated[
        bool, typer.Option("--dev", help="Local dev mode: generated webhook secret and admin key.")
    ] = False,
    worker: Annotated[bool, typer.Option(help="Run a job worker in this process.")] = True,
    log_level: Annotated[str, typer.Option(help="Log level.")] = "info",
) -> None:
    """Run the API (and an in-process worker), applying migrations first."""
    configure_logging(log_level)
    settings = _enable_dev_mode() if dev else load_settings()
    where = database_ready(long_running=True)
    from api.main import create_app  # noqa: PLC0415  (heavy: FastAPI, LangGraph)

    base = f"http://{host}:{port}"
    typer.secho(f"traza {__version__} — database: {where}", bold=True)
    typer.echo(f"  API      {base}\n  Docs     {base}/docs\n  Webhook  {base}/webhooks/whatsapp")
    typer.echo(f"  Worker   {'in this process' if worker else 'off (run `traza worker`)'}")
    if settings.traza_dev:
        typer.echo(f"  Dev mode: admin key in {settings.dev_admin_key_path}")
        typer.echo("            try: uv run traza simulate 'hola'")
    elif settings.webhook_secret() is None:
        typer.secho(
            "  WHATSAPP_APP_SECRET is not set: webhook posts will be refused.",
            fg=typer.colors.YELLOW,
        )
    if settings.admin_key() is None:
        typer.secho(
            "  TRAZA_ADMIN_KEY is not set: operator endpoints will answer 401.",
            fg=typer.colors.YELLOW,
        )
    uvicorn.run(
        create_app(worker=worker),
        host=host,
        port=port,
        log_level=log_level.lower(),
        log_config=uvicorn_log_config(log_format()),
    )


def _run_event_loop(main: Coroutine[Any, Any, None]) -> None:
    """Run a worker's event loop, on uvloop where it exists (as uvicorn does for serve).

    Every job is a chain of database round trips; uvloop spends less CPU per wake-up.
    """
    try:
        import uvloop  # noqa: PLC0415  (optional: not on Windows)
    except ImportError:  # Windows: uvloop does not build there
        asyncio.run(main)
    else:
        uvloop.run(main)


def worker(
    concurrency: Annotated[
        int | None, typer.Option(help="Jobs run at once (default TRAZA_WORKER_CONCURRENCY).")
    ] = None,
    name: Annotated[str, typer.Option(help="Worker name in logs and job records.")] = "",
    log_level: Annotated[str, typer.Option(help="Log level.")] = "info",
    check: Annotated[
        bool,
        typer.Option(
            "--check",
            help="Do not run: exit 0 when the database answers, a worker's heartbeat is "
            "fresh and no inbound message waits longer than TRAZA_BACKLOG_WARN_SECONDS; else 1.",
        ),
    ] = False,
) -> None:
    """Run a job worker (turns, deliveries, timers) against the same database."""
    if check:
        _check_workers()
        return
    configure_logging(log_level)
    settings = load_settings()
    database_ready(long_running=True)
    from traza.db.queue import app as jobs  # noqa: PLC0415  (heavy: procrastinate)
    from traza.worker.run import run_worker  # noqa: PLC0415  (heavy: procrastinate, LangGraph)

    async def main() -> None:
        async with jobs.open_async():
            await run_worker(
                name=name or f"worker-{os.getpid()}",
                concurrency=concurrency or settings.traza_worker_concurrency,
            )

    typer.echo(f"traza worker {os.getpid()} running; Ctrl+C to stop")
    try:
        _run_event_loop(main())
    except KeyboardInterrupt:
        pass


def _check_workers() -> None:
    """`traza worker --check`: one line, exit 0 (healthy) or 1."""
    from traza.db.engine import database_dsn  # noqa: PLC0415  (heavy: SQLAlchemy)
    from traza.db.health import check_workers  # noqa: PLC0415  (heavy: SQLAlchemy)

    configure_logging("warning")
    settings = load_settings()
    health = check_workers(database_dsn())
    problems = health.problems(
        stalled_after=settings.traza_stalled_seconds,
        backlog_after=settings.traza_backlog_warn_seconds,
    )
    if problems:
        for problem in problems:
            typer.secho(f"not ready: {problem}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1)
    typer.echo(f"ok: {health.summary(stalled_after=settings.traza_stalled_seconds)}")


@db_cli.command("upgrade")
def db_upgrade() -> None:
    """Create or upgrade every table: traza's, procrastinate's and the checkpointer's."""
    configure_logging("warning")
    load_settings()
    where = database_ready()
    typer.echo(f"database is up to date ({where})")
