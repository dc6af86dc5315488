"""The WhatsApp webhook against a real PostgreSQL.

Meta's verification handshake; signatures over the raw body (unsigned input answered
with a 4xx and nothing stored; a signed body that cannot be read stored, flagged and
acknowledged, never refused); batched, duplicated and concurrent deliveries; every message
type Meta sends; and delivery statuses that arrive out of order, twice, or before we
know our own message's id.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request

from tests.fakes.servers import LocalServer
from tests.support import (
    APP_SECRET,
    PHONE_NUMBER_ID,
    configure,
    drain,
    post_webhook,
    say,
    sign,
    status,
    text_message,
    wa_payload,
)
from traza.settings import Settings

URL = "/webhooks/whatsapp"
WA_ID = "5215550001111"
OTHER_WA_ID = "5215550002222"
OTHER_PHONE_NUMBER_ID = "109876543299"
BSUID = "MX.13491208655302741918"


# --- payload builders (Meta's shapes) ------------------------------------------------


def new_wamid() -> str:
    return f"wamid.HBgM{uuid.uuid4().hex.upper()}"


def message(kind: str, body: Any = None, *, wa_id: str = WA_ID, **extra: Any) -> dict[str, Any]:
    """One entry of `value.messages[]` of type `kind` with `body` under the type's key."""
    raw: dict[str, Any] = {
        "from": wa_id,
        "id": new_wamid(),
        "timestamp": str(int(time.time())),
        "type": kind,
    }
    if body is not None:
        raw[kind] = body
    return raw | extra


def contact(wa_id: str = WA_ID, name: str = "María G.") -> dict[str, Any]:
    return {"profile": {"name": name}, "wa_id": wa_id}


def change(
    *,
    messages: list[dict[str, Any]] | None = None,
    statuses: list[dict[str, Any]] | None = None,
    contacts: list[dict[str, Any]] | None = None,
    phone_number_id: str = PHONE_NUMBER_ID,
    display: str = "15551234567",
) -> dict[str, Any]:
    value: dict[str, Any] = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": display, "phone_number_id": phone_number_id},
    }
    if contacts is not None:
        value["contacts"] = contacts
    if messages is not None:
        value["messages"] = messages
    if statuses is not None:
        value["statuses"] = statuses
    return {"field": "messages", "value": value}


def envelope(*entries: dict[str, Any]) -> dict[str, Any]:
    return {"object": "whatsapp_business_account", "entry": list(entries)}


def entry(*changes: dict[str, Any], waba: str = "102290129340398") -> dict[str, Any]:
    return {"id": waba, "changes": list(changes)}


# --- helpers ---------------------------------------------------------------------------


def count(db: Any, table: str, where: str = "TRUE", params: Any = None) -> int:
    return int(
        db.execute(f"SELECT count(*) AS n FROM {table} WHERE {where}", params).fetchone()["n"]
    )


def stored(db: Any, wamid: str) -> dict[str, Any]:
    row = db.execute("SELECT * FROM messages WHERE wa_message_id = %s", (wamid,)).fetchone()
    assert row is not None, f"message {wamid} was not stored"
    return dict(row)


def turn_jobs(db: Any) -> int:
    return count(db, "procrastinate_jobs", "task_name = 'process_conversation'")


def assert_nothing_stored(db: Any) -> None:
    assert count(db, "webhook_events") == 0
    assert count(db, "messages") == 0
    assert count(db, "message_statuses") == 0
    assert count(db, "procrastinate_jobs") == 0


def assert_only_flagged(db: Any, body: bytes, response: httpx.Response) -> None:
    """The raw body kept once with why it was not read, and nothing made of it."""
    event = db.execute("SELECT * FROM webhook_events").fetchone()
    assert count(db, "webhook_events") == 1 and event["body"] == body
    assert event["id"] == response.json()["event_id"]
    assert event["problem"] == response.json()["flagged"]
    assert count(db, "messages") == 0
    assert count(db, "message_statuses") == 0
    assert count(db, "procrastinate_jobs") == 0


async def post_raw(
    client: httpx.AsyncClient, body: bytes, signature: str | bytes | None = None
) -> httpx.Response:
    headers: dict[str, str | bytes] = {"Content-Type": "application/json"}
    if signature is not None:
        headers["X-Hub-Signature-256"] = signature
    return await client.post(URL, content=body, headers=headers)


def encode(payload: Any) -> bytes:
    return json.dumps(payload).encode()


# --- 1. GET: Meta's verification handshake ----------------------------------------------


