"""The guardrail pipeline every text leaving traza passes: ordered layers, failing closed.

1. `entities`   money, start dates, hiring decisions (`traza.decisions.entities`)
2. `people`     names, phones and e-mails of other candidates and staff; the candidate's
                own data and the business's published contacts (allow-list) pass
3. `classifier` the trained reply classifier (`traza/decisions/data/guardrails/*.jsonl`)
4. `judge`      the model, when configured (see `check`): a timeout, an error or an
                unparsable verdict holds the reply (`guardrail.unavailable`)

Every layer's verdict, category, matched span and the layer that decided are in the
`Verdict`, which the caller records in the trace. The policy (`prompts/guardrails.yaml`)
is validated at load with errors that name the field.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import phonenumbers
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

import prompts
from traza.decisions import entities, textmodel
from traza.decisions.entities import Finding, Vocabulary
from traza.decisions.textmodel import DatasetError, Example, Params, TextModel
from traza.settings import get_settings

log = logging.getLogger(__name__)

CATEGORIES = ("salary", "start_date", "hiring_decision", "other_candidates")
VARIETIES = ("es-MX", "es-AR", "es-ES", "es-CO", "en", "pt-BR", "es-en")
DATA_DIR = Path(__file__).resolve().parent / "data" / "guardrails"
PARAMS = Params(heads=CATEGORIES, c=16.0, min_df=1)
NAME = "guardrails"
PHONE_REGIONS = ("MX", "ES", "AR", "CO", "BR", "US", "GB")
EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
UNAVAILABLE = "unavailable"


# --- the policy -------------------------------------------------------------------------


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CategoryPolicy(_Strict):
    """What a category is and what happens to a reply in it."""

    description: str = Field(min_length=1)
    action: Literal["block", "allow"] = "block"


class AllowList(_Strict):
    """The business's published contact details (never "other people's data")."""

    phones: list[str] = []
    emails: list[str] = []
    email_domains: list[str] = []


class ContactCues(_Strict):
    """Words before a phone or e-mail that say it is the candidate's or the business's."""

    own: list[str] = []
    business: list[str] = []


class ClassifierPolicy(_Strict):
    """Calibrated score at which the reply classifier blocks each category."""

    thresholds: dict[str, float] = {}
    refusal_threshold: float | None = Field(default=None, ge=0, le=1)
    """Score a category needs, at least, in a reply that holds a refusal or deferral."""

    @model_validator(mode="after")
    def _known(self) -> ClassifierPolicy:
        for name, value in self.thresholds.items():
            if name not in CATEGORIES:
                raise ValueError(f"unknown category '{name}' (categories: {', '.join(CATEGORIES)})")
            if not 0 <= value <= 1:
                raise ValueError(f"threshold of '{name}' must be between 0 and 1")
        return self


class EntityLists(_Strict):
    """Vocabularies of the entity layer (see `prompts/guardrails.yaml`)."""

    currencies: list[str] = Field(min_length=1)
    multipliers: list[str] = Field(min_length=1)
    periods: list[str] = Field(min_length=1)
    pay_words: list[str] = Field(min_length=1)
    start_words: list[str] = Field(min_length=1)
    when_words: list[str] = Field(min_length=1)
    decision_phrases: list[str] = Field(min_length=1)
    congrats_words: list[str] = Field(min_length=1)
    outcome_words: list[str] = Field(min_length=1)
    others_words: list[str] = Field(min_length=1)
    refusals: list[str] = Field(min_length=1)
    confidential: list[str] = Field(min_length=1)
    others_patterns: list[str] = []
    slang_units: list[str] = []

    @model_validator(mode="after")
    def _patterns_compile(self) -> EntityLists:
        for i, pattern in enumerate(self.others_patterns):
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(
                    f"others_patterns[{i}] is not a regular expression: {exc}"
                ) from None
        return self


