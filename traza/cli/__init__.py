"""The `traza` command: serve, worker, db upgrade, simulate, agents, teams, rules."""

# The root app only puts the command groups together: each lives in its own module, and
# what they share is in `traza.cli.common`, which imports none of them (no cycle).
# Commands are listed in `traza --help` in the order they are added here.

from __future__ import annotations

import sys

import typer

from traza.cli import audit, decisions, operations, recruiting, replay, service, simulate
from traza.cli.common import fail
from traza.settings import SettingsError

cli = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)
cli.command()(service.serve)
cli.command()(service.worker)
cli.command()(simulate.simulate)
cli.command("replay")(replay.replay)
cli.add_typer(service.db_cli, name="db")
cli.add_typer(operations.agents_cli, name="agents")
cli.add_typer(operations.teams_cli, name="teams")
cli.add_typer(operations.rules_cli, name="rules")
cli.add_typer(recruiting.candidates_cli, name="candidates")
cli.add_typer(decisions.judgment_cli, name="judgment")
cli.add_typer(decisions.guardrails_cli, name="guardrails")
cli.add_typer(audit.audit_cli, name="audit")
cli.add_typer(audit.subjects_cli, name="subjects")
cli.add_typer(replay.checkpoints_cli, name="checkpoints")


def main() -> None:
    """Entry point of the `traza` script."""
    try:
        cli()
    except SettingsError as exc:  # read past a command's own check: still one line, exit 2
        try:
            fail(str(exc))
        except typer.Exit as stop:  # out here, no click context turns it into the status
            sys.exit(stop.exit_code)
