"""`traza candidates import`: bring an existing talent pool in from a CSV file.

Exit codes: 0 every row imported; 1 some rows failed (the others were imported); 2 the
file cannot be used at all (missing, another encoding, no `name` column), and nothing
was changed.
"""

from __future__ import annotations

import csv
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from traza.cli.common import configure_logging, database_ready, fail, run_async

if TYPE_CHECKING:
    from traza.recruiting.importer import Report, RowError, Sheet

candidates_cli = typer.Typer(no_args_is_help=True, help="Candidates of the talent pool.")


def _delimiter(value: str) -> str:
    named = {"tab": "\t", "\\t": "\t", "comma": ",", "semicolon": ";"}
    delimiter = named.get(value.lower(), value)
    if len(delimiter) != 1:
        fail(f"--delimiter must be one character (or 'tab'), not '{value}'")
    return delimiter


class _RowsPerSecond(ProgressColumn):
    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:,.0f} rows/s" if speed else "", style="progress.data.speed")


def _progress(*, transient: bool = False) -> Progress:
    console = Console(stderr=True)
    return Progress(
        TextColumn("{task.description:<10}"),
        BarColumn(),
        MofNCompleteColumn(),
        _RowsPerSecond(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=transient,
        disable=transient and not console.is_terminal,  # a bar that vanishes is for terminals
    )


@candidates_cli.command("import")
def import_pool(
    file: Annotated[Path, typer.Argument(help="CSV file whose first line is the header.")],
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Check every row and count, but change nothing.")
    ] = False,
    errors: Annotated[
        Path | None,
        typer.Option("--errors", help="Write every row error (line, column, message) here."),
    ] = None,
    delimiter: Annotated[
        str, typer.Option(help="Field separator: ',' (default), ';', or 'tab'.")
    ] = ",",
    encoding: Annotated[
        str, typer.Option(help="The file's encoding: UTF-8 (with or without BOM), cp1252…")
    ] = "utf-8-sig",
    batch_size: Annotated[int, typer.Option(min=1, max=10_000, help="Rows per transaction.")] = 500,
) -> None:
    """Create or update candidates, their WhatsApp contacts and applications from a CSV file.

    Importing the same file again changes nothing. See README, "Importing a talent pool".
    """
    from traza.recruiting import importer  # noqa: PLC0415  (heavy: SQLAlchemy)

    separator = _delimiter(delimiter)
    if errors is not None and errors.resolve() == file.resolve():
        fail("--errors must not be the file being imported")
    if errors is not None and not errors.parent.is_dir():
        fail(f"--errors: no folder {errors.parent}")
    started = time.monotonic()
    with _progress(transient=True) as progress:  # a refused file leaves only its error line
        reading = progress.add_task("checking", total=None)
        try:
            sheet = importer.read(
                file,
                delimiter=separator,
                encoding=encoding,
                on_row=lambda: progress.advance(reading),
            )
        except importer.InputError as exc:
            refused = str(exc)
        else:
            refused = ""
    if refused:
        fail(refused)
    checked = time.monotonic() - started
    configure_logging("warning")
    database_ready()
    with _progress() as progress:
        writing = progress.add_task("importing", total=len(sheet.rows))
        started = time.monotonic()
        report = _write(sheet, file, dry_run, batch_size, lambda n: progress.advance(writing, n))
    timing = (checked, time.monotonic() - started)
    problems = sorted(sheet.errors + report.errors, key=lambda e: e.line)
    if errors is not None:
        _write_errors(errors, problems, sheet)
    _summary(file, sheet, report, problems, timing, dry_run, errors)
    if problems:
        raise typer.Exit(1)


def _write(
    sheet: Sheet, file: Path, dry_run: bool, batch_size: int, advance: Callable[[int], None]
) -> Report:
    from sqlalchemy.exc import DBAPIError  # noqa: PLC0415  (heavy: SQLAlchemy)

    from traza.db.engine import dispose_engine  # noqa: PLC0415  (heavy: SQLAlchemy)
    from traza.recruiting import importer  # noqa: PLC0415  (heavy: SQLAlchemy)

    async def main() -> Report:
        try:
            return await importer.write(
                sheet.rows,
                dry_run=dry_run,
                batch_size=batch_size,
                source=file.name,
                on_batch=advance,
            )
        finally:
            await dispose_engine()

    kept = (
        "nothing was changed (dry run)"
        if dry_run
        else "the batches before were imported; run the same command again to finish "
        "(an import never duplicates)"
    )
    try:
        return run_async(main())
    except DBAPIError as exc:
        detail = str(exc.orig or exc).strip().splitlines()[0][:300]
        fail(f"the database stopped the import: {detail}\n{kept[0].upper()}{kept[1:]}.", 1)
    except KeyboardInterrupt:
        typer.secho(f"interrupted: {kept}.", err=True)
        raise typer.Exit(130) from None


def _write_errors(path: Path, problems: list[RowError], sheet: Sheet) -> None:
    with path.open("w", encoding="utf-8", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["line", "column", "message"])
        writer.writerows(
            [e.line, sheet.header(e.column) if e.column else "", e.message] for e in problems
        )


def _summary(
    file: Path,
    sheet: Sheet,
    report: Report,
    problems: list[RowError],
    timing: tuple[float, float],
    dry_run: bool,
    errors: Path | None,
) -> None:
    from traza.recruiting import importer  # noqa: PLC0415  (heavy: SQLAlchemy)

    for problem in problems[: importer.SHOWN_ERRORS]:
        where = f"line {problem.line}"
        if problem.column:
            where += f", {sheet.header(problem.column)}"
        typer.secho(f"{where}: {problem.message}", fg=typer.colors.YELLOW, err=True)
    hidden = len(problems) - importer.SHOWN_ERRORS
    if hidden > 0:
        rest = f"all in {errors}" if errors else "use --errors FILE to get them all"
        typer.secho(f"… and {hidden} more errors ({rest})", fg=typer.colors.YELLOW, err=True)
    failed = len({p.line for p in problems})
    checked, written = timing
    rate = len(sheet.rows) / written if written > 0 else 0.0
    verb = "would be" if dry_run else "were"
    typer.echo(
        f"{file.name}: {sheet.lines} rows checked in {checked:.1f} s, "
        f"{len(sheet.rows)} written in {written:.1f} s ({rate:,.0f} rows/s)"
    )
    typer.echo(f"  created    {report.created:>7}")
    typer.echo(f"  updated    {report.updated:>7}")
    typer.echo(f"  unchanged  {report.unchanged:>7}")
    typer.echo(f"  failed     {failed:>7}" + ("  (not imported; errors above)" if failed else ""))
    if report.applications_created or report.applications_moved:
        typer.echo(
            f"  applications: {report.applications_created} created, "
            f"{report.applications_moved} moved to the file's stage"
        )
    if report.vacancies_created:
        typer.echo(f"  vacancies {verb} created for: {', '.join(report.vacancies_created)}")
    if sheet.empty:
        fields = ", ".join(f"{k} {n}" for k, n in sorted(sheet.empty.items()))
        typer.echo(f"  profile fields left empty (missing): {fields}")
    if dry_run:
        typer.echo("dry run: nothing was changed")
