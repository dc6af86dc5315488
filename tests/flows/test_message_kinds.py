"""Every kind of WhatsApp update is judged for what it is (posted through the real webhook)."""

from __future__ import annotations

from typing import Any

import prompts
from tests.fakes import meta_updates as meta
from tests.support import PHONE_NUMBER_ID, drain, post_webhook, text_message, wa_payload

WA = meta.WA


async def post(client: Any, *messages: dict[str, Any]) -> None:
    response = await post_webhook(client, wa_payload(messages=list(messages)))
    assert response.status_code == 200, response.text
    await drain()


def outbound(db: Any) -> list[str]:
    rows = db.execute("SELECT text FROM messages WHERE direction = 'out' ORDER BY id").fetchall()
    return [r["text"] for r in rows]


def kinds(db: Any) -> list[str]:
    return [r["kind"] for r in db.execute("SELECT kind FROM trace_events ORDER BY id").fetchall()]


def stored(db: Any, wamid: str) -> dict[str, Any]:
    row = db.execute(
        "SELECT type, text, content, processed_at FROM messages WHERE wa_message_id = %s",
        (wamid,),
    ).fetchone()
    assert row is not None, wamid
    return dict(row)


async def test_an_edit_updates_the_message_keeps_both_versions_and_is_judged_again(client, db):
    first = text_message("Hola, ¿cómo va mi postulación?", wa_id=WA)
    await post(client, first)
    replies = len(outbound(db))
    await post(client, meta.edit(first["id"], "Quiero hablar con una persona, por favor"))

    original = stored(db, first["id"])
    assert original["text"] == "Quiero hablar con una persona, por favor"
    assert original["content"]["edits"][0]["text"] == "Hola, ¿cómo va mi postulación?"
    edited = db.execute("SELECT data FROM trace_events WHERE kind = 'message.edited'").fetchone()[
        "data"
    ]
    assert edited["previous_text"] == "Hola, ¿cómo va mi postulación?" and edited["found"]
    # Judged again: the new text asks for a person, so it goes to one.
    decisions = db.execute(
        "SELECT data->>'rule' AS rule FROM trace_events WHERE kind = 'routing.decision' ORDER BY id"
    ).fetchall()
    assert decisions[-1]["rule"] == "asks-for-person"
    assert outbound(db)[replies:] == [prompts.reply("handoff_notice", "es")]


async def test_a_deletion_is_recorded_and_never_answered(client, db):
    first = text_message("Hola", wa_id=WA)
    await post(client, first)
    replies = len(outbound(db))
    gone = meta.revoke(first["id"])
    await post(client, gone)
    assert stored(db, first["id"])["content"]["deleted_by"] == gone["id"]
    assert stored(db, gone["id"])["processed_at"] is not None
    assert "message.deleted" in kinds(db)
    assert len(outbound(db)) == replies


async def test_reactions_and_stickers_are_recorded_without_a_reply(client, db):
    first = text_message("Gracias", wa_id=WA)
    await post(client, first)
    replies = len(outbound(db))
    smile, sticker = meta.reaction(first["id"]), meta.sticker()
    await post(client, smile)
    await post(client, sticker)
    assert stored(db, smile["id"])["type"] == "reaction"
    assert stored(db, sticker["id"])["type"] == "sticker"
    assert len(outbound(db)) == replies
    assert prompts.reply("media", "es", nombre="María G.") not in outbound(db)


async def test_a_location_and_a_contact_card_are_acknowledged_in_words(client, db):
    await post(client, meta.location())
    assert outbound(db)[-1] == prompts.reply("location", "es", nombre="María G.")
    await post(client, meta.contacts_card())
    assert outbound(db)[-1] == prompts.reply("contact_card", "es", nombre="María G.")
    classified = db.execute(
        "SELECT data->>'intent' AS intent FROM trace_events WHERE kind = 'classification' "
        "ORDER BY id"
    ).fetchall()
    assert [c["intent"] for c in classified] == ["location", "contact_card"]
    unsure = prompts.reply("unknown", "es")
    assert unsure not in outbound(db)


async def test_an_order_goes_to_a_person(client, db):
    await post(client, meta.order())
    rule = db.execute(
        "SELECT data->>'rule' AS rule FROM trace_events WHERE kind = 'routing.decision'"
    ).fetchone()["rule"]
    assert rule == "out-of-scope"
    assert outbound(db) == [prompts.reply("handoff_notice", "es")]


async def test_a_flow_completion_is_stored_on_the_candidate_and_acknowledged(client, db):
    await post(client, text_message("Hola", wa_id=WA))
    db.execute(
        "INSERT INTO candidates (name, wa_id, contact_id) "
        "SELECT 'María G.', wa_id, id FROM contacts WHERE wa_id = %s",
        (WA,),
    )
    await post(client, meta.flow_completion({"ciudad": "Puebla", "experiencia": "3"}))
    profile = db.execute("SELECT profile FROM candidates").fetchone()["profile"]
    assert profile["flows"]["postulacion"]["ciudad"] == "Puebla"
    assert outbound(db)[-1] == prompts.reply("flow_completed", "es", nombre="María G.")
    assert "flow.completed" in kinds(db)


async def test_call_events_and_system_changes_update_the_contact_without_a_reply(client, db):
    await post(client, text_message("Hola", wa_id=WA))
    replies = len(outbound(db))
    await post(client, meta.call_permission("accept"))
    await post(client, meta.identity_change())
    response = await post_webhook(client, meta.calls_payload(PHONE_NUMBER_ID))
    assert response.status_code == 200
    await post(client, meta.number_change("5215550009999"))
    await drain()
    assert len(outbound(db)) == replies
    recorded = kinds(db)
    assert {"contact.call_permission", "contact.changed", "contact.call"} <= set(recorded)
    numbers = [r["wa_id"] for r in db.execute("SELECT wa_id FROM contacts").fetchall()]
    assert numbers == ["5215550009999"]
