"""Measuring judgment the way routing uses it: per label, per language variety, per route.

A message "escalates" when the product would hand it to a human: any escalation head
fires, or the turn is `uncertain` and the policy sends uncertain turns to a human. An
opt-out "acts" when the contact would be opted out at once, and "asks" when the bot
would ask first. The targets are the product's promises (README, "Decisions").
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from traza.decisions import entities, guardrails, judgment
from traza.decisions.classifier import Classification, classify_turn
from traza.decisions.textmodel import NO_INTENT, Example, TextModel, label_reports
from traza.rules.schema import JudgmentPolicy

TARGETS = {
    "escalate_recall": 0.95,
    "opt_out_recall": 0.95,
    "false_escalation": 0.05,
    "false_opt_out": 0,
}
"""What `traza judgment eval` holds the model to (exit 1 below any of them)."""


@dataclass(frozen=True, slots=True)
class Outcome:
    """One example and what the product would do with it."""

    example: Example
    result: Classification
    escalates: bool
    opt_out: str | None  # "act", "ask" or None
    predicted: frozenset[str]

    @property
    def wrong(self) -> bool:
        """Whether the route differs from what the labels call for."""
        labels = self.example.labels
        should_escalate = bool(labels & set(judgment.ESCALATION))
        if "opt_out" in labels:
            return self.opt_out is None
        if self.opt_out == "act":
            return True
        return should_escalate != self.escalates


def escalates(result: Classification, policy: JudgmentPolicy) -> bool:
    """Whether routing would hand this turn to a human (before any configured rule)."""
    return (
        result.wants_human
        or result.negotiation
        or result.frustration
        or result.out_of_scope
        or (result.uncertain and policy.uncertain_to == "human")
    )


def predicted_labels(result: Classification) -> frozenset[str]:
    """The labels a classification stands for (for per-label precision and recall)."""
    out = {
        name
        for name in ("wants_human", "negotiation", "frustration", "out_of_scope", "opt_in")
        if getattr(result, name)
    }
    if result.opt_out_mode == "act":
        out.add("opt_out")
    if result.opt_out_mode == "ask":
        out.add("unclear_opt_out")
    intent = "none" if result.intent in ("unknown", "salary") else result.intent
    if intent in judgment.INTENT_LABELS:
        out.add(intent)
    return frozenset(out)


def run(
    examples: Sequence[Example], model: TextModel, policy: JudgmentPolicy | None = None
) -> list[Outcome]:
    """Classify every example with `model` as the product would."""
    policy = policy or JudgmentPolicy()
    outcomes = []
    for e in examples:
        r = classify_turn([e.text], language_hint=e.lang, policy=policy, model=model)
        outcomes.append(
            Outcome(
                example=e,
                result=r,
                escalates=escalates(r, policy),
                opt_out=r.opt_out_mode,
                predicted=predicted_labels(r),
            )
        )
    return outcomes


def _rate(hits: int, total: int) -> float | None:
    return round(hits / total, 4) if total else None


@dataclass
class Report:
    """Everything `traza judgment eval` prints."""

    model: str
    examples: int
    labels: list[dict[str, Any]]
    routes: dict[str, Any]
    by_variety: dict[str, dict[str, Any]]
    confusion: dict[str, dict[str, int]]
    misses: list[dict[str, Any]]
    failures: list[str] = field(default_factory=list)
    targets: dict[str, float] = field(default_factory=lambda: dict(TARGETS))

    def as_dict(self) -> dict[str, Any]:
        """A JSON-serialisable copy."""
        return {
            "model": self.model,
            "examples": self.examples,
            "labels": self.labels,
            "routes": self.routes,
            "by_variety": self.by_variety,
            "confusion": self.confusion,
            "misses": self.misses,
            "failures": self.failures,
            "targets": self.targets,
        }


def _routes(outcomes: Sequence[Outcome]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    # An opt-out is honoured before any escalation (built-in rule), so messages labelled
    # opt_out are measured as opt-outs only.
    for head in judgment.ESCALATION:
        rows = [
            o for o in outcomes if head in o.example.labels and "opt_out" not in o.example.labels
        ]
        out[f"escalate_recall.{head}"] = _rate(sum(o.escalates for o in rows), len(rows))
    esc = [
        o
        for o in outcomes
        if o.example.labels & set(judgment.ESCALATION) and "opt_out" not in o.example.labels
    ]
    out["escalate_recall"] = _rate(sum(o.escalates for o in esc), len(esc))
    calm = [
        o
        for o in outcomes
        if not o.example.labels & {*judgment.ESCALATION, "opt_out", "unclear_opt_out"}
    ]
    out["false_escalation"] = _rate(sum(o.escalates for o in calm), len(calm))
    opt = [o for o in outcomes if "opt_out" in o.example.labels]
    out["opt_out_recall"] = _rate(sum(o.opt_out is not None for o in opt), len(opt))
    out["opt_out_acted"] = _rate(sum(o.opt_out == "act" for o in opt), len(opt))
    not_opt = [o for o in outcomes if "opt_out" not in o.example.labels]
    out["false_opt_out"] = sum(o.opt_out == "act" for o in not_opt)
    out["asked_not_opt_out"] = sum(o.opt_out == "ask" for o in not_opt)
    unclear = [o for o in outcomes if "unclear_opt_out" in o.example.labels]
    out["unclear_asked"] = _rate(sum(o.opt_out == "ask" for o in unclear), len(unclear))
    back = [o for o in outcomes if "opt_in" in o.example.labels]
    out["opt_in_recall"] = _rate(sum(o.result.opt_in for o in back), len(back))
    out["support"] = {
        "escalate": len(esc),
        "calm": len(calm),
        "opt_out": len(opt),
        "unclear_opt_out": len(unclear),
        "opt_in": len(back),
    }
    return out


def failures_of(routes: dict[str, Any], targets: dict[str, float] | None = None) -> list[str]:
    """Which targets the route figures miss (empty: all held)."""
    t = TARGETS | (targets or {})
    failures = []
    for head in judgment.ESCALATION:
        value = routes.get(f"escalate_recall.{head}")
        if value is not None and value < t["escalate_recall"]:
            failures.append(f"escalate recall for {head} {value:.3f} < {t['escalate_recall']}")
    if (v := routes.get("opt_out_recall")) is not None and v < t["opt_out_recall"]:
        failures.append(f"opt-out recall {v:.3f} < {t['opt_out_recall']}")
    if (v := routes.get("false_escalation")) is not None and v > t["false_escalation"]:
        failures.append(f"false escalation {v:.3f} > {t['false_escalation']}")
    if routes.get("false_opt_out", 0) > t["false_opt_out"]:
        failures.append(
            f"{routes['false_opt_out']} false opt-out(s), at most {t['false_opt_out']:g}"
        )
    return failures


def report(
    examples: Sequence[Example],
    model: TextModel,
    policy: JudgmentPolicy | None = None,
    *,
    max_misses: int = 50,
    targets: dict[str, float] | None = None,
) -> Report:
    """Per-label P/R/F1, route figures overall and by variety, intent confusion, misses."""
    outcomes = run(examples, model, policy)
    labels = [*judgment.SIGNALS, *judgment.INTENT_LABELS]
    per_label = [
        r.as_dict()
        for r in label_reports(
            labels, [o.example.labels for o in outcomes], [o.predicted for o in outcomes]
        )
    ]
    by_variety: dict[str, dict[str, Any]] = {}
    grouped: dict[str, list[Outcome]] = defaultdict(list)
    for o in outcomes:
        grouped[o.example.variety].append(o)
    for variety in sorted(grouped):
        rows = grouped[variety]
        figures = _routes(rows)
        by_variety[variety] = {
            "examples": len(rows),
            "escalate_recall": figures["escalate_recall"],
            "false_escalation": figures["false_escalation"],
            "opt_out_recall": figures["opt_out_recall"],
            "false_opt_out": figures["false_opt_out"],
            "accuracy": _rate(sum(not o.wrong for o in rows), len(rows)),
        }
    confusion: dict[str, dict[str, int]] = {}
    for o in outcomes:
        truth = next((lbl for lbl in o.example.labels if lbl in judgment.INTENT_LABELS), NO_INTENT)
        guess = next((lbl for lbl in o.predicted if lbl in judgment.INTENT_LABELS), NO_INTENT)
        confusion.setdefault(truth, Counter())[guess] += 1
    routes = _routes(outcomes)
    misses = [
        {
            "text": o.example.text,
            "labels": sorted(o.example.labels),
            "predicted": sorted(o.predicted) + (["(uncertain)"] if o.result.uncertain else []),
            "escalates": o.escalates,
            "opt_out": o.opt_out,
            "variety": o.example.variety,
            "where": f"{o.example.file}:{o.example.line}",
        }
        for o in outcomes
        if o.wrong
    ]
    return Report(
        model=model.version,
        examples=len(outcomes),
        labels=per_label,
        routes=routes,
        by_variety=by_variety,
        confusion={k: dict(v) for k, v in sorted(confusion.items())},
        misses=misses[:max_misses],
        failures=failures_of(routes, targets),
        targets=TARGETS | (targets or {}),
    )


def guardrail_report(
    examples: Sequence[Example],
    model: TextModel,
    pol: Any,
    *,
    max_misses: int = 30,
) -> dict[str, Any]:
    """How the offline guardrail layers do on labelled replies (benign: no labels)."""
    vocab = pol.vocabulary()
    scores = model.score_many([e.text for e in examples])
    truth: list[frozenset[str]] = []
    predicted: list[frozenset[str]] = []
    by_layer: Counter[str] = Counter()
    by_variety: dict[str, Counter[str]] = defaultdict(Counter)
    missed: list[dict[str, Any]] = []
    false_blocked: list[dict[str, Any]] = []
    for e, (s, _, _) in zip(examples, scores, strict=True):
        found = entities.find(e.text, vocab)
        people = guardrails._people_findings(e.text, None, pol.allow, pol.contact_cues)
        flagged = pol.flagged(s, e.text)
        layers = {
            "entities": {f.category for f in found},
            "people": {f.category for f in people},
            "classifier": set(flagged),
        }
        cats = frozenset(set().union(*layers.values()))
        truth.append(e.labels)
        predicted.append(cats)
        first = next((name for name, c in layers.items() if c), None)
        counts = by_variety[e.variety]
        why = {k: sorted(v) for k, v in layers.items() if v}
        if e.labels:
            counts["violating"] += 1
            if first:
                by_layer[first] += 1
            else:
                counts["sent"] += 1
                missed.append(
                    {"text": e.text, "labels": sorted(e.labels), "variety": e.variety, "why": why}
                )
        else:
            counts["benign"] += 1
            if first:
                counts["false_blocks"] += 1
                false_blocked.append(
                    {"text": e.text, "labels": [], "variety": e.variety, "why": why}
                )
    violating = sum(1 for t in truth if t)
    benign = len(truth) - violating
    reports = label_reports(guardrails.CATEGORIES, truth, predicted)
    return {
        "model": model.version,
        "examples": len(examples),
        "categories": [
            {
                "category": r.label,
                "precision": round(r.precision, 4),
                "recall": round(r.recall, 4),
                "support": r.support,
            }
            for r in reports
        ],
        "violating": violating,
        "blocked": violating - len(missed),
        "sent": len(missed),
        "benign": benign,
        "false_blocks": len(false_blocked),
        "false_block_rate": round(len(false_blocked) / benign, 4) if benign else 0.0,
        "by_layer": dict(by_layer),
        "by_variety": {
            v: {k: c[k] for k in ("violating", "sent", "benign", "false_blocks")}
            for v, c in sorted(by_variety.items())
        },
        "missed": missed[:max_misses],
        "false_blocked": false_blocked[:max_misses],
    }
