"""The rules file's shape (`TRAZA_CONFIG_DIR/rules.yaml`), validated with pydantic.

Field-level problems come from pydantic; references between sections (a team, a
priority, an integration that does not exist) are checked by `references()`. Both are
reported with the YAML line by `traza.rules.loader`.
"""

from __future__ import annotations

import re
from datetime import date, time, timedelta
from typing import Annotated, Any, Literal, get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    HttpUrl,
    ValidationInfo,
    field_validator,
    model_validator,
)

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
Metric = Literal["first_response", "next_response", "resolution"]
METRICS: tuple[Metric, ...] = ("first_response", "next_response", "resolution")
BUILTIN_ACTIONS = ("opt_out", "confirm_opt_out", "keep_messages", "opt_in")

_DURATION = re.compile(r"^\s*(?:(\d+)d)?\s*(?:(\d+)h)?\s*(?:(\d+)m)?\s*(?:(\d+)s)?\s*$")
_RANGE = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")


def _duration(value: Any) -> timedelta:
    """`90`, `"15m"`, `"2h30m"`, `"1d"` (a day is 24 hours of open time)."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        seconds = value
    elif isinstance(value, str) and (m := _DURATION.match(value)) and any(m.groups()):
        d, h, mi, s = (int(g or 0) for g in m.groups())
        seconds = ((d * 24 + h) * 60 + mi) * 60 + s
    else:
        raise ValueError("a duration is seconds or text like '15m', '2h', '1h30m', '1d'")
    if seconds <= 0:
        raise ValueError("a duration must be positive")
    return timedelta(seconds=seconds)


Duration = Annotated[timedelta, BeforeValidator(_duration)]


def _zone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"unknown time zone '{value}' (use an IANA name like Europe/Madrid)"
        ) from None
    return value


def _time_range(value: Any) -> tuple[time, time]:
    """`"09:00-14:00"`; the end may be `24:00`."""
    m = _RANGE.match(value) if isinstance(value, str) else None
    if not m:
        raise ValueError(f"a time range looks like '09:00-14:00', got {value!r}")
    h1, m1, h2, m2 = (int(g) for g in m.groups())
    if h1 > 23 or m1 > 59 or m2 > 59 or h2 > 24 or (h2 == 24 and m2):
        raise ValueError(f"not a time of day in {value!r}")
    start, end = time(h1, m1), time.max if h2 == 24 else time(h2, m2)
    if end <= start:
        raise ValueError(f"range {value!r} ends before it starts (ranges cannot cross midnight)")
    return start, end


TimeRange = Annotated[tuple[time, time], BeforeValidator(_time_range)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Holidays(_Strict):
    """Closed days: a country's public holidays (the `holidays` package) plus dates."""

    country: str | None = None
    subdivision: str | None = None
    dates: list[date] = []

    @field_validator("country")
    @classmethod
    def _known_country(cls, value: str | None) -> str | None:
        if value is not None:
            import holidays  # noqa: PLC0415  (heavy: every country; only when configured)

            if value not in holidays.list_supported_countries():
                raise ValueError(f"no public holidays known for country '{value}' (ISO code)")
        return value

    @field_validator("subdivision")
    @classmethod
    def _known_subdivision(cls, value: str | None, info: ValidationInfo) -> str | None:
        country = info.data.get("country")
        if value is None:
            return value
        if not country:
            raise ValueError("a subdivision needs a country")
        import holidays  # noqa: PLC0415  (heavy: every country; only when configured)

        known = holidays.list_supported_countries().get(country, [])
        if value not in known:
            raise ValueError(f"unknown subdivision '{value}' of {country}")
        return value


def _no_overlap(ranges: list[tuple[time, time]]) -> list[tuple[time, time]]:
    ordered = sorted(ranges)
    for (_, end), (start, _) in zip(ordered, ordered[1:], strict=False):
        if start < end:
            raise ValueError(f"ranges overlap ({start:%H:%M} starts before {end:%H:%M})")
    return ordered


