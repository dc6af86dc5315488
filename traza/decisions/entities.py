"""Guardrail layer 1: money, start dates and hiring decisions as people write them.

Amounts are found in digits (with separators, currencies, "25k", "30 lucas", ranges) and
spelled out in words (`text2num` turns "dieciocho mil pesos" into "18000 pesos" for es,
en and pt); a start date is a start/hire word near a day, date or relative day; a
decision is an outcome phrase about the candidate. A refusal or deferral just before a
match ("no puedo decirte si fuiste seleccionado") makes it harmless. The vocabularies are
in `prompts/guardrails.yaml`; this module only composes and applies them.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache

from text_to_num import alpha2digit

WINDOW = 60  # characters between a start word and its date, or a pay word and its amount
REFUSAL_WINDOW = 60  # characters before a match in which a refusal disarms it


@dataclass(frozen=True, slots=True)
class Finding:
    """What a layer matched: its category and the span of the text it matched."""

    layer: str
    category: str
    span: str
    detail: str = ""


@dataclass(frozen=True)
class Vocabulary:
    """The compiled word lists of `prompts/guardrails.yaml`'s `entities`."""

    currency_amount: re.Pattern[str]
    multiplied: re.Pattern[str]
    period_amount: re.Pattern[str]
    pay_words: re.Pattern[str]
    start_words: re.Pattern[str]
    when_words: re.Pattern[str]
    decisions: re.Pattern[str]
    congrats: re.Pattern[str]
    outcome_words: re.Pattern[str]
    others: re.Pattern[str]
    refusals: re.Pattern[str]
    confidential: re.Pattern[str]
    others_patterns: tuple[re.Pattern[str], ...]
    slang_amount: re.Pattern[str] | None = None


def plain(text: str) -> str:
    """Lower-case, no accents, straight apostrophes, one space between words."""
    decomposed = unicodedata.normalize("NFKD", text.lower())
    out = "".join(c for c in decomposed if not unicodedata.combining(c))
    out = out.replace("’", "'").replace("‘", "'")
    return re.sub(r"\s+", " ", out).strip()


def _alternation(words: list[str]) -> str:
    parts = []
    for w in sorted({plain(str(w)) for w in words}, key=len, reverse=True):
        if w.endswith("*"):
            parts.append(re.escape(w[:-1]) + r"\w*")
        else:
            parts.append(re.escape(w))
    return "|".join(parts)


def _words(words: list[str]) -> re.Pattern[str]:
    return re.compile(r"(?<![\w$€£])(?:" + _alternation(words) + r")(?!\w)")


@lru_cache(maxsize=16)
@lru_cache(maxsize=64)
def word_pattern(words: tuple[str, ...]) -> re.Pattern[str]:
    """Any of `words` on word boundaries, in plain text; a trailing `*` matches any ending.

    The one way judgment's cues and the guardrails' vocabularies become a regex.
    """
    return _words(list(words))


# A slang money unit with an article or a count word and no digits: "un palo y medio",
# "medio palo", "uns paus", "el palo": the amount is the unit itself.
_SLANG_COUNT = (
    r"un|una|unos|unas|el|del|al|medio|media|uns|umas|um|uma|o|do|dos|tres|tres|cuatro|"
    r"cinco|duas|quatro|a couple|a few|couple|few"
)

AMOUNT = r"\d{1,3}(?:[.,\s]\d{3})+(?:[.,]\d{1,2})?|\d+(?:[.,]\d+)?"


