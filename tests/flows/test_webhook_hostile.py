"""Signed but hostile webhook bodies: never a 5xx, always stored, text made storable.

Meta redelivers for days whatever it does not get a 2xx for, so a body it signed must be
acknowledged once it is stored. Lone UTF-16 surrogates (escaped or as raw bytes), bytes
that are not UTF-8, NULs, absurd nesting and fields of the wrong type are all signed here
with the app secret; each one leaves exactly one `webhook_events` row with the raw bytes,
and the messages that can be read are stored with their text repaired.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import httpx
import psycopg
import pytest
from sqlalchemy.exc import DataError

from tests.support import drain, sign, text_message, wa_payload
from traza.ingest.payload import clean_text, decode, sanitise

URL = "/webhooks/whatsapp"
WA_ID = "5215550001111"


def wamid() -> str:
    return f"wamid.{uuid.uuid4().hex}"


def one_message(body_text: Any, *, name: Any = "María G.", **raw: Any) -> dict[str, Any]:
    message = text_message("x", id=wamid()) | raw
    message["text"] = {"body": body_text}
    return wa_payload(
        messages=[message], contacts=[{"profile": {"name": name}, "wa_id": message["from"]}]
    )


def wamid_of(payload: dict[str, Any]) -> str:
    return str(payload["entry"][0]["changes"][0]["value"]["messages"][0]["id"])


def escaped(payload: Any) -> bytes:
    """JSON as most encoders write it: non-ASCII (and lone surrogates) as \\u escapes."""
    return json.dumps(payload).encode()


def raw_utf8(payload: Any) -> bytes:
    """JSON with characters as raw UTF-8 bytes, surrogates encoded as if they were any
    other code point (CESU-8 / WTF-8: what a careless encoder emits)."""
    return json.dumps(payload, ensure_ascii=False).encode("utf-8", "surrogatepass")


async def post_signed(client: httpx.AsyncClient, body: bytes) -> httpx.Response:
    return await client.post(
        URL,
        content=body,
        headers={"Content-Type": "application/json", "X-Hub-Signature-256": sign(body)},
    )


def events_with(db: Any, body: bytes) -> list[dict[str, Any]]:
    rows = db.execute("SELECT * FROM webhook_events WHERE body = %s", (body,)).fetchall()
    return [dict(r) for r in rows]


def message_row(db: Any, wa_message_id: str) -> dict[str, Any]:
    row = db.execute(
        "SELECT m.*, c.profile_name FROM messages m "
        "JOIN conversations v ON v.id = m.conversation_id "
        "JOIN contacts c ON c.id = v.contact_id WHERE m.wa_message_id = %s",
        (wa_message_id,),
    ).fetchone()
    assert row is not None, f"message {wa_message_id} was not stored"
    return dict(row)


# --- text PostgreSQL cannot hold: repaired, stored, the raw body kept byte for byte ---------

READABLE: dict[str, tuple[bytes, str, str, str]] = {}


def _readable(
    name: str,
    encode: Any,
    text: str,
    profile: str,
    want_text: str,
    want_profile: str,
) -> None:
    payload = one_message(text, name=profile)
    READABLE[name] = (encode(payload), wamid_of(payload), want_text, want_profile)


_readable("escaped-high", escaped, "hola \ud800 mundo", "Ana", "hola \ufffd mundo", "Ana")
_readable("escaped-low", escaped, "fin\udfff", "Ana", "fin\ufffd", "Ana")
_readable("escaped-in-name", escaped, "hola", "Mar\ud83da", "hola", "Mar\ufffda")
_readable("escaped-reversed-pair", escaped, "\ude00\ud83d", "Ana", "\ufffd\ufffd", "Ana")
_readable("escaped-valid-pair", escaped, "ok \U0001f600", "Ana", "ok \U0001f600", "Ana")
_readable("raw-high", raw_utf8, "hola \ud800 mundo", "Ana", "hola \ufffd mundo", "Ana")
_readable("raw-in-name", raw_utf8, "hola", "\udc80José", "hola", "\ufffdJosé")
_readable("raw-pair-halves", raw_utf8, "ok \ud83d\ude00", "Ana", "ok \U0001f600", "Ana")
_readable("escaped-nul", escaped, "ho\u0000la", "A\u0000na", "hola", "Ana")
_readable("raw-nul", raw_utf8, "ho\u0000la", "Ana", "hola", "Ana")
_readable("surrogate-and-nul", escaped, "\u0000\ud800x", "Ana", "\ufffdx", "Ana")


def _not_utf8() -> tuple[bytes, str, str, str]:
    payload = one_message("caf@", name="Jos@")
    body = escaped(payload).replace(b"caf@", b"caf\xe9").replace(b"Jos@", b"Jos\xff\xfe")
    return body, wamid_of(payload), "caf\ufffd", "Jos\ufffd\ufffd"


READABLE["latin-1-bytes"] = _not_utf8()


@pytest.mark.parametrize("case", READABLE.values(), ids=READABLE.keys())
async def test_text_postgres_cannot_hold_is_repaired_and_stored(client, db, case) -> None:
    body, wa_message_id, want_text, want_profile = case
    response = await post_signed(client, body)
    assert response.status_code == 200, response.text
    assert response.json()["messages"] == 1 and "flagged" not in response.json()
    (event,) = events_with(db, body)  # the raw bytes, as signed
    assert event["problem"] is None and event["messages"] == 1
    row = message_row(db, wa_message_id)
    assert row["text"] == want_text
    assert row["content"]["body"] == want_text
    assert row["profile_name"] == want_profile
    assert row["webhook_event_id"] == event["id"]  # the raw body, for audit
    trace = db.execute(
        "SELECT count(*) AS n FROM trace_events WHERE kind = 'message.received'"
    ).fetchone()
    assert trace["n"] == 1


async def test_surrogates_in_keys_statuses_and_other_types(client, db) -> None:
    location = {
        "from": WA_ID,
        "id": wamid(),
        "timestamp": str(int(time.time())),
        "type": "location",
        "location": {"latitude": 1, "longitude": 2, "name": "Pla\ud800za", "k\udfffey": "v"},
    }
    failed = {
        "id": "wamid.unknown-to-us",
        "status": "failed",
        "timestamp": str(int(time.time())),
        "recipient_id": WA_ID,
        "errors": [{"code": 131026, "title": "Undeliverable \ud800"}],
    }
    payload = wa_payload(messages=[location], statuses=[failed])
    body = escaped(payload)
    response = await post_signed(client, body)
    assert response.status_code == 200, response.text
    assert (response.json()["messages"], response.json()["statuses"]) == (1, 1)
    row = message_row(db, location["id"])
    assert row["content"]["name"] == "Pla\ufffdza"
    assert row["content"]["k\ufffdey"] == "v"
    status = db.execute("SELECT error_title FROM message_statuses").fetchone()
    assert status["error_title"] == "Undeliverable \ufffd"
    assert len(events_with(db, body)) == 1


async def test_a_repaired_message_is_answered(client, db) -> None:
    payload = one_message("Hola \ud800, ¿cómo va mi aplicación?", name="\udfffMaría")
    response = await post_signed(client, escaped(payload))
    assert response.status_code == 200, response.text
    await drain()
    row = message_row(db, wamid_of(payload))
    assert row["processed_at"] is not None
    failed = db.execute(
        "SELECT count(*) AS n FROM procrastinate_jobs WHERE status = 'failed'"
    ).fetchone()
    assert failed["n"] == 0
    out = db.execute("SELECT count(*) AS n FROM messages WHERE direction = 'out'").fetchone()
    assert out["n"] >= 1


# --- shapes traza cannot read: stored, flagged, acknowledged -------------------------------


def _odd_types() -> dict[str, Any]:
    base = text_message("x", id=wamid())
    return {
        "body-is-a-number": one_message(12345),
        "body-is-a-list": one_message(["a", "\ud800"]),
        "body-is-an-object": one_message({"nested": "\u0000"}),
        "body-is-true": one_message(True),
        "body-is-null": one_message(None),
        "name-is-a-number": one_message("hola", name=42),
        "name-is-a-list": one_message("hola", name=["a"]),
        "timestamp-is-text": one_message("hola", timestamp="ayer"),
        "timestamp-is-huge": one_message("hola", timestamp=str(10**30)),
        "timestamp-is-negative": one_message("hola", timestamp="-99999999999999"),
        "type-is-a-number": wa_payload(messages=[base | {"type": 7}]),
        "context-is-a-string": one_message("hola", context="\ud800"),
        "huge-integer-in-content": one_message("hola", extra=10**300),
        "tiny-float": one_message("hola", extra=5e-324),
    }


ODD = _odd_types()


@pytest.mark.parametrize("payload", ODD.values(), ids=ODD.keys())
async def test_fields_of_odd_types_never_make_a_5xx(client, db, payload) -> None:
    body = escaped(payload)
    response = await post_signed(client, body)
    assert response.status_code == 200, response.text
    (event,) = events_with(db, body)
    if event["problem"] is None:  # read: the message is stored
        message_row(db, wamid_of(payload))
    else:
        assert response.json()["flagged"] == event["problem"]


def _envelope(value: dict[str, Any]) -> dict[str, Any]:
    change = {"field": "messages", "value": value}
    return {"object": "whatsapp_business_account", "entry": [{"id": "W", "changes": [change]}]}


def _nested(depth: int) -> Any:
    value: Any = []
    for _ in range(depth - 1):
        value = [value]
    return value


UNREADABLE: dict[str, bytes] = {
    "not-json": b"{not json",
    "empty": b"",
    "truncated": b'{"object": "whatsapp_business_account", "entry": [',
    "utf-16": '{"object": "whatsapp_business_account"}'.encode("utf-16"),
    "deeply-nested-lists": b"[" * 100_000 + b"]" * 100_000,
    "deeply-nested-objects": b'{"a":' * 50_000 + b"1" + b"}" * 50_000,
    "nested-70-in-a-message": escaped(one_message("hola", x=_nested(70))),
    "huge-integer": b'{"object": "whatsapp_business_account", "entry": [], "n": 1'
    + b"0" * 5000
    + b"}",
    "nan": b'{"object": "whatsapp_business_account", "entry": [], "n": NaN}',
    "float-overflow": b'{"object": "whatsapp_business_account", "entry": [], "n": 1e999}',
    "raw-nul-outside-strings": b'{"object": "whatsapp_business_account",\x00 "entry": []}',
    "top-level-string": escaped("\ud800"),
    "wrong-object": escaped({"object": "page\ud800", "entry": []}),
    "entry-id-is-a-float": escaped(
        {"object": "whatsapp_business_account", "entry": [{"id": 1.5, "changes": []}]}
    ),
    "phone-number-id-is-a-number": escaped(
        _envelope({"metadata": {"phone_number_id": 123}, "messages": [text_message("x")]})
    ),
    "message-without-sender": escaped(
        _envelope({"metadata": {"phone_number_id": "1"}, "messages": [{"id": "\ud800\u0000"}]})
    ),
    "message-id-too-long-once-repaired": escaped(
        _envelope({"metadata": {"phone_number_id": "1"}, "messages": [{"id": "\ud800" * 300}]})
    ),
}


@pytest.mark.parametrize("body", UNREADABLE.values(), ids=UNREADABLE.keys())
async def test_unreadable_bodies_are_stored_flagged_and_acknowledged(client, db, body) -> None:
    response = await post_signed(client, body)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["messages"] == 0 and answer["flagged"]
    (event,) = events_with(db, body)
    assert event["id"] == answer["event_id"]
    assert event["problem"] == answer["flagged"]
    assert event["problem"].startswith(("body is not valid JSON", "not a WhatsApp payload"))
    assert "\x00" not in event["problem"]
    assert db.execute("SELECT count(*) AS n FROM messages").fetchone()["n"] == 0


async def test_a_body_the_database_refuses_is_kept_flagged(client, db, monkeypatch) -> None:
    """Content that passes parsing but not the server (a data exception) is not retried."""

    async def refuse(**_: Any) -> Any:
        raise DataError("INSERT …", {}, psycopg.errors.NumericValueOutOfRange("out of range"))

    monkeypatch.setattr("api.routes.webhooks.ingest", refuse)
    body = escaped(one_message("hola"))
    response = await post_signed(client, body)
    assert response.status_code == 200, response.text
    (event,) = events_with(db, body)
    assert event["problem"] == response.json()["flagged"]
    assert event["problem"].startswith("not ingested: the database refused its content")
    assert "hola" not in event["problem"]  # no values of the body in the reason


async def test_unsigned_hostile_bodies_are_still_refused_and_not_stored(client, db) -> None:
    body = escaped(one_message("hola \ud800"))
    response = await client.post(URL, content=body, headers={"X-Hub-Signature-256": "sha256=0"})
    assert response.status_code == 401
    assert db.execute("SELECT count(*) AS n FROM webhook_events").fetchone()["n"] == 0


async def test_every_hostile_body_in_a_row_is_stored(client, db) -> None:
    """The target: signed hostile bodies, 0 × 5xx and 100% stored."""
    bodies = [case[0] for case in READABLE.values()]
    bodies += [escaped(p) for p in ODD.values()] + list(UNREADABLE.values())
    codes = [(await post_signed(client, body)).status_code for body in bodies]
    assert codes == [200] * len(bodies)
    stored = db.execute("SELECT count(*) AS n FROM webhook_events").fetchone()["n"]
    assert stored == len(bodies)


# --- the helpers themselves ----------------------------------------------------------------


def test_clean_text() -> None:
    assert clean_text("plain") == "plain"
    assert clean_text("a\x00b") == "ab"
    assert clean_text("\ud800") == "\ufffd"
    assert clean_text("\ud83d\ude00") == "\U0001f600"  # two raw halves of one pair
    assert clean_text("x\udfff\ud800y") == "x\ufffd\ufffdy"
    assert clean_text("\x01\t\n") == "\x01\t\n"  # control characters are storable


def test_decode_repairs_without_changing_what_was_fine() -> None:
    fine = {"a": ["ñ", 1, 2.5, None, True, {"b": "\U0001f600"}]}
    assert decode(json.dumps(fine).encode()) == fine
    assert decode(json.dumps(fine, ensure_ascii=False).encode()) == fine
    assert decode(b'{"k\\u0000": "\\ud800"}') == {"k": "\ufffd"}
    assert decode('\ufeff{"a": 1}'.encode()) == {"a": 1}  # a UTF-8 byte-order mark
    assert sanitise({"x": ["\ud800", {"\x00": 1}]}) == {"x": ["\ufffd", {"": 1}]}