class GuardrailPolicy(_Strict):
    """The whole `prompts/guardrails.yaml`."""

    categories: dict[str, CategoryPolicy]
    safe_reply: str = "guardrail_fallback"
    allow: AllowList = AllowList()
    contact_cues: ContactCues = ContactCues()
    classifier: ClassifierPolicy = ClassifierPolicy()
    entities: EntityLists

    @model_validator(mode="after")
    def _all_categories(self) -> GuardrailPolicy:
        missing = [c for c in CATEGORIES if c not in self.categories]
        unknown = [c for c in self.categories if c not in CATEGORIES]
        if missing or unknown:
            raise ValueError(
                f"categories must be exactly {', '.join(CATEGORIES)}"
                + (f"; missing {', '.join(missing)}" if missing else "")
                + (f"; unknown {', '.join(unknown)}" if unknown else "")
            )
        return self

    def threshold(self, category: str, text: str | None = None) -> float:
        """The reply classifier's threshold for a category (default 0.5).

        With `text`: a reply that holds one of the entity layer's refusals or deferrals
        ("I can't tell you whether you got the job") needs `refusal_threshold` at least,
        since such replies carry the trap words without stating anything; unless a
        contrast takes the refusal back ("I can't say it officially, but…").
        """
        base = self.classifier.thresholds.get(category, 0.5)
        raised = self.classifier.refusal_threshold
        if text is None or raised is None or raised <= base:
            return base
        refused = entities.holds_refusal(self.vocabulary().refusals, entities.plain(text))
        return raised if refused else base

    def flagged(self, scores: dict[str, float], text: str) -> list[str]:
        """The categories whose classifier score reaches its threshold for `text`."""
        return [c for c in CATEGORIES if scores.get(c, 0.0) >= self.threshold(c, text)]

    def vocabulary(self) -> Vocabulary:
        """The entity layer's compiled vocabularies."""
        e = self.entities
        return entities.compile_vocabulary(
            tuple(e.currencies),
            tuple(e.multipliers),
            tuple(e.periods),
            tuple(e.pay_words),
            tuple(e.start_words),
            tuple(e.when_words),
            tuple(e.decision_phrases),
            tuple(e.congrats_words),
            tuple(e.outcome_words),
            tuple(e.others_words),
            tuple(e.refusals),
            tuple(e.confidential),
            tuple(e.others_patterns),
            tuple(e.slang_units),
        )


class PolicyError(ValueError):
    """`prompts/guardrails.yaml` is invalid; the message names each bad field."""


def parse_policy(data: Any, source: str = "prompts/guardrails.yaml") -> GuardrailPolicy:
    """Validate a policy mapping; raise `PolicyError` naming every bad field."""
    try:
        return GuardrailPolicy.model_validate(data)
    except ValidationError as exc:
        lines = [
            f"{source}: {'.'.join(str(p) for p in err['loc']) or '(top)'}: {err['msg']}"
            for err in exc.errors()
        ]
        raise PolicyError("\n".join(lines)) from None


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def operator_policy_file() -> Path | None:
    """`$TRAZA_CONFIG_DIR/guardrails.yaml`: the operator's additions (allow-list, thresholds)."""
    folder = get_settings().traza_config_dir
    if folder is None:
        return None
    for name in ("guardrails.yaml", "guardrails.yml"):
        if (folder / name).is_file():
            return folder / name
    return None


@lru_cache(maxsize=4)
def _policy_for(path: str | None, mtime: int | None) -> GuardrailPolicy:
    data = prompts.load("guardrails")
    if path is None:
        return parse_policy(data)
    try:
        extra = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise PolicyError(f"{path}: cannot read: {exc}") from None
    if not isinstance(extra, dict):
        raise PolicyError(f"{path}: must hold a mapping")
    return parse_policy(_merge(data, extra), source=path)


def policy() -> GuardrailPolicy:
    """The shipped policy with the operator's `guardrails.yaml` merged over it (validated).

    Lists in the operator's file replace the shipped ones (`allow: {phones: [...]}`).
    """
    path = operator_policy_file()
    mtime = path.stat().st_mtime_ns if path else None
    return _policy_for(str(path) if path else None, mtime)