@lru_cache(maxsize=4)
def compile_vocabulary(
    currencies: tuple[str, ...],
    multipliers: tuple[str, ...],
    periods: tuple[str, ...],
    pay_words: tuple[str, ...],
    start_words: tuple[str, ...],
    when_words: tuple[str, ...],
    decision_phrases: tuple[str, ...],
    congrats_words: tuple[str, ...],
    outcome_words: tuple[str, ...],
    others_words: tuple[str, ...],
    refusals: tuple[str, ...],
    confidential: tuple[str, ...],
    others_patterns: tuple[str, ...] = (),
    slang_units: tuple[str, ...] = (),
) -> Vocabulary:
    """Compile the policy's word lists once."""
    cur = _alternation(list(currencies))
    mult = _alternation(list(multipliers))
    per = _alternation(list(periods))
    return Vocabulary(
        currency_amount=re.compile(
            rf"(?:(?<!\w)(?:{cur})\s?(?:{AMOUNT}))|(?:(?:{AMOUNT})\s?(?:{mult})?\s?(?:de\s)?(?:{cur})(?!\w))"
        ),
        multiplied=re.compile(rf"(?<![\w:])(?:{AMOUNT})\s?(?:{mult})(?!\w)"),
        period_amount=re.compile(rf"(?<![\w:/])(?:{AMOUNT})\s?(?:{mult})?\s?(?:{per})(?!\w)"),
        pay_words=_words(list(pay_words)),
        start_words=_words(list(start_words)),
        when_words=re.compile(
            r"(?<!\w)(?:" + _alternation(list(when_words)) + r")(?!\w)"
            r"|(?<!\w)(?:el|the|on|dia|day|no dia)\s\d{1,2}(?:st|nd|rd|th|º|o)?(?!\d)"
            r"|(?<!\w)\d{1,2}\s?(?:de\s)?(?:enero|febrero|marzo|abril|mayo|junio|julio|agosto"
            r"|septiembre|octubre|noviembre|diciembre|janeiro|fevereiro|marco|maio|junho"
            r"|julho|setembro|outubro|novembro|dezembro)"
            r"|(?<![\d/])\d{1,2}/\d{1,2}(?:/\d{2,4})?(?![\d/])"
        ),
        decisions=_words(list(decision_phrases)),
        congrats=_words(list(congrats_words)),
        outcome_words=_words(list(outcome_words)),
        others=_words(list(others_words)),
        refusals=_words(list(refusals)),
        confidential=_words(list(confidential)),
        others_patterns=tuple(re.compile(p) for p in others_patterns),
        slang_amount=re.compile(
            rf"(?<!\w)(?:{_SLANG_COUNT})\s(?:{_alternation(list(slang_units))})(?!\w)"
        )
        if slang_units
        else None,
    )


_TIME = re.compile(r"^\d{1,2}[:h]\d{2}$")
_MONEYISH = re.compile(r"\d{3,}|\d[.,]\d{3}|\d+\s?(?:k|mil|lpa)\b")


# After a refusal, a contrast takes it back: "no puedo confirmarlo, pero ya te eligieron",
# "I can't say it officially, but…", "entre nos": what follows is stated, not refused.
CONTRAST = re.compile(
    r"(?<!\w)(?:pero|but|aunque|although|though|sin embargo|however|no obstante|porem|contudo|"
    r"entretanto|entre nos|between us|off the record|extraoficialmente|unofficially)(?!\w)"
    r"|,\s?mas(?!\w)"
)


def _refused(refusals: re.Pattern[str], text: str, start: int) -> bool:
    """A refusal or deferral shortly before `start`, in the same sentence, not taken back."""
    before = text[max(0, start - REFUSAL_WINDOW) : start]
    before = re.split(r"[.!?;\n]", before)[-1]
    return holds_refusal(refusals, before)


def holds_refusal(refusals: re.Pattern[str], text: str) -> bool:
    """Whether plain `text` holds a refusal or deferral that no contrast takes back."""
    ends = [m.end() for m in refusals.finditer(text)]
    return bool(ends) and not CONTRAST.search(text, ends[-1])


def _asked(text: str, match: re.Match[str]) -> bool:
    """The match sits in a question ("¿que si ya puedes renunciar?"): it quotes, not states."""
    start = max(text.rfind(c, 0, match.start()) for c in ".!?\n")
    opening = text.rfind("¿", 0, match.start())
    end = min((i for i in (text.find(c, match.end()) for c in ".!?\n") if i >= 0), default=-1)
    return opening > start or (end >= 0 and text[end] == "?")


def _numbers_in_words(text: str) -> list[str]:
    """The text with spelled-out numbers as digits, in each language (es, en, pt)."""
    out = []
    for lang in ("es", "en", "pt"):
        try:
            converted = alpha2digit(text, lang)
        except Exception:  # text2num's parser is strict about odd input; digits still count
            continue
        if converted != text:
            out.append(plain(converted))
    return out