async def test_verification_echoes_the_challenge_as_plain_text(client):
    response = await client.get(
        URL,
        params={
            "hub.mode": "subscribe",
            "hub.verify_token": "test-verify-token",
            "hub.challenge": "1158201444",
        },
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert response.text == "1158201444"


@pytest.mark.parametrize(
    "params",
    [
        {"hub.mode": "subscribe", "hub.verify_token": "wrong-token", "hub.challenge": "42"},
        {"hub.mode": "subscribe", "hub.verify_token": "TEST-VERIFY-TOKEN", "hub.challenge": "42"},
        {"hub.mode": "unsubscribe", "hub.verify_token": "test-verify-token", "hub.challenge": "42"},
        {"hub.verify_token": "test-verify-token", "hub.challenge": "42"},
        {"hub.mode": "subscribe", "hub.challenge": "42"},
        {"hub.mode": "subscribe", "hub.verify_token": "", "hub.challenge": "42"},
        {"hub.mode": "subscribe", "hub.verify_token": "test-verify-token"},
        {},
    ],
    ids=[
        "wrong-token",
        "token-case",
        "wrong-mode",
        "no-mode",
        "no-token",
        "empty-token",
        "no-challenge",
        "no-params",
    ],
)
async def test_verification_refuses_anything_but_the_right_subscribe(client, params):
    response = await client.get(URL, params=params)
    assert response.status_code == 403
    assert response.json()["detail"] == "verification failed"
    assert "42" not in response.text


@pytest.mark.parametrize("configured", [None, ""], ids=["unset", "empty"])
async def test_verification_refuses_when_no_verify_token_is_configured(client, configured):
    configure(WHATSAPP_VERIFY_TOKEN=configured)
    response = await client.get(
        URL, params={"hub.mode": "subscribe", "hub.verify_token": "", "hub.challenge": "42"}
    )
    assert response.status_code == 403


# --- 2. POST: the signature over the raw body ----------------------------------------------


async def test_signed_post_is_stored_and_acknowledged(client, db):
    msg = text_message("Hola")
    response = await post_webhook(client, wa_payload(messages=[msg]))
    assert response.status_code == 200, response.text
    ack = response.json()
    assert ack["messages"] == 1 and ack["duplicates"] == 0 and ack["statuses"] == 0
    event = db.execute("SELECT id, signature FROM webhook_events").fetchone()
    assert event["id"] == ack["event_id"]
    assert event["signature"].startswith("sha256=")
    assert stored(db, msg["id"])["webhook_event_id"] == ack["event_id"]


def _sha1(body: bytes) -> str:
    return "sha1=" + hmac.new(APP_SECRET.encode(), body, hashlib.sha1).hexdigest()


BAD_SIGNATURES: dict[str, Callable[[bytes], str | bytes | None]] = {
    "missing": lambda body: None,
    "empty": lambda body: "",
    "zeros": lambda body: "sha256=" + "0" * 64,
    "other-body": lambda body: sign(body + b" "),
    "other-secret": lambda body: sign(body, "another-app-secret"),
    "no-prefix": lambda body: sign(body).removeprefix("sha256="),
    "truncated": lambda body: sign(body)[:-2],
    "sha1": _sha1,
    "non-ascii": lambda body: ("sha256=" + "é" * 64).encode(),
}


@pytest.mark.parametrize("make", BAD_SIGNATURES.values(), ids=BAD_SIGNATURES.keys())
async def test_bad_signature_is_refused_and_nothing_is_stored(client, db, make):
    body = encode(wa_payload(messages=[text_message("Hola")]))
    response = await post_raw(client, body, make(body))
    assert response.status_code == 401, response.text
    assert "X-Hub-Signature-256" in response.json()["detail"]
    assert_nothing_stored(db)


@pytest.mark.parametrize("secret", [None, ""], ids=["unset", "empty"])
async def test_without_an_app_secret_every_post_is_refused(client, db, secret):
    configure(WHATSAPP_APP_SECRET=secret)
    body = encode(wa_payload(messages=[text_message("Hola")]))
    for signature in (sign(body), sign(body, ""), None):
        response = await post_raw(client, body, signature)
        assert response.status_code == 403, response.text
        assert "WHATSAPP_APP_SECRET" in response.json()["detail"]
    assert_nothing_stored(db)


@pytest.fixture
def dev_secret() -> Iterator[str]:
    configure(WHATSAPP_APP_SECRET=None, TRAZA_DEV="1")
    path = Settings().dev_secret_path
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("local-dev-secret\n")
    yield "local-dev-secret"
    path.unlink(missing_ok=True)


async def test_dev_mode_accepts_posts_signed_with_the_dev_secret(client, db, dev_secret):
    msg = text_message("Hola desde simulate")
    refused = await post_webhook(client, wa_payload(messages=[msg]), secret=APP_SECRET)
    assert refused.status_code == 401
    accepted = await post_webhook(client, wa_payload(messages=[msg]), secret=dev_secret)
    assert accepted.status_code == 200, accepted.text
    assert stored(db, msg["id"])["text"] == "Hola desde simulate"


async def test_dev_mode_without_its_secret_file_refuses(client, db):
    configure(WHATSAPP_APP_SECRET=None, TRAZA_DEV="1")
    Settings().dev_secret_path.unlink(missing_ok=True)
    response = await post_webhook(client, wa_payload(messages=[text_message("Hola")]))
    assert response.status_code == 403
    assert_nothing_stored(db)


# --- 3. Signed bodies traza cannot read: stored raw, flagged with why, acknowledged ---------


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b"",
        b"\xff\xfe\x00\x01garbage",
        b'{"object": "whatsapp_business_account", "entry": [',
        b"[" * 100_000 + b"]" * 100_000,
        b'{"object": "whatsapp_business_account", "entry": [], "n": 1' + b"0" * 5000 + b"}",
        b'{"object": "whatsapp_business_account", "entry": [], "n": NaN}',
        b'{"object": "whatsapp_business_account", "entry": [], "n": 1e999}',
        b'{"object": "whatsapp_business_account", "entry": [], "a": '
        + b"[" * 70
        + b"]" * 70
        + b"}",
    ],
    ids=[
        "syntax",
        "empty",
        "not-utf8",
        "truncated",
        "deeply-nested",
        "huge-int",
        "nan",
        "float-overflow",
        "nested-70",
    ],
)
async def test_signed_malformed_json_is_stored_flagged_and_acknowledged(client, db, body):
    response = await post_raw(client, body, sign(body))
    assert response.status_code == 200, response.text  # Meta would redeliver anything else
    assert "JSON" in response.json()["flagged"]
    assert_only_flagged(db, body, response)


def _ok_message() -> dict[str, Any]:
    return text_message("Hola")


