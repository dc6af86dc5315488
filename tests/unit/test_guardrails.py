"""The guardrail pipeline as plain functions: layers, categories, spans, people, the judge."""

from __future__ import annotations

from pathlib import Path

import pytest

import prompts
from traza.decisions import entities, guardrails
from traza.decisions.guardrails import People, PolicyError, check, check_reply, parse_policy
from traza.settings import get_settings


@pytest.fixture(autouse=True)
def clean_db() -> None:
    """Plain functions: no database (overrides the conftest fixture of the same name)."""


BLOCKED = [
    ("El salario es de $30.000 al mes", "salary"),
    ("El sueldo es de 30 mil pesos", "salary"),
    ("Pagamos USD 2500 mensual", "salary"),
    ("The pay is $3,000 a month", "salary"),
    ("The salary is 30k", "salary"),
    ("el sueldo es de dieciocho mil pesos", "salary"),
    ("you'd get around two thousand five hundred a month", "salary"),
    ("o salário fica entre 3 e 4 mil reais", "salary"),
    ("andás cobrando unas 900 lucas", "salary"),
    ("Te contrataremos la próxima semana", "start_date"),
    ("Empezarías a trabajar el 1 de junio", "start_date"),
    ("You will start on Monday", "start_date"),
    ("Arrancás el lunes a las 9 en la sucursal", "start_date"),
    ("você começa semana que vem", "start_date"),
    ("¡Felicidades, estás contratada!", "hiring_decision"),
    ("Has sido seleccionado para el puesto", "hiring_decision"),
    ("Lo siento, no fuiste seleccionada", "hiring_decision"),
    ("You're hired!", "hiring_decision"),
    ("We won't be moving forward with your application", "hiring_decision"),
    ("Ya podés ir renunciando a tu laburo, el puesto es tuyo", "hiring_decision"),
    ("infelizmente seu perfil não foi aprovado", "hiring_decision"),
    ("Otro candidato ya envió sus documentos", "other_candidates"),
    ("Another candidate has the same interview time", "other_candidates"),
    ("Puedes escribirle a juan.perez@gmail.com", "other_candidates"),
    ("Call him on (555) 123-4567", "other_candidates"),
]


@pytest.mark.parametrize(("text", "category"), BLOCKED)
def test_each_category_blocks_what_it_forbids(text: str, category: str) -> None:
    verdict = check_reply(text)
    assert not verdict.allowed, verdict.layers
    assert category in verdict.policies
    assert verdict.span and verdict.source in ("entities", "people", "classifier")
    description = guardrails.policy().categories[category].description
    assert description in (verdict.reason or "")
    assert [layer["layer"] for layer in verdict.layers] == ["entities", "people", "classifier"]


@pytest.mark.parametrize(
    "text",
    [
        "Hola, ¿en qué te ayudo?",
        "Sobre el salario te responde una persona del equipo.",
        "The recruiter will tell you the salary in the interview.",
        "No puedo decirte si fuiste seleccionado; la decisión final es del equipo.",
        "I can't share details about other candidates.",
        "Tu entrevista es el martes 14 a las 10:00 en Av. Reforma 123.",
        "Te responderemos en un máximo de 5 días hábiles.",
        "El proceso tiene 4 etapas y dura de 2 a 3 semanas.",
        "Your application moved to the interview stage.",
        "Lembrete: sua entrevista é amanhã às 9h.",
        "Para empezar, ¿me envías tu CV?",
    ],
)
def test_harmless_replies_pass(text: str) -> None:
    verdict = check_reply(text)
    assert verdict.allowed, verdict.layers
    assert verdict.policies == [] and verdict.reason is None


def test_the_candidates_own_data_and_the_business_contacts_pass() -> None:
    own = People(own_emails=frozenset({"ana.perez@gmail.com"}), own_phones={"5215512345678"})
    assert check_reply("Tengo registrado ana.perez@gmail.com, ¿es correcto?", people=own).allowed
    assert check_reply("¿Sigue siendo tu número el 55 1234 5678?", people=own).allowed
    assert check_reply("Puedes llamarnos al +52 55 5000 1234").allowed  # allow-listed
    assert check_reply("Escríbenos a talento@empresa.com").allowed


def test_other_candidates_from_the_pool_are_blocked_by_name_phone_and_email() -> None:
    others = People(
        own_names=frozenset({"Ana Pérez"}),
        other_names=frozenset({"María López"}),
        other_phones=frozenset({"5215598765432"}),
        other_emails=frozenset({"maria@gmail.com"}),
    )
    verdict = check_reply("María López va muy bien, Ana Pérez", people=others)
    assert not verdict.allowed and verdict.source == "people" and verdict.span == "María López"
    verdict = check_reply("Su número es 55 9876 5432", people=others)
    assert not verdict.allowed and "other_candidates" in verdict.policies
    assert not check_reply("escríbele a maria@gmail.com", people=others).allowed
    assert check_reply("Hola Ana Pérez, ¿cómo estás?", people=others).allowed


def test_every_template_reply_passes_the_guardrails() -> None:
    for key, entry in prompts.load("replies").items():
        for language in entry:
            for name in (None, "María G.", "John O'Brien"):
                text = prompts.reply(key, language, nombre=name, empresa="Acme", opens="09:00")
                verdict = check_reply(text)
                assert verdict.allowed, (key, language, text, verdict.layers)