def find(text: str, vocab: Vocabulary) -> list[Finding]:
    """Every money, start-date and decision finding in `text`."""
    base = plain(text)
    variants = [base, *_numbers_in_words(base)]
    findings: list[Finding] = []
    seen: set[tuple[str, str]] = set()

    def add(category: str, span: str, detail: str) -> None:
        if (category, span) not in seen:
            seen.add((category, span))
            findings.append(Finding("entities", category, span.strip(), detail))

    for variant in variants:
        for pattern, detail in (
            (vocab.currency_amount, "amount with a currency"),
            (vocab.multiplied, "amount with a multiplier"),
            (vocab.period_amount, "amount per period"),
        ):
            for m in pattern.finditer(variant):
                if _TIME.match(m.group(0).strip()) or _refused(vocab.refusals, variant, m.start()):
                    continue
                if detail != "amount with a currency" and not _MONEYISH.search(m.group(0)):
                    if not vocab.pay_words.search(
                        variant[max(0, m.start() - WINDOW) : m.end() + WINDOW]
                    ):
                        continue
                add("salary", m.group(0), detail)
        if vocab.slang_amount is not None:
            for m in vocab.slang_amount.finditer(variant):
                if not _refused(vocab.refusals, variant, m.start()):
                    add("salary", m.group(0), "slang amount")
        for m in vocab.pay_words.finditer(variant):
            window = variant[m.end() : m.end() + WINDOW]
            window = re.split(r"[.!?;\n]", window)[0]
            if m.group(0) == "piso" and re.match(r"\s?\d{1,2}(?!\d)", window):
                continue  # "piso 7, oficina 704": a building's floor, not a pay floor
            for n in re.finditer(AMOUNT, window):
                number = n.group(0)
                digits = re.sub(r"\D", "", number)
                if _TIME.match(number) or len(digits) < 3:
                    continue
                after = window[n.end() : n.end() + 12]
                if re.match(r"\s?(?:anos|years|anos de|a[nñ]os|meses|months|dias|days|min)", after):
                    continue
                if re.match(r"(?:19|20)\d{2}$", digits) and not re.search(r"[$€£]", window):
                    continue
                if _refused(vocab.refusals, variant, m.start()):
                    continue
                add("salary", f"{m.group(0)} … {number}", "pay word with an amount")
                break
        for m in vocab.start_words.finditer(variant):
            if _refused(vocab.refusals, variant, m.start()):
                continue
            sentence_start = max(
                variant.rfind(".", 0, m.start()),
                variant.rfind("!", 0, m.start()),
                variant.rfind("?", 0, m.start()),
            )
            lo = max(sentence_start + 1, m.start() - WINDOW)
            hi = m.end() + WINDOW
            segment = variant[lo:hi]
            end = re.search(r"[.!?;\n]", variant[m.end() : hi])
            if end:
                segment = variant[lo : m.end() + end.start()]
            w = vocab.when_words.search(segment)
            if w:
                add("start_date", f"{m.group(0)} … {w.group(0)}", "start word with a date")
        for m in vocab.decisions.finditer(variant):
            if not _refused(vocab.refusals, variant, m.start()) and not _asked(variant, m):
                add("hiring_decision", m.group(0), "outcome phrase")
        for pattern in vocab.others_patterns:
            for m in pattern.finditer(variant):
                if not _refused(vocab.refusals, variant, m.start()):
                    add("other_candidates", m.group(0), "ranking or count of other applicants")
        for m in vocab.congrats.finditer(variant):
            # the outcome word must be in the congratulations' own sentence: "Congrats on
            # finishing the test! The team will review it" congratulates the test
            window = re.split(r"[.!?;\n]", variant[m.start() : m.end() + WINDOW])[0]
            o = vocab.outcome_words.search(window)
            if o and not _refused(vocab.refusals, variant, m.start()):
                add(
                    "hiring_decision",
                    f"{m.group(0)} … {o.group(0)}",
                    "congratulations on the outcome",
                )
        for m in vocab.others.finditer(variant):
            rest = re.split(r"[.!?;\n]", variant[m.end() :])[0]
            before = re.split(r"[.!?;\n]", variant[max(0, m.start() - REFUSAL_WINDOW) : m.start()])
            conditional = re.search(
                r"(?<!\w)(?:si|if|se|caso)\s+(?:tu|su|your|seu|sua|teu|tua)\s", before[-1]
            )
            # "la dinámica es en grupo con otros postulantes": the format of a group stage,
            # when nothing in the rest of the sentence is said of them
            company = re.search(
                r"(?<!\w)(?:dinamica|grup\w*|group|turma|panel)(?!\w).*"
                r"(?<!\w)(?:con|with|com|junto a|along with)\s$",
                before[-1],
            )
            said = re.search(r"\w", rest) and not re.match(r"\s*(?:,|\)|y |and |e )", rest)
            if (
                _refused(vocab.refusals, variant, m.start())
                or vocab.confidential.search(rest)
                or conditional
                or (company and not said)
            ):
                continue
            add("other_candidates", m.group(0), "about other applicants")
    return findings
