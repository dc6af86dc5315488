"""The `traza` command: serve, worker, db upgrade, simulate, agents, teams, rules."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import sys
import time
import uuid
from collections.abc import Coroutine
from typing import Annotated, Any

import httpx
import typer

from traza.settings import Settings, SettingsError, get_settings

cli = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)
db_cli = typer.Typer(no_args_is_help=True, help="Database schema.")
cli.add_typer(db_cli, name="db")


def _add_operations() -> None:
    from traza.cli_operations import agents_cli, rules_cli, teams_cli

    cli.add_typer(agents_cli, name="agents")
    cli.add_typer(teams_cli, name="teams")
    cli.add_typer(rules_cli, name="rules")
    from traza.cli_recruiting import candidates_cli

    cli.add_typer(candidates_cli, name="candidates")


def _add_replay() -> None:
    from traza.cli_replay import checkpoints_cli, replay

    cli.command("replay")(replay)
    cli.add_typer(checkpoints_cli, name="checkpoints")


def _add_judgment() -> None:
    from traza.cli_decisions import guardrails_cli, judgment_cli

    cli.add_typer(judgment_cli, name="judgment")
    cli.add_typer(guardrails_cli, name="guardrails")


def _add_audit() -> None:
    from traza.cli_audit import audit_cli, subjects_cli

    cli.add_typer(audit_cli, name="audit")
    cli.add_typer(subjects_cli, name="subjects")


def _fail(message: str) -> None:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(2)


def _settings() -> Settings:
    try:
        return get_settings()
    except SettingsError as exc:
        _fail(str(exc))
        raise  # unreachable


def _log_format() -> str:
    try:
        return get_settings().traza_log_format
    except SettingsError:  # reported by the command itself, in one line
        return "text"


def _logging(level: str) -> None:
    from traza.logs import configure

    configure(level, _log_format())


def _enable_dev_mode() -> Settings:
    """Local dev mode: a webhook secret and an admin key kept under TRAZA_HOME."""
    os.environ["TRAZA_DEV"] = "1"
    get_settings.cache_clear()
    settings = _settings()
    settings.traza_home.mkdir(parents=True, exist_ok=True)
    for path in (settings.dev_secret_path, settings.dev_admin_key_path):
        if not path.exists():
            path.write_text(secrets.token_urlsafe(24))
            path.chmod(0o600)
    return settings


def _database_ready(*, long_running: bool = False) -> str:
    """Migrate, or fail with one clear line.

    `long_running` (serve, worker): also warn about server settings that slow traza down.
    """
    from traza.db.engine import database_dsn
    from traza.db.migrate import upgrade

    try:
        dsn = database_dsn()
        asyncio.run(upgrade(dsn))
    except Exception as exc:  # a clear line, not a traceback, for the person at the shell
        _fail(f"database not ready: {type(exc).__name__}: {str(exc).splitlines()[0][:300]}")
    _rules_ready(dsn)
    from traza.db.migrate import server_warnings

    for warning in server_warnings(dsn) if long_running else []:
        typer.secho(f"  warning: {warning}", fg=typer.colors.YELLOW, err=True)
    where = "embedded PostgreSQL in " + str(_settings().traza_home / "pgdata")
    return where if not _settings().database_url else "DATABASE_URL"


def _rules_ready(dsn: str) -> None:
    """Refuse to start on an invalid rules file, naming each problem's line."""
    import psycopg

    from traza.recruiting.agents import load_agents
    from traza.rules import active
    from traza.rules.loader import RulesError, load_file

    try:
        load_agents()
    except RulesError as exc:
        _fail(f"the follow-up agents are invalid, traza will not start:\n{exc}")
    path = active.rules_file()
    if path is None:
        return
    with psycopg.connect(dsn) as conn:
        teams = {r[0] for r in conn.execute("SELECT name FROM teams")}
    try:
        load_file(path, known_teams=teams)
    except RulesError as exc:
        _fail(f"the rules are invalid, traza will not start:\n{exc}")