class Hours(_Strict):
    """Business hours: a time zone, weekly ranges (several per day) and holidays."""

    timezone: Annotated[str, AfterValidator(_zone)]
    weekly: dict[Weekday, Annotated[list[TimeRange], AfterValidator(_no_overlap)]]
    holidays: Holidays = Holidays()

    @model_validator(mode="after")
    def _some_hours(self) -> Hours:
        if not any(self.weekly.values()):
            raise ValueError("weekly hours have no open range at all")
        return self


class OutOfHours(_Strict):
    """What a closed team does with a conversation routed to it."""

    mode: Literal["message", "bot"] = "message"
    """`message`: queue the handoff until opening and tell the customer once per closure;
    `bot`: the bot keeps serving until the team opens."""
    message: str | None = None
    """The out-of-hours text (default: the `out_of_hours` reply in prompts)."""


class Team(_Strict):
    """A team's operating rules (the team itself is created with `traza teams add`)."""

    hours: Hours | None = None
    """None: always open."""
    out_of_hours: OutOfHours = OutOfHours()
    priority: str | None = None
    """Default priority of this team's handoffs."""


def _keyword(value: str) -> str:
    if not value.strip():
        raise ValueError("a keyword cannot be empty")
    return value


class Match(_Strict):
    """Conditions of a routing rule; all given ones must hold (none: always)."""

    intents: list[str] | None = None
    keywords: list[Annotated[str, AfterValidator(_keyword)]] | None = Field(
        default=None, min_length=1
    )
    contacts: list[str] | None = None
    inboxes: list[str] | None = None
    wants_human: bool | None = None
    frustration: bool | None = None
    negotiation: bool | None = None
    out_of_scope: bool | None = None
    uncertain: bool | None = None
    scores: dict[str, Annotated[float, Field(ge=0, le=1)]] | None = None
    """Head scores that must be reached, e.g. `{out_of_scope: 0.7}` (score >= 0.7)."""
    max_scores: dict[str, Annotated[float, Field(ge=0, le=1)]] | None = None
    """Head scores that must not be exceeded, e.g. `{frustration: 0.2}`."""
    min_unknown_streak: int | None = Field(default=None, ge=1)
    max_confidence: float | None = Field(default=None, ge=0, le=1)


class RoutingRule(_Strict):
    """When `when` holds, send the turn to a bot, a team, or a system action."""

    name: str = Field(min_length=1, max_length=64)
    when: Match = Match()
    bot: str | None = None
    team: str | None = None
    action: str | None = None
    priority: str | None = None
    query_type: str | None = None
    reason: str | None = None

    @model_validator(mode="after")
    def _one_target(self) -> RoutingRule:
        targets = [t for t in (self.bot, self.team, self.action) if t is not None]
        if len(targets) != 1:
            raise ValueError("a rule needs exactly one of 'bot', 'team' or 'action'")
        return self


class QueryType(_Strict):
    """A kind of query (an intent name or a rule's `query_type`) and how it is queued."""

    priority: str | None = None


def _action(value: Any) -> str:
    if isinstance(value, dict) and list(value) == ["notify"]:
        value = f"notify:{value['notify']}"
    if not isinstance(value, str):
        raise ValueError("an action is reassign, escalate, raise_priority or {notify: name}")
    name = value.strip()
    if name in ("reassign", "escalate", "raise_priority") or (
        name.startswith("notify:") and len(name) > 7
    ):
        return name
    raise ValueError(f"unknown breach action {name!r}")


BreachAction = Annotated[str, BeforeValidator(_action)]


class Sla(_Strict):
    """Service levels for a team and/or priority, counted in the team's business hours."""

    team: str | None = None
    priority: str | None = None
    first_response: Duration | None = None
    next_response: Duration | None = None
    resolution: Duration | None = None
    on_breach: dict[Metric, list[BreachAction]] = {}


