"""`traza agents …`, `traza teams …` and `traza rules check`: operations from the shell.

They work on the database directly (like `traza db upgrade`), so they need no running
service and no API key.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from traza.cli.common import configure_logging, database_ready, fail, run_async

agents_cli = typer.Typer(no_args_is_help=True, help="Human agents and their API keys.")
teams_cli = typer.Typer(no_args_is_help=True, help="Teams of agents.")
rules_cli = typer.Typer(no_args_is_help=True, help="The rules file.")

T = TypeVar("T")


def _run(work: Callable[[Any], Awaitable[T]]) -> T:
    """Migrate, then run `work(session)` in one transaction."""
    from traza.db.engine import dispose_engine, session_scope  # noqa: PLC0415  (heavy: SQLAlchemy)
    from traza.operations.agents import OperationsError  # noqa: PLC0415  (heavy: SQLAlchemy)

    configure_logging("warning")
    database_ready()

    async def main() -> T:
        try:
            async with session_scope() as session:
                return await work(session)
        finally:
            await dispose_engine()

    return run_async(main(), expected=(OperationsError, LookupError))


@agents_cli.command("add")
def agents_add(
    name: Annotated[str, typer.Argument(help="Unique agent name (shown in the trace).")],
    team: Annotated[
        list[str] | None, typer.Option("--team", "-t", help="Team (repeat for several).")
    ] = None,
    role: Annotated[
        str,
        typer.Option(
            help="agent, supervisor, admin, or integration (a system such as the ATS: its "
            "key may only post recruiting events for its --team)."
        ),
    ] = "agent",
    capacity: Annotated[int, typer.Option(help="Conversations at once.")] = 5,
    email: Annotated[str | None, typer.Option(help="Contact e-mail.")] = None,
) -> None:
    """Add an agent and print their API key (shown this once; only a hash is kept)."""
    from traza.operations import agents  # noqa: PLC0415  (heavy: SQLAlchemy)

    # People default to `general`; an integration must say which teams it writes for.
    teams = team or ([] if role == agents.INTEGRATION else ["general"])

    async def work(session: Any) -> str:
        _, key = await agents.create_agent(
            session,
            name=name,
            teams=teams,
            role=role,
            capacity=capacity,
            email=email,
        )
        return key

    key = _run(work)
    typer.echo(f"agent {name} added ({role}, teams: {', '.join(teams)})")
    typer.secho(f"API key (shown once, store it now): {key}", bold=True)


@agents_cli.command("list")
def agents_list() -> None:
    """Agents with role, status, capacity and teams."""
    from traza.db.models import HumanAgent  # noqa: PLC0415  (heavy: SQLAlchemy)
    from traza.operations import agents  # noqa: PLC0415  (heavy: SQLAlchemy)
    from traza.operations.repository import agents_by_name  # noqa: PLC0415  (heavy: SQLAlchemy)

    async def work(session: Any) -> list[tuple[HumanAgent, list[str]]]:
        rows = await agents_by_name(session)
        return [(a, await agents.teams_of(session, a.id)) for a in rows]

    rows = _run(work)
    if not rows:
        typer.echo("no agents yet: traza agents add <name> --team general")
    for agent, teams in rows:
        state = "disabled" if agent.disabled_at else agent.status
        typer.echo(
            f"{agent.id:>4}  {agent.name:<24} {agent.role:<10} {state:<8} "
            f"cap {agent.capacity:<3} {', '.join(teams)}"
        )


@agents_cli.command("key")
def agents_key(name: Annotated[str, typer.Argument(help="Agent name or id.")]) -> None:
    """Issue another API key for an agent (print it once)."""
    from traza.operations import agents  # noqa: PLC0415  (heavy: SQLAlchemy)

    async def work(session: Any) -> str:
        return await agents.issue_key(session, await agents.find_agent(session, name))

    typer.secho(f"API key for {name} (shown once): {_run(work)}", bold=True)


@agents_cli.command("revoke")
def agents_revoke(
    key: Annotated[str, typer.Argument(help="The key, or its prefix (`trz_<prefix>_…`).")],
) -> None:
    """Revoke an API key; it stops working at once."""
    from traza.operations import agents  # noqa: PLC0415  (heavy: SQLAlchemy)

    async def work(session: Any) -> bool:
        return await agents.revoke_key(session, key)

    if not _run(work):
        fail("no active key with that prefix")
    typer.echo("key revoked")


@agents_cli.command("status")
def agents_status(
    name: Annotated[str, typer.Argument(help="Agent name or id.")],
    status: Annotated[str, typer.Argument(help="online, away or offline.")],
) -> None:
    """Set an agent's availability (away and offline agents get no new handoffs)."""
    from traza.operations import agents  # noqa: PLC0415  (heavy: SQLAlchemy)
    from traza.operations.handoffs import queue_assignment  # noqa: PLC0415  (heavy: SQLAlchemy)

    if status not in agents.STATUSES:
        fail(f"status must be one of {', '.join(agents.STATUSES)}")

    async def work(session: Any) -> None:
        agent = await agents.find_agent(session, name)
        if agent.role == agents.INTEGRATION and status != "offline":
            raise agents.OperationsError(f"{agent.name} is an integration: it takes no chats")
        agent.status = status
        for team in await agents.teams_of(session, agent.id):
            await queue_assignment(session, team)

    _run(work)
    typer.echo(f"{name} is {status}")


