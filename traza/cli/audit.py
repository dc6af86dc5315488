"""`traza audit …` (verify, anchor) and `traza subjects …` (export, erase) from the shell.

They work on the database directly, like `traza db upgrade`; `traza audit verify --file`
checks an exported trail with no database at all.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Awaitable, Callable
from datetime import date
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

from traza.audit.chain import verify_export
from traza.cli.common import fail, run_with_database

audit_cli = typer.Typer(no_args_is_help=True, help="Prove what happened: the audit trail.")
subjects_cli = typer.Typer(
    no_args_is_help=True, help="Data-subject requests: export or erase a contact's data."
)


def _print_break(problem: Any) -> None:
    typer.secho(f"BROKEN  {problem.where()}", fg=typer.colors.RED, bold=True)
    typer.echo(f"  {problem.problem}: {problem.detail}")
    if problem.expected is not None or problem.found is not None:
        typer.echo(f"  expected {problem.expected}")
        typer.echo(f"  found    {problem.found}")


@audit_cli.command("verify")
def verify(
    conversation: Annotated[
        int | None, typer.Option("--conversation", "-c", help="Only this conversation's chain.")
    ] = None,
    since: Annotated[
        str | None,
        typer.Option(help="Only events from this day on (YYYY-MM-DD), and anchors since."),
    ] = None,
    file: Annotated[
        Path | None,
        typer.Option("--file", "-f", help="Verify an exported trail (audit.jsonl), offline."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Recompute every hash and link; exit 0 when all verify, 1 at a broken link."""
    if file is not None:
        _verify_file(file, as_json=as_json)
        return
    day: date | None = None
    if since is not None:
        try:
            day = date.fromisoformat(since)
        except ValueError:
            fail(f"--since wants a date like 2026-03-02, not '{since}'")
    from traza.audit import trail  # noqa: PLC0415  (heavy: SQLAlchemy)

    async def work() -> trail.Report:
        total = await trail.count_chains(conversation_id=conversation, since=day)
        with Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            transient=True,
            disable=as_json or total < 2 or not sys.stderr.isatty(),
            console=Console(stderr=True),
        ) as bar:
            task = bar.add_task("verifying chains", total=total)
            return await trail.verify(
                conversation_id=conversation,
                since=day,
                on_chain=lambda _: bar.advance(task),
            )

    report = run_with_database(work)
    if as_json:
        typer.echo(json.dumps(report.as_dict(), indent=2))
    else:
        for problem in report.breaks:
            _print_break(problem)
        scope = f"conversation {conversation}" if conversation is not None else "all chains"
        summary = (
            f"{report.events} event(s) in {report.chains} chain(s) ({scope}"
            f"{f', since {day}' if day else ''}), {len(report.redacted)} redacted; "
            f"{report.anchors} anchor(s), {report.anchored_heads} anchored head(s) checked"
        )
        if report.ok:
            typer.secho(f"audit trail verified: {summary}", fg=typer.colors.GREEN)
        else:
            typer.secho(
                f"audit trail BROKEN at {len(report.breaks)} place(s): {summary}",
                fg=typer.colors.RED,
            )
    raise typer.Exit(0 if report.ok else 1)


def _verify_file(path: Path, *, as_json: bool) -> None:
    try:
        with path.open(encoding="utf-8") as lines:
            report = verify_export(lines)
    except (OSError, ValueError, KeyError) as exc:
        fail(f"cannot read {path}: {exc}")
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "ok": report.ok,
                    "conversation_id": report.conversation_id,
                    "events": report.events,
                    "redacted": report.redacted,
                    "anchors": report.anchors,
                    "breaks": [report.broken.as_dict()] if report.broken else [],
                },
                indent=2,
            )
        )
    else:
        if report.broken is not None:
            _print_break(report.broken)
        summary = (
            f"{report.events} event(s) of conversation {report.conversation_id}, "
            f"{len(report.redacted)} redacted, {report.anchors} anchor(s)"
        )
        if report.ok:
            typer.secho(f"exported trail verified: {summary}", fg=typer.colors.GREEN)
        else:
            typer.secho(f"exported trail BROKEN: {summary}", fg=typer.colors.RED)
    raise typer.Exit(0 if report.ok else 1)


