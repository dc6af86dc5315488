"""E-mail and SMS for the follow-up agent, and falling back from WhatsApp to them.

A real SMTP server (aiosmtpd), a fake SMS provider and a fake Graph API, each over a
real socket; follow-ups driven by the scheduler tables under a frozen clock.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from tests.fakes.servers import GraphAPI, LocalServer, free_port
from tests.fakes.sms import SmsProvider
from tests.fakes.smtp import SmtpServer
from tests.support import PHONE_NUMBER_ID, configure, drain, fire_timers, post_webhook, wa_payload
from tests.support.recruiting import CANDIDATE, VACANCY, WA, agent_config, at, event, followups
from traza.clock import FrozenClock

SENDER = "Talento <talento@example.com>"


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    with SmtpServer() as server:
        configure(
            TRAZA_SMTP_HOST="127.0.0.1",
            TRAZA_SMTP_PORT=str(server.port),
            TRAZA_SMTP_STARTTLS="false",
            TRAZA_EMAIL_FROM=SENDER,
        )
        yield server


@pytest.fixture
async def sms() -> AsyncIterator[SmsProvider]:
    provider = SmsProvider()
    async with LocalServer(provider.app()) as server:
        configure(TRAZA_SMS_URL=f"{server.url}/messages", TRAZA_SMS_TOKEN=provider.token)
        yield provider


def outbound(db: Any) -> list[dict[str, Any]]:
    return db.execute(
        "SELECT id, type, text, content, status, channel, idempotency_key, wa_message_id, "
        "error_code, error_title FROM messages WHERE direction = 'out' ORDER BY id"
    ).fetchall()


def events(db: Any, kind: str) -> list[dict[str, Any]]:
    return db.execute(
        "SELECT data, message_id FROM trace_events WHERE kind = %s ORDER BY id", (kind,)
    ).fetchall()


def whatsapp_sends(graph_api: GraphAPI) -> list[dict[str, Any]]:
    return [r["body"] for r in graph_api.requests if "to" in r["body"]]


async def apply(client: httpx.AsyncClient, frozen: FrozenClock, **candidate: Any) -> None:
    """Day 1, 10:00: María applies (her confirmation is due at 11:00)."""
    frozen.set(at(1, 10))
    await event(
        client,
        type="application.created",
        occurred_at=frozen.now(),
        candidate={k: v for k, v in (CANDIDATE | candidate).items() if v is not None},
        vacancy=VACANCY,
        application_id="app-1",
    )


async def candidate_writes(client: httpx.AsyncClient, text: str) -> None:
    message = {
        "from": WA,
        "id": f"wamid.{uuid.uuid4().hex}",
        "timestamp": str(int(time.time())),
        "type": "text",
        "text": {"body": text},
    }
    response = await post_webhook(client, wa_payload(messages=[message]))
    assert response.status_code == 200
    await drain()


async def queue(
    cid: int,
    *,
    key: str,
    channel: str,
    text: str = "Hola María, ¿sigues interesada en la vacante?",
    kind: str = "text",
    content: dict[str, Any] | None = None,
) -> int:
    """Write a bot message to the outbox on a channel, as the graph does, and deliver it."""
    from traza.db.engine import session_scope
    from traza.outbound.outbox import queue_message
    from traza.outbound.sender import deliver

    async with session_scope() as session:
        message_id = await queue_message(
            session,
            conversation_id=cid,
            key=key,
            actor="bot:seguimiento",
            kind=kind,
            text_body=text,
            content={"body": text, "proactive": True} | (content or {}),
            channel=channel,
        )
    assert message_id is not None
    await deliver(cid)
    return message_id


def conversation(db: Any) -> int:
    return int(db.execute("SELECT id FROM conversations").fetchone()["id"])


# 1. E-mail and SMS -------------------------------------------------------------------


async def test_an_email_follow_up_goes_out_with_its_subject_and_body_and_is_traced(
    client: httpx.AsyncClient, db: Any, frozen: FrozenClock, graph_api: GraphAPI, smtp: SmtpServer
) -> None:
    agent_config(**{"channels: [whatsapp, email]": "channels: [email, whatsapp]"})
    await apply(client, frozen)
    frozen.set(at(1, 11))
    await fire_timers()

    assert whatsapp_sends(graph_api) == []
    [mail] = smtp.messages
    assert smtp.envelopes == [{"from": "talento@example.com", "to": ["maria@example.com"]}]
    assert mail["To"] == "maria@example.com" and mail["From"] == SENDER
    assert mail["Subject"] == "Recibimos tu aplicación para Desarrolladora Backend"
    body = mail.get_content()
    assert body.startswith("Hola María, recibimos tu aplicación para Desarrolladora Backend.")
    assert "Equipo de Talento - Tu Empresa" in body

    [message] = outbound(db)
    assert (message["channel"], message["status"], message["type"]) == ("email", "accepted", "text")
    assert message["wa_message_id"] == mail["Message-ID"]
    assert "fallback" not in message["content"]  # WhatsApp is never a fallback target
    [sent] = events(db, "message.sent")
    assert sent["message_id"] == message["id"]
    assert sent["data"]["channel"] == "email"
    assert sent["data"]["subject"] == mail["Subject"]
    [drafted] = events(db, "followup.drafted")
    assert drafted["data"]["channel"] == "email"
    row = db.execute(
        "SELECT status, channel, message_id FROM followups WHERE trigger = 'application_received'"
    ).fetchone()
    assert row == {"status": "sent", "channel": "email", "message_id": message["id"]}


async def test_an_sms_follow_up_goes_to_the_candidates_phone(
    client: httpx.AsyncClient, db: Any, frozen: FrozenClock, sms: SmsProvider
) -> None:
    agent_config(**{"channels: [whatsapp, email]": "channels: [sms]"})
    await apply(client, frozen, phone="+34600111222")
    frozen.set(at(1, 11))
    await fire_timers()

    [request] = sms.requests
    assert request["authorization"] == f"Bearer {sms.token}"
    assert request["body"]["to"] == "+34600111222"
    assert request["body"]["text"].startswith("Hola María, recibimos tu aplicación")
    [message] = outbound(db)
    assert request["body"]["reference"] == message["idempotency_key"]
    assert (message["channel"], message["status"]) == ("sms", "accepted")
    assert message["wa_message_id"].startswith("sms-")
    [sent] = events(db, "message.sent")
    assert sent["data"]["channel"] == "sms" and sent["data"]["wa_message_id"].startswith("sms-")


# 2. Fallback -------------------------------------------------------------------------


async def test_channel_fallback_whatsapp_unreachable_goes_by_email(
    client: httpx.AsyncClient, db: Any, frozen: FrozenClock, graph_api: GraphAPI, smtp: SmtpServer
) -> None:
    agent_config()  # channels: [whatsapp, email]
    await apply(client, frozen)
    graph_api.fail_next(131026, "Message undeliverable")
    frozen.set(at(1, 11))
    await fire_timers()

    [attempt] = whatsapp_sends(graph_api)
    assert attempt["template"]["name"] == "aplicacion_recibida"
    [mail] = smtp.messages
    assert mail["To"] == "maria@example.com"
    assert mail["Subject"] == "Recibimos tu aplicación para Desarrolladora Backend"
    assert mail.get_content().startswith("Hola María, recibimos tu aplicación")

    original, moved = outbound(db)
    assert (original["channel"], original["status"], original["error_code"]) == (
        "whatsapp",
        "failed",
        131026,
    )
    assert (moved["channel"], moved["status"]) == ("email", "accepted")
    assert moved["idempotency_key"] == f"{original['idempotency_key']}:email"
    assert moved["text"] == original["text"]  # the text the guardrails checked
    assert moved["content"]["fallback_of"] == original["id"]
    assert moved["content"]["proactive"] is True
    [fallback] = events(db, "message.fallback")
    assert fallback["message_id"] == original["id"]
    assert fallback["data"]["from"] == "whatsapp" and fallback["data"]["to"] == "email"
    assert "131026" in fallback["data"]["reason"]
    assert fallback["data"]["message_id"] == moved["id"]
    assert db.execute("SELECT unreachable_at FROM contacts").fetchone()["unreachable_at"]

    # The next follow-up goes by e-mail straight away: WhatsApp is known to be unreachable.
    frozen.set(at(4, 10))
    await fire_timers()
    assert len(whatsapp_sends(graph_api)) == 1
    assert len(smtp.messages) == 2
    status_update = smtp.messages[-1]
    assert status_update["Subject"].startswith("Hola María, te escribo")  # no subject: 1st line
    assert len(events(db, "message.fallback")) == 1
    drafted = events(db, "followup.drafted")[-1]["data"]
    assert drafted["trigger"] == "no_activity" and drafted["channel"] == "email"
    assert "131026" in drafted["unavailable"]["whatsapp"]
    assert outbound(db)[-1]["channel"] == "email" and outbound(db)[-1]["status"] == "accepted"


async def test_a_missing_address_moves_on_to_the_next_channel_of_the_plan(
    client: httpx.AsyncClient,
    db: Any,
    frozen: FrozenClock,
    graph_api: GraphAPI,
    smtp: SmtpServer,
    sms: SmsProvider,
) -> None:
    agent_config()
    await apply(client, frozen, email=None)
    await candidate_writes(client, "hola")
    db.execute("UPDATE contacts SET unreachable_at = now()")
    later = await queue(
        conversation(db),
        key="followup:99",
        channel="whatsapp",
        kind="template",
        content={
            "name": "aplicacion_recibida",
            "params": ["María", "Desarrolladora Backend"],
            "fallback": {"channels": ["email", "sms"], "text": "Hola María, ¿sigues ahí?"},
        },
    )

    assert len(whatsapp_sends(graph_api)) == 1  # the reply to "hola" only
    assert smtp.messages == []
    [texted] = sms.sent
    assert texted["to"] == f"+{WA}" and texted["text"] == "Hola María, ¿sigues ahí?"
    rows = {m["idempotency_key"]: m for m in outbound(db)}
    assert rows["followup:99"]["status"] == "skipped" and rows["followup:99"]["id"] == later
    assert rows["followup:99:email"]["status"] == "failed"
    assert rows["followup:99:email"]["error_title"] == "the candidate has no e-mail address"
    assert rows["followup:99:email:sms"]["status"] == "accepted"
    steps = [(e["data"]["from"], e["data"]["to"]) for e in events(db, "message.fallback")]
    assert steps == [("whatsapp", "email"), ("email", "sms")]


# 3. Limits on every channel ------------------------------------------------------------


async def test_an_opted_out_candidate_gets_nothing_on_any_channel(
    client: httpx.AsyncClient,
    db: Any,
    frozen: FrozenClock,
    graph_api: GraphAPI,
    smtp: SmtpServer,
    sms: SmsProvider,
) -> None:
    agent_config(**{"channels: [whatsapp, email]": "channels: [email, sms, whatsapp]"})
    await apply(client, frozen, phone="+34600111222")
    await candidate_writes(client, "baja")
    assert len(whatsapp_sends(graph_api)) == 1  # the opt-out confirmation

    frozen.set(at(1, 11))
    await fire_timers()
    [first] = [f for f in followups(db) if f["trigger"] == "application_received"]
    assert (first["status"], first["reason"]) == ("cancelled", "the candidate opted out")

    # Messages already in the outbox when the candidate opted out are held too.
    cid = conversation(db)
    await queue(cid, key="followup:98", channel="email")
    await queue(
        cid,
        key="followup:97",
        channel="whatsapp",
        content={"fallback": {"channels": ["sms"], "text": "Hola"}},
    )
    assert smtp.messages == [] and sms.requests == []
    assert len(whatsapp_sends(graph_api)) == 1
    skipped = {m["idempotency_key"]: m for m in outbound(db) if m["status"] == "skipped"}
    assert set(skipped) == {"followup:98", "followup:97"}
    assert all("opted out" in m["error_title"] for m in skipped.values())
    assert events(db, "message.fallback") == []


async def test_the_bot_is_silent_on_email_while_a_human_owns_the_conversation(
    client: httpx.AsyncClient, db: Any, frozen: FrozenClock, graph_api: GraphAPI, smtp: SmtpServer
) -> None:
    from tests.support import ADMIN

    agent_config()
    await apply(client, frozen)
    await candidate_writes(client, "hola")
    cid = conversation(db)
    taken = await client.post(f"/conversations/{cid}/takeover", headers=ADMIN)
    assert taken.status_code == 200, taken.text
    message_id = await queue(cid, key="followup:96", channel="email")

    assert smtp.messages == []
    row = next(m for m in outbound(db) if m["id"] == message_id)
    assert row["status"] == "skipped" and "human" in row["error_title"]


async def test_a_missing_email_fails_the_message_with_a_clear_reason(
    client: httpx.AsyncClient, db: Any, frozen: FrozenClock, graph_api: GraphAPI, smtp: SmtpServer
) -> None:
    agent_config(**{"channels: [whatsapp, email]": "channels: [email]"})
    await apply(client, frozen, email=None)
    frozen.set(at(1, 11))
    await fire_timers()

    assert smtp.messages == [] and whatsapp_sends(graph_api) == []
    [message] = outbound(db)
    assert (message["channel"], message["status"]) == ("email", "failed")
    assert message["error_title"] == "the candidate has no e-mail address"
    [failed] = events(db, "message.send_failed")
    assert failed["message_id"] == message["id"]
    assert failed["data"] == {"status": "failed", "reason": "the candidate has no e-mail address"}
    [drafted] = events(db, "followup.drafted")
    assert drafted["data"]["unavailable"] == {"email": "the candidate has no e-mail address"}
    jobs = db.execute(
        "SELECT count(*) AS n FROM procrastinate_jobs WHERE status = 'todo' "
        "AND task_name = 'deliver_outbox'"
    ).fetchone()
    assert jobs["n"] == 0  # not retried


async def test_a_channel_that_is_not_configured_fails_clearly(
    client: httpx.AsyncClient, db: Any, frozen: FrozenClock, graph_api: GraphAPI
) -> None:
    configure(TRAZA_SMTP_HOST=None, TRAZA_EMAIL_FROM=None, TRAZA_SMS_URL=None)
    agent_config()
    await apply(client, frozen)
    await candidate_writes(client, "hola")
    cid = conversation(db)
    by_email = await queue(cid, key="followup:95", channel="email")
    by_sms = await queue(cid, key="followup:94", channel="sms")

    rows = {m["id"]: m for m in outbound(db)}
    assert rows[by_email]["status"] == "failed"
    assert "TRAZA_SMTP_HOST" in rows[by_email]["error_title"]
    assert rows[by_sms]["status"] == "failed"
    assert "TRAZA_SMS_URL" in rows[by_sms]["error_title"]


# 4. WhatsApp templates: named parameters and quick-reply payloads --------------------------


async def test_templates_with_named_params_and_button_payloads(graph_api: GraphAPI) -> None:
    from traza.channels.whatsapp import WhatsAppChannel
    from traza.settings import get_settings

    async with httpx.AsyncClient() as http:
        channel = WhatsAppChannel(
            client=http, settings=get_settings(), phone_number_id=PHONE_NUMBER_ID
        )
        await channel.send_template(
            to=WA,
            name="confirmar_entrevista",
            language="es",
            params={"nombre": "María", "fecha": "03/03/2026"},
            callback="followup:7",
            button_payloads=["interview:confirm:7", "interview:reschedule:7"],
        )
    [request] = graph_api.requests
    assert request["body"]["template"] == {
        "name": "confirmar_entrevista",
        "language": {"code": "es"},
        "components": [
            {
                "type": "body",
                "parameters": [
                    {"type": "text", "parameter_name": "nombre", "text": "María"},
                    {"type": "text", "parameter_name": "fecha", "text": "03/03/2026"},
                ],
            },
            {
                "type": "button",
                "sub_type": "quick_reply",
                "index": "0",
                "parameters": [{"type": "payload", "payload": "interview:confirm:7"}],
            },
            {
                "type": "button",
                "sub_type": "quick_reply",
                "index": "1",
                "parameters": [{"type": "payload", "payload": "interview:reschedule:7"}],
            },
        ],
    }


async def test_the_interview_confirmation_template_carries_its_button_payloads(
    client: httpx.AsyncClient, db: Any, frozen: FrozenClock, graph_api: GraphAPI
) -> None:
    agent_config()
    await apply(client, frozen)
    await event(
        client,
        type="interview.scheduled",
        application_id="app-1",
        interview_id="int-1",
        starts_at=at(3, 11).isoformat(),
        video_link="https://meet.example.com/abc",
    )
    frozen.set(at(2, 11))  # 24 h before; outside the window: the approved template
    await fire_timers()
    interview_id = db.execute("SELECT id FROM interviews").fetchone()["id"]
    # Both due timers fire in this drain (the application's confirmation too), in any order.
    asks = [
        b
        for b in whatsapp_sends(graph_api)
        if b.get("template", {}).get("name") == "confirmar_entrevista"
    ]
    assert len(asks) == 1, db.execute(
        "SELECT trigger, status, reason, due_at FROM followups"
    ).fetchall()
    [ask] = asks
    body, confirm, reschedule = ask["template"]["components"]
    assert [p["text"] for p in body["parameters"]] == [
        "María",
        "Desarrolladora Backend",
        "04/03/2026",
        "11:00",
    ]
    assert confirm == {
        "type": "button",
        "sub_type": "quick_reply",
        "index": "0",
        "parameters": [{"type": "payload", "payload": f"interview:confirm:{interview_id}"}],
    }
    assert reschedule["parameters"][0]["payload"] == f"interview:reschedule:{interview_id}"


# 5. Provider errors ----------------------------------------------------------------------


async def test_smtp_and_sms_errors_are_transient_or_permanent(
    smtp: SmtpServer, sms: SmsProvider
) -> None:
    from traza.channels.base import SendError
    from traza.channels.email import EmailChannel
    from traza.channels.sms import SmsChannel
    from traza.settings import get_settings

    mail = EmailChannel(settings=get_settings(), subject="Hola")
    smtp.refuse_next("550 5.1.1 No such user")
    with pytest.raises(SendError) as permanent:
        await mail.send_text(to="nadie@example.com", text="Hola", callback="k:1")
    assert permanent.value.code == 550 and not permanent.value.retryable
    smtp.refuse_next("451 4.3.0 Try again later")
    with pytest.raises(SendError) as transient:
        await mail.send_text(to="maria@example.com", text="Hola", callback="k:2")
    assert transient.value.code == 451 and transient.value.retryable
    first = await mail.send_text(to="maria@example.com", text="Hola", callback="k:3")
    again = await mail.send_text(to="maria@example.com", text="Hola", callback="k:3")
    assert first == again  # one Message-ID per outbox message, whatever the attempt

    configure(TRAZA_SMTP_PORT=str(free_port()))  # nothing listens there
    with pytest.raises(SendError) as down:
        await EmailChannel(settings=get_settings()).send_text(
            to="maria@example.com", text="Hola", callback="k:4"
        )
    assert down.value.retryable and not down.value.maybe_sent

    async with httpx.AsyncClient() as http:
        texts = SmsChannel(client=http, settings=get_settings())
        for status, retryable in ((503, True), (429, True), (400, False)):
            sms.fail_next(status, "nope")
            with pytest.raises(SendError) as failed:
                await texts.send_text(to="+34600111222", text="Hola", callback=f"s:{status}")
            assert failed.value.code == status and failed.value.retryable is retryable
            assert "nope" in failed.value.title
        accepted = await texts.send_text(to="+34600111222", text="Hola", callback="s:ok")
    assert accepted.startswith("sms-")
