"""Outbound delivery through the WhatsApp Cloud API (a local Graph API over a real socket)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.fakes.servers import GraphAPI, LocalServer
from tests.support import (
    ADMIN,
    PHONE_NUMBER_ID,
    configure,
    drain,
    post_webhook,
    say,
    status,
    wa_payload,
)

WA_ID = "5215550001111"


def outbound(db: Any) -> list[dict[str, Any]]:
    return db.execute(
        "SELECT id, actor, type, text, status, channel, attempts, idempotency_key, "
        "wa_message_id, error_code, error_title, sent_at FROM messages "
        "WHERE direction='out' ORDER BY id"
    ).fetchall()


def events(db: Any, kind: str) -> list[dict[str, Any]]:
    return db.execute(
        "SELECT data, message_id FROM trace_events WHERE kind=%s ORDER BY id", (kind,)
    ).fetchall()


def delivery_jobs(db: Any) -> list[dict[str, Any]]:
    return db.execute(
        "SELECT status, attempts, scheduled_at > now() AS later FROM procrastinate_jobs "
        "WHERE task_name='deliver_outbox' ORDER BY id"
    ).fetchall()


def retry_now(db: Any) -> None:
    """Bring backed-off retries forward: the scheduler's clock, not the product's logic."""
    db.execute("UPDATE procrastinate_jobs SET scheduled_at = now() WHERE status='todo'")


async def conversation_id(client: httpx.AsyncClient) -> int:
    conversations = (await client.get("/conversations", headers=ADMIN)).json()
    assert len(conversations) == 1
    return int(conversations[0]["id"])


async def queue(
    cid: int,
    *,
    key: str,
    kind: str = "text",
    text: str = "",
    content: dict[str, Any] | None = None,
    actor: str = "system:followups",
    deliver: bool = True,
) -> int:
    """Write a message to the outbox as a graph node does, and ask for delivery."""
    from traza.db.engine import session_scope
    from traza.outbound.outbox import queue_message, request_delivery

    async with session_scope() as session:
        message_id = await queue_message(
            session,
            conversation_id=cid,
            key=key,
            actor=actor,
            kind=kind,
            text_body=text,
            content=content,
        )
    assert message_id is not None
    if deliver:
        await request_delivery(cid)
    return message_id


async def start(client: httpx.AsyncClient, graph_api: GraphAPI) -> int:
    """A conversation whose first bot reply went out; returns its id."""
    await say(client, "hola")
    assert len(graph_api.sent) == 1
    return await conversation_id(client)


def whatsapp_channel(http: httpx.AsyncClient) -> Any:
    from traza.channels.whatsapp import WhatsAppChannel
    from traza.settings import get_settings

    return WhatsAppChannel(client=http, settings=get_settings(), phone_number_id=PHONE_NUMBER_ID)


# 1. Text ------------------------------------------------------------------------------


async def test_bot_reply_is_posted_to_the_cloud_api_and_its_wamid_recorded(client, db, graph_api):
    await say(client, "hola")

    [request] = graph_api.requests
    [message] = outbound(db)
    assert request["phone_number_id"] == PHONE_NUMBER_ID
    assert request["authorization"] == f"Bearer {graph_api.token}"
    body = request["body"]
    assert body["messaging_product"] == "whatsapp"
    assert body["to"] == WA_ID and body["type"] == "text"
    assert body["text"]["body"] == message["text"] and message["text"]
    assert body["biz_opaque_callback_data"] == message["idempotency_key"]

    assert message["status"] == "accepted" and message["channel"] == "whatsapp"
    assert message["wa_message_id"].startswith("wamid.out.")
    assert message["attempts"] == 1 and message["error_code"] is None
    [sent] = events(db, "message.sent")
    assert sent["message_id"] == message["id"]
    assert sent["data"]["wa_message_id"] == message["wa_message_id"]
    assert sent["data"]["channel"] == "whatsapp" and sent["data"]["by"] == "bot:traza"

    # Meta's status webhooks find the message by the wamid we stored.
    wamid = message["wa_message_id"]
    response = await post_webhook(client, wa_payload(statuses=[status(wamid, "delivered")]))
    assert response.status_code == 200
    assert outbound(db)[0]["status"] == "delivered"


# 2. Templates, reply buttons, read receipts ----------------------------------------------


async def test_channel_sends_templates_buttons_and_read_receipts(graph_api):
    from traza.channels.base import Button

    async with httpx.AsyncClient() as http:
        channel = whatsapp_channel(http)
        template_id = await channel.send_template(
            to=WA_ID,
            name="interview_reminder",
            language="es_MX",
            params=["María", "lunes 10:00"],
            callback="tpl:1",
        )
        buttons_id = await channel.send_buttons(
            to=WA_ID,
            body="¿Confirmas tu entrevista?",
            buttons=[Button("yes", "Sí, confirmo"), Button("no", "x" * 20)],
            callback="btn:1",
        )
        await channel.mark_read(message_id="wamid.in.123")

        too_many = [Button(str(i), f"Opción {i}") for i in range(4)]
        for bad in (too_many, [Button("long", "x" * 21)], []):
            with pytest.raises(ValueError):
                await channel.send_buttons(to=WA_ID, body="?", buttons=bad, callback="bad")

    assert template_id.startswith("wamid.out.") and buttons_id.startswith("wamid.out.")
    assert len(graph_api.requests) == 3  # invalid buttons never reach the API
    template, buttons, read = (r["body"] for r in graph_api.requests)
    assert template["type"] == "template" and template["to"] == WA_ID
    assert template["biz_opaque_callback_data"] == "tpl:1"
    assert template["template"] == {
        "name": "interview_reminder",
        "language": {"code": "es_MX"},
        "components": [
            {
                "type": "body",
                "parameters": [
                    {"type": "text", "text": "María"},
                    {"type": "text", "text": "lunes 10:00"},
                ],
            }
        ],
    }
    assert buttons["type"] == "interactive" and buttons["biz_opaque_callback_data"] == "btn:1"
    assert buttons["interactive"] == {
        "type": "button",
        "body": {"text": "¿Confirmas tu entrevista?"},
        "action": {
            "buttons": [
                {"type": "reply", "reply": {"id": "yes", "title": "Sí, confirmo"}},
                {"type": "reply", "reply": {"id": "no", "title": "x" * 20}},
            ]
        },
    }
    assert read == {"messaging_product": "whatsapp", "status": "read", "message_id": "wamid.in.123"}


async def test_outbox_delivers_templates_and_reply_buttons(client, db, graph_api):
    cid = await start(client, graph_api)
    template = await queue(
        cid,
        key="tpl:reminder:1",
        kind="template",
        text="Recordatorio de entrevista",
        content={"name": "interview_reminder", "language": "es_MX", "params": ["María", 10]},
    )
    buttons = await queue(
        cid,
        key="btn:confirm:1",
        kind="interactive",
        text="¿Confirmas tu entrevista del lunes?",
        content={"buttons": [{"id": "yes", "title": "Sí"}, {"id": "no", "title": "No puedo"}]},
    )
    await drain()

    sent = graph_api.sent[1:]
    assert [b["type"] for b in sent] == ["template", "interactive"]
    assert sent[0]["template"]["name"] == "interview_reminder"
    assert sent[0]["template"]["language"] == {"code": "es_MX"}
    assert sent[0]["template"]["components"][0]["parameters"] == [
        {"type": "text", "text": "María"},
        {"type": "text", "text": "10"},
    ]
    assert sent[0]["biz_opaque_callback_data"] == "tpl:reminder:1"
    assert sent[1]["interactive"]["body"] == {"text": "¿Confirmas tu entrevista del lunes?"}
    assert [b["reply"] for b in sent[1]["interactive"]["action"]["buttons"]] == [
        {"id": "yes", "title": "Sí"},
        {"id": "no", "title": "No puedo"},
    ]
    assert sent[1]["biz_opaque_callback_data"] == "btn:confirm:1"
    rows = {m["id"]: m for m in outbound(db)}
    for mid in (template, buttons):
        assert rows[mid]["status"] == "accepted" and rows[mid]["wa_message_id"]


async def test_invalid_outbox_message_fails_without_blocking_the_next_ones(client, db, graph_api):
    cid = await start(client, graph_api)
    bad = await queue(
        cid,
        key="btn:bad",
        kind="interactive",
        text="Elige",
        content={"buttons": [{"id": str(i), "title": f"Opción {i}"} for i in range(4)]},
    )
    after = await queue(cid, key="after:bad", text="¿Sigues ahí?")
    await drain()

    rows = {m["id"]: m for m in outbound(db)}
    assert rows[bad]["status"] == "failed" and "button" in rows[bad]["error_title"]
    assert rows[after]["status"] == "accepted"
    assert [b["type"] for b in graph_api.sent] == ["text", "text"]  # the bad one never went out
    [failed] = events(db, "message.send_failed")
    assert failed["message_id"] == bad
    assert {j["status"] for j in delivery_jobs(db)} == {"succeeded"}


# 3. Rate limits: back off, retry, send once ------------------------------------------------


@pytest.mark.parametrize("code", [130429, 131056])
async def test_rate_limited_send_is_retried_and_sent_exactly_once(client, db, graph_api, code):
    graph_api.fail_next(code, "Rate limit hit")
    await say(client, "hola")

    [message] = outbound(db)
    assert message["status"] == "queued" and message["error_code"] == code
    assert message["error_title"] == "Rate limit hit" and message["wa_message_id"] is None
    # The turn's job tried once; the retry is a delivery job scheduled with a backoff.
    [job] = delivery_jobs(db)
    assert job["status"] == "todo" and job["later"]
    [failed] = events(db, "message.send_failed")
    assert failed["data"]["error_code"] == code and failed["data"]["will_retry"] is True
    assert len(graph_api.sent) == 1

    retry_now(db)
    await drain()
    retry_now(db)
    await drain()

    assert len(graph_api.sent) == 2 and graph_api.sent[0] == graph_api.sent[1]
    [message] = outbound(db)
    assert message["status"] == "accepted" and message["wa_message_id"].startswith("wamid.out.")
    assert message["attempts"] == 2 and message["error_code"] is None
    assert len(events(db, "message.sent")) == 1
    assert [j["status"] for j in delivery_jobs(db)] == ["succeeded"]


async def test_a_retried_message_holds_back_the_ones_queued_after_it(client, db, graph_api):
    cid = await start(client, graph_api)
    graph_api.fail_next(130429, "Rate limit hit")
    first = await queue(cid, key="order:1", text="primero")
    second = await queue(cid, key="order:2", text="segundo")
    await drain()

    rows = {m["id"]: m for m in outbound(db)}
    assert rows[first]["status"] == "queued" and rows[second]["status"] == "queued"
    assert [b["text"]["body"] for b in graph_api.sent[1:]] == ["primero"]

    retry_now(db)
    await drain()
    assert [b["text"]["body"] for b in graph_api.sent[1:]] == ["primero", "primero", "segundo"]
    assert {m["status"] for m in outbound(db)} == {"accepted"}


async def test_a_send_that_keeps_failing_gives_up_after_the_configured_attempts(
    client, db, graph_api
):
    configure(TRAZA_SEND_MAX_ATTEMPTS="3")
    cid = await start(client, graph_api)
    graph_api.fail_next(130429, "Rate limit hit", times=10)
    mid = await queue(cid, key="stubborn:1", text="¿Sigues interesado?")
    for _ in range(5):
        await drain()
        retry_now(db)

    assert len(graph_api.sent) == 1 + 3
    message = next(m for m in outbound(db) if m["id"] == mid)
    assert message["status"] == "failed" and message["error_code"] == 130429
    assert message["attempts"] == 3
    last = events(db, "message.send_failed")[-1]["data"]
    assert last["attempt"] == 3 and "will_retry" not in last
    assert not [j for j in delivery_jobs(db) if j["status"] == "todo"]


# 4-6. Errors that are not retried ----------------------------------------------------------


async def test_outside_window_error_records_that_a_template_is_required(client, db, graph_api):
    graph_api.fail_next(131047, "Re-engagement message")
    await say(client, "hola")

    [message] = outbound(db)
    assert message["status"] == "template_required" and message["error_code"] == 131047
    [failed] = events(db, "message.send_failed")
    assert "template required" in failed["data"]["outcome"]
    assert "will_retry" not in failed["data"]
    assert not [j for j in delivery_jobs(db) if j["status"] == "todo"]  # no retry

    retry_now(db)
    await drain()
    assert len(graph_api.requests) == 1


async def test_undeliverable_contact_is_marked_and_later_messages_are_skipped(
    client, db, graph_api
):
    graph_api.fail_next(131026, "Message undeliverable")
    await say(client, "hola")

    [message] = outbound(db)
    assert message["status"] == "failed" and message["error_code"] == 131026
    assert db.execute("SELECT unreachable_at FROM contacts").fetchone()["unreachable_at"]
    [failed] = events(db, "message.send_failed")
    assert failed["data"]["contact"] == "marked unreachable"

    cid = await conversation_id(client)
    later = await queue(
        cid,
        key="followup:1",
        kind="template",
        content={"name": "application_followup", "language": "es", "params": ["María"]},
    )
    await drain()

    assert len(graph_api.requests) == 1
    row = next(m for m in outbound(db) if m["id"] == later)
    assert row["status"] == "skipped" and "unreachable" in row["error_title"]
    [skipped] = events(db, "message.skipped")
    assert skipped["message_id"] == later and "131026" in skipped["data"]["reason"]


@pytest.mark.parametrize(
    ("code", "title"), [(100, "Invalid parameter"), (132000, "Number of parameters mismatch")]
)
async def test_other_errors_fail_the_message_and_show_in_the_timeline(
    client, db, graph_api, code, title
):
    graph_api.fail_next(code, title)
    await say(client, "hola")

    [message] = outbound(db)
    assert message["status"] == "failed"
    assert message["error_code"] == code and message["error_title"] == title
    assert not [j for j in delivery_jobs(db) if j["status"] == "todo"]  # no retry

    cid = await conversation_id(client)
    timeline = (await client.get(f"/conversations/{cid}/timeline", headers=ADMIN)).json()
    [failed] = [e for e in timeline if e["kind"] == "message.send_failed"]
    assert failed["actor"] == "system:sender"
    assert failed["data"]["error_code"] == code and failed["data"]["error_title"] == title
    assert failed["message"]["status"] == "failed" and failed["message"]["error_code"] == code
    assert "message.sent" not in [e["kind"] for e in timeline]

    retry_now(db)
    await drain()
    assert len(graph_api.requests) == 1


# 7. The 24-hour window ---------------------------------------------------------------------


async def test_outside_the_window_free_text_waits_for_a_template_but_templates_go(
    client, db, graph_api
):
    cid = await start(client, graph_api)
    db.execute(
        "UPDATE conversations SET last_inbound_at = now() - interval '25 hours' WHERE id=%s",
        (cid,),
    )
    text = await queue(cid, key="nudge:text", text="¿Sigues interesado en la vacante?")
    buttons = await queue(
        cid,
        key="nudge:buttons",
        kind="interactive",
        text="¿Sigues interesado?",
        content={"buttons": [{"id": "yes", "title": "Sí"}]},
    )
    template = await queue(
        cid,
        key="nudge:template",
        kind="template",
        content={"name": "application_followup", "language": "es", "params": ["María"]},
    )
    await drain()

    rows = {m["id"]: m for m in outbound(db)}
    assert rows[text]["status"] == "template_required"
    assert rows[buttons]["status"] == "template_required"
    assert "24-hour window" in rows[text]["error_title"]
    assert rows[template]["status"] == "accepted"
    assert [b["type"] for b in graph_api.sent] == ["text", "template"]
    reasons = [e["data"]["status"] for e in events(db, "message.send_failed")]
    assert reasons == ["template_required", "template_required"]


# 8. Strict ownership -----------------------------------------------------------------------


async def test_bot_message_is_dropped_when_a_human_took_over_before_the_send(client, db, graph_api):
    cid = await start(client, graph_api)
    # A bot reply sits in the outbox (its delivery has not run yet) ...
    await queue(cid, key="reply:late", text="Respuesta del bot", actor="bot:traza")
    [reply] = [m for m in outbound(db) if m["text"] == "Respuesta del bot"]
    assert reply["status"] == "queued" and reply["actor"] == "bot:traza"

    # A human takes the conversation over; then writes to the contact themselves.
    cid = await conversation_id(client)
    db.execute("UPDATE conversations SET owner='human', owner_agent='ana' WHERE id=%s", (cid,))
    human = await queue(cid, key="human:ana:1", text="Hola, soy Ana.", actor="human:ana")
    await drain()

    rows = {m["id"]: m for m in outbound(db)}
    assert rows[reply["id"]]["status"] == "skipped"
    assert "human owns" in rows[reply["id"]]["error_title"]
    assert rows[human]["status"] == "accepted"
    assert [b["text"]["body"] for b in graph_api.sent[1:]] == ["Hola, soy Ana."]
    [skipped] = events(db, "message.skipped")
    assert skipped["message_id"] == reply["id"]


# 9. Never twice ----------------------------------------------------------------------------


async def queue_again(cid: int, *, key: str) -> int | None:
    from traza.db.engine import session_scope
    from traza.outbound.outbox import queue_message

    async with session_scope() as session:
        return await queue_message(
            session, conversation_id=cid, key=key, actor="system:x", kind="text", text_body="uno"
        )


async def test_delivering_again_sends_nothing_twice(client, db, graph_api):
    from traza.outbound.outbox import request_delivery
    from traza.outbound.sender import deliver

    cid = await start(client, graph_api)
    assert await deliver(cid) == 0
    assert await deliver(cid) == 0
    await request_delivery(cid)
    await request_delivery(cid)
    await drain()
    await queue(cid, key="dup:1", text="uno")
    assert await queue_again(cid, key="dup:1") is None  # the same key queues nothing new
    await drain()
    await request_delivery(cid)
    await drain()

    assert [b["type"] for b in graph_api.sent] == ["text", "text"]
    keys = [b["biz_opaque_callback_data"] for b in graph_api.sent]
    assert len(set(keys)) == 2
    assert len(events(db, "message.sent")) == 2
    assert {m["status"] for m in outbound(db)} == {"accepted"}


async def interrupted_send(
    client: httpx.AsyncClient, db: Any, cid: int, *, key: str, actor: str
) -> tuple[int, str]:
    """A worker claimed the message, called the Cloud API, and died before recording it.

    Meta accepted it, and its status webhook came back with our callback data.
    """
    from traza.outbound.outbox import request_delivery

    mid = await queue(cid, key=key, text="¿Sigues interesado?", actor=actor, deliver=False)
    db.execute("UPDATE messages SET status='sending', attempts=1 WHERE id=%s", (mid,))
    async with httpx.AsyncClient() as http:
        wamid: str = await whatsapp_channel(http).send_text(
            to=WA_ID, text="¿Sigues interesado?", callback=key
        )
    response = await post_webhook(
        client, wa_payload(statuses=[status(wamid, "sent", biz_opaque_callback_data=key)])
    )
    assert response.status_code == 200
    await request_delivery(cid)
    return mid, wamid


async def test_send_interrupted_after_the_provider_accepted_it_is_adopted_not_resent(
    client, db, graph_api
):
    cid = await start(client, graph_api)
    mid, wamid = await interrupted_send(client, db, cid, key="followup:1", actor="system:x")
    await drain()

    assert len(graph_api.sent) == 2  # the first reply and the interrupted call; no re-send
    message = next(m for m in outbound(db) if m["id"] == mid)
    assert message["wa_message_id"] == wamid
    assert message["status"] == "sent" and message["sent_at"] is not None
    assert message["attempts"] == 1
    adopted = [e for e in events(db, "message.sent") if e["message_id"] == mid]
    assert [e["data"]["adopted"] for e in adopted] == [True]


@pytest.mark.parametrize("change", ["human_owner", "window_closed"])
async def test_what_meta_accepted_is_recorded_as_sent_even_if_it_could_not_be_sent_now(
    client, db, graph_api, change
):
    cid = await start(client, graph_api)
    mid, wamid = await interrupted_send(client, db, cid, key="reply:late", actor="bot:traza")
    if change == "human_owner":
        db.execute("UPDATE conversations SET owner='human' WHERE id=%s", (cid,))
    else:
        db.execute(
            "UPDATE conversations SET last_inbound_at = now() - interval '25 hours' WHERE id=%s",
            (cid,),
        )
    await drain()

    assert len(graph_api.sent) == 2
    message = next(m for m in outbound(db) if m["id"] == mid)
    assert message["wa_message_id"] == wamid and message["status"] == "sent"
    assert not events(db, "message.skipped") and not events(db, "message.send_failed")


async def test_send_interrupted_before_any_answer_is_sent_once(client, db, graph_api):
    from traza.outbound.outbox import request_delivery

    cid = await start(client, graph_api)
    mid = await queue(cid, key="followup:2", text="¿Sigues ahí?", deliver=False)
    # Claimed by a worker that died before reaching the provider: nothing came back.
    db.execute("UPDATE messages SET status='sending', attempts=1 WHERE id=%s", (mid,))
    await request_delivery(cid)
    await drain()

    assert [b["biz_opaque_callback_data"] for b in graph_api.sent[1:]] == ["followup:2"]
    message = next(m for m in outbound(db) if m["id"] == mid)
    assert message["status"] == "accepted" and message["attempts"] == 2


async def test_a_send_that_timed_out_after_meta_accepted_it_is_adopted_on_retry(
    client, db, graph_api, monkeypatch
):
    from traza.outbound import sender

    cid = await start(client, graph_api)
    graph_api.delay = 1.0
    async with httpx.AsyncClient(timeout=0.3) as impatient:
        monkeypatch.setattr(sender, "_client", impatient)
        mid = await queue(cid, key="slow:1", text="¿Sigues ahí?")
        await drain()
    graph_api.delay = 0.0

    # The answer was lost: the outcome is unknown, so the message stays 'sending'.
    message = next(m for m in outbound(db) if m["id"] == mid)
    assert message["status"] == "sending" and "ReadTimeout" in message["error_title"]
    [failed] = events(db, "message.send_failed")
    assert failed["data"]["will_retry"] is True and "unknown" in failed["data"]["outcome"]
    assert [j["status"] for j in delivery_jobs(db) if j["status"] == "todo"] == ["todo"]

    # Meta had accepted it: its status webhook carries our callback data.
    wamid = graph_api.requests[-1]["wamid"]
    status_update = status(wamid, "sent", biz_opaque_callback_data="slow:1")
    assert (await post_webhook(client, wa_payload(statuses=[status_update]))).status_code == 200
    retry_now(db)
    await drain()

    assert len(graph_api.sent) == 2  # the first reply and the timed-out one; no re-send
    message = next(m for m in outbound(db) if m["id"] == mid)
    assert message["wa_message_id"] == wamid and message["status"] == "sent"


# 10. No token: the local outbox ------------------------------------------------------------


async def test_without_an_access_token_the_local_outbox_is_used(client, db):
    graph = GraphAPI()
    async with LocalServer(graph.app()) as server:
        configure(WHATSAPP_API_BASE=server.url, WHATSAPP_ACCESS_TOKEN=None)
        await say(client, "hola")

    [message] = outbound(db)
    assert message["status"] == "accepted" and message["channel"] == "local"
    assert message["wa_message_id"].startswith("local.")
    assert graph.requests == []
    [sent] = events(db, "message.sent")
    assert sent["data"]["channel"] == "local"


async def test_a_contact_who_writes_again_is_reachable_again(client, db, graph_api):
    cid = await start(client, graph_api)
    db.execute(
        "UPDATE contacts SET unreachable_at = now() "
        "WHERE id = (SELECT contact_id FROM conversations WHERE id = %s)",
        (cid,),
    )
    await say(client, "hola de nuevo")
    contact = db.execute("SELECT unreachable_at FROM contacts").fetchone()
    assert contact["unreachable_at"] is None
    assert len(graph_api.sent) == 2  # the new reply went out