@audit_cli.command("anchor")
def anchor(
    day: Annotated[
        str | None, typer.Option(help="The day the anchor is labelled with (default today).")
    ] = None,
) -> None:
    """Anchor every chain that moved since the last anchor (after verifying its new events)."""
    label: date | None = None
    if day is not None:
        try:
            label = date.fromisoformat(day)
        except ValueError:
            fail(f"--day wants a date like 2026-03-02, not '{day}'")
    from traza import trace  # noqa: PLC0415  (heavy: SQLAlchemy)
    from traza.audit import trail  # noqa: PLC0415  (heavy: SQLAlchemy)

    result = run_with_database(
        lambda: trail.write_anchor(created_by=trace.system("cli"), day=label)
    )
    a = result.anchor
    typer.echo(
        f"anchor {a.id} ({a.day}): {a.chains} chain(s), {a.events} new event(s), "
        f"hash {a.hash.hex()}"
    )
    for problem in result.breaks:
        _print_break(problem)
    if result.breaks:
        typer.secho(
            f"{len(result.breaks)} broken chain(s) left out of the anchor", fg=typer.colors.RED
        )
    raise typer.Exit(1 if result.breaks else 0)


def _contact(ref: str) -> Callable[[], Awaitable[int]]:
    from traza.audit.subjects import find_contact  # noqa: PLC0415  (heavy: SQLAlchemy)
    from traza.db.engine import session_scope  # noqa: PLC0415  (heavy: SQLAlchemy)

    async def find() -> int:
        async with session_scope() as session:
            return await find_contact(session, ref)

    return find


@subjects_cli.command("export")
def subjects_export(
    contact: Annotated[str, typer.Argument(help="The contact's id or WhatsApp number (wa_id).")],
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write to this file (default stdout).")
    ] = None,
) -> None:
    """Export everything held about a contact as one JSON document."""
    from traza.audit import subjects  # noqa: PLC0415  (heavy: SQLAlchemy)

    async def work() -> dict[str, Any]:
        return await subjects.export_subject(await _contact(contact)())

    try:
        document = run_with_database(work)
    except subjects.SubjectNotFound as exc:
        fail(str(exc).strip("'\""))
    body = json.dumps(document, ensure_ascii=False, indent=2, default=str)
    if output is None:
        typer.echo(body)
    else:
        output.write_text(body + "\n", encoding="utf-8")
        typer.echo(f"contact {document['subject']['contact_id']} exported to {output}")


@subjects_cli.command("erase")
def subjects_erase(
    contact: Annotated[str, typer.Argument(help="The contact's id or WhatsApp number (wa_id).")],
    reason: Annotated[
        str, typer.Option(help="Why (recorded in the trail), e.g. 'GDPR art. 17 request 42'.")
    ],
    by: Annotated[str, typer.Option(help="Who asks for it (recorded as human:<by>).")] = "admin",
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
) -> None:
    """Erase a contact's personal data for good, keeping the audit trail verifiable."""
    from traza import trace  # noqa: PLC0415  (heavy: SQLAlchemy)
    from traza.audit import subjects  # noqa: PLC0415  (heavy: SQLAlchemy)

    if not yes:
        typer.confirm(
            f"Erase the personal data of contact {contact}? This cannot be undone", abort=True
        )

    async def work() -> dict[str, Any]:
        cid = await _contact(contact)()
        return await subjects.erase_subject(cid, reason=reason, by=trace.human(by))

    try:
        summary = run_with_database(work)
    except (subjects.SubjectNotFound, subjects.AlreadyErased, ValueError) as exc:
        fail(str(exc).strip("'\""))
    erased = ", ".join(f"{k} {v}" for k, v in summary["erased"].items() if v)
    typer.echo(
        f"contact {summary['contact_id']} erased ({erased or 'nothing else held'}); "
        "recorded as subject.erased in its trail"
    )