NOT_WHATSAPP: dict[str, Any] = {
    "top-level-list": [],
    "top-level-string": "hola",
    "wrong-object": {"object": "page", "entry": []},
    "no-object": {"entry": []},
    "entry-not-a-list": {"object": "whatsapp_business_account", "entry": {"id": "1"}},
    "entry-item-not-object": {"object": "whatsapp_business_account", "entry": ["x"]},
    "changes-not-a-list": envelope({"id": "1", "changes": {"field": "messages"}}),
    "value-not-object": envelope(entry({"field": "messages", "value": []})),
    "message-without-id": envelope(entry(change(messages=[{"from": WA_ID, "type": "text"}]))),
    "message-id-not-string": envelope(
        entry(change(messages=[{"from": WA_ID, "id": 12345, "type": "text"}]))
    ),
    "message-without-sender": envelope(
        entry(change(messages=[{"id": new_wamid(), "type": "text", "text": {"body": "x"}}]))
    ),
    "no-phone-number-id": envelope(
        entry(
            {
                "field": "messages",
                "value": {
                    "metadata": {"display_phone_number": "1555"},
                    "messages": [_ok_message()],
                },
            }
        )
    ),
    "no-metadata": envelope(entry({"field": "messages", "value": {"messages": [_ok_message()]}})),
    "metadata-not-object": envelope(
        entry({"field": "messages", "value": {"metadata": ["x"], "messages": [_ok_message()]}})
    ),
    "messages-not-a-list": envelope(entry(change(messages=_ok_message()))),
    "contacts-not-a-list": envelope(
        entry(change(messages=[_ok_message()], contacts={"wa_id": WA_ID}))
    ),
    "status-without-status": envelope(entry(change(statuses=[{"id": new_wamid()}]))),
    "message-id-too-long": envelope(
        entry(change(messages=[text_message("x", id="wamid." + "A" * 400)]))
    ),
    "sender-too-long": envelope(entry(change(messages=[text_message("x", wa_id="5" * 100)]))),
    "phone-number-id-too-long": envelope(
        entry(change(messages=[_ok_message()], phone_number_id="1" * 200))
    ),
}


@pytest.mark.parametrize("payload", NOT_WHATSAPP.values(), ids=NOT_WHATSAPP.keys())
async def test_json_that_is_not_a_whatsapp_payload_is_stored_flagged(client, db, payload):
    body = encode(payload)
    response = await post_webhook(client, body)
    assert response.status_code == 200, response.text
    flagged = response.json()["flagged"]
    assert isinstance(flagged, str) and flagged.startswith("not a WhatsApp payload: ")
    assert_only_flagged(db, body, response)


async def test_body_over_3_mb_is_a_413(client, db):
    body = encode(wa_payload(messages=[text_message("x" * (3 * 1024 * 1024))]))
    response = await post_raw(client, body, sign(body))
    assert response.status_code == 413
    assert "3 MB" in response.json()["detail"]
    assert_nothing_stored(db)


async def test_body_over_3_mb_without_a_content_length_is_a_413(client, db):
    body = encode(wa_payload(messages=[text_message("x" * (3 * 1024 * 1024))]))

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(body), 64 * 1024):
            yield body[start : start + 64 * 1024]

    response = await client.post(
        URL,
        content=chunks(),
        headers={"Content-Type": "application/json", "X-Hub-Signature-256": sign(body)},
    )
    assert response.status_code == 413
    assert_nothing_stored(db)


async def test_nul_characters_postgres_cannot_hold_are_removed(client, db):
    msg = text_message("hola\u0000mundo")
    msg["text"]["extra"] = {"nul\u0000key": "a\u0000b", "escaped": "\\u0000 stays"}
    loc = message("location", {"latitude": 19.4, "longitude": -99.13, "name": "N\u0000"})
    body = encode(wa_payload(messages=[msg, loc]))
    response = await post_webhook(client, body)
    assert response.status_code == 200, response.text
    row = stored(db, msg["id"])
    assert row["text"] == "holamundo"
    assert row["content"]["extra"] == {"nulkey": "ab", "escaped": "\\u0000 stays"}
    location = stored(db, loc["id"])
    assert location["type"] == "location" and location["content"]["name"] == "N"
    assert location["content"]["longitude"] == -99.13
    assert db.execute("SELECT body FROM webhook_events").fetchone()["body"] == body


# --- 4. Batches: several entries, changes, messages, contacts and numbers -------------------


async def test_batched_payload_stores_every_message_once_per_inbox_and_contact(client, db):
    a1, a2 = (text_message(t, wa_id=WA_ID) for t in ("hola", "¿siguen contratando?"))
    b1 = text_message("buenas", wa_id=OTHER_WA_ID)
    a3 = text_message("hola otra línea", wa_id=WA_ID)
    b2, b3 = (text_message(t, wa_id=OTHER_WA_ID) for t in ("uno", "dos"))
    payload = envelope(
        entry(
            change(
                messages=[a1, b1, a2],
                contacts=[contact(WA_ID, "María G."), contact(OTHER_WA_ID, "Pedro R.")],
            ),
            change(
                messages=[a3],
                contacts=[contact(WA_ID, "María G.")],
                phone_number_id=OTHER_PHONE_NUMBER_ID,
                display="15557654321",
            ),
        ),
        entry(
            change(
                messages=[b2, b3],
                contacts=[contact(OTHER_WA_ID, "Pedro R.")],
                phone_number_id=OTHER_PHONE_NUMBER_ID,
                display="15557654321",
            ),
            change(statuses=[status(new_wamid(), "delivered")]),
            waba="102290129340399",
        ),
    )
    payload["entry"][0]["time"] = int(time.time())
    # Odd but valid formatting: the stored body must be these bytes, not a re-encoding.
    body = json.dumps(payload, indent=3, ensure_ascii=False, sort_keys=True).encode()
    response = await post_webhook(client, body)
    assert response.status_code == 200, response.text
    assert response.json() | {"event_id": 0} == {
        "event_id": 0,
        "messages": 6,
        "duplicates": 0,
        "statuses": 1,
    }

    event = db.execute("SELECT body, messages, statuses FROM webhook_events").fetchall()
    assert len(event) == 1 and event[0]["body"] == body
    assert (event[0]["messages"], event[0]["statuses"]) == (6, 1)

    inboxes = db.execute(
        "SELECT phone_number_id, display_phone_number FROM inboxes ORDER BY phone_number_id"
    ).fetchall()
    assert [(i["phone_number_id"], i["display_phone_number"]) for i in inboxes] == [
        (PHONE_NUMBER_ID, "15551234567"),
        (OTHER_PHONE_NUMBER_ID, "15557654321"),
    ]
    contacts = db.execute("SELECT wa_id, profile_name FROM contacts ORDER BY wa_id").fetchall()
    assert [(c["wa_id"], c["profile_name"]) for c in contacts] == [
        (WA_ID, "María G."),
        (OTHER_WA_ID, "Pedro R."),
    ]

    placed = db.execute(
        """
        SELECT m.wa_message_id, m.text, i.phone_number_id, c.wa_id, m.conversation_id
        FROM messages m JOIN conversations v ON v.id = m.conversation_id
        JOIN inboxes i ON i.id = v.inbox_id JOIN contacts c ON c.id = v.contact_id
        ORDER BY m.id
        """
    ).fetchall()
    expected = {
        a1["id"]: (PHONE_NUMBER_ID, WA_ID),
        a2["id"]: (PHONE_NUMBER_ID, WA_ID),
        b1["id"]: (PHONE_NUMBER_ID, OTHER_WA_ID),
        a3["id"]: (OTHER_PHONE_NUMBER_ID, WA_ID),
        b2["id"]: (OTHER_PHONE_NUMBER_ID, OTHER_WA_ID),
        b3["id"]: (OTHER_PHONE_NUMBER_ID, OTHER_WA_ID),
    }
    assert {p["wa_message_id"]: (p["phone_number_id"], p["wa_id"]) for p in placed} == expected
    # Within one conversation, messages keep the order Meta sent them in.
    assert [p["text"] for p in placed if p["wa_message_id"] in (b2["id"], b3["id"])] == [
        "uno",
        "dos",
    ]
    assert count(db, "conversations") == 4
    assert len({p["conversation_id"] for p in placed}) == 4
    assert turn_jobs(db) == 4


