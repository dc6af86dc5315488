"""The offline decision modules as plain functions: classifier, guardrails, routing, routers."""

from __future__ import annotations

from dataclasses import replace
from typing import Any, get_args

import pytest

import prompts
from graphs.conversation.routing import (
    route_after_check_guardrails,
    route_after_decide_route,
    route_after_load_context,
    route_after_wait_for_human,
)
from traza.decisions.classifier import INTENTS, classify_turn, detect_language
from traza.decisions.guardrails import check_reply
from traza.decisions.llm import ClassificationOutput, Intent
from traza.decisions.routing import RoutingInputs, decide
from traza.rules.loader import defaults, parse


@pytest.fixture(autouse=True)
def clean_db() -> None:
    """Plain functions: no database (overrides the conftest fixture of the same name)."""


# --- classifier -------------------------------------------------------------------------

# (text, intent, language): at least one Spanish and one English example per keyword intent.
INTENT_EXAMPLES = [
    ("Hola, buenos días", "greeting", "es"),
    ("Buenas tardes", "greeting", "es"),
    ("Hello there", "greeting", "en"),
    ("Good morning", "greeting", "en"),
    ("Muchas gracias", "thanks", "es"),
    ("Thank you so much", "thanks", "en"),
    ("Adiós, hasta luego", "goodbye", "es"),
    ("Bye, see you", "goodbye", "en"),
    ("¿Cómo va mi postulación?", "application_status", "es"),
    ("¿Me aceptaron?", "application_status", "es"),
    ("What is the status of my application?", "application_status", "en"),
    ("Hi, any news on my application?", "application_status", "en"),
    ("Quiero reagendar mi entrevista", "interview", "es"),
    ("Confirmo mi asistencia a la cita", "interview", "es"),
    ("Can I reschedule my interview?", "interview", "en"),
    ("¿Qué requisitos tiene la vacante?", "job_info", "es"),
    ("What are the requirements for the position?", "job_info", "en"),
    ("Mi correo es ana@example.com", "provide_info", "es"),
    ("Te adjunto mi CV", "provide_info", "es"),
    ("My email is ana@example.com", "provide_info", "en"),
    ("Attached is my resume", "provide_info", "en"),
    ("Hola, ¿cuál es el sueldo?", "salary", "es"),
    ("¿Cuánto pagan?", "salary", "es"),
    ("What is the salary for this job?", "salary", "en"),
    ("Can we negotiate the compensation?", "salary", "en"),
    ("asdf qwerty", "unknown", "es"),
]


@pytest.mark.parametrize(("text", "intent", "language"), INTENT_EXAMPLES)
def test_classifier_recognises_intents_in_spanish_and_english(
    text: str, intent: str, language: str
) -> None:
    c = classify_turn([text])
    assert (c.intent, c.language) == (intent, language)
    assert c.source == "rules"
    assert not (c.opt_out or c.wants_human or c.frustration)
    config = prompts.load("classifier")["confidence"]
    assert c.confidence == (config["none"] if intent == "unknown" else config["match"])
    if intent != "unknown":
        assert c.matched


def test_every_intent_of_the_classifier_config_has_examples_in_both_languages() -> None:
    config = prompts.load("classifier")
    keyword_intents = set(config["intents"])
    assert keyword_intents <= set(INTENTS)
    covered = {(intent, lang) for _, intent, lang in INTENT_EXAMPLES}
    for intent in keyword_intents:
        assert {(intent, "es"), (intent, "en")} <= covered, intent


def test_classifier_config_holds_only_strings() -> None:
    # YAML reads bare yes/no/on/off as booleans: a marker lost that way fails silently.
    config = prompts.load("classifier")
    lists: list[list[Any]] = [
        *config["languages"].values(),
        config["opt_out"],
        config["opt_out_payloads"],
        config["wants_human"],
        config["frustration"],
        *config["intents"].values(),
    ]
    for phrases in lists:
        assert phrases and all(isinstance(p, str) and p.strip() for p in phrases), phrases


def test_media_and_unsupported_messages_come_from_the_message_types() -> None:
    assert classify_turn([""], types=["image"]).intent == "media"
    assert classify_turn(["", ""], types=["audio", "document"]).intent == "media"
    assert classify_turn([""], types=["unsupported"]).intent == "unsupported"
    # A caption with words is classified by its words.
    assert classify_turn(["Hola"], types=["image"]).intent == "greeting"
    # A mixed burst of text and media with no keyword stays unknown.
    assert classify_turn(["mmm", ""], types=["text", "image"]).intent == "unknown"


