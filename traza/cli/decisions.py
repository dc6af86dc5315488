"""`traza judgment …` and `traza guardrails …`: measure, explain and rebuild the models.

No database is needed: the model is built from the example files (shipped and
`$TRAZA_CONFIG_DIR/judgment/*.jsonl`) and cached under `$TRAZA_MODEL_CACHE`.

The commands import the decision modules when they run, like the other sub-commands:
numpy, scipy and lingua are heavy, and `traza --help` or `traza serve` must not load
them through the CLI's module tree.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from traza.cli.common import fail

judgment_cli = typer.Typer(
    no_args_is_help=True, help="Measure, explain and rebuild the judgment model."
)


def _policy() -> Any:
    """The judgment policy of the rules file (or the defaults); a bad file is an error."""
    from traza.rules.active import rules_file  # noqa: PLC0415  (heavy: SQLAlchemy)
    from traza.rules.loader import RulesError, defaults, load_file  # noqa: PLC0415  (heavy: yaml)

    path = rules_file()
    try:
        loaded = load_file(path) if path else defaults()
    except RulesError as exc:
        fail(f"rules file refused:\n{exc}")
    return loaded.rules.judgment


def _table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows, strict=False)]
    line = "  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))
    out = [line, "  ".join("-" * w for w in widths)]
    out += ["  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(out)


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"


@judgment_cli.command("eval")
def eval_(
    file: Annotated[
        Path | None,
        typer.Argument(help="A labelled JSONL file; default: the shipped held-out split."),
    ] = None,
    misses: Annotated[int, typer.Option(help="How many misclassified messages to list.")] = 30,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    min_escalate_recall: Annotated[
        float, typer.Option(help="Fail below this escalation recall (each head).")
    ] = 0.95,
    min_opt_out_recall: Annotated[
        float, typer.Option(help="Fail below this opt-out recall (acted or asked).")
    ] = 0.95,
    max_false_escalation: Annotated[
        float, typer.Option(help="Fail above this share of calm messages escalated.")
    ] = 0.05,
    max_false_opt_out: Annotated[
        int, typer.Option(help="Fail above this many messages opted out wrongly.")
    ] = 0,
) -> None:
    """Per-label precision/recall/F1, routes by variety, intent confusion, the misses.

    Without FILE, a model trained on the train split is scored on the held-out split
    (families never seen in training). With FILE, the active model (shipped plus your
    examples) is scored on it. Exit 1 when a target is missed, 2 on bad input.
    """
    from traza.decisions import evaluation, judgment  # noqa: PLC0415  (heavy: numpy, lingua)
    from traza.decisions.textmodel import DatasetError, split  # noqa: PLC0415  (heavy: numpy)

    policy = _policy()
    started = time.perf_counter()
    try:
        if file is None:
            shipped, _, _ = judgment.dataset(with_operator=False)
            examples = split(shipped)[1]
            model = judgment.build(split="train", with_operator=False)
        else:
            examples = judgment.read([file], operator=True)
            model = judgment.build()
    except DatasetError as exc:
        fail(str(exc))
    targets = {
        "escalate_recall": min_escalate_recall,
        "opt_out_recall": min_opt_out_recall,
        "false_escalation": max_false_escalation,
        "false_opt_out": max_false_opt_out,
    }
    report = evaluation.report(examples, model, policy, max_misses=misses, targets=targets)
    if as_json:
        typer.echo(json.dumps(report.as_dict(), ensure_ascii=False, indent=2))
        raise typer.Exit(1 if report.failures else 0)
    typer.echo(
        f"model {report.model} on {report.examples} examples"
        f" ({'held-out split' if file is None else file})"
        f" in {time.perf_counter() - started:.1f}s\n"
    )
    rows = [
        [r["label"], _pct(r["precision"]), _pct(r["recall"]), _pct(r["f1"]), str(r["support"])]
        for r in report.labels
    ]
    typer.echo(_table(rows, ["label", "precision", "recall", "f1", "support"]))
    typer.echo("\nroutes (what the product would do)")
    r = report.routes
    for key in [*(f"escalate_recall.{h}" for h in judgment.ESCALATION), "escalate_recall"]:
        typer.echo(f"  {key:34} {_pct(r[key])}")
    typer.echo(f"  {'false_escalation':34} {_pct(r['false_escalation'])}")
    typer.echo(f"  {'opt_out_recall (acted or asked)':34} {_pct(r['opt_out_recall'])}")
    typer.echo(f"  {'opt_out acted at once':34} {_pct(r['opt_out_acted'])}")
    typer.echo(f"  {'false_opt_out (acted)':34} {r['false_opt_out']}")
    typer.echo(f"  {'asked, not an opt-out':34} {r['asked_not_opt_out']}")
    typer.echo(f"  {'unclear opt-outs asked':34} {_pct(r['unclear_asked'])}")
    typer.echo(f"  {'opt_in_recall':34} {_pct(r['opt_in_recall'])}")
    typer.echo("\nby language variety")
    vrows = [
        [
            v,
            str(d["examples"]),
            _pct(d["escalate_recall"]),
            _pct(d["false_escalation"]),
            _pct(d["opt_out_recall"]),
            str(d["false_opt_out"]),
            _pct(d["accuracy"]),
        ]
        for v, d in report.by_variety.items()
    ]
    typer.echo(
        _table(
            vrows,
            [
                "variety",
                "n",
                "esc.recall",
                "false esc.",
                "opt-out rec.",
                "false opt-out",
                "route acc.",
            ],
        )
    )
    typer.echo("\nintent confusion (rows: labelled, columns: predicted)")
    names = sorted({*report.confusion, *(k for v in report.confusion.values() for k in v)})
    crow = [[t, *(str(report.confusion.get(t, {}).get(p, 0)) for p in names)] for t in names]
    typer.echo(_table(crow, ["", *(n[:8] for n in names)]))
    if report.misses:
        typer.echo(f"\nmisrouted ({len(report.misses)} shown)")
        for m in report.misses:
            typer.echo(
                f"  [{m['variety']}] {m['text'][:100]!r}\n"
                f"      labelled {m['labels']} → predicted {m['predicted']}"
                f" (escalates={m['escalates']}, opt_out={m['opt_out']})  {m['where']}"
            )
    if report.failures:
        typer.secho("\ntargets missed:", fg=typer.colors.RED)
        for f in report.failures:
            typer.secho(f"  {f}", fg=typer.colors.RED)
        raise typer.Exit(1)
    default = targets == evaluation.TARGETS
    typer.secho(
        "\nall targets held" if default else "\nthe floors given held (not the product's targets)",
        fg=typer.colors.GREEN,
    )


@judgment_cli.command()
def explain(
    text: Annotated[str, typer.Argument(help="A candidate's message.")],
    top: Annotated[int, typer.Option(help="Features shown per head.")] = 5,
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """Each head's score and threshold, the intent, and the features that drove them."""
    from traza.decisions import judgment  # noqa: PLC0415  (heavy: numpy, scipy)
    from traza.decisions.classifier import classify_turn  # noqa: PLC0415  (heavy: lingua)
    from traza.decisions.textmodel import DatasetError  # noqa: PLC0415  (heavy: numpy, scipy)

    if not text.strip():
        fail("give a non-empty message to explain")
    policy = _policy()
    try:
        model = judgment.build()
    except DatasetError as exc:
        fail(str(exc))
    result = classify_turn([text], policy=policy, model=model)
    heads = {}
    stacked = judgment.ESCALATE in result.scores
    for head in (judgment.ESCALATE, *judgment.SIGNALS) if stacked else judgment.SIGNALS:
        threshold = policy.opt_out.act if head == "opt_out" else policy.threshold(head)
        heads[head] = {
            "score": result.scores.get(head),
            "threshold": threshold,
            # an escalation head names a reason only when `escalate` says a person is needed
            "fires": getattr(result, head)
            if head in judgment.ESCALATION
            else (result.scores.get(head) or 0) >= threshold,
            "features": model.explain(text, head, top) if result.scores else [],
        }
    best_intent = result.intent if result.intent in model.intents else None
    data = {
        "model": model.version,
        "text": text,
        "language": result.language,
        "source": result.source,
        "matched": result.matched,
        "intent": result.intent,
        "intent_scores": dict(sorted(result.intent_scores.items(), key=lambda kv: -kv[1])[:4]),
        "intent_features": model.explain(text, best_intent, top) if best_intent else [],
        "heads": heads,
        "opt_out": result.opt_out_mode,
        "uncertain": result.uncertain,
    }
    if as_json:
        typer.echo(json.dumps(data, ensure_ascii=False, indent=2))
        return
    typer.echo(f"model {model.version}   language {result.language}   source {result.source}")
    if result.matched:
        typer.echo(f"fast path: whole-message keyword or button {result.matched!r}")
    for head, h in heads.items():
        mark = "FIRES" if h["fires"] else "     "
        score = "—" if h["score"] is None else f"{h['score']:.3f}"
        feats = ", ".join(
            f"{n[2:]!r} {w:+.2f}" if n[:2] in ("c:", "w:") else f"{n} {w:+.2f}"
            for n, w in h["features"]
            if abs(w) > 0.01
        )
        typer.echo(f"  {head:16} {score:>6} / {h['threshold']:.2f} {mark}  {feats}")
    top_intents = sorted(result.intent_scores.items(), key=lambda kv: -kv[1])[:4]
    intents = ", ".join(f"{k} {v:.2f}" for k, v in top_intents)
    typer.echo(f"  intent           {result.intent}   ({intents})")
    verdict = []
    if result.opt_out_mode:
        verdict.append(f"opt-out: {result.opt_out_mode}")
    if result.uncertain:
        verdict.append(
            "uncertain (escalate says a person is needed, no reason decisive):"
            " goes to a human by default"
        )
    fired = [h for h in judgment.ESCALATION if getattr(result, h)]
    if fired:
        verdict.append(f"escalates: {', '.join(fired)}")
    typer.echo("→ " + ("; ".join(verdict) if verdict else "the bot answers"))