async def test_unknown_fields_and_other_change_fields_are_tolerated(client, db):
    msg = text_message("Hola") | {
        "brand_new_field": {"nested": [1, 2, 3]},
        "referral": {"source_type": "ad", "source_id": "120210", "headline": "Vacante"},
    }
    payload = envelope(
        entry(
            change(messages=[msg], contacts=[contact() | {"identity_key_hash": "abc"}]),
            {"field": "message_template_status_update", "value": {"event": "APPROVED"}},
            {"field": "account_update", "value": {"whatever": True}},
        )
        | {"time": 1700000000, "future": "yes"}
    )
    payload["entry"][0]["changes"][0]["value"] |= {
        "future_value_field": {"a": 1},
        "errors": [],
    }
    payload["entry"][0]["changes"][0]["value"]["metadata"]["future"] = "x"
    payload["future_top_level"] = {"k": "v"}
    response = await post_webhook(client, payload)
    assert response.status_code == 200, response.text
    assert response.json()["messages"] == 1
    assert stored(db, msg["id"])["text"] == "Hola"
    assert count(db, "webhook_events") == 1


async def test_odd_but_harmless_shapes_are_tolerated(client, db):
    msg = text_message("Hola") | {"from": int(WA_ID)}
    odd_failure = status(
        new_wamid(), "failed", errors={"code": "99999999999", "title": "Something new"}
    )
    payload = envelope(
        entry(
            change(
                messages=[msg],
                contacts=[{"profile": "not an object", "wa_id": WA_ID}],
                statuses=[odd_failure, status(new_wamid(), "sent", errors=None)],
            )
        )
    )
    response = await post_webhook(client, payload)
    assert response.status_code == 200, response.text
    assert response.json()["messages"] == 1 and response.json()["statuses"] == 2
    person = db.execute("SELECT wa_id, profile_name FROM contacts").fetchone()
    assert dict(person) == {"wa_id": WA_ID, "profile_name": None}
    kept = db.execute(
        "SELECT error_code, error_title FROM message_statuses WHERE status='failed'"
    ).fetchone()
    assert dict(kept) == {"error_code": None, "error_title": "Something new"}


async def test_only_non_message_changes_are_stored_raw_and_start_nothing(client, db):
    payload = envelope(
        entry({"field": "message_template_status_update", "value": {"event": "APPROVED"}})
    )
    response = await post_webhook(client, payload)
    assert response.status_code == 200, response.text
    assert response.json()["messages"] == 0
    assert count(db, "webhook_events") == 1
    assert count(db, "messages") == 0 and turn_jobs(db) == 0


# --- 5. Every message type Meta sends ------------------------------------------------------

CONTEXT = {"from": "15551234567", "id": "wamid.HBgMNTIxNTU1MDAwMTExMRUCABEYEjQ0"}

