"""Offline classification of a turn: the trained judgment model's scores made into signals.

The model (`traza.decisions.judgment`) gives every head a calibrated probability; the
rules' `judgment` policy turns them into signals (thresholds), an opt-out that acts or
only asks, and an `uncertain` verdict when the stacked `escalate` head says a person is
needed but no single reason is decisive. Exact button payloads and
whole-message keywords (`prompts/judgment.yaml`) are fast paths that skip the model.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from typing import Any, Literal

import prompts
from traza.decisions import entities, judgment, language
from traza.decisions.textmodel import NO_INTENT, TextModel, fold
from traza.rules.schema import JudgmentPolicy

OptOut = Literal["act", "ask"]
OPT_IN_DOUBT = 0.3
ANGRY_OPT_OUT = 0.95
"""An `opt_out` score from which frustration alone does not stop an opt-out from acting."""
"""An `opt_in` score from which an opt-out is not clear enough to act on (it asks)."""
MEDIA_TYPES = frozenset({"image", "audio", "video", "document"})
KIND_INTENTS = {
    "location": "location",
    "contacts": "contact_card",
    "flow": "flow_completed",
    "order": "order",
}
"""Message kinds that are judged for what they are (acknowledged in words), not as text."""


@dataclass(frozen=True, slots=True)
class Classification:
    """What the candidate wants and how they feel, with the scores behind the verdict.

    `opt_out` is True only when the opt-out acts; `opt_out_mode` is `ask` when the bot
    should ask before opting out. `uncertain`: no head was decisive.
    """

    intent: str
    language: str
    frustration: bool
    wants_human: bool
    opt_out: bool
    confidence: float
    source: str = "model"
    matched: str | None = None
    negotiation: bool = False
    out_of_scope: bool = False
    opt_in: bool = False
    opt_out_mode: OptOut | None = None
    uncertain: bool = False
    scores: dict[str, float] = field(default_factory=dict)
    intent_scores: dict[str, float] = field(default_factory=dict)
    model: str | None = None
    llm: dict[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        """A JSON-serialisable copy for state and trace."""
        return asdict(self)


def _keywords() -> dict[str, Any]:
    return prompts.load("judgment")


@lru_cache(maxsize=8)
def _folded(words: tuple[str, ...]) -> dict[str, str]:
    return {fold(w): w for w in words}


_SPELLED = re.compile(r"(?<!\w)(?:\w ){2,}\w(?!\w)")


def _names_channel(folded: str, keywords: dict[str, Any]) -> bool:
    """Whether the text names messages or contact (writing, calling, lists, offers)."""
    return bool(entities.word_pattern(tuple(keywords["opt_out_channels"])).search(folded))


def _stop_cue(folded: str, keywords: dict[str, Any]) -> bool:
    """Whether the text says "stop" in some form (a condition for acting, never a trigger).

    A stop verb, or a negation shortly before a word for messages or contact. Punctuation
    is dropped and letters spelled one by one ("S T O P") are joined first.
    """
    plain = re.sub(r"[^\w\s]", " ", folded.replace("'", ""))
    plain = _SPELLED.sub(lambda m: m.group(0).replace(" ", ""), " ".join(plain.split()))
    if entities.word_pattern(tuple(keywords["opt_out_cues"])).search(plain):
        return True
    pattern = _negated_channel(
        tuple(keywords["opt_out_negations"]), tuple(keywords["opt_out_channels"])
    )
    return bool(pattern.search(plain))


@lru_cache(maxsize=4)
def _negated_channel(negations: tuple[str, ...], channels: tuple[str, ...]) -> re.Pattern[str]:
    """A negation followed, within four words, by a word for messages or contact."""
    negation = entities.word_pattern(negations).pattern
    channel = entities.word_pattern(channels).pattern
    return re.compile(rf"(?:{negation})(?:\s+\w+){{0,4}}?\s+(?:{channel})")


def _clear_opt_out(
    folded: str, scores: dict[str, float], keywords: dict[str, Any], policy: JudgmentPolicy
) -> bool:
    """Whether an opt-out the model is sure of is also clear enough to act on without asking.

    It must say "stop" in some form; and nothing in it may pull the other way: no
    ambiguity or coming-back head at its threshold, no escalation head firing (a complaint
    or a question that uses stop words: "STOP CHANGING THE DATE") — frustration excepted
    when the opt-out is all but certain and about the messages — no question mark and no
    contrast word ("puse STOP pero fue mi hermano"). Each of these only turns acting into
    asking — the candidate who meant it answers one button.
    """
    if not _stop_cue(folded, keywords):
        return False
    if scores.get("unclear_opt_out", 0.0) >= policy.threshold("unclear_opt_out"):
        return False
    if scores.get("opt_in", 0.0) >= OPT_IN_DOUBT:
        return False
    lit = [h for h in judgment.ESCALATION if scores.get(h, 0.0) >= policy.threshold(h)]
    # An angry opt-out is still one ("no me escriban más" lights frustration too) when the
    # model is all but certain and the message is about the messages themselves.
    angry = lit == ["frustration"] and scores.get("opt_out", 0.0) >= ANGRY_OPT_OUT
    if lit and not (angry and _names_channel(folded, keywords)):
        return False
    if "?" in folded:
        return False
    return not entities.word_pattern(tuple(keywords["opt_out_contrasts"])).search(folded)


def _whole_message(folded: str, words: list[str]) -> str | None:
    """A keyword that is the whole message (punctuation and emoji around it ignored)."""
    if len(folded) > 40:  # no keyword is that long: skip the work for ordinary messages
        return None
    bare = " ".join("".join(c for c in folded if c.isalnum() or c.isspace()).split())
    return _folded(tuple(words)).get(bare)


def signals_from_scores(
    scores: dict[str, float],
    intent_scores: dict[str, float],
    policy: JudgmentPolicy,
) -> dict[str, Any]:
    """The decision signals a policy reads off the heads' scores (one home for the rule).

    Whether a person is needed is the stacked `escalate` head's call (at its threshold);
    which reasons fire is each escalation head's (at its own). A turn that needs a person
    with no reason decisive is `uncertain`. A model without a stacked head (an old
    artefact) lets each head decide alone.
    """
    escalate = scores.get(judgment.ESCALATE)
    needs_human = escalate is None or escalate >= policy.threshold(judgment.ESCALATE)
    fired = {
        h: needs_human and scores.get(h, 0.0) >= policy.threshold(h) for h in judgment.ESCALATION
    }
    opt_out_score = scores.get("opt_out", 0.0)
    opt_out_mode: OptOut | None = None
    if opt_out_score >= policy.opt_out.act:
        opt_out_mode = "act"
    elif opt_out_score >= policy.opt_out.ask or scores.get("unclear_opt_out", 0.0) >= (
        policy.threshold("unclear_opt_out")
    ):
        opt_out_mode = "ask"
    opt_in_score = scores.get("opt_in", 0.0)
    opt_in = opt_in_score >= policy.threshold("opt_in")
    if opt_in and opt_in_score > opt_out_score:
        opt_out_mode = None  # "send me the openings again": coming back, not leaving
    elif opt_in:
        opt_in = False
        if opt_out_mode == "act":
            opt_out_mode = "ask"  # both heads sure: never act on a contradiction
    best = max(intent_scores, key=lambda k: intent_scores[k]) if intent_scores else None
    intent = "unknown"
    if best is not None and best != NO_INTENT:
        if intent_scores[best] >= policy.min_intent:
            intent = best
    if fired["negotiation"]:
        intent = "salary"
    decisive = any(fired.values()) or opt_out_mode is not None or opt_in
    uncertain = escalate is not None and needs_human and not decisive
    if decisive or uncertain:
        confidence = max(
            [scores.get(h, 0.0) for h, on in fired.items() if on]
            + ([escalate] if uncertain and escalate is not None else [])
            + ([opt_out_score] if opt_out_mode else [])
            + ([scores.get("opt_in", 0.0)] if opt_in else [])
        )
    else:
        confidence = max(intent_scores.values(), default=0.0)
    return {
        **fired,
        "opt_out_mode": opt_out_mode,
        "opt_in": opt_in,
        "intent": intent,
        "uncertain": uncertain,
        "confidence": round(float(confidence), 4),
    }


def classify_turn(
    texts: list[str],
    *,
    types: list[str] | None = None,
    payloads: list[str] | None = None,
    language_hint: str | None = None,
    policy: JudgmentPolicy | None = None,
    model: TextModel | None = None,
) -> Classification:
    """Classify the texts of one turn (a coalesced burst counts as one turn).

    `model`: a judgment model to use instead of the active one (`traza judgment eval`).
    """
    policy = policy or JudgmentPolicy()
    keywords = _keywords()
    joined = " \n".join(t for t in texts if t)
    folded = fold(joined)
    model = model or judgment.current()
    scored = model.score(joined) if joined.strip() else None
    lang = language.detect(
        joined, fallback=language_hint or "es", in_domain=scored.languages if scored else None
    )
    opt_out_payload = next(
        (p for p in payloads or [] if p.upper() in keywords["opt_out_payloads"]), None
    )
    opt_in_payload = next(
        (p for p in payloads or [] if p.upper() in keywords["opt_in_payloads"]), None
    )
    exact_out = _whole_message(folded, keywords["opt_out_keywords"]) if folded else None
    exact_in = _whole_message(folded, keywords["opt_in_keywords"]) if folded else None
    if exact_out or opt_out_payload or exact_in or opt_in_payload:
        out = bool(exact_out or opt_out_payload)
        return Classification(
            intent="unknown",
            language=lang,
            frustration=False,
            wants_human=False,
            opt_out=out,
            opt_out_mode="act" if out else None,
            opt_in=not out,
            confidence=1.0,
            source="keyword",
            matched=exact_out or opt_out_payload or exact_in or opt_in_payload,
            model=model.version,
        )
    kinds = set(types or [])
    if not joined.strip():
        known = [KIND_INTENTS[k] for k in types or [] if k in KIND_INTENTS]
        if known:
            intent = known[0]
        elif kinds and kinds <= MEDIA_TYPES:
            intent = "media"
        else:
            intent = "unsupported" if kinds else "unknown"
        return Classification(
            intent=intent,
            language=lang,
            frustration=False,
            wants_human=False,
            opt_out=False,
            confidence=1.0 if kinds else 0.0,
            source="type",
            # An order is not something the recruiting assistant handles: a person does.
            out_of_scope=intent == "order",
            model=model.version,
        )
    assert scored is not None  # a non-empty text was scored above
    scores, intent_scores = scored.heads, scored.intents
    s = signals_from_scores(scores, intent_scores, policy)
    if "order" in kinds:  # an order with a note is still an order: a person handles it
        s["out_of_scope"], s["uncertain"] = True, False
    if s["opt_out_mode"] == "act" and not _clear_opt_out(folded, scores, keywords, policy):
        s["opt_out_mode"] = "ask"  # precision first: anything short of clear only asks
    return Classification(
        intent=s["intent"],
        language=lang,
        frustration=s["frustration"],
        wants_human=s["wants_human"],
        opt_out=s["opt_out_mode"] == "act",
        opt_out_mode=s["opt_out_mode"],
        confidence=s["confidence"],
        negotiation=s["negotiation"],
        out_of_scope=s["out_of_scope"],
        opt_in=s["opt_in"],
        uncertain=s["uncertain"],
        scores=scores,
        intent_scores=intent_scores,
        model=model.version,
    )


def combine(offline: Classification, model: Classification) -> Classification:
    """The model's reading added to the offline one: safety signals are a union.

    A model can add an escalation or turn an opt-out into a question, never remove an
    offline signal that fired; a model's opt-out alone only asks (the offline model did
    not see it), so a misreading never opts a candidate out. Its intent is taken when the
    offline model was not decisive; the offline scores stay in the result.
    """
    opt_out_mode: OptOut | None = offline.opt_out_mode
    if model.opt_out and opt_out_mode is None:
        opt_out_mode = "ask"
    escalate = {
        name: getattr(offline, name) or getattr(model, name)
        for name in ("wants_human", "negotiation", "frustration", "out_of_scope")
    }
    model_decisive = model.confidence >= 0.5
    intent = offline.intent if offline.intent not in ("unknown",) else model.intent
    if model_decisive and offline.intent == "unknown":
        intent = model.intent
    if escalate["negotiation"]:
        intent = "salary"
    return Classification(
        intent=intent,
        language=offline.language,
        opt_out=opt_out_mode == "act",
        opt_out_mode=opt_out_mode,
        confidence=max(offline.confidence, model.confidence),
        source="model+llm",
        matched=offline.matched,
        opt_in=offline.opt_in or (model.opt_in and opt_out_mode is None),
        uncertain=offline.uncertain and not model_decisive and not any(escalate.values()),
        scores=offline.scores,
        intent_scores=offline.intent_scores,
        model=offline.model,
        llm={
            "intent": model.intent,
            "language": model.language,
            "confidence": model.confidence,
            "wants_human": model.wants_human,
            "negotiation": model.negotiation,
            "frustration": model.frustration,
            "out_of_scope": model.out_of_scope,
            "opt_out": model.opt_out,
            "opt_in": model.opt_in,
        },
        **escalate,
    )