# --- people's data ----------------------------------------------------------------------


@dataclass(frozen=True)
class People:
    """Whose data a reply may contain (the candidate's own) and whose it must not."""

    own_names: frozenset[str] = frozenset()
    own_phones: frozenset[str] = frozenset()
    own_emails: frozenset[str] = frozenset()
    other_names: frozenset[str] = frozenset()
    other_phones: frozenset[str] = frozenset()
    other_emails: frozenset[str] = frozenset()


def phone_key(number: str) -> str:
    """The last 8 digits of a number: the same line however it is written."""
    digits = re.sub(r"\D", "", number)
    return digits[-8:]


def capitalised_names(text: str) -> list[str]:
    """Sequences of 2-4 capitalised words (how a person's name appears in a reply)."""
    upper = "A-ZÁÉÍÓÚÑÇÂÊÔÃÕÜ"
    lower = r"\wáéíóúñçâêôãõü'’"
    particle = r"(?:de\s+|da\s+|del\s+|dos\s+)?"
    pattern = rf"\b[{upper}][{lower}-]+(?:\s+{particle}[{upper}][{lower}.-]*){{1,3}}"
    out: list[str] = []
    for m in re.finditer(pattern, text):
        words = m.group(0).split()
        for n in range(len(words), 1, -1):
            for i in range(len(words) - n + 1):
                out.append(" ".join(words[i : i + n]))
    return out


def _claimed(text: str, start: int, cues: ContactCues, end: int | None = None) -> bool:
    """The sentence around a phone or e-mail says it is the candidate's or the business's.

    Before it, an own or a business cue ("tu numero", "call us at"); after it, in the same
    sentence, an own cue only ("..., como me lo indico", "..., as you asked").
    """
    before = re.split(r"[.!?\n]", text[max(0, start - 90) : start])[-1]
    before = entities.plain(before)
    words = tuple(cues.own + cues.business)
    if words and entities.word_pattern(words).search(before):
        return True
    if end is None or not cues.own:
        return False
    after = re.split(r"(?<!\w)[.!?](?!\w)|\n", text[end : end + 60])[0]
    return bool(entities.word_pattern(tuple(cues.own)).search(entities.plain(after)))


def _people_findings(
    text: str, people: People | None, allow: AllowList, cues: ContactCues | None = None
) -> list[Finding]:
    cues = cues or ContactCues()
    findings: list[Finding] = []
    own_emails = {e.lower() for e in (people.own_emails if people else ())}
    allowed_emails = {e.lower() for e in allow.emails}
    domains = {d.lower() for d in allow.email_domains}
    for m in EMAIL.finditer(text):
        email = m.group(0).lower().rstrip(".")
        domain = email.rsplit("@", 1)[-1]
        if email in own_emails or email in allowed_emails:
            continue
        if people and email in {e.lower() for e in people.other_emails}:
            findings.append(
                Finding("people", "other_candidates", m.group(0), "another person's e-mail")
            )
        elif domain not in domains and not _claimed(text, m.start(), cues, m.end()):
            findings.append(
                Finding(
                    "people",
                    "other_candidates",
                    m.group(0),
                    "an e-mail that is not the candidate's",
                )
            )
    own_phones = {phone_key(p) for p in (people.own_phones if people else ())}
    allowed_phones = {phone_key(p) for p in allow.phones}
    others = {phone_key(p) for p in (people.other_phones if people else ())}
    seen: set[str] = set()
    for region in PHONE_REGIONS:
        for match in phonenumbers.PhoneNumberMatcher(text, region):
            key = phone_key(match.raw_string)
            if key in seen or len(key) < 7:
                continue
            seen.add(key)
            if key in own_phones or key in allowed_phones:
                continue
            if key in others:
                detail = "another person's phone"
            elif _claimed(text, match.start, cues, match.end):
                continue
            else:
                detail = "a phone that is not the candidate's"
            findings.append(Finding("people", "other_candidates", match.raw_string, detail))
    if people and people.other_names:
        plain_text = entities.plain(text)
        own = {entities.plain(n) for n in people.own_names}
        for name in sorted(people.other_names, key=len, reverse=True):
            key = entities.plain(name)
            if key in own or len(key) < 4:
                continue
            if re.search(rf"(?<!\w){re.escape(key)}(?!\w)", plain_text):
                findings.append(
                    Finding("people", "other_candidates", name, "another candidate's name")
                )
    return findings