# (raw message, expected type, expected text, expected content subset)
TYPES: dict[str, tuple[dict[str, Any], str, str | None, dict[str, Any]]] = {
    "text": (message("text", {"body": "Hola, ¿cómo va?"}), "text", "Hola, ¿cómo va?", {}),
    "button_reply": (
        message(
            "interactive",
            {
                "type": "button_reply",
                "button_reply": {"id": "confirm_yes", "title": "Sí, confirmo"},
            },
            context=CONTEXT,
        ),
        "interactive",
        "Sí, confirmo",
        {"reply_id": "confirm_yes", "context": CONTEXT},
    ),
    "list_reply": (
        message(
            "interactive",
            {
                "type": "list_reply",
                "list_reply": {
                    "id": "slot_tue_10",
                    "title": "Martes 10:00",
                    "description": "Entrevista presencial",
                },
            },
            context=CONTEXT,
        ),
        "interactive",
        "Martes 10:00",
        {"reply_id": "slot_tue_10"},
    ),
    "flow_reply": (
        message(
            "interactive",
            {
                "type": "nfm_reply",
                "nfm_reply": {
                    "name": "flow",
                    "body": "Sent",
                    "response_json": '{"flow_token": "t1", "cv": "yes"}',
                },
            },
        ),
        "flow",  # a WhatsApp Flow completion: its answers, parsed
        None,
        {"name": "flow", "response": {"flow_token": "t1", "cv": "yes"}},
    ),
    "template_button": (
        message("button", {"payload": "CONFIRM_INTERVIEW", "text": "Confirmar"}, context=CONTEXT),
        "button",
        "Confirmar",
        {"payload": "CONFIRM_INTERVIEW", "text": "Confirmar"},
    ),
    "image": (
        message(
            "image",
            {
                "caption": "mi credencial",
                "mime_type": "image/jpeg",
                "sha256": "qWn0mTmhO6JcS6cP3Tg0JJbNHyAF4kRQkc4Z8bJdKwU=",
                "id": "1479537139650973",
            },
        ),
        "image",
        "mi credencial",
        {"id": "1479537139650973", "mime_type": "image/jpeg"},
    ),
    "image_no_caption": (
        message("image", {"mime_type": "image/jpeg", "sha256": "x", "id": "1479537139650974"}),
        "image",
        None,
        {"id": "1479537139650974"},
    ),
    "voice_note": (
        message(
            "audio",
            {
                "mime_type": "audio/ogg; codecs=opus",
                "sha256": "x",
                "id": "2310578752626113",
                "voice": True,
            },
        ),
        "audio",
        None,
        {"id": "2310578752626113", "voice": True},
    ),
    "video": (
        message(
            "video",
            {"caption": "mi presentación", "mime_type": "video/mp4", "sha256": "x", "id": "77"},
        ),
        "video",
        "mi presentación",
        {"id": "77"},
    ),
    "document": (
        message(
            "document",
            {
                "caption": "CV actualizado",
                "filename": "cv_maria.pdf",
                "mime_type": "application/pdf",
                "sha256": "x",
                "id": "1003383421387256",
            },
        ),
        "document",
        "CV actualizado",
        {"id": "1003383421387256", "filename": "cv_maria.pdf"},
    ),
    "location": (
        message(
            "location",
            {
                "latitude": 19.4326,
                "longitude": -99.1332,
                "name": "Oficinas Traza",
                "address": "Av. Reforma 222, CDMX",
                "url": "https://maps.example/x",
            },
        ),
        "location",
        None,  # a place, not words to classify: acknowledged as a location
        {"latitude": 19.4326, "longitude": -99.1332, "name": "Oficinas Traza"},
    ),
    "location_pin": (
        message("location", {"latitude": 19.4, "longitude": -99.1}),
        "location",
        None,
        {"latitude": 19.4},
    ),
    "contacts": (
        message(
            "contacts",
            [
                {
                    "name": {"formatted_name": "Ana López", "first_name": "Ana"},
                    "phones": [{"phone": "+52 55 1234 5678", "wa_id": "5215512345678"}],
                }
            ],
        ),
        "contacts",
        None,
        {"contacts": [{"name": {"formatted_name": "Ana López", "first_name": "Ana"}}]},
    ),
    "order": (
        message(
            "order",
            {
                "catalog_id": "1537",
                "text": "Quiero este",
                "product_items": [
                    {
                        "product_retailer_id": "SKU-1",
                        "quantity": 1,
                        "item_price": 150,
                        "currency": "MXN",
                    }
                ],
            },
        ),
        "order",
        "Quiero este",
        {"catalog_id": "1537"},
    ),
    "unsupported": (
        message(
            "unsupported",
            {"type": "edit"},
            errors=[
                {
                    "code": 131051,
                    "title": "Message type unknown",
                    "message": "Message type unknown",
                    "error_data": {"details": "Message type is currently not supported."},
                }
            ],
        ),
        "unsupported",
        None,
        {"type": "edit", "errors": [{"code": 131051, "title": "Message type unknown"}]},
    ),
    "future_type": (
        message("hologram", {"id": "h-1", "depth": 3, "layers": [{"a": 1}]}, novel={"x": 1}),
        "hologram",
        None,
        {"id": "h-1", "depth": 3},
    ),
    "no_type": (
        {"from": WA_ID, "id": new_wamid(), "timestamp": "1700000000"},
        "unknown",
        None,
        {},
    ),
}


def contains(actual: Any, expected: Any) -> bool:
    """`expected` is a subset of `actual` (dicts by key, lists element-wise by prefix)."""
    if isinstance(expected, dict):
        return isinstance(actual, dict) and all(
            k in actual and contains(actual[k], v) for k, v in expected.items()
        )
    if isinstance(expected, list):
        return (
            isinstance(actual, list)
            and len(actual) >= len(expected)
            and all(contains(a, e) for a, e in zip(actual, expected, strict=False))
        )
    return bool(actual == expected)


@pytest.mark.parametrize("case", TYPES.values(), ids=TYPES.keys())
async def test_every_message_type_is_stored_with_its_text_and_content(client, db, case):
    raw, kind, text, content = case
    raw = json.loads(json.dumps(raw)) | {"id": new_wamid()}
    response = await post_webhook(client, wa_payload(messages=[raw]))
    assert response.status_code == 200, response.text
    row = stored(db, raw["id"])
    assert (row["type"], row["text"]) == (kind, text)
    assert contains(row["content"], content), row["content"]
    assert (row["direction"], row["actor"], row["status"]) == ("in", "customer", "received")
    assert row["processed_at"] is None and turn_jobs(db) == 1
    received = db.execute(
        "SELECT data FROM trace_events WHERE kind='message.received' AND message_id=%s",
        (row["id"],),
    ).fetchone()
    assert received["data"] == {"type": kind, "wa_message_id": raw["id"]}


@pytest.mark.parametrize(
    "raw, text",
    [
        (message("reaction", {"message_id": "wamid.out.1", "emoji": "👍"}), "👍"),
        (message("reaction", {"message_id": "wamid.out.1"}), None),  # reaction removed
    ],
    ids=["reaction", "reaction-removed"],
)
async def test_reaction_is_recorded_but_starts_no_turn(client, db, raw, text):
    response = await post_webhook(client, wa_payload(messages=[raw]))
    assert response.status_code == 200, response.text
    row = stored(db, raw["id"])
    assert (row["type"], row["text"]) == ("reaction", text)
    assert row["content"]["message_id"] == "wamid.out.1"


