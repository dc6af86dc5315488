"""Judgment through the real webhook: a message of every head in every variety, and its route.

The messages were written for this test, apart from the shipped examples; the held-out
figures are in docs/judgment-dataset.md (`traza judgment eval`).
"""

from __future__ import annotations

from typing import Any

import pytest

import prompts
from tests.support import say

CASES = [
    ("es-MX", "wants_human", "oiga ¿me puede marcar alguien de recursos humanos?"),
    ("es-MX", "negotiation", "¿y cuánto es el sueldo mensual de la vacante?"),
    (
        "es-MX",
        "frustration",
        "ya llevo tres semanas esperando y nadie me dice nada, qué mal servicio",
    ),
    ("es-MX", "out_of_scope", "¿ustedes venden tarjetas de regalo para la tienda?"),
    ("es-MX", "opt_out", "ya no me manden mensajes por favor, no me interesa recibir nada"),
    ("es-MX", "opt_in", "quiero volver a recibir las vacantes, ya estoy disponible otra vez"),
    (
        "es-AR",
        "wants_human",
        "che, ¿me pasás con alguien de selección? prefiero hablar con una persona",
    ),
    ("es-AR", "negotiation", "¿cuánto están pagando por el puesto? ¿es negociable?"),
    ("es-AR", "frustration", "es la tercera vez que mando el CV y nadie contesta, una vergüenza"),
    ("es-AR", "out_of_scope", "¿saben a qué hora juega Boca hoy?"),
    ("es-AR", "opt_out", "dejen de escribirme por favor, no quiero más mensajes"),
    ("es-AR", "opt_in", "me arrepentí, mandame de nuevo las búsquedas"),
    ("es-ES", "wants_human", "¿podría llamarme alguien del equipo de selección?"),
    ("es-ES", "negotiation", "¿el salario es negociable? con lo que pone en la oferta no me llega"),
    ("es-ES", "frustration", "llevo un mes esperando respuesta, esto es una tomadura de pelo"),
    ("es-ES", "out_of_scope", "¿me podéis ayudar con la declaración de la renta?"),
    ("es-ES", "opt_out", "no me enviéis más mensajes, dadme de baja de la lista"),
    ("es-ES", "opt_in", "quiero volver a recibir ofertas, me habéis dado de baja sin querer"),
    ("es-CO", "wants_human", "¿me puede comunicar con un asesor, por favor?"),
    ("es-CO", "negotiation", "¿cuánto es el salario y si tiene auxilio de transporte?"),
    ("es-CO", "frustration", "qué pena pero ya es la cuarta vez que pregunto y nadie me responde"),
    ("es-CO", "out_of_scope", "¿dónde puedo sacar el pasado judicial para otra empresa?"),
    ("es-CO", "opt_out", "por favor no me vuelvan a escribir, elimínenme de la base de datos"),
    ("en", "wants_human", "can I talk to a real person please?"),
    ("en", "negotiation", "what's the pay for this role? is it negotiable?"),
    ("en", "frustration", "I've been waiting two weeks and nobody has replied, this is ridiculous"),
    ("en", "out_of_scope", "can you help me fix my laptop?"),
    ("en", "opt_out", "please stop messaging me, remove my number from your list"),
    ("en", "opt_in", "please send me job openings again, I'm available now"),
    ("pt-BR", "wants_human", "posso falar com um atendente humano?"),
    ("pt-BR", "negotiation", "qual é o salário da vaga? tem VR?"),
    (
        "pt-BR",
        "frustration",
        "já mandei meu currículo três vezes e ninguém responde, que falta de respeito",
    ),
    ("pt-BR", "out_of_scope", "vocês sabem se vai chover amanhã em São Paulo?"),
    ("pt-BR", "opt_out", "parem de me mandar mensagem, não quero mais receber nada"),
    ("pt-BR", "opt_in", "quero voltar a receber as vagas, por favor"),
    ("es-en", "wants_human", "oye can I talk to someone del equipo please"),
    ("es-en", "negotiation", "cuánto es el pay per hour para este job?"),
    (
        "es-en",
        "frustration",
        "ya mandé mi resume like 3 times y nobody called me back, so annoying",
    ),
    ("es-en", "out_of_scope", "do you guys know dónde puedo renovar mi license?"),
    ("es-en", "opt_out", "please ya no me manden texts, stop messaging me"),
    ("es-en", "opt_in", "can you start sending me las vacantes again? I'm interested"),
    ("es-CO", "opt_in", "ya estoy otra vez buscando trabajo, vuélvanme a mandar las vacantes"),
]
RULES = {
    "wants_human": {"asks-for-person"},
    "negotiation": {"negotiation", "frustration", "asks-for-person"},
    "frustration": {"frustration", "asks-for-person"},
    "out_of_scope": {"out-of-scope", "asks-for-person", "frustration"},
}


