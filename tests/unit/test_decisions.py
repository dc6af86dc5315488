"""The offline decision modules as plain functions: judgment, routing, routers."""

from __future__ import annotations

from dataclasses import replace
from typing import get_args

import pytest

from graphs.conversation.routing import (
    route_after_check_guardrails,
    route_after_decide_route,
    route_after_load_context,
    route_after_wait_for_human,
)
from traza.decisions import judgment, language
from traza.decisions.classifier import (
    Classification,
    classify_turn,
    combine,
    signals_from_scores,
)
from traza.decisions.guardrails import check_reply
from traza.decisions.llm import ClassificationOutput
from traza.decisions.routing import OPT_OUT_KEEP, OPT_OUT_STOP, RoutingInputs, decide
from traza.rules.loader import RulesError, defaults, parse
from traza.rules.schema import INTENTS, Intent, JudgmentPolicy


@pytest.fixture(autouse=True)
def clean_db() -> None:
    """Plain functions: no database (overrides the conftest fixture of the same name)."""


# --- classifier (the trained judgment model) ------------------------------------------

CLEAR = [
    # (text, signal) in the varieties candidates write; the model must get these right.
    ("Quiero hablar con una persona", "wants_human"),
    ("¿me puede llamar alguien del equipo?", "wants_human"),
    ("can someone from HR call me please", "wants_human"),
    ("¿Cuánto pagan?", "negotiation"),
    ("the offer seems low, can we talk about the package", "negotiation"),
    ("qual o salário da vaga?", "negotiation"),
    ("llevo dos semanas esperando y nadie me contesta", "frustration"),
    ("thanks for nothing, seriously", "frustration"),
    ("¿venden seguros de auto?", "out_of_scope"),
    ("what's the weather like in Madrid", "out_of_scope"),
    ("vocês vendem celular?", "out_of_scope"),
]


@pytest.mark.parametrize(("text", "signal"), CLEAR)
def test_clear_messages_fire_their_head(text: str, signal: str) -> None:
    c = classify_turn([text])
    assert getattr(c, signal), (text, c.scores)
    assert c.source == "model" and c.model and c.model.startswith("judgment-")
    assert set(c.scores) == {*judgment.SIGNALS, judgment.ESCALATE}
    assert not c.opt_out


@pytest.mark.parametrize(
    "text",
    [
        "is there a bus stop near the office?",
        "me dieron de baja médica la semana pasada",
        "SIIII CONFIRMO!!!",
        "Hola, buenos días",
        "no, el martes no puedo, ¿el miércoles?",
    ],
)
def test_hard_negatives_neither_opt_out_nor_escalate(text: str) -> None:
    c = classify_turn([text])
    assert c.opt_out_mode is None, (text, c.scores)
    assert not (c.wants_human or c.negotiation or c.frustration or c.out_of_scope), c.scores


@pytest.mark.parametrize("text", ["STOP", "stop.", "BAJA", "Baja!", "SAIR", "unsubscribe"])
def test_a_whole_message_keyword_opts_out_at_once(text: str) -> None:
    c = classify_turn([text])
    assert c.opt_out and c.opt_out_mode == "act"
    assert c.source == "keyword" and c.matched


@pytest.mark.parametrize(
    "text",
    ["no me manden más mensajes por favor", "please remove my number from your list"],
)
def test_a_clear_opt_out_sentence_acts(text: str) -> None:
    assert classify_turn([text]).opt_out_mode == "act"


@pytest.mark.parametrize("text", ["ya no me interesa", "not interested anymore tbh"])
def test_an_ambiguous_opt_out_only_asks(text: str) -> None:
    c = classify_turn([text])
    assert c.opt_out_mode == "ask" and not c.opt_out


@pytest.mark.parametrize("text", ["quero voltar a receber as vagas", "START", "ALTA"])
def test_opt_in(text: str) -> None:
    c = classify_turn([text])
    assert c.opt_in and not c.opt_out


@pytest.mark.parametrize("payload", ["OPT_OUT", "opt_out", "STOP", OPT_OUT_STOP])
def test_opt_out_button_payload(payload: str) -> None:
    c = classify_turn(["No gracias"], types=["button"], payloads=[payload])
    assert c.opt_out
    assert c.matched == payload