@judgment_cli.command()
def train() -> None:
    """Rebuild the model from the shipped examples and yours; print its version.

    Running processes pick up a changed examples folder by themselves within seconds; a
    bad file is refused (file and line named) and the previous model stays active.
    """
    from traza.decisions import judgment  # noqa: PLC0415  (heavy: numpy, scipy)
    from traza.decisions.textmodel import DatasetError  # noqa: PLC0415  (heavy: numpy, scipy)

    started = time.perf_counter()
    try:
        shipped, own, files = judgment.dataset()
        model = judgment.build()
    except DatasetError as exc:
        fail(f"examples refused (the previous model stays active):\n{exc}")
    typer.echo(
        f"model {model.version}: {len(shipped)} shipped + {len(own)} of yours"
        f" from {len(files)} files, in {time.perf_counter() - started:.1f}s"
        f" (training took {model.trained_seconds}s when it was built)"
    )
    counts = ", ".join(f"{k} {v}" for k, v in sorted(model.label_counts.items()))
    typer.echo(f"labels: {counts}")


guardrails_cli = typer.Typer(
    no_args_is_help=True, help="Measure and explain the guardrails on outgoing replies."
)


@guardrails_cli.command("eval")
def guardrails_eval(
    file: Annotated[
        Path | None,
        typer.Argument(help="Labelled replies (JSONL); default: the shipped held-out split."),
    ] = None,
    misses: Annotated[int, typer.Option(help="How many misses and false blocks to list.")] = 30,
    max_false_blocks: Annotated[
        float, typer.Option(help="Fail (exit 1) above this share of benign replies blocked.")
    ] = 0.02,
    max_sent: Annotated[
        int, typer.Option(help="Fail (exit 1) when more violating replies than this are sent.")
    ] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Per-category precision/recall, violations sent, false blocks, and the misses.

    The offline layers are measured (entities, people, reply classifier); the model judge
    only adds blocks. Exit 1 when more than --max-sent violating replies would be sent or
    false blocks exceed --max-false-blocks; 2 on bad input.
    """
    from traza.decisions import guardrails  # noqa: PLC0415  (heavy: numpy, scipy)
    from traza.decisions.evaluation import guardrail_report  # noqa: PLC0415  (heavy: lingua)
    from traza.decisions.textmodel import DatasetError, split  # noqa: PLC0415  (heavy: numpy)

    try:
        pol = guardrails.policy()
        if file is None:
            examples = split(guardrails.read(guardrails.builtin_files()))[1]
            model = guardrails.build(split="train", with_operator=False)
        else:
            examples = guardrails.read([file], operator=True)
            model = guardrails.build()
    except (DatasetError, guardrails.PolicyError) as exc:
        fail(str(exc))
    report = guardrail_report(examples, model, pol, max_misses=misses)
    failed = report["sent"] > max_sent or report["false_block_rate"] > max_false_blocks
    if as_json:
        typer.echo(json.dumps(report, ensure_ascii=False, indent=2))
        raise typer.Exit(1 if failed else 0)
    typer.echo(
        f"reply classifier {report['model']}; {report['examples']} replies"
        f" ({'held-out split' if file is None else file})\n"
    )
    rows = [
        [c["category"], _pct(c["precision"]), _pct(c["recall"]), str(c["support"])]
        for c in report["categories"]
    ]
    typer.echo(_table(rows, ["category", "precision", "recall", "support"]))
    typer.echo(
        f"\nviolating replies: {report['violating']}, blocked {report['blocked']},"
        f" SENT {report['sent']}"
    )
    typer.echo(
        f"benign replies: {report['benign']}, falsely blocked {report['false_blocks']}"
        f" ({report['false_block_rate']:.1%})"
    )
    typer.echo("blocked by layer: " + ", ".join(f"{k} {v}" for k, v in report["by_layer"].items()))
    typer.echo("\nby language variety")
    vrows = [
        [v, str(d["violating"]), str(d["sent"]), str(d["benign"]), str(d["false_blocks"])]
        for v, d in report["by_variety"].items()
    ]
    typer.echo(_table(vrows, ["variety", "violating", "sent", "benign", "false blocks"]))
    for title, key in (("sent (missed)", "missed"), ("falsely blocked", "false_blocked")):
        if report[key]:
            typer.echo(f"\n{title}")
            for m in report[key]:
                typer.echo(f"  [{m['variety']}] {m['text'][:110]!r}  {m['labels']} {m['why']}")
    if failed:
        typer.secho("\ntargets missed", fg=typer.colors.RED)
        raise typer.Exit(1)
    strict = max_sent == 0 and max_false_blocks <= 0.02
    typer.secho(
        "\nall targets held" if strict else "\nthe floors given held (not the product's targets)",
        fg=typer.colors.GREEN,
    )


@guardrails_cli.command("explain")
def guardrails_explain(
    text: Annotated[str, typer.Argument(help="A reply the bot might send.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """Which layer matched what: every layer's verdict, category and matched span."""
    from traza.decisions import guardrails  # noqa: PLC0415  (heavy: numpy, scipy)

    if not text.strip():
        fail("give a non-empty reply to explain")
    try:
        verdict = guardrails.check_reply(text)
    except guardrails.PolicyError as exc:
        fail(str(exc))
    if as_json:
        typer.echo(json.dumps(verdict.as_dict(), ensure_ascii=False, indent=2))
        return
    for layer in verdict.layers:
        typer.echo(f"  {layer['layer']:11} {layer['verdict'].upper()}")
        for f in layer["findings"]:
            typer.echo(f"      {f['category']}: «{f['span']}» ({f['detail']})")
        if layer.get("scores"):
            scores = ", ".join(f"{k} {v:.2f}" for k, v in layer["scores"].items())
            typer.echo(f"      scores: {scores}")
    if verdict.allowed:
        typer.secho("→ may be sent", fg=typer.colors.GREEN)
    else:
        typer.secho(
            f"→ BLOCKED by {verdict.source}: {', '.join(verdict.policies)} «{verdict.span}»",
            fg=typer.colors.RED,
        )