def test_templates_exist_in_spanish_english_and_portuguese() -> None:
    for key, entry in prompts.load("replies").items():
        assert {"es", "en", "pt"} <= set(entry), key


async def test_a_judge_that_errors_holds_the_reply() -> None:
    async def broken(_: str) -> tuple[bool, str]:
        raise TimeoutError("judge timed out")

    verdict = await check("Hola, ¿en qué te ayudo?", judge=broken)
    assert not verdict.allowed
    assert verdict.policies == [guardrails.UNAVAILABLE] and verdict.source == "judge"
    assert verdict.layers[-1] == {
        "layer": "judge",
        "verdict": "error",
        "findings": [],
        "error": "judge timed out",
    }


async def test_the_judge_adds_a_block_and_never_removes_one() -> None:
    async def refuses(_: str) -> tuple[bool, str]:
        return False, "rude"

    async def allows(_: str) -> tuple[bool, str]:
        return True, ""

    verdict = await check("Hola, ¿en qué te ayudo?", judge=refuses)
    assert not verdict.allowed and verdict.policies == ["llm_judge"] and verdict.reason == "rude"
    verdict = await check("The salary is 30k", judge=allows)
    assert not verdict.allowed and "salary" in verdict.policies
    assert verdict.layers[-1]["verdict"] == "skipped"
    assert (await check("Hola, ¿en qué te ayudo?", judge=allows)).allowed


def test_a_bad_policy_is_refused_naming_the_field() -> None:
    data = dict(prompts.load("guardrails"))
    data["categories"] = {k: v for k, v in data["categories"].items() if k != "salary"}
    with pytest.raises(PolicyError, match="missing salary"):
        parse_policy(data)
    data = dict(prompts.load("guardrails")) | {"classifier": {"thresholds": {"pay": 0.5}}}
    with pytest.raises(PolicyError, match="classifier: .*unknown category 'pay'"):
        parse_policy(data)


def test_the_operator_extends_the_allow_list(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "guardrails.yaml").write_text(
        "allow:\n  phones: ['+34 600 111 222']\n", encoding="utf-8"
    )
    monkeypatch.setenv("TRAZA_CONFIG_DIR", str(tmp_path))
    get_settings.cache_clear()
    try:
        assert "+34 600 111 222" in guardrails.policy().allow.phones
        assert check_reply("Pregunta por Laura en el 600 111 222").allowed
    finally:
        monkeypatch.delenv("TRAZA_CONFIG_DIR")
        get_settings.cache_clear()
    assert not check_reply("Pregunta por Laura en el 600 111 222").allowed


def _entity_categories(text: str) -> set[str]:
    return {f.category for f in entities.find(text, guardrails.policy().vocabulary())}


@pytest.mark.parametrize(
    ("text", "category"),
    [
        ("Te pagan un palo y medio por mes", "salary"),
        ("Dá uns três paus com o VR", "salary"),
        ("Hay 50 candidaturas para este puesto", "other_candidates"),
        ("Tem mais 3 candidatos concorrendo", "other_candidates"),
        ("Lamentablemente la búsqueda se cerró con otro candidato.", "other_candidates"),
        ("Aún no sale oficialmente, pero ya te eligieron.", "hiring_decision"),
        ("Não posso falar oficialmente, mas pode pedir demissão.", "hiring_decision"),
        ("After the interview, the team won't be extending an offer.", "hiring_decision"),
    ],
)
def test_the_entity_layer_reads_slang_amounts_counts_and_indirect_outcomes(
    text: str, category: str
) -> None:
    assert category in _entity_categories(text)


@pytest.mark.parametrize(
    "text",
    [
        "Congrats on finishing the assessment! The team will review it this week.",
        "La entrevista es en el piso 7, oficina 704.",
        "La dinámica es en grupo con otros postulantes, llega 10 minutos antes.",
        "The green checkmark means your documents were accepted, not that you were selected.",
    ],
)
def test_the_entity_layer_leaves_these_alone(text: str) -> None:
    assert _entity_categories(text) == set()


def test_a_contact_the_sentence_then_calls_the_candidates_own_passes() -> None:
    pol = guardrails.policy()

    def people(text: str) -> list[object]:
        return list(guardrails._people_findings(text, None, pol.allow, pol.contact_cues))

    assert people("Cambié tu correo a ana.l92@gmail.com, como me pediste.") == []
    assert people("Updated your number to (512) 555-0147 as you asked.") == []
    assert people("Escríbele a ana.l92@gmail.com.")  # whose, it does not say
    assert people("Llama a 55 6123 4478. Como me pediste, ya lo anoté.")  # next sentence


def test_a_refusal_raises_the_classifier_threshold() -> None:
    pol = guardrails.policy()
    raised = pol.classifier.refusal_threshold
    assert raised is not None
    base = pol.threshold("hiring_decision")
    assert pol.threshold("hiring_decision", "Tu documento fue aprobado.") == base
    refusal = "No puedo decirte si quedaste; el equipo te escribe."
    assert pol.threshold("hiring_decision", refusal) == max(base, raised)
    taken_back = "No puedo confirmarlo oficialmente, pero ya podés avisar en tu trabajo."
    assert pol.threshold("hiring_decision", taken_back) == base
    data = dict(prompts.load("guardrails")) | {"classifier": {"refusal_threshold": 2}}
    with pytest.raises(PolicyError, match="refusal_threshold"):
        parse_policy(data)