def test_other_button_payloads_are_not_opt_out() -> None:
    assert not classify_turn(["Confirmar"], types=["button"], payloads=["CONFIRM"]).opt_out


def test_media_and_unsupported_messages_come_from_the_message_types() -> None:
    assert classify_turn([""], types=["image"]).intent == "media"
    assert classify_turn(["", ""], types=["audio", "document"]).intent == "media"
    assert classify_turn([""], types=["unsupported"]).intent == "unsupported"
    assert classify_turn(["Hola"], types=["image"]).intent == "greeting"


def test_a_burst_is_classified_as_one_turn() -> None:
    c = classify_turn(["hola", "quería saber", "¿cómo va mi aplicación?"])
    assert c.intent == "application_status"
    assert c.language == "es"
    c = classify_turn(["hi", "I want to talk to a human"])
    assert c.wants_human and c.language == "en"


@pytest.mark.parametrize(
    ("text", "lang"),
    [
        ("¿Qué tal?", "es"),
        ("Quiero saber de mi entrevista", "es"),
        ("Thanks, see you tomorrow", "en"),
        ("I will be there", "en"),
        ("oi, tudo bem? queria saber da vaga", "pt"),
        ("obrigado pela atenção", "pt"),
    ],
)
def test_language_detection(text: str, lang: str) -> None:
    assert language.detect(text) == lang


def test_language_keeps_the_conversation_language_when_a_turn_says_nothing() -> None:
    assert language.detect("ok", fallback="pt") == "pt"
    assert language.detect("12345") == "es"
    assert classify_turn(["👍"], language_hint="en").language == "en"
    assert classify_turn([""], types=["image"], language_hint="pt").language == "pt"


def test_scores_become_signals_by_the_policy() -> None:
    policy = JudgmentPolicy()
    gate = policy.threshold(judgment.ESCALATE)
    low = dict.fromkeys(judgment.SIGNALS, 0.0) | {judgment.ESCALATE: 0.0}
    s = signals_from_scores(low, {"greeting": 0.9}, policy)
    assert s["intent"] == "greeting" and not s["uncertain"] and s["opt_out_mode"] is None
    # A person is needed (the stacked head) and a reason fires (its own head).
    s = signals_from_scores(low | {"out_of_scope": 0.95, judgment.ESCALATE: 0.9}, {}, policy)
    assert s["out_of_scope"] and not s["uncertain"]
    # A lit head the stacked head does not back is no escalation.
    s = signals_from_scores(low | {"out_of_scope": 0.95, judgment.ESCALATE: gate / 2}, {}, policy)
    assert not s["out_of_scope"] and not s["uncertain"]
    # A person is needed, no reason is decisive: uncertain.
    s = signals_from_scores(low | {"frustration": 0.3, judgment.ESCALATE: gate}, {}, policy)
    assert s["uncertain"] and not s["frustration"]
    # A model without a stacked head lets each head decide alone.
    no_stack = dict.fromkeys(judgment.SIGNALS, 0.0)
    assert signals_from_scores(no_stack | {"frustration": 0.9}, {}, policy)["frustration"]
    s = signals_from_scores(low | {"opt_out": policy.opt_out.act}, {}, policy)
    assert s["opt_out_mode"] == "act"
    s = signals_from_scores(low | {"opt_out": policy.opt_out.ask}, {}, policy)
    assert s["opt_out_mode"] == "ask"
    s = signals_from_scores(low | {"negotiation": 0.99, judgment.ESCALATE: 0.99}, {}, policy)
    assert s["intent"] == "salary"
    strict = JudgmentPolicy(thresholds={"out_of_scope": 0.99})
    sure = low | {"out_of_scope": 0.95, judgment.ESCALATE: 0.99}
    assert not signals_from_scores(sure, {}, strict)["out_of_scope"]