def decisions(db: Any) -> list[dict[str, Any]]:
    rows = db.execute(
        "SELECT data FROM trace_events WHERE kind = 'routing.decision' ORDER BY id"
    ).fetchall()
    return [r["data"] for r in rows]


@pytest.mark.parametrize(("variety", "head", "text"), CASES)
async def test_every_head_in_every_variety_takes_its_route(client, db, variety, head, text):
    wa_id = "52155500" + str(CASES.index((variety, head, text))).zfill(5)
    if head == "opt_in":
        await say(client, "STOP", wa_id=wa_id)
        assert decisions(db)[-1]["rule"] == "opt-out"
    await say(client, text, wa_id=wa_id)
    decision = decisions(db)[-1]
    classification = db.execute(
        "SELECT data FROM trace_events WHERE kind = 'classification' ORDER BY id DESC LIMIT 1"
    ).fetchone()["data"]
    assert classification["model"].startswith("judgment-")
    assert set(classification["scores"]) >= {"wants_human", "opt_out", "out_of_scope"}
    if head == "opt_out":
        assert decision["rule"] == "opt-out", classification["scores"]
        contact = db.execute("SELECT opted_out_at FROM contacts WHERE wa_id = %s", (wa_id,))
        assert contact.fetchone()["opted_out_at"] is not None
    elif head == "opt_in":
        assert decision["rule"] == "opt-in", classification["scores"]
        contact = db.execute("SELECT opted_out_at FROM contacts WHERE wa_id = %s", (wa_id,))
        assert contact.fetchone()["opted_out_at"] is None
    else:
        assert decision["route"] == "human", (decision["rule"], classification["scores"])
        assert decision["rule"] in RULES[head], (decision["rule"], classification["scores"])
    lang = {"en": "en", "pt-BR": "pt"}.get(variety, "es")
    if variety != "es-en":
        assert classification["language"] == lang
        last = db.execute(
            "SELECT text FROM messages WHERE direction = 'out' ORDER BY id DESC LIMIT 1"
        ).fetchone()["text"]
        expected = {
            "opt_out": "opt_out_confirmation",
            "opt_in": "opt_in_confirmation",
        }.get(head, "handoff_notice")
        assert last == prompts.reply(expected, lang)


async def test_an_ambiguous_opt_out_asks_with_two_buttons_and_the_answer_decides(client, db):
    wa_id = "5215550007777"
    await say(client, "ya no me interesa", wa_id=wa_id)
    assert decisions(db)[-1]["rule"] == "opt-out-unclear"
    question = db.execute(
        "SELECT type, text, content FROM messages WHERE direction = 'out' ORDER BY id DESC"
    ).fetchone()
    assert question["type"] == "interactive"
    assert question["text"] == prompts.reply("opt_out_question", "es")
    assert [b["id"] for b in question["content"]["buttons"]] == ["optout:stop", "optout:keep"]
    contact = db.execute("SELECT opted_out_at FROM contacts WHERE wa_id = %s", (wa_id,)).fetchone()
    assert contact["opted_out_at"] is None  # asked, never acted
