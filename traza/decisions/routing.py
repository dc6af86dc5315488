"""The routing policy: who answers this turn — the bot, a human, or a system action.

Rules are tried in order and the first that matches wins; the winning rule, its reason
and the inputs it looked at are recorded in the trace with every decision.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, Literal

Route = Literal["bot", "human", "system"]


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


@dataclass(frozen=True, slots=True)
class RouteDecision:
    """The outcome of routing, as recorded."""

    route: Route
    rule: str
    reason: str
    action: str | None
    inputs: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        """A JSON-serialisable copy for state and trace."""
        return asdict(self)


@dataclass(frozen=True, slots=True)
class Rule:
    """One routing rule: a name, a test, a route and (for systems) an action."""

    name: str
    when: Callable[[RoutingInputs], bool]
    route: Route
    reason: str
    action: str | None = None


DEFAULT_RULES: tuple[Rule, ...] = (
    Rule("opt-out", lambda i: i.opt_out, "system", "customer asked to stop messages", "opt_out"),
    Rule("human-owner", lambda i: i.owner == "human", "human", "a human owns the conversation"),
    Rule("asks-for-person", lambda i: i.wants_human, "human", "customer asked for a person"),
    Rule("frustration", lambda i: i.frustration, "human", "customer shows frustration or anger"),
    Rule("negotiation", lambda i: i.intent == "salary", "human", "salary or negotiation topic"),
    Rule(
        "out-of-scope",
        lambda i: i.intent == "unknown" and i.unknown_streak >= 2,
        "human",
        "topic outside the bot's knowledge twice in a row",
    ),
    Rule("default-bot", lambda i: True, "bot", "the bot can answer this"),
)


def decide(inputs: RoutingInputs, rules: tuple[Rule, ...] = DEFAULT_RULES) -> RouteDecision:
    """Apply the rules in order; the first that matches decides."""
    for rule in rules:
        if rule.when(inputs):
            return RouteDecision(
                route=rule.route,
                rule=rule.name,
                reason=rule.reason,
                action=rule.action,
                inputs=asdict(inputs),
            )
    raise LookupError("no routing rule matched; the rule list must end with a catch-all")