# --- the reply classifier ---------------------------------------------------------------


def builtin_files() -> list[Path]:
    """The shipped labelled replies."""
    return sorted(DATA_DIR.glob("*.jsonl"))


def operator_files() -> list[Path]:
    """The operator's own labelled replies, `$TRAZA_CONFIG_DIR/guardrails/*.jsonl`."""
    folder = get_settings().traza_config_dir
    if folder is None or not (folder / "guardrails").is_dir():
        return []
    return sorted((folder / "guardrails").glob("*.jsonl"))


def read(files: Iterable[Path], *, operator: bool = False) -> list[Example]:
    """Labelled replies of the files; all problems raised together (file and line)."""
    examples: list[Example] = []
    problems: list[str] = []
    for path in files:
        try:
            examples += textmodel.read_examples(
                path, vocabulary=CATEGORIES, varieties=VARIETIES, require_variety=not operator
            )
        except DatasetError as exc:
            problems += exc.problems
    if problems:
        raise DatasetError(problems)
    return examples


def template_examples() -> list[Example]:
    """The product's own reply templates (`prompts/replies.yaml`), rendered: benign.

    They train the classifier as benign (family `product-templates`, never held out), so
    what the product says itself is never mistaken for a violation; a test checks that
    every one of them passes every layer.
    """
    out = []
    for key, entry in prompts.load("replies").items():
        for lang, _ in entry.items():
            for name in ("Ana", None):
                text = prompts.reply(key, lang, nombre=name, opens="09:00")
                out.append(
                    Example(
                        text=text,
                        labels=frozenset(),
                        lang=lang,
                        variety={"es": "es-MX", "en": "en", "pt": "pt-BR"}.get(lang, "es-MX"),
                        source="prompts/replies.yaml",
                        family="product-templates",
                    )
                )
    return out


def build(*, split: str = "all", with_operator: bool = True) -> TextModel:
    """The reply classifier for the labelled replies (cached by version)."""
    shipped = read(builtin_files())
    own_files = operator_files() if with_operator else []
    own = read(own_files, operator=True)
    digest = (
        textmodel.files_digest([*builtin_files(), *own_files, prompts.HERE / "replies.yaml"])
        + f":{split}"
    )
    version = textmodel.version_of(NAME if split == "all" else f"{NAME}-{split}", PARAMS, digest)
    trained_on = shipped if split == "all" else textmodel.split(shipped)[0]
    examples = [*trained_on, *template_examples(), *own]

    def fit() -> TextModel:
        log.info("training %s on %d replies", version, len(examples))
        return textmodel.train(examples, PARAMS, name=NAME, version=version)

    return textmodel.cached(get_settings().model_cache, name=NAME, version=version, build=fit)


_model: list[TextModel] = []
_model_lock = threading.Lock()


def reply_model() -> TextModel:
    """The active reply classifier (built on first use)."""
    if not _model:
        with _model_lock:
            if not _model:
                _model.append(build())
    return _model[0]


def forget() -> None:
    """Drop the loaded reply classifier (tests)."""
    _model.clear()


# --- the pipeline -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Verdict:
    """Whether a text may go out; if not, which categories, which span, which layer.

    `source` is the layer that blocked, or what let the text pass: `offline` (layers 1-3)
    or `judge` (the model judge too).
    """

    allowed: bool
    policies: list[str] = field(default_factory=list)
    reason: str | None = None
    source: str = "offline"
    span: str | None = None
    layers: list[dict[str, Any]] = field(default_factory=list)
    model: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """A JSON-serialisable copy for state and trace."""
        return asdict(self)