@cli.command()
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
    import uvicorn

    _logging(log_level)
    settings = _enable_dev_mode() if dev else _settings()
    where = _database_ready(long_running=True)
    from api.main import create_app

    base = f"http://{host}:{port}"
    typer.secho(f"traza {__import__('traza').__version__} — database: {where}", bold=True)
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
    from traza.logs import uvicorn_log_config

    uvicorn.run(
        create_app(worker=worker),
        host=host,
        port=port,
        log_level=log_level.lower(),
        log_config=uvicorn_log_config(_log_format()),
    )


def _run_event_loop(main: Coroutine[Any, Any, None]) -> None:
    """Run a worker's event loop, on uvloop where it exists (as uvicorn does for serve).

    Every job is a chain of database round trips; uvloop spends less CPU per wake-up.
    """
    try:
        import uvloop
    except ImportError:  # Windows: uvloop does not build there
        asyncio.run(main)
    else:
        uvloop.run(main)


@cli.command()
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
    _logging(log_level)
    settings = _settings()
    _database_ready(long_running=True)
    from api.main import run_worker
    from traza.db.queue import app as jobs

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
    from traza.db.engine import database_dsn
    from traza.db.health import check_workers

    _logging("warning")
    settings = _settings()
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
    _logging("warning")
    _settings()
    where = _database_ready()
    typer.echo(f"database is up to date ({where})")


def simulated_payload(
    *,
    text: str | None,
    wa_id: str,
    name: str,
    phone_number_id: str,
    button: str | None = None,
    message_id: str | None = None,
) -> dict[str, Any]:
    """A Meta webhook payload for one customer message (text or reply button)."""
    message: dict[str, Any] = {
        "from": wa_id,
        "id": message_id or f"wamid.sim.{uuid.uuid4().hex}",
        "timestamp": str(int(time.time())),
    }
    if button:
        message |= {
            "type": "interactive",
            "interactive": {
                "type": "button_reply",
                "button_reply": {"id": button, "title": text or button},
            },
        }
    else:
        message |= {"type": "text", "text": {"body": text or ""}}
    return {
        "object": "whatsapp_business_account",
        "entry": [
            {
                "id": "sim-waba",
                "changes": [
                    {
                        "field": "messages",
                        "value": {
                            "messaging_product": "whatsapp",
                            "metadata": {
                                "display_phone_number": "15550000000",
                                "phone_number_id": phone_number_id,
                            },
                            "contacts": [{"profile": {"name": name}, "wa_id": wa_id}],
                            "messages": [message],
                        },
                    }
                ],
            }
        ],
    }


@cli.command()
def simulate(
    text: Annotated[str, typer.Argument(help="What the customer writes.")],
    wa_id: Annotated[str, typer.Option("--from", help="Customer's WhatsApp id.")] = "5215550001111",
    name: Annotated[str, typer.Option(help="Customer's profile name.")] = "Cliente de prueba",
    phone_number_id: Annotated[str, typer.Option(help="Business number id.")] = "sim-inbox",
    button: Annotated[
        str | None, typer.Option(help="Send as a reply-button press with this id.")
    ] = None,
    url: Annotated[str, typer.Option(help="Where traza is running.")] = "http://127.0.0.1:8000",
    wait: Annotated[float, typer.Option(help="Seconds to wait for the answer.")] = 15.0,
) -> None:
    """Post a correctly signed customer message to a running traza and show the answer."""
    settings = _settings()
    from traza.ingest.signature import sign

    secret = (
        settings.whatsapp_app_secret.get_secret_value() if settings.whatsapp_app_secret else None
    )
    if secret is None and settings.dev_secret_path.exists():
        secret = settings.dev_secret_path.read_text().strip()
    if secret is None:
        _fail(
            "no webhook secret: start the service with `traza serve --dev`"
            " (or set WHATSAPP_APP_SECRET)"
        )
    assert secret is not None
    body = json.dumps(
        simulated_payload(
            text=text, wa_id=wa_id, name=name, phone_number_id=phone_number_id, button=button
        )
    ).encode()
    headers = {"Content-Type": "application/json", "X-Hub-Signature-256": sign(body, secret)}
    try:
        with httpx.Client(base_url=url, timeout=10) as client:
            auth = _admin_headers(settings)
            _, after = _conversation_tail(client, auth, wa_id) if auth else (None, 0)
            response = client.post("/webhooks/whatsapp", content=body, headers=headers)
            if response.status_code != 200:
                _fail(f"traza answered {response.status_code}: {response.text[:300]}")
            typer.echo(f"→ {name} ({wa_id}): {text}")
            if auth is None:
                typer.echo("(message accepted; set TRAZA_ADMIN_KEY to see the answer here)")
                return
            _show_answer(client, auth, wa_id, after, wait)
    except httpx.ConnectError:
        _fail(f"nothing is listening at {url}: start it with `uv run traza serve --dev`")


