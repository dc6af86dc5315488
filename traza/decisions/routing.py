"""The routing policy: who answers this turn — a bot, a team of humans, or a system action.

Built-in rules come first and cannot be configured away: a clear opt-out is always
honoured, a CSAT answer is always recorded, and while a human owns the conversation the
bot never takes it back by itself; an ambiguous opt-out is asked about (two buttons), and
a clear opt-in of an opted-out contact restores consent. Then the rules file's `routing`
list is tried in order (first match wins); then an `uncertain` turn (no judgment head
decisive) goes to a human unless the policy says `uncertain_to: bot`; then `default-bot`.
The decision records the winning rule, its reason, the inputs it looked at (head scores
included) and the rules version.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from traza.decisions.text import normalise, phrase_pattern
from traza.rules.loader import LoadedRules, defaults
from traza.rules.schema import Match, RoutingRule

Route = Literal["bot", "human", "system"]
OPT_OUT_STOP = "optout:stop"
OPT_OUT_KEEP = "optout:keep"
"""Payloads of the two buttons an ambiguous opt-out is asked with."""


@dataclass(frozen=True, slots=True)
class RoutingInputs:
    """Everything a rule may look at."""

    intent: str
    confidence: float
    frustration: bool
    wants_human: bool
    opt_out: bool
    owner: str
    opted_out: bool
    unknown_streak: int
    text: str = ""
    contact: str | None = None
    inbox: str | None = None
    payload: str | None = None
    negotiation: bool = False
    out_of_scope: bool = False
    uncertain: bool = False
    opt_out_mode: str | None = None
    opt_in: bool = False
    scores: dict[str, float] = field(default_factory=dict)
    model: str | None = None

    @property
    def negotiating(self) -> bool:
        """Negotiation by the judgment head, or a model's `salary` intent."""
        return self.negotiation or self.intent == "salary"


@dataclass(frozen=True, slots=True)
class RouteDecision:
    """The outcome of routing, as recorded."""

    route: Route
    rule: str
    reason: str
    action: str | None
    inputs: dict[str, Any]
    rules_version: str
    team: str | None = None
    bot: str | None = None
    priority: str | None = None
    query_type: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """A JSON-serialisable copy for state and trace."""
        data = asdict(self)
        data["inputs"] = {k: v for k, v in self.inputs.items() if k != "text"}
        return data


def matches(when: Match, i: RoutingInputs) -> bool:
    """Whether every condition given in `when` holds."""
    if when.intents is not None and i.intent not in when.intents:
        return False
    if when.keywords is not None:
        if not phrase_pattern(tuple(when.keywords)).search(normalise(i.text)):
            return False
    if when.contacts is not None and i.contact not in when.contacts:
        return False
    if when.inboxes is not None and i.inbox not in when.inboxes:
        return False
    if when.wants_human is not None and i.wants_human != when.wants_human:
        return False
    if when.frustration is not None and i.frustration != when.frustration:
        return False
    if when.negotiation is not None and i.negotiating != when.negotiation:
        return False
    if when.out_of_scope is not None and i.out_of_scope != when.out_of_scope:
        return False
    if when.uncertain is not None and i.uncertain != when.uncertain:
        return False
    if when.scores is not None and any(
        i.scores.get(head, 0.0) < floor for head, floor in when.scores.items()
    ):
        return False
    if when.max_scores is not None and any(
        i.scores.get(head, 0.0) > ceiling for head, ceiling in when.max_scores.items()
    ):
        return False
    if when.min_unknown_streak is not None and i.unknown_streak < when.min_unknown_streak:
        return False
    return not (when.max_confidence is not None and i.confidence > when.max_confidence)


def _builtin(i: RoutingInputs) -> tuple[Route, str, str, str | None] | None:
    if i.opt_out:
        return "system", "opt-out", "customer asked to stop messages", "opt_out"
    if i.payload == OPT_OUT_KEEP:
        return (
            "system",
            "opt-out-declined",
            "customer chose to keep receiving messages",
            ("keep_messages"),
        )
    if i.opt_in and i.opted_out:
        return "system", "opt-in", "customer asked to receive messages again", "opt_in"
    if i.payload and i.payload.startswith("csat:"):
        return "system", "csat-answer", "customer rated the service", "csat"
    if i.payload and i.payload.startswith("interview:confirm:"):
        return "system", "interview-confirmed", "candidate confirmed the interview", "interview"
    if i.payload and i.payload.startswith("interview:reschedule:"):
        return "human", "reschedule-request", "candidate asks to reschedule the interview", None
    if i.owner == "human":
        return "human", "human-owner", "a human owns the conversation", None
    if i.opt_out_mode == "ask" and not i.opted_out:
        return (
            "system",
            "opt-out-unclear",
            "customer may want to stop messages: ask",
            ("confirm_opt_out"),
        )
    return None


def _configured(rule: RoutingRule, loaded: LoadedRules, i: RoutingInputs) -> RouteDecision:
    rules = loaded.rules
    query_type = rule.query_type or (i.intent if i.intent in rules.query_types else None)
    qt = rules.query_types.get(query_type or "")
    team = rule.team
    priority = None
    if team is not None:
        team_rules = rules.teams.get(team)
        priority = (
            rule.priority
            or (qt.priority if qt else None)
            or (team_rules.priority if team_rules else None)
            or rules.default_priority
        )
    route: Route = "human" if team else "system" if rule.action else "bot"
    return RouteDecision(
        route=route,
        rule=rule.name,
        reason=rule.reason or f"rule '{rule.name}' matched",
        action=rule.action,
        inputs=asdict(i),
        rules_version=loaded.version,
        team=team,
        bot=rule.bot,
        priority=priority,
        query_type=query_type,
    )


def decide(inputs: RoutingInputs, loaded: LoadedRules | None = None) -> RouteDecision:
    """Built-in rules, then the configured ones in order, then the bot."""
    loaded = loaded or defaults()
    builtin = _builtin(inputs)
    if builtin is not None:
        route, name, reason, action = builtin
        return RouteDecision(
            route=route,
            rule=name,
            reason=reason,
            action=action,
            inputs=asdict(inputs),
            rules_version=loaded.version,
        )
    for rule in loaded.rules.routing:
        if matches(rule.when, inputs):
            return _configured(rule, loaded, inputs)
    if inputs.uncertain and loaded.rules.judgment.uncertain_to == "human":
        return RouteDecision(
            route="human",
            rule="uncertain",
            reason="uncertain",
            action=None,
            inputs=asdict(inputs),
            rules_version=loaded.version,
            team=loaded.rules.default_team,
            priority=loaded.rules.default_priority,
        )
    return RouteDecision(
        route="bot",
        rule="default-bot",
        reason="the bot can answer this",
        action=None,
        inputs=asdict(inputs),
        rules_version=loaded.version,
    )