def _layer(name: str, findings: list[Finding], **extra: Any) -> dict[str, Any]:
    return {
        "layer": name,
        "verdict": "block" if findings else "pass",
        "findings": [
            {"category": f.category, "span": f.span, "detail": f.detail} for f in findings
        ],
        **extra,
    }


def _decide(
    layers: list[dict[str, Any]], pol: GuardrailPolicy, model: str | None, passed: str = "offline"
) -> Verdict:
    blocking = [
        (layer, finding)
        for layer in layers
        for finding in layer["findings"]
        if layer["verdict"] in ("block", "error")
        and pol.categories.get(finding["category"], CategoryPolicy(description="?")).action
        == "block"
    ]
    errors = [layer for layer in layers if layer["verdict"] == "error"]
    if not blocking and not errors:
        return Verdict(allowed=True, source=passed, layers=layers, model=model)
    if errors and not blocking:
        first = errors[0]
        return Verdict(
            allowed=False,
            policies=[UNAVAILABLE],
            reason=f"guardrail {first['layer']} unavailable: {first.get('error')}",
            source=first["layer"],
            layers=layers,
            model=model,
        )
    categories = list(dict.fromkeys(f["category"] for _, f in blocking))
    layer, finding = blocking[0]
    reasons = "; ".join(pol.categories[c].description for c in categories if c in pol.categories)
    return Verdict(
        allowed=False,
        policies=categories,
        reason=reasons,
        source=layer["layer"],
        span=finding["span"],
        layers=layers,
        model=model,
    )


def offline_layers(
    text: str, *, people: People | None = None, pol: GuardrailPolicy | None = None
) -> tuple[list[dict[str, Any]], str]:
    """Layers 1-3 on `text`, each with its findings, and the reply classifier's version."""
    pol = pol or policy()
    layers = [
        _layer("entities", entities.find(text, pol.vocabulary())),
        _layer("people", _people_findings(text, people, pol.allow, pol.contact_cues)),
    ]
    model = reply_model()
    scores = model.score(text).heads
    flagged = [
        Finding("classifier", c, text[:80], f"score {scores[c]:.2f}")
        for c in pol.flagged(scores, text)
    ]
    layers.append(_layer("classifier", flagged, scores=scores))
    return layers, model.version


def check_reply(text: str, *, people: People | None = None) -> Verdict:
    """Layers 1-3 (no model): what every text is checked with, templates included."""
    pol = policy()
    layers, version = offline_layers(text, people=people, pol=pol)
    return _decide(layers, pol, version)


Judge = Callable[[str], Awaitable[tuple[bool, str]]]
"""A model judge: (allowed, reason) for a text; any exception means it could not answer."""


async def check(text: str, *, people: People | None = None, judge: Judge | None = None) -> Verdict:
    """Every layer; the judge runs after the offline layers pass, and fails closed."""
    pol = policy()
    layers, version = offline_layers(text, people=people, pol=pol)
    verdict = _decide(layers, pol, version)
    if judge is None or not verdict.allowed:
        if judge is not None:
            layers.append({"layer": "judge", "verdict": "skipped", "findings": []})
        return verdict
    try:
        allowed, reason = await judge(text)
    except Exception as exc:  # a judge that cannot answer holds the reply: fail closed
        layers.append(
            {"layer": "judge", "verdict": "error", "findings": [], "error": str(exc)[:200]}
        )
        return _decide(layers, pol, version)
    findings = [] if allowed else [Finding("judge", "judge", text[:80], reason or "model judge")]
    layers.append(_layer("judge", findings, reason=reason))
    if allowed:
        return _decide(layers, pol, version, passed="judge")
    return Verdict(
        allowed=False,
        policies=["llm_judge"],
        reason=reason or "the model judge refused the reply",
        source="judge",
        span=text[:80],
        layers=layers,
        model=version,
    )