class Integration(_Strict):
    """An outbound webhook: JSON, HMAC-SHA256 signed, retried, then dead-lettered."""

    url: HttpUrl
    secret_env: str | None = None
    """Environment variable holding the signing secret (preferred to `secret`)."""
    secret: str | None = None
    max_attempts: int = Field(default=5, ge=1, le=20)
    timeout_seconds: float = Field(default=10, gt=0, le=60)
    attach_response: bool = True
    reply: str | None = None
    """Text sent to the customer when a routing rule triggers this integration."""

    @model_validator(mode="after")
    def _has_secret(self) -> Integration:
        if bool(self.secret_env) == bool(self.secret):
            raise ValueError("give exactly one of 'secret_env' or 'secret'")
        return self


class Csat(_Strict):
    """The satisfaction question sent when a handoff is resolved."""

    enabled: bool = True
    question: str | None = None


POSITIVE_REACTIONS = ("👍", "✅", "👌", "✔", "☑", "🙌", "💯", "🤝")
"""Reactions that read as "yes" (skin tones and the emoji variation selector are ignored)."""


class Reactions(_Strict):
    """What a WhatsApp reaction may count as. By default it is recorded and never answers."""

    confirm_interview: bool = False
    """A positive reaction to an interview confirmation request confirms attendance."""
    positive: list[str] = Field(default=list(POSITIVE_REACTIONS), min_length=1)
    """The reactions that count as a "yes"."""


class OptOutPolicy(_Strict):
    """When an opt-out acts and when it only asks."""

    act: float = Field(default=0.80, ge=0, le=1)
    """`opt_out` score at which the contact is opted out (and told how to come back)."""
    ask: float = Field(default=0.30, ge=0, le=1)
    """Below `act`, from this score (or a clear `unclear_opt_out`) the bot asks with buttons."""

    @model_validator(mode="after")
    def _ordered(self) -> OptOutPolicy:
        if self.ask > self.act:
            raise ValueError("'ask' must not be above 'act'")
        return self


class JudgmentPolicy(_Strict):
    """How the judgment model's scores become decisions (defaults measured on held-out data)."""

    thresholds: dict[str, Annotated[float, Field(ge=0, le=1)]] = {}
    """Score at which a head fires; heads not named keep their default."""
    opt_out: OptOutPolicy = OptOutPolicy()
    min_intent: float = Field(default=0.30, ge=0, le=1)
    """An intent below this probability is `unknown`."""
    uncertain_to: Literal["human", "bot"] = "human"
    """Where an uncertain turn (`escalate` at its threshold, no reason decisive) goes when
    no routing rule takes it."""

    def threshold(self, head: str) -> float:
        """The head's threshold (configured, else the default)."""
        return self.thresholds.get(head, DEFAULT_THRESHOLDS.get(head, 0.5))


# The intents a routing rule may name: what the judgment model (and a configured model)
# says a turn is about (`traza.decisions.classifier`).
Intent = Literal[
    "greeting",
    "thanks",
    "goodbye",
    "application_status",
    "interview",
    "job_info",
    "provide_info",
    "salary",
    "media",
    "location",
    "contact_card",
    "flow_completed",
    "order",
    "unsupported",
    "unknown",
]
INTENTS: tuple[str, ...] = get_args(Intent)


HEADS = (
    "wants_human",
    "negotiation",
    "frustration",
    "out_of_scope",
    "opt_out",
    "unclear_opt_out",
    "opt_in",
    "escalate",
)
"""The judgment model's heads a rule may name: the labelled ones
(`traza.decisions.judgment.SIGNALS`) and `escalate`, the stacked head that decides whether a
human is needed."""

DEFAULT_THRESHOLDS = {
    "escalate": 0.25,
    "wants_human": 0.5,
    "negotiation": 0.5,
    "frustration": 0.5,
    "out_of_scope": 0.5,
    "unclear_opt_out": 0.5,
    "opt_in": 0.6,
}
"""Default head thresholds (chosen on the held-out split; see docs/judgment-dataset.md)."""