async def test_a_sticker_is_recorded_but_starts_no_turn(client, db):
    raw = message(
        "sticker", {"mime_type": "image/webp", "sha256": "x", "id": "1228429398", "animated": False}
    )
    response = await post_webhook(client, wa_payload(messages=[raw]))
    assert response.status_code == 200, response.text
    row = stored(db, raw["id"])
    assert (row["type"], row["text"]) == ("sticker", None)
    assert row["content"]["id"] == "1228429398" and row["processed_at"] is not None
    assert turn_jobs(db) == 0
    assert row["processed_at"] is not None
    assert turn_jobs(db) == 0
    trace = db.execute("SELECT data FROM trace_events WHERE message_id=%s", (row["id"],)).fetchone()
    assert trace["data"]["starts_turn"] is False
    last_inbound = db.execute("SELECT last_inbound_at FROM conversations").fetchone()
    assert last_inbound["last_inbound_at"] is None  # a reaction does not open the 24 h window


async def test_system_message_without_contacts_is_recorded_but_starts_no_turn(client, db):
    raw = message(
        "system",
        {
            "body": f"User María G. changed from {WA_ID} to 5215550009999",
            "wa_id": "5215550009999",
            "type": "user_changed_number",
        },
    )
    response = await post_webhook(client, envelope(entry(change(messages=[raw]))))
    assert response.status_code == 200, response.text
    row = stored(db, raw["id"])
    assert row["type"] == "system" and row["text"].startswith("User María G. changed")
    assert row["content"]["type"] == "user_changed_number"
    assert row["processed_at"] is not None and turn_jobs(db) == 0


async def test_message_from_a_business_scoped_user_id_only(client, db):
    raw = text_message("Hola, soy usuaria con nombre de usuario")
    del raw["from"]
    raw["from_user_id"] = BSUID
    payload = envelope(
        entry(
            change(
                messages=[raw],
                contacts=[{"profile": {"name": "Ana", "username": "@ana.r"}, "user_id": BSUID}],
            )
        )
    )
    response = await post_webhook(client, payload)
    assert response.status_code == 200, response.text
    row = stored(db, raw["id"])
    person = db.execute(
        "SELECT c.wa_id, c.bsuid, c.profile_name FROM contacts c "
        "JOIN conversations v ON v.contact_id = c.id WHERE v.id = %s",
        (row["conversation_id"],),
    ).fetchone()
    assert dict(person) == {"wa_id": None, "bsuid": BSUID, "profile_name": "Ana"}
    assert turn_jobs(db) == 1


async def test_contact_first_seen_by_bsuid_later_with_phone_is_one_contact(client, db):
    first = text_message("hola")
    del first["from"]
    first["from_user_id"] = BSUID
    contacts = [{"profile": {"name": "Ana"}, "user_id": BSUID}]
    r1 = await post_webhook(client, envelope(entry(change(messages=[first], contacts=contacts))))
    assert r1.status_code == 200, r1.text

    second = text_message("mi número es este") | {"from_user_id": BSUID}
    contacts = [{"profile": {"name": "Ana R."}, "wa_id": WA_ID, "user_id": BSUID}]
    r2 = await post_webhook(client, envelope(entry(change(messages=[second], contacts=contacts))))
    assert r2.status_code == 200, r2.text

    people = db.execute("SELECT wa_id, bsuid, profile_name FROM contacts").fetchall()
    assert [dict(p) for p in people] == [{"wa_id": WA_ID, "bsuid": BSUID, "profile_name": "Ana R."}]
    assert stored(db, first["id"])["conversation_id"] == stored(db, second["id"])["conversation_id"]


async def test_phone_contact_and_bsuid_contact_meeting_later_do_not_break_ingest(client, db):
    # Known by phone before BSUIDs existed; then a username-only message; then both ids.
    await post_webhook(client, wa_payload(messages=[text_message("hola")]))
    only_bsuid = text_message("hola de nuevo")
    del only_bsuid["from"]
    only_bsuid["from_user_id"] = BSUID
    await post_webhook(
        client,
        envelope(entry(change(messages=[only_bsuid], contacts=[{"user_id": BSUID}]))),
    )
    both = text_message("¿me escuchan?") | {"from_user_id": BSUID}
    response = await post_webhook(
        client,
        envelope(entry(change(messages=[both], contacts=[{"wa_id": WA_ID, "user_id": BSUID}]))),
    )
    assert response.status_code == 200, response.text
    phone_contact = db.execute(
        "SELECT c.wa_id FROM contacts c JOIN conversations v ON v.contact_id = c.id "
        "WHERE v.id = %s",
        (stored(db, both["id"])["conversation_id"],),
    ).fetchone()
    assert phone_contact["wa_id"] == WA_ID
    assert count(db, "contacts", "bsuid = %s", (BSUID,)) == 1


async def test_every_type_in_one_batch_is_handled_by_a_turn_without_failing(client, db):
    raws = [json.loads(json.dumps(case[0])) | {"id": new_wamid()} for case in TYPES.values()]
    raws.append(message("reaction", {"message_id": "wamid.out.1", "emoji": "❤️"}))
    response = await post_webhook(client, wa_payload(messages=raws))
    assert response.status_code == 200, response.text
    assert response.json()["messages"] == len(raws)
    await drain()
    failed = db.execute(
        "SELECT task_name, status FROM procrastinate_jobs WHERE status <> 'succeeded'"
    ).fetchall()
    assert failed == []
    assert count(db, "messages", "direction='in' AND processed_at IS NULL") == 0
    assert count(db, "messages", "direction='out'") >= 1


# --- 6. Duplicates ---------------------------------------------------------------------------