@pytest.mark.parametrize(
    "text",
    [
        "STOP",
        "stop",
        "Quiero darme de baja",
        "no me escriban más",
        "Por favor no me contacten",
        "Unsubscribe",
        "Please stop messaging me",
        "don't contact me",
        "Don’t contact me anymore",
        "remove me from your list",
    ],
)
def test_opt_out_phrases(text: str) -> None:
    c = classify_turn([text])
    assert c.opt_out and c.matched
    assert c.confidence == prompts.load("classifier")["confidence"]["match"]


@pytest.mark.parametrize("payload", ["OPT_OUT", "opt_out", "STOP"])
def test_opt_out_button_payload(payload: str) -> None:
    c = classify_turn(["No gracias"], types=["button"], payloads=[payload])
    assert c.opt_out
    assert c.matched == payload


def test_other_button_payloads_are_not_opt_out() -> None:
    assert not classify_turn(["Confirmar"], types=["button"], payloads=["CONFIRM"]).opt_out


def test_no_opt_out_without_a_phrase() -> None:
    for text in ("Hola, ¿cómo va mi aplicación?", "Thanks, bye", "No, gracias"):
        assert not classify_turn([text]).opt_out, text


@pytest.mark.parametrize(
    "text",
    [
        "Quiero hablar con una persona",
        "¿Puedo hablar con un reclutador?",
        "Necesito atención humana",
        "I want to talk to a human",
        "I'd like to speak to a recruiter",
        "Can I speak to someone?",
    ],
)
def test_wants_human(text: str) -> None:
    c = classify_turn([text])
    assert c.wants_human and not c.opt_out and c.matched


@pytest.mark.parametrize(
    "text",
    [
        "Esto es inaceptable, nadie me responde",
        "Estoy harta de esperar",
        "Ya me cansé",
        "This is ridiculous",
        "I'm fed up",
        "hola!!!",
        "NECESITO UNA RESPUESTA YA",
        "WHERE IS MY INTERVIEW CONFIRMATION",
    ],
)
def test_frustration_from_words_exclamations_and_shouting(text: str) -> None:
    assert classify_turn([text]).frustration


@pytest.mark.parametrize("text", ["OK", "STOP", "Hola!", "¡Gracias!", "Hola, ¿cómo estás?"])
def test_no_frustration_in_calm_or_short_messages(text: str) -> None:
    assert not classify_turn([text]).frustration


def test_a_burst_is_classified_as_one_turn() -> None:
    c = classify_turn(["hola", "quería saber", "¿cómo va mi aplicación?"])
    assert c.intent == "application_status"
    assert c.language == "es"
    c = classify_turn(["hi", "I want to talk to a human"])
    assert c.wants_human and c.language == "en"


@pytest.mark.parametrize(
    ("text", "language"),
    [
        ("¿Qué tal?", "es"),
        ("¡Listo!", "es"),
        ("Mañana", "es"),
        ("Quiero saber de mi entrevista", "es"),
        ("Bye, see you!", "en"),
        ("yes", "en"),
        ("no, gracias", "es"),
        ("Thanks, see you tomorrow", "en"),
        ("Por favor", "es"),
        ("I will be there", "en"),
    ],
)
def test_language_detection(text: str, language: str) -> None:
    assert detect_language(text) == language


def test_language_falls_back_on_a_tie_or_no_marker() -> None:
    assert detect_language("ok", fallback="en") == "en"
    assert detect_language("12345") == "es"
    assert detect_language("hola hello", fallback="en") == "en"
    # The conversation's language is the hint when a turn says nothing decisive.
    assert classify_turn(["ok 👍"], language_hint="en").language == "en"
    assert classify_turn([""], types=["image"], language_hint="en").language == "en"


# --- guardrails ---------------------------------------------------------------------------

BLOCKED = [
    ("El salario es de $30.000 al mes", "salary"),
    ("El sueldo es de 30 mil pesos", "salary"),
    ("Pagamos USD 2500 mensual", "salary"),
    ("The pay is $3,000 a month", "salary"),
    ("The salary is 30k", "salary"),
    ("Compensation: 45,000 per year", "salary"),
    ("Te contrataremos la próxima semana", "hiring_date"),
    ("Tu fecha de ingreso es el lunes", "hiring_date"),
    ("Empezarías a trabajar el 1 de junio", "hiring_date"),
    ("You will start on Monday", "hiring_date"),
    ("Your start date is June 1", "hiring_date"),
    ("¡Felicidades, estás contratada!", "hiring_decision"),
    ("Has sido seleccionado para el puesto", "hiring_decision"),
    ("Lo siento, no fuiste seleccionada", "hiring_decision"),
    ("You're hired!", "hiring_decision"),
    ("You’re hired!", "hiring_decision"),
    ("Congratulations, you got the job", "hiring_decision"),
    ("Unfortunately you were rejected", "hiring_decision"),
    ("Otro candidato ya envió sus documentos", "other_candidates"),
    ("Another candidate has the same interview time", "other_candidates"),
    ("Puedes escribirle a juan.perez@example.com", "other_candidates"),
    ("You can reach Ana at ana+jobs@example.co.uk", "other_candidates"),
    ("Su teléfono es +52 1 555 000 1111", "other_candidates"),
    ("Call him on (555) 123-4567", "other_candidates"),
]