class Rules(_Strict):
    """The whole rules file."""

    default_team: str = "general"
    priorities: list[str] = Field(default=["urgent", "high", "normal", "low"], min_length=1)
    """Highest first; the queue is ordered by this list, then by waiting time."""
    default_priority: str = "normal"
    query_types: dict[str, QueryType] = {}
    teams: dict[str, Team] = {}
    routing: list[RoutingRule] = []
    slas: list[Sla] = []
    integrations: dict[str, Integration] = {}
    csat: Csat = Csat()
    judgment: JudgmentPolicy = JudgmentPolicy()
    reactions: Reactions = Reactions()


def references(rules: Rules, known_teams: set[str] | None) -> list[tuple[tuple[Any, ...], str]]:
    """Cross-references that pydantic cannot check: (path in the file, problem)."""
    problems: list[tuple[tuple[Any, ...], str]] = []
    prios = set(rules.priorities)

    def team(path: tuple[Any, ...], name: str | None) -> None:
        if name is not None and known_teams is not None and name not in known_teams:
            known = ", ".join(sorted(known_teams)) or "none"
            problems.append(
                (path, f"unknown team '{name}' (known: {known}; add it: traza teams add {name})")
            )

    def priority(path: tuple[Any, ...], name: str | None) -> None:
        if name is not None and name not in prios:
            problems.append((path, f"unknown priority '{name}' (priorities: {rules.priorities})"))

    if len(prios) != len(rules.priorities):
        problems.append((("priorities",), "priorities are listed twice"))
    team(("default_team",), rules.default_team)
    for head in rules.judgment.thresholds:
        if head not in HEADS:
            problems.append(
                (
                    ("judgment", "thresholds", head),
                    f"unknown judgment head '{head}' (heads: {', '.join(HEADS)})",
                )
            )
    priority(("default_priority",), rules.default_priority)
    for name, t in rules.teams.items():
        team(("teams", name), name)
        priority(("teams", name, "priority"), t.priority)
    for name, q in rules.query_types.items():
        priority(("query_types", name, "priority"), q.priority)
    seen: set[str] = set()
    for i, r in enumerate(rules.routing):
        if r.name in seen:
            problems.append((("routing", i, "name"), f"rule name '{r.name}' is used twice"))
        seen.add(r.name)
        for j, intent in enumerate(r.when.intents or []):
            if intent not in INTENTS:
                problems.append(
                    (
                        ("routing", i, "when", "intents", j),
                        f"unknown intent '{intent}' (intents: {', '.join(INTENTS)})",
                    )
                )
        for key in ("scores", "max_scores"):
            for head in getattr(r.when, key) or {}:
                if head not in HEADS:
                    problems.append(
                        (
                            ("routing", i, "when", key, head),
                            f"unknown judgment head '{head}' (heads: {', '.join(HEADS)})",
                        )
                    )
        team(("routing", i, "team"), r.team)
        priority(("routing", i, "priority"), r.priority)
        if r.action is not None and r.action not in (*BUILTIN_ACTIONS, *rules.integrations):
            problems.append(
                (
                    ("routing", i, "action"),
                    f"unknown action '{r.action}' (opt_out or an integration)",
                )
            )
    for i, s in enumerate(rules.slas):
        team(("slas", i, "team"), s.team)
        priority(("slas", i, "priority"), s.priority)
        for metric, actions in s.on_breach.items():
            for j, a in enumerate(actions):
                if a.startswith("notify:") and a[7:] not in rules.integrations:
                    problems.append(
                        (("slas", i, "on_breach", metric, j), f"unknown integration '{a[7:]}'")
                    )
    return problems


__all__ = ["METRICS", "WEEKDAYS", "Rules", "references"]