async def test_same_message_posted_three_times_is_stored_and_answered_once(client, db):
    payload = wa_payload(messages=[text_message("Hola, ¿cómo va mi aplicación?")])
    acks = []
    for _ in range(3):
        response = await post_webhook(client, payload)
        assert response.status_code == 200, response.text
        acks.append(response.json())
    assert [(a["messages"], a["duplicates"]) for a in acks] == [(1, 0), (0, 1), (0, 1)]
    assert count(db, "messages") == 1
    assert count(db, "webhook_events") == 3  # every delivery is kept raw
    assert count(db, "trace_events", "kind='message.received'") == 1
    await drain()
    assert count(db, "messages", "direction='out'") == 1


async def test_same_message_posted_ten_times_at_once_is_stored_and_answered_once(client, db):
    payload = wa_payload(messages=[text_message("Hola, ¿cómo va mi aplicación?")])
    responses = await asyncio.gather(
        *(post_webhook(client, payload) for _ in range(10)), return_exceptions=True
    )
    assert [getattr(r, "status_code", r) for r in responses] == [200] * 10
    assert sum(r.json()["messages"] for r in responses) == 1
    assert sum(r.json()["duplicates"] for r in responses) == 9
    assert count(db, "messages", "direction='in'") == 1
    assert count(db, "conversations") == 1 and count(db, "contacts") == 1
    await drain()
    assert count(db, "messages", "direction='out'") == 1


async def test_first_burst_to_a_new_number_is_stored_whole(client, db):
    """The first webhooks for a number, at once: none may use an inbox not yet committed."""
    payloads = [
        wa_payload(messages=[text_message("hola", wa_id=f"52155500{n:05d}")]) for n in range(12)
    ]
    responses = await asyncio.gather(
        *(post_webhook(client, p) for p in payloads), return_exceptions=True
    )
    assert [getattr(r, "status_code", r) for r in responses] == [200] * len(payloads)
    assert count(db, "inboxes") == 1
    assert count(db, "messages") == 12 and count(db, "conversations") == 12


async def test_concurrent_batches_over_the_same_contacts_in_any_order_all_succeed(client, db):
    """Redeliveries of overlapping batches, in opposite orders, at once: no deadlock."""
    for _ in range(2):  # the inbox is known (and cached) before the burst, as in production
        warm_up = await post_webhook(client, wa_payload(messages=[text_message("hola", wa_id="1")]))
        assert warm_up.status_code == 200
    forward = [text_message("a", wa_id=WA_ID), text_message("b", wa_id=OTHER_WA_ID)]
    backward = list(reversed(forward))
    contacts = [contact(WA_ID), contact(OTHER_WA_ID, "Pedro R.")]
    payloads = [
        envelope(entry(change(messages=batch, contacts=contacts))) for batch in (forward, backward)
    ] * 6
    responses = await asyncio.gather(
        *(post_webhook(client, p) for p in payloads), return_exceptions=True
    )
    assert [getattr(r, "status_code", r) for r in responses] == [200] * len(payloads)
    assert sum(r.json()["messages"] for r in responses) == 2
    assert count(db, "messages", "text IN ('a', 'b')") == 2
    assert count(db, "conversations") == 3


async def test_concurrent_status_batches_in_any_order_all_succeed(client, db):
    w1, w2 = new_wamid(), new_wamid()
    forward = [status(w1, "delivered"), status(w2, "delivered"), status(w1, "read")]
    backward = list(reversed(forward))
    payloads = [wa_payload(statuses=batch) for batch in (forward, backward)] * 6
    responses = await asyncio.gather(
        *(post_webhook(client, p) for p in payloads), return_exceptions=True
    )
    assert [getattr(r, "status_code", r) for r in responses] == [200] * len(payloads)
    assert sum(r.json()["statuses"] for r in responses) == 3
    assert count(db, "message_statuses") == 3


# --- 7. Delivery statuses ------------------------------------------------------------------


async def bot_reply(client: httpx.AsyncClient, db: Any) -> dict[str, Any]:
    """Have the bot answer one customer message; return our outbound message row."""
    await say(client, "Hola, ¿cómo va mi aplicación?")
    out = db.execute("SELECT * FROM messages WHERE direction='out'").fetchall()
    assert len(out) == 1 and out[0]["wa_message_id"], out
    return dict(out[0])


async def test_statuses_out_of_order_end_at_read_with_every_timestamp(client, db):
    out = await bot_reply(client, db)
    wamid, t0 = out["wa_message_id"], int(time.time())
    for state, ts in (("read", t0 + 20), ("delivered", t0 + 10), ("sent", t0)):
        response = await post_webhook(client, wa_payload(statuses=[status(wamid, state, ts=ts)]))
        assert response.status_code == 200 and response.json()["statuses"] == 1

    row = stored(db, wamid)
    assert row["status"] == "read"
    assert [int(row[k].timestamp()) for k in ("sent_at", "delivered_at", "read_at")] == [
        t0,
        t0 + 10,
        t0 + 20,
    ]
    moves = db.execute(
        "SELECT data FROM trace_events WHERE kind='message.status' AND message_id=%s ORDER BY id",
        (out["id"],),
    ).fetchall()
    assert [(m["data"]["status"], m["data"]["now"]) for m in moves] == [
        ("read", "read"),
        ("delivered", "read"),
        ("sent", "read"),
    ]


async def test_duplicate_statuses_are_stored_once(client, db):
    out = await bot_reply(client, db)
    wamid = out["wa_message_id"]
    batch = wa_payload(statuses=[status(wamid, "delivered"), status(wamid, "delivered")])
    first = await post_webhook(client, batch)
    assert first.status_code == 200 and first.json()["statuses"] == 1
    again = await asyncio.gather(
        *(post_webhook(client, batch) for _ in range(5)), return_exceptions=True
    )
    assert [getattr(r, "status_code", r) for r in again] == [200] * 5
    assert sum(r.json()["statuses"] for r in again) == 0
    assert count(db, "message_statuses", "wa_message_id=%s", (wamid,)) == 1
    assert count(db, "trace_events", "kind='message.status'") == 1
    assert stored(db, wamid)["status"] == "delivered"