@pytest.mark.parametrize(("text", "policy"), BLOCKED)
def test_each_policy_blocks_what_it_forbids(text: str, policy: str) -> None:
    verdict = check_reply(text)
    assert not verdict.allowed
    assert verdict.policies == [policy]
    assert verdict.reason and verdict.source == "policy"
    description = prompts.load("guardrails")["policies"][policy]["description"]
    assert verdict.reason == description


def test_a_reply_breaking_several_policies_names_them_all() -> None:
    verdict = check_reply("¡Estás contratado! El sueldo es de $20.000 al mes")
    assert not verdict.allowed
    assert set(verdict.policies) == {"salary", "hiring_decision"}
    assert verdict.reason and "; " in verdict.reason


@pytest.mark.parametrize(
    "text",
    [
        "Hola, ¿en qué te ayudo?",
        "Sobre el salario te responde una persona del equipo.",
        "The salary is discussed with the recruiter in the interview.",
        "Tu entrevista es el 10/05/2025 a las 10:00.",
        "We pay attention to every application.",
        "Your application is still under review.",
        "El proceso tiene 4 etapas y dura de 2 a 3 semanas.",
    ],
)
def test_clean_replies_are_allowed(text: str) -> None:
    verdict = check_reply(text)
    assert verdict.allowed and verdict.policies == [] and verdict.reason is None


def _templates() -> list[tuple[str, str]]:
    return [(key, language) for key, entry in prompts.load("replies").items() for language in entry]


@pytest.mark.parametrize(("key", "language"), _templates())
@pytest.mark.parametrize("name", [None, "María G.", "John O'Brien"])
def test_every_template_reply_passes_the_guardrails(
    key: str, language: str, name: str | None
) -> None:
    text = prompts.reply(key, language, nombre=name, empresa="Acme", opens="09:00")
    assert text and "{" not in text
    verdict = check_reply(text)
    assert verdict.allowed, (key, language, text, verdict)


def test_templates_cover_every_intent_the_bot_answers_in_both_languages() -> None:
    replies = prompts.load("replies")
    # Salary is never answered by the bot: it always goes to a human (negotiation).
    assert decide(replace(CALM, intent="salary")).route == "human"
    bot_intents = [i for i in INTENTS if i != "salary"]
    for key in [*bot_intents, "handoff_notice", "opt_out_confirmation", "guardrail_fallback"]:
        assert {"es", "en"} <= set(replies[key]), key


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
    upset = replace(CALM, intent="salary", frustration=True, wants_human=True)
    assert _rule(upset) == "asks-for-person"
    assert _rule(replace(upset, wants_human=False)) == "frustration"
    assert _rule(replace(upset, wants_human=False, frustration=False)) == "negotiation"
    for inputs in (upset, replace(upset, wants_human=False), replace(CALM, intent="salary")):
        assert decide(inputs).route == "human"


def test_a_human_owner_keeps_the_conversation() -> None:
    assert _rule(replace(CALM, owner="human", wants_human=True)) == "human-owner"
    assert decide(replace(CALM, owner="human")).route == "human"


def test_out_of_scope_only_after_two_unknown_turns() -> None:
    unknown = replace(CALM, intent="unknown", confidence=0.3)
    assert _rule(replace(unknown, unknown_streak=1)) == "default-bot"
    assert _rule(replace(unknown, unknown_streak=2)) == "out-of-scope"
    assert _rule(replace(unknown, unknown_streak=3)) == "out-of-scope"
    assert _rule(replace(CALM, unknown_streak=2)) == "default-bot"
    assert _rule(replace(unknown, unknown_streak=2, intent="salary")) == "negotiation"


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
            )
        )

    assert route("STOP") == "opt-out"
    assert route("Quiero hablar con una persona, esto es inaceptable") == "asks-for-person"
    assert route("Esto es inaceptable") == "frustration"
    assert route("¿Cuánto pagan?") == "negotiation"
    assert route("asdf", streak=2) == "out-of-scope"
    assert route("Hola") == "default-bot"


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