def test_a_model_adds_signals_and_never_removes_one() -> None:
    offline = classify_turn(["¿Cuánto pagan?"])
    assert offline.negotiation
    calm_llm = Classification(
        intent="job_info",
        language="es",
        frustration=False,
        wants_human=False,
        opt_out=False,
        confidence=0.9,
        source="llm",
    )
    combined = combine(offline, calm_llm)
    assert combined.negotiation and combined.intent == "salary"
    assert combined.scores == offline.scores and combined.llm is not None
    quiet = classify_turn(["Hola, buenos días"])
    assert combine(quiet, replace(calm_llm, wants_human=True)).wants_human
    # A model's opt-out alone never opts anyone out: it asks.
    merged = combine(quiet, replace(calm_llm, opt_out=True, opt_out_mode="act"))
    assert merged.opt_out_mode == "ask" and not merged.opt_out
    # ...and it never turns the offline model's clear opt-out into a question.
    assert combine(classify_turn(["STOP"]), calm_llm).opt_out


# --- routing policy ----------------------------------------------------------------------

CALM = RoutingInputs(
    intent="greeting",
    confidence=0.9,
    frustration=False,
    wants_human=False,
    opt_out=False,
    owner="bot",
    opted_out=False,
    unknown_streak=0,
)


def _rule(inputs: RoutingInputs) -> str:
    return decide(inputs).rule


def test_default_is_the_bot() -> None:
    decision = decide(CALM)
    assert (decision.route, decision.rule, decision.action) == ("bot", "default-bot", None)
    assert decision.inputs["intent"] == "greeting"
    # The message text is in the messages table; the recorded inputs leave it out.
    assert decision.as_dict()["inputs"] == {k: v for k, v in decision.inputs.items() if k != "text"}


def test_opt_out_beats_everything() -> None:
    everything = replace(
        CALM,
        intent="salary",
        frustration=True,
        wants_human=True,
        opt_out=True,
        owner="human",
        unknown_streak=5,
    )
    decision = decide(everything)
    assert (decision.route, decision.rule, decision.action) == ("system", "opt-out", "opt_out")


def test_precedence_asks_for_person_then_frustration_then_negotiation() -> None:
    upset = replace(CALM, intent="salary", frustration=True, wants_human=True, negotiation=True)
    assert _rule(upset) == "asks-for-person"
    assert _rule(replace(upset, wants_human=False)) == "frustration"
    assert _rule(replace(upset, wants_human=False, frustration=False)) == "negotiation"
    for inputs in (upset, replace(upset, wants_human=False), replace(CALM, negotiation=True)):
        assert decide(inputs).route == "human"


def test_a_human_owner_keeps_the_conversation() -> None:
    assert _rule(replace(CALM, owner="human", wants_human=True)) == "human-owner"
    assert decide(replace(CALM, owner="human")).route == "human"


def test_out_of_scope_escalates_on_the_first_turn() -> None:
    assert _rule(replace(CALM, out_of_scope=True)) == "out-of-scope"
    assert decide(replace(CALM, out_of_scope=True)).route == "human"
    # Two turns the bot did not understand still go to a person.
    unknown = replace(CALM, intent="unknown", confidence=0.3)
    assert _rule(replace(unknown, unknown_streak=1)) == "default-bot"
    assert _rule(replace(unknown, unknown_streak=2)) == "not-understood-twice"
    assert _rule(replace(unknown, unknown_streak=2, negotiation=True)) == "negotiation"


def test_an_uncertain_turn_goes_to_a_human_unless_the_policy_says_bot() -> None:
    decision = decide(replace(CALM, uncertain=True))
    assert (decision.route, decision.rule, decision.reason) == ("human", "uncertain", "uncertain")
    assert decision.team == defaults().rules.default_team
    to_bot = parse("judgment: {uncertain_to: bot}\n", source="bot.yaml")
    assert decide(replace(CALM, uncertain=True), to_bot).rule == "default-bot"


def test_an_ambiguous_opt_out_is_asked_and_the_answer_decides() -> None:
    decision = decide(replace(CALM, opt_out_mode="ask"))
    assert (decision.route, decision.action) == ("system", "confirm_opt_out")
    assert decide(replace(CALM, payload=OPT_OUT_KEEP)).action == "keep_messages"
    assert decide(replace(CALM, opt_out=True, payload=OPT_OUT_STOP)).action == "opt_out"
    # An opted-out contact is not asked again.
    assert decide(replace(CALM, opt_out_mode="ask", opted_out=True)).rule == "default-bot"