def _admin_headers(settings: Settings) -> dict[str, str] | None:
    key = settings.admin_key()
    if key is None and settings.dev_admin_key_path.exists():
        key = settings.dev_admin_key_path.read_text().strip()
    return {"Authorization": f"Bearer {key}"} if key else None


def _conversation_tail(
    client: httpx.Client, auth: dict[str, str], wa_id: str
) -> tuple[int | None, int]:
    """The contact's open conversation and the id of its last trace event."""
    found = client.get("/conversations", params={"wa_id": wa_id, "status": "open"}, headers=auth)
    if found.status_code != 200 or not found.json():
        return None, 0
    cid = int(found.json()[0]["id"])
    events = client.get(f"/conversations/{cid}/timeline", headers=auth).json()
    return cid, max((e["id"] for e in events), default=0)


TERMINAL = ("message.sent", "message.held_for_human", "message.send_failed", "message.skipped")


def _show_answer(
    client: httpx.Client, auth: dict[str, str], wa_id: str, after: int, wait: float
) -> None:
    deadline = time.monotonic() + wait
    conversation_id: int | None = None
    answered = False
    while time.monotonic() < deadline and not answered:
        if conversation_id is None:
            conversation_id, _ = _conversation_tail(client, auth, wa_id)
        if conversation_id is not None:
            events = client.get(f"/conversations/{conversation_id}/timeline", headers=auth).json()
            for event in events:
                if event["id"] <= after:
                    continue
                after = event["id"]
                typer.echo(_describe(event))
                answered = answered or event["kind"] in TERMINAL
        time.sleep(0.25)
    if not answered:
        typer.echo("(no answer yet: is a worker running?)")
    if conversation_id is not None:
        typer.echo(f"trace: {client.base_url}/conversations/{conversation_id}/timeline")


def _describe(event: dict[str, Any]) -> str:
    data, message = event.get("data") or {}, event.get("message") or {}
    detail = ""
    if event["kind"] == "classification":
        detail = f"intent={data.get('intent')} lang={data.get('language')} ({data.get('source')})"
    elif event["kind"] == "routing.decision":
        detail = f"{data.get('route')} by rule '{data.get('rule')}'"
    elif event["kind"] == "guardrail.verdict":
        detail = "allowed" if data.get("allowed") else f"blocked: {data.get('reason')}"
    elif event["kind"] in ("message.sent", "message.received") and message:
        arrow = "→" if message.get("direction") == "in" else "←"
        detail = f"{arrow} {message.get('text')}"
    elif event["kind"] == "handoff.created":
        detail = f"handoff #{data.get('handoff_id')}: {data.get('reason')}"
    ms = f" {event['duration_ms']:.1f} ms" if event.get("duration_ms") else ""
    return f"  [{event['actor']}] {event['kind']}{ms} {detail}".rstrip()


def main() -> None:
    """Entry point of the `traza` script."""
    try:
        cli()
    except SettingsError as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        sys.exit(2)


_add_operations()
_add_judgment()
_add_audit()
_add_replay()

if __name__ == "__main__":
    main()
