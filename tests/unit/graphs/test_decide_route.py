"""decide_route: the routing rules for real, on the active rules and the clock."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from langgraph.runtime import Runtime

from graphs.conversation.context import Context
from graphs.conversation.nodes import decide_route as node
from tests.unit.graphs.conftest import run_step, use_rules
from traza import clock
from traza.decisions.classifier import Classification
from traza.rules.loader import LoadedRules, parse
from traza.trace import kinds

CID = 5
SATURDAY_NOON = datetime(2026, 3, 21, 12, tzinfo=UTC)
MONDAY_MORNING = datetime(2026, 3, 23, 10, tzinfo=UTC)  # 11:00 in Madrid
CLOSED_TEAM_BOT_SERVES = """\
teams:
  support:
    hours:
      timezone: Europe/Madrid
      weekly: {mon: ["09:00-18:00"], tue: ["09:00-18:00"], wed: ["09:00-18:00"]}
    out_of_hours: {mode: bot}
routing:
  - name: asks-for-person
    when: {wants_human: true}
    team: support
    reason: customer asked for a person
"""


def classified(**signals: Any) -> dict[str, Any]:
    c = Classification(
        intent="unknown",
        language="es",
        frustration=False,
        wants_human=False,
        opt_out=False,
        confidence=0.9,
    )
    return c.as_dict() | signals


def state(**signals: Any) -> dict[str, Any]:
    return {
        "conversation_id": CID,
        "owner": "bot",
        "turn": [{"id": 1, "type": "text", "text": "Quiero hablar con alguien"}],
        "classification": classified(**signals),
    }


async def test_a_request_for_a_person_goes_to_the_team_and_is_traced(
    rules: LoadedRules, runtime: Runtime[Context]
) -> None:
    step = await run_step(node.decide_route, state(wants_human=True), runtime)
    decision = step.update["decision"]
    assert (decision["route"], decision["rule"], decision["team"]) == (
        "human",
        "asks-for-person",
        "general",
    )
    assert decision["rules_version"] == rules.version
    assert decision["inputs"]["wants_human"] is True and decision["inputs"]["owner"] == "bot"
    assert "text" not in decision["inputs"]  # the customer's words stay out of the trace
    [event] = step.buffered
    assert event["kind"] == kinds.ROUTING_DECISION and event["data"] == decision


async def test_an_opt_out_is_a_system_action(rules: LoadedRules, runtime: Runtime[Context]) -> None:
    step = await run_step(node.decide_route, state(opt_out=True, opt_out_mode="act"), runtime)
    decision = step.update["decision"]
    assert (decision["route"], decision["action"]) == ("system", "opt_out")


async def test_the_bot_answers_what_no_rule_claims(
    rules: LoadedRules, runtime: Runtime[Context]
) -> None:
    step = await run_step(node.decide_route, state(intent="greeting"), runtime)
    assert step.update["decision"]["route"] == "bot"


@pytest.mark.parametrize(("now", "route"), [(SATURDAY_NOON, "bot"), (MONDAY_MORNING, "human")])
async def test_a_closed_team_in_bot_mode_leaves_the_turn_to_the_bot(
    monkeypatch: pytest.MonkeyPatch, runtime: Runtime[Context], now: datetime, route: str
) -> None:
    use_rules(
        monkeypatch,
        parse(CLOSED_TEAM_BOT_SERVES, source="test", known_teams={"general", "support"}),
    )
    clock.use(clock.FrozenClock(now))
    step = await run_step(node.decide_route, state(wants_human=True), runtime)
    decision = step.update["decision"]
    assert decision["route"] == route and decision["team"] == "support"
    if route == "bot":
        assert decision["out_of_hours"] is True
        assert decision["reason"] == (
            "customer asked for a person; team 'support' is closed, "
            "the bot keeps serving (out_of_hours: bot)"
        )
    else:
        assert "out_of_hours" not in decision
    assert step.buffered[0]["data"] == decision