async def test_failed_status_keeps_the_error_on_the_message(client, db):
    out = await bot_reply(client, db)
    wamid = out["wa_message_id"]
    failed = status(
        wamid,
        "failed",
        errors=[
            {
                "code": 131047,
                "title": "Re-engagement message",
                "message": "Re-engagement message",
                "error_data": {"details": "More than 24 hours have passed since the reply."},
            }
        ],
    )
    response = await post_webhook(client, wa_payload(statuses=[status(wamid, "sent"), failed]))
    assert response.status_code == 200 and response.json()["statuses"] == 2
    late = await post_webhook(client, wa_payload(statuses=[status(wamid, "delivered")]))
    assert late.status_code == 200

    row = stored(db, wamid)
    assert row["status"] == "failed"  # terminal: a late `delivered` does not revive it
    assert (row["error_code"], row["error_title"]) == (131047, "Re-engagement message")
    assert row["failed_at"] is not None and row["sent_at"] is not None
    kept = db.execute(
        "SELECT error_code, error_title FROM message_statuses WHERE status='failed'"
    ).fetchone()
    assert dict(kept) == {"error_code": 131047, "error_title": "Re-engagement message"}
    trace = db.execute(
        "SELECT data FROM trace_events WHERE kind='message.status' AND data->>'status'='failed'"
    ).fetchone()
    assert trace["data"]["error_code"] == 131047


async def test_status_for_a_message_we_do_not_know_is_kept(client, db):
    wamid = new_wamid()
    response = await post_webhook(client, wa_payload(statuses=[status(wamid, "delivered")]))
    assert response.status_code == 200 and response.json()["statuses"] == 1
    kept = db.execute("SELECT wa_message_id, status FROM message_statuses").fetchall()
    assert [dict(k) for k in kept] == [{"wa_message_id": wamid, "status": "delivered"}]
    assert count(db, "messages") == 0 and count(db, "trace_events") == 0


class GraphAPIRacingItsWebhooks:
    """Meta's `POST /{phone_number_id}/messages`, whose status webhooks overtake its reply.

    Before answering a send, it posts the `sent` and `delivered` statuses for the id it is
    about to return to traza's webhook, as Meta sometimes does under load.
    """

    def __init__(self, client: httpx.AsyncClient, db: Any) -> None:
        self.client = client
        self.db = db
        self.early: list[dict[str, Any]] = []

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.post("/{phone_number_id}/messages")
        async def messages(phone_number_id: str, request: Request) -> dict[str, Any]:
            body = await request.json()
            if body.get("status") == "read":
                return {"success": True}
            wamid = f"wamid.out.{uuid.uuid4().hex}"
            now = int(time.time())
            callback = body.get("biz_opaque_callback_data")
            hook = await post_webhook(
                self.client,
                wa_payload(
                    statuses=[
                        status(wamid, "sent", ts=now, biz_opaque_callback_data=callback),
                        status(wamid, "delivered", ts=now + 1, biz_opaque_callback_data=callback),
                    ]
                ),
            )
            self.early.append(
                {
                    "wamid": wamid,
                    "http": hook.status_code,
                    "statuses": hook.json().get("statuses"),
                    "known_yet": count(self.db, "messages", "wa_message_id=%s", (wamid,)),
                }
            )
            return {
                "messaging_product": "whatsapp",
                "contacts": [{"input": body.get("to"), "wa_id": body.get("to")}],
                "messages": [{"id": wamid}],
            }

        return app


async def test_status_that_arrives_before_the_send_response_is_applied(client, db):
    graph = GraphAPIRacingItsWebhooks(client, db)
    async with LocalServer(graph.app()) as server:
        configure(WHATSAPP_ACCESS_TOKEN="test-token", WHATSAPP_API_BASE=server.url)
        await say(client, "Hola, ¿cómo va mi aplicación?")

    assert len(graph.early) == 1
    early = graph.early[0]
    assert (early["http"], early["statuses"], early["known_yet"]) == (200, 2, 0)
    out = db.execute("SELECT * FROM messages WHERE direction='out'").fetchall()
    assert len(out) == 1
    row = out[0]
    assert row["wa_message_id"] == early["wamid"] and row["channel"] == "whatsapp"
    assert row["status"] == "delivered"
    assert row["sent_at"] is not None and row["delivered_at"] is not None
    assert count(db, "message_statuses", "wa_message_id=%s", (early["wamid"],)) == 2
    applied = db.execute(
        "SELECT data->>'status' AS s FROM trace_events "
        "WHERE kind='message.status' AND message_id=%s ORDER BY id",
        (row["id"],),
    ).fetchall()
    assert [a["s"] for a in applied] == ["sent", "delivered"]


async def test_a_status_left_unapplied_by_a_race_is_applied_by_the_sweep(client, db):
    """The webhook stored the status but could not see our message's id yet."""
    from traza.worker.tasks import recover

    await say(client, "hola")
    wamid = db.execute("SELECT wa_message_id FROM messages WHERE direction='out'").fetchone()[
        "wa_message_id"
    ]
    db.execute(
        "INSERT INTO message_statuses (wa_message_id, status, at) VALUES (%s, 'delivered', now())",
        (wamid,),
    )
    assert (await recover(stalled_after=5))["statuses"] == 1
    message = db.execute(
        "SELECT status, delivered_at FROM messages WHERE wa_message_id = %s", (wamid,)
    ).fetchone()
    assert message["status"] == "delivered" and message["delivered_at"] is not None
    assert (await recover(stalled_after=5))["statuses"] == 0  # applied once
    traced = db.execute("SELECT count(*) AS n FROM trace_events WHERE kind='message.status'")
    assert traced.fetchone()["n"] == 1
