"""`traza replay …` and `traza checkpoints …`: replays and time travel from the shell.

Replays read the database and run today's graph; they write nothing and send nothing.
Exit codes: 0 no differences, 1 differences found (the regression check failed),
2 unusable input (no such conversation, bad date).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn
from rich.table import Table

from traza.cli.common import fail, run_with_database

checkpoints_cli = typer.Typer(no_args_is_help=True, help="A conversation's LangGraph checkpoints.")

T = TypeVar("T")


def _run(work: Callable[[], Awaitable[T]]) -> T:
    from traza.replay.recorded import ReplayError  # noqa: PLC0415  (heavy: SQLAlchemy)

    return run_with_database(work, expected=(ReplayError,))


def _since(value: str) -> datetime:
    try:
        parsed = (
            datetime.fromisoformat(value) if "T" in value or " " in value else None
        ) or datetime.combine(date.fromisoformat(value), datetime.min.time())
    except ValueError:
        fail(f"--since: {value!r} is not a date (YYYY-MM-DD) or ISO date-time")
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _short(value: Any, width: int = 60) -> str:
    if value is None:
        return "—"
    if isinstance(value, dict):
        value = ", ".join(f"{k}={v}" for k, v in value.items() if v not in (None, []))
    text = str(value).replace("\n", " ")
    return text if len(text) <= width else text[: width - 1] + "…"


def _print_conversation(result: Any, *, all_turns: bool) -> None:
    console = Console()
    title = (
        f"conversation {result.conversation_id}: {len(result.turns)} turn(s) replayed, "
        f"{result.differences} differ" + (f", {result.skipped} skipped" if result.skipped else "")
    )
    table = Table(title=title, show_lines=True)
    for column in ("turn", "aspect", "recorded", "today"):
        table.add_column(column, overflow="fold")
    for t in result.turns:
        aspects = t.differs if not all_turns else ["intent", "route", "guardrail", "reply"]
        for i, aspect in enumerate(aspects):
            mark = "≠ " if aspect in t.differs else "  "
            head = f"#{t.number} {t.at:%Y-%m-%d %H:%M}\n«{_short(t.said, 40)}»" if i == 0 else ""
            table.add_row(
                head,
                mark + aspect,
                _short(t.recorded.get(aspect)),
                _short(t.replayed.get(aspect)),
            )
    if table.row_count:
        console.print(table)
    else:
        console.print(title + " — same decisions as recorded")
    models = sorted({str(t.recorded.get("model")) for t in result.turns if t.recorded.get("model")})
    today = next((t.replayed.get("model") for t in result.turns if t.replayed.get("model")), None)
    if models or today:
        console.print(
            f"judgment model: recorded {', '.join(models) or '— (before trained models)'};"
            f" today {today or '—'}"
        )


def replay(
    conversation: Annotated[
        int | None, typer.Argument(help="Conversation id (omit with --all).")
    ] = None,
    from_checkpoint: Annotated[
        str | None,
        typer.Option("--from", help="Replay only the turns after this checkpoint id."),
    ] = None,
    all_: Annotated[
        bool, typer.Option("--all", help="Replay every conversation with a turn since --since.")
    ] = False,
    since: Annotated[
        str | None, typer.Option(help="With --all: YYYY-MM-DD or an ISO date-time (UTC).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    every_turn: Annotated[
        bool, typer.Option("--every-turn", help="Show every aspect, not only differences.")
    ] = False,
) -> None:
    """Re-run past inbound messages through today's graph, rules, prompts and model.

    Nothing is sent and nothing in the conversation changes; the differences between
    the recorded decisions and today's are shown side by side.
    """
    from traza.replay import recorded  # noqa: PLC0415  (heavy: SQLAlchemy)
    from traza.services import replay as runner  # noqa: PLC0415  (heavy: LangGraph)
    from traza.services.checkpoints import checkpoint, thread_of  # noqa: PLC0415  (heavy: LangGraph)

    if all_ == (conversation is not None):
        fail("give a conversation id, or --all --since DATE")
    if all_ and since is None:
        fail("--all needs --since DATE")
    if from_checkpoint and all_:
        fail("--from applies to one conversation")

    if conversation is not None:
        cid = conversation

        async def one() -> Any:
            if from_checkpoint is None:
                return await runner.replay_conversation(cid)
            cp = await checkpoint(await thread_of(cid), from_checkpoint)
            return await runner.replay_conversation(cid, from_step=cp.step, state=cp.values)

        result = _run(one)
        if as_json:
            typer.echo(json.dumps(result.as_dict(), ensure_ascii=False, default=str, indent=2))
        else:
            _print_conversation(result, all_turns=every_turn)
        raise typer.Exit(1 if result.differences else 0)

    assert since is not None
    start = _since(since)

    async def many() -> tuple[Any, list[Any]]:
        ids = await recorded.conversations_since(start)
        with Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            transient=as_json,
        ) as bar:
            task = bar.add_task("replaying", total=len(ids))
            return await runner.replay_many(ids, progress=lambda n: bar.advance(task, n))

    summary, results = _run(many)
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "conversations": summary.conversations,
                    "turns": summary.turns,
                    "differing_turns": summary.differing_turns,
                    "by_aspect": summary.by_aspect,
                    "differing_conversations": summary.differing,
                    "failed": summary.failed,
                    "results": [r.as_dict() for r in results if r.differences],
                },
                ensure_ascii=False,
                default=str,
                indent=2,
            )
        )
    else:
        for result in results:
            if result.differences:
                _print_conversation(result, all_turns=False)
        aspects = ", ".join(f"{a} {n}" for a, n in summary.by_aspect.items())
        typer.echo(
            f"{summary.conversations} conversation(s), {summary.turns} turn(s) replayed; "
            f"{summary.differing_turns} turn(s) differ in {len(summary.differing)} "
            f"conversation(s) ({aspects})"
        )
        for cid, why in summary.failed.items():
            typer.secho(f"conversation {cid}: replay failed: {why}", fg=typer.colors.RED, err=True)
    raise typer.Exit(1 if summary.differing_turns or summary.failed else 0)


@checkpoints_cli.command("list")
def checkpoints_list(
    conversation: Annotated[int, typer.Argument(help="Conversation id.")],
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 50,
) -> None:
    """The conversation thread's checkpoints, newest first."""
    from traza.services.checkpoints import history, thread_of  # noqa: PLC0415  (heavy: LangGraph)

    async def work() -> tuple[str, list[Any]]:
        thread = await thread_of(conversation)
        return thread, await history(thread, limit=limit)

    thread, found = _run(work)
    typer.echo(f"thread {thread}: {len(found)} checkpoint(s)")
    for cp in found:
        nxt = ",".join(cp.next) or "—"
        when = f"{cp.created_at:%Y-%m-%d %H:%M:%S}" if cp.created_at else "?"
        typer.echo(f"  {cp.checkpoint_id}  step {cp.step:>4}  {when}  {cp.source:<6} next: {nxt}")


@checkpoints_cli.command("fork")
def checkpoints_fork(
    conversation: Annotated[int, typer.Argument(help="Conversation id.")],
    checkpoint_id: Annotated[str, typer.Argument(help="Checkpoint id (see `list`).")],
) -> None:
    """Copy a checkpoint into a new scratch thread (open it in LangGraph Studio)."""
    from traza.services.checkpoints import fork  # noqa: PLC0415  (heavy: LangGraph)

    async def work() -> dict[str, str]:
        return await fork(conversation, checkpoint_id)

    made = _run(work)
    typer.echo(
        f"forked {made['forked_from']} into thread {made['thread_id']} "
        f"(checkpoint {made['checkpoint_id']})"
    )