@teams_cli.command("add")
def teams_add(
    name: Annotated[str, typer.Argument(help="Team name used in rules (lowercase).")],
    description: Annotated[str | None, typer.Option(help="What the team handles.")] = None,
) -> None:
    """Add a team (give it hours and SLAs in the rules file)."""
    from traza.operations import agents  # noqa: PLC0415  (heavy: SQLAlchemy)

    if not re.fullmatch(r"[a-z0-9][a-z0-9_.-]{0,63}", name):
        fail("team names are lowercase letters, digits, '-', '_' or '.'")

    async def work(session: Any) -> None:
        await agents.create_team(session, name, description)

    _run(work)
    typer.echo(f"team {name} added")


@teams_cli.command("list")
def teams_list() -> None:
    """Teams and their members."""
    from traza.operations.repository import teams_with_members  # noqa: PLC0415  (heavy: SQLAlchemy)

    async def work(session: Any) -> list[Any]:
        return list(await teams_with_members(session))

    for row in _run(work):
        typer.echo(f"{row.name:<20} {row.online} online  members: {', '.join(row.members) or '-'}")


@rules_cli.command("check")
def rules_check(
    path: Annotated[
        Path | None, typer.Argument(help="Rules file (default: TRAZA_CONFIG_DIR/rules.yaml).")
    ] = None,
    offline: Annotated[
        bool, typer.Option("--offline", help="Skip the check of team names in the database.")
    ] = False,
) -> None:
    """Validate a rules file (and the follow-up agents); print each problem with its line."""
    from traza.rules import active  # noqa: PLC0415  (heavy: SQLAlchemy)
    from traza.rules.loader import RulesError, defaults, load_file  # noqa: PLC0415  (heavy: yaml)

    target = path or active.rules_file()
    teams: set[str] | None = None
    if not offline:

        async def work(_: Any) -> set[str]:  # the rules' own reader (its own connection)
            return await active.known_teams()

        teams = _run(work)
    try:
        loaded = load_file(target, known_teams=teams) if target else defaults()
    except RulesError as exc:
        for problem in exc.problems:
            typer.secho(str(problem), fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from None
    from traza.recruiting.agents import load_agents  # noqa: PLC0415  (heavy: the guardrails, numpy)

    try:
        agents = load_agents()
    except RulesError as exc:
        for problem in exc.problems:
            typer.secho(str(problem), fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from None
    if agents:
        typer.echo(f"follow-up agents: valid — {', '.join(sorted(agents))}")
    r = loaded.rules
    typer.echo(
        f"{loaded.source}: valid, version {loaded.version} — {len(r.routing)} routing rules, "
        f"{len(r.teams)} teams with hours, {len(r.slas)} SLAs, {len(r.integrations)} integrations"
    )


@agents_cli.command("check")
def agents_check(
    folder: Annotated[
        Path | None,
        typer.Argument(help="Folder of follow-up agent files (default: TRAZA_CONFIG_DIR/agents)."),
    ] = None,
) -> None:
    """Validate the follow-up agents and render every template through the guardrails.

    A template that breaks a policy (a salary, a start date, a decision, another
    candidate's data) is refused with agent, template, category and span; exit 1.
    """
    from traza.recruiting.agents import agents_dir, load_agents  # noqa: PLC0415  (heavy: numpy)
    from traza.rules.loader import RulesError  # noqa: PLC0415  (heavy: yaml)

    target = folder or agents_dir()
    if target is None:
        fail("no agents folder: set TRAZA_CONFIG_DIR (agents live in its agents/ folder)")
    if not target.is_dir():
        fail(f"{target}: not a folder")
    try:
        agents = load_agents(target)
    except RulesError as exc:
        for problem in exc.problems:
            typer.secho(str(problem), fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from None
    for name, agent in sorted(agents.items()):
        count = sum(len(t.text) for langs in agent.templates.values() for t in langs.values())
        typer.echo(f"{name}: valid — {count} template texts checked by the guardrails")
    if not agents:
        typer.echo(f"{target}: no agent files")