def test_opt_in_restores_consent_only_for_an_opted_out_contact() -> None:
    assert decide(replace(CALM, opt_in=True, opted_out=True)).action == "opt_in"
    assert decide(replace(CALM, opt_in=True)).rule == "default-bot"


def test_rules_can_route_on_head_scores() -> None:
    rules = parse(
        "routing:\n  - name: sure-negotiation\n    when: {scores: {negotiation: 0.8}}\n"
        "    team: general\n  - name: calm-only\n    when: {max_scores: {frustration: 0.1}}\n"
        "    bot: calm\n",
        source="scores.yaml",
    )
    assert decide(replace(CALM, scores={"negotiation": 0.85}), rules).rule == "sure-negotiation"
    assert decide(replace(CALM, scores={"negotiation": 0.5}), rules).rule == "calm-only"
    assert decide(replace(CALM, scores={"frustration": 0.5}), rules).rule == "default-bot"


def test_an_unknown_head_in_the_rules_is_refused_with_its_line() -> None:
    with pytest.raises(RulesError) as err:
        parse(
            "routing:\n  - name: x\n    when: {scores: {salary: 0.8}}\n    team: general\n",
            source="bad.yaml",
        )
    assert "unknown judgment head 'salary'" in str(err.value) and "bad.yaml:3" in str(err.value)


def test_without_configured_rules_the_bot_answers() -> None:
    empty = parse("routing: []\n", source="empty.yaml")
    upset = replace(CALM, intent="salary", frustration=True, wants_human=True)
    assert decide(upset, empty).rule == "default-bot"
    assert decide(upset, defaults()).rule == "asks-for-person"
    assert decide(upset, empty).rules_version == empty.version != defaults().version


def test_classifier_output_routes_end_to_end() -> None:
    def route(text: str, streak: int = 0) -> str:
        c = classify_turn([text])
        return _rule(
            replace(
                CALM,
                intent=c.intent,
                confidence=c.confidence,
                frustration=c.frustration,
                wants_human=c.wants_human,
                opt_out=c.opt_out,
                unknown_streak=streak,
                negotiation=c.negotiation,
                out_of_scope=c.out_of_scope,
                uncertain=c.uncertain,
                opt_out_mode=c.opt_out_mode,
                opt_in=c.opt_in,
                scores=c.scores,
            )
        )

    assert route("STOP") == "opt-out"
    assert route("Quiero hablar con una persona, esto es inaceptable") == "asks-for-person"
    assert route("¿Cuánto pagan?") == "negotiation"
    assert route("¿venden seguros de auto?") == "out-of-scope"
    assert route("Hola, buenos días") == "default-bot"


# --- graph routers -------------------------------------------------------------------------


def test_route_after_load_context() -> None:
    assert route_after_load_context({"turn": [{"id": 1, "type": "text", "text": "hola"}]}) == (
        "classify"
    )
    assert route_after_load_context({"turn": []}) == "__end__"
    assert route_after_load_context({}) == "__end__"


@pytest.mark.parametrize(
    ("route", "node"),
    [("bot", "write_reply"), ("human", "hand_off_to_human"), ("system", "run_system_action")],
)
def test_route_after_decide_route(route: str, node: str) -> None:
    assert route_after_decide_route({"decision": {"route": route}}) == node


def test_route_after_check_guardrails() -> None:
    assert route_after_check_guardrails({"guardrail": {"allowed": True}}) == "send_reply"
    assert route_after_check_guardrails({"guardrail": {"allowed": False}}) == "hand_off_to_human"
    # No verdict is not a pass.
    assert route_after_check_guardrails({}) == "hand_off_to_human"
    assert route_after_check_guardrails({"guardrail": None}) == "hand_off_to_human"
    assert route_after_check_guardrails({"guardrail": check_reply("¡Hola!").as_dict()}) == (
        "send_reply"
    )


def test_route_after_wait_for_human() -> None:
    assert route_after_wait_for_human({"owner": "human"}) == "wait_for_human"
    assert route_after_wait_for_human({"owner": "bot"}) == "__end__"


# --- model schema ------------------------------------------------------------------------


def test_model_intents_equal_the_classifier_intents() -> None:
    assert get_args(Intent) == INTENTS
    schema = ClassificationOutput.model_json_schema()
    assert tuple(schema["properties"]["intent"]["enum"]) == INTENTS
