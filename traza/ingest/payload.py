"""Meta's WhatsApp Cloud API webhook payload, parsed into plain inbound records.

Every `entry[]`, `changes[]`, `messages[]` and `statuses[]` is visited; unknown fields
and unknown message types are kept as they came rather than rejected.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any


class MalformedBody(ValueError):
    """The body is not strict JSON of a sensible depth; the message says why."""


class PayloadError(ValueError):
    """The body is JSON but not a WhatsApp webhook payload; the message says why."""


@dataclass(frozen=True, slots=True)
class InboundMessage:
    """A customer message as Meta delivered it, normalised for storage and the graph."""

    wa_message_id: str
    phone_number_id: str
    display_phone_number: str | None
    waba_id: str | None
    wa_id: str | None
    bsuid: str | None
    profile_name: str | None
    type: str
    text: str | None
    content: dict[str, Any]
    timestamp: datetime | None


@dataclass(frozen=True, slots=True)
class StatusUpdate:
    """A delivery status for a message we sent."""

    wa_message_id: str
    status: str
    timestamp: datetime | None
    recipient_id: str | None
    error_code: int | None
    error_title: str | None
    callback_data: str | None


@dataclass(frozen=True, slots=True)
class CallEvent:
    """A WhatsApp call event (`field: calls`): connect, terminate or a status."""

    call_id: str | None
    phone_number_id: str
    wa_id: str | None
    event: str | None
    direction: str | None
    status: str | None


@dataclass(slots=True)
class ParsedPayload:
    """Everything one webhook POST carried."""

    messages: list[InboundMessage] = field(default_factory=list)
    statuses: list[StatusUpdate] = field(default_factory=list)
    calls: list[CallEvent] = field(default_factory=list)
    ignored_changes: int = 0


# Meta's payloads nest about eight levels deep; far deeper is not a webhook.
MAX_DEPTH = 64
# Longest identifiers the database holds (see the `contacts`, `inboxes`, `messages`
# and `message_statuses` columns); Meta's own are far shorter.
MAX_WAMID = 256
MAX_PHONE_NUMBER_ID = 64
MAX_DISPLAY_PHONE_NUMBER = 32
MAX_WABA_ID = 64
MAX_WA_ID = 32
MAX_BSUID = 128
MAX_TYPE = 32
MAX_RECIPIENT = 64
MAX_CALLBACK = 512
MAX_PROFILE_NAME = 200
_INT32 = 2**31 - 1

# Types whose arrival is recorded but does not start a bot turn: a reaction, a sticker, a
# deleted message, an answer to a call-permission request, a system change (number or
# identity). `traza.ingest.effects` records what each changes.
SILENT_TYPES = frozenset(
    {
        "reaction",
        "system",
        "ephemeral",
        "request_welcome",
        "sticker",
        "revoke",
        "call_permission",
    }
)
MEDIA_TYPES = frozenset({"image", "audio", "video", "document", "sticker"})
# Interactive replies that are not a button or list answer, by their own type name.
INTERACTIVE_KINDS = {"nfm_reply": "flow", "call_permission_reply": "call_permission"}


def decode(body: bytes) -> Any:
    """Decode a webhook body as JSON, raising `MalformedBody` if it is not JSON at all.

    NaN, Infinity and numbers no float holds are refused, as is nesting deeper than
    `MAX_DEPTH`. Text PostgreSQL cannot hold is repaired rather than refused (the raw
    body is stored byte for byte elsewhere, for audit): bytes that are not UTF-8 and lone
    UTF-16 surrogates (U+D800 to U+DFFF, escaped in the JSON or as raw bytes) become
    U+FFFD; a pair spelled as two raw halves becomes the character it encodes; U+0000 is
    removed; other control characters inside strings are accepted.
    """
    text, repaired = _utf8_text(body)
    try:
        value = json.loads(
            text, strict=False, parse_constant=_refuse_constant, parse_float=_finite_float
        )
    except RecursionError:
        raise MalformedBody(f"nested deeper than {MAX_DEPTH} levels") from None
    except json.JSONDecodeError as exc:
        raise MalformedBody(f"{exc.msg} (line {exc.lineno}, column {exc.colno})") from None
    except ValueError as exc:  # integers too long to convert, NaN/Infinity, 1e999
        raise MalformedBody(str(exc)) from None
    if _deeper_than(value, MAX_DEPTH):
        raise MalformedBody(f"nested deeper than {MAX_DEPTH} levels")
    if repaired or _NEEDS_CLEANING.search(body):
        value = sanitise(value)
    return value


# What can put text PostgreSQL refuses into a decoded body that was valid UTF-8: escaped
# NULs and surrogates (a false positive, such as an escaped backslash before `u0000`,
# only costs a walk over the value), and raw NULs inside strings.
_NEEDS_CLEANING = re.compile(rb"\\u(?:0000|[dD][89a-fA-F])|\x00")


def _utf8_text(body: bytes) -> tuple[str, bool]:
    """The body as text, and whether bytes had to be repaired to get it."""
    try:
        return body.decode("utf-8").removeprefix("\ufeff"), False
    except UnicodeDecodeError:
        pass
    try:  # surrogates encoded as UTF-8 (CESU-8, WTF-8): `clean_text` pairs or replaces them
        return body.decode("utf-8", "surrogatepass").removeprefix("\ufeff"), True
    except UnicodeDecodeError:
        return body.decode("utf-8", "replace").removeprefix("\ufeff"), True


def clean_text(text: str) -> str:
    """`text` as PostgreSQL can store it: lone surrogates become U+FFFD, NULs go."""
    if "\x00" in text:
        text = text.replace("\x00", "")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        # Through UTF-16, two halves of a pair join and a lone half is replaced.
        return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return text


def sanitise(value: Any) -> Any:
    """`value` with `clean_text` applied to every string and key (depth already bounded)."""
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, list):
        return [sanitise(v) for v in value]
    if isinstance(value, dict):
        return {clean_text(k): sanitise(v) for k, v in value.items()}
    return value


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise ValueError(f"number out of range: {text[:40]}")
    return number


def _deeper_than(value: Any, limit: int) -> bool:
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            item = list(item.values())
        if not isinstance(item, list):
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in item)
    return False


def parse(payload: Any) -> ParsedPayload:
    """Parse a decoded webhook body, raising `PayloadError` if it is not Meta's shape."""
    if not isinstance(payload, dict):
        raise PayloadError("expected a JSON object")
    if payload.get("object") != "whatsapp_business_account":
        raise PayloadError("'object' must be 'whatsapp_business_account'")
    entries = payload.get("entry")
    if not isinstance(entries, list):
        raise PayloadError("'entry' must be a list")
    parsed = ParsedPayload()
    for entry in entries:
        if not isinstance(entry, dict) or not isinstance(entry.get("changes", []), list):
            raise PayloadError("each entry must be an object with a 'changes' list")
        waba_id = _identifier(entry.get("id"), "entry.id", MAX_WABA_ID)
        for change in entry.get("changes", []):
            _parse_change(change, waba_id, parsed)
    return parsed


def _parse_change(change: Any, waba_id: str | None, parsed: ParsedPayload) -> None:
    if not isinstance(change, dict) or not isinstance(change.get("value"), dict):
        raise PayloadError("each change must be an object with a 'value' object")
    if change.get("field", "messages") == "calls":
        _parse_calls(change["value"], parsed)
        return
    if change.get("field", "messages") != "messages":
        parsed.ignored_changes += 1  # template/account updates: stored raw, not processed
        return
    value = change["value"]
    metadata = value.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise PayloadError("value.metadata must be an object")
    phone_number_id = metadata.get("phone_number_id")
    if not isinstance(phone_number_id, str) or not phone_number_id:
        raise PayloadError("a messages change needs value.metadata.phone_number_id")
    _identifier(phone_number_id, "value.metadata.phone_number_id", MAX_PHONE_NUMBER_ID)
    display = _identifier(
        metadata.get("display_phone_number"),
        "value.metadata.display_phone_number",
        MAX_DISPLAY_PHONE_NUMBER,
    )
    profiles = _profiles(value.get("contacts"))
    for raw in _list(value.get("messages"), "messages"):
        parsed.messages.append(_message(raw, phone_number_id, display, waba_id, profiles))
    for raw in _list(value.get("statuses"), "statuses"):
        parsed.statuses.append(_status(raw))


def _parse_calls(value: dict[str, Any], parsed: ParsedPayload) -> None:
    found = value.get("metadata")
    metadata: dict[str, Any] = found if isinstance(found, dict) else {}
    phone_number_id = str(metadata.get("phone_number_id") or "")[:MAX_PHONE_NUMBER_ID]
    profiles = _profiles(value.get("contacts"))
    for raw in _list(value.get("calls"), "calls"):
        direction = _str(raw.get("direction"))
        user = raw.get("to") if direction == "BUSINESS_INITIATED" else raw.get("from")
        wa_id = _identifier(user, "calls[].from", MAX_WA_ID)
        if wa_id is None and len(profiles) == 1:
            wa_id = next(iter(profiles.values())).get("wa_id")
        parsed.calls.append(
            CallEvent(
                call_id=_str(raw.get("id")),
                phone_number_id=phone_number_id,
                wa_id=wa_id,
                event=_str(raw.get("event")),
                direction=direction,
                status=_str(raw.get("status")),
            )
        )
    for raw in _list(value.get("statuses"), "statuses"):  # call statuses ride along
        parsed.calls.append(
            CallEvent(
                call_id=_str(raw.get("id")),
                phone_number_id=phone_number_id,
                wa_id=_identifier(raw.get("recipient_id"), "statuses[].recipient_id", MAX_WA_ID),
                event="status",
                direction=None,
                status=_str(raw.get("status")),
            )
        )


def _list(value: Any, name: str) -> list[dict[str, Any]]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise PayloadError(f"'{name}' must be a list of objects")
    return value


def _identifier(value: Any, what: str, limit: int) -> str | None:
    """An id as text; None when absent; `PayloadError` when it cannot be one."""
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise PayloadError(f"{what} must be a string")
    text = str(value)
    if len(text) > limit:
        raise PayloadError(f"{what} is longer than {limit} characters")
    return text


def _profiles(contacts: Any) -> dict[str, dict[str, Any]]:
    profiles: dict[str, dict[str, Any]] = {}
    for contact in _list(contacts, "contacts"):
        profile = contact.get("profile")
        name = _str(profile.get("name")) if isinstance(profile, dict) else None
        info = {
            "wa_id": _identifier(contact.get("wa_id"), "contacts[].wa_id", MAX_WA_ID),
            "bsuid": _identifier(contact.get("user_id"), "contacts[].user_id", MAX_BSUID),
            "name": name[:MAX_PROFILE_NAME] if name else None,
        }
        for key in (info["wa_id"], info["bsuid"]):
            if key:
                profiles[key] = info
    return profiles


def _timestamp(value: Any) -> datetime | None:
    try:
        return datetime.fromtimestamp(int(value), tz=UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        return None


def _message(
    raw: dict[str, Any],
    phone_number_id: str,
    display_phone_number: str | None,
    waba_id: str | None,
    profiles: dict[str, dict[str, Any]],
) -> InboundMessage:
    wa_message_id = raw.get("id")
    if not isinstance(wa_message_id, str) or not wa_message_id:
        raise PayloadError("every message needs an 'id'")
    _identifier(wa_message_id, "messages[].id", MAX_WAMID)
    from_wa_id = _identifier(raw.get("from"), "messages[].from", MAX_WA_ID)
    from_bsuid = _identifier(raw.get("from_user_id"), "messages[].from_user_id", MAX_BSUID)
    sender = from_wa_id or from_bsuid
    if not sender:
        raise PayloadError(f"message {wa_message_id[:40]} has no sender ('from')")
    profile = profiles.get(sender, {})
    wa_id = from_wa_id or profile.get("wa_id")
    bsuid = from_bsuid or profile.get("bsuid")
    msg_type = _identifier(raw.get("type"), "messages[].type", MAX_TYPE) or "unknown"
    interactive = raw.get("interactive")
    if msg_type == "interactive" and isinstance(interactive, dict):
        msg_type = INTERACTIVE_KINDS.get(str(interactive.get("type")), msg_type)
    text, content = _content(msg_type, raw)
    if raw.get("context"):
        content["context"] = raw["context"]
    return InboundMessage(
        wa_message_id=wa_message_id,
        phone_number_id=phone_number_id,
        display_phone_number=display_phone_number,
        waba_id=waba_id,
        wa_id=wa_id,
        bsuid=bsuid,
        profile_name=profile.get("name"),
        type=msg_type,
        text=text,
        content=content,
        timestamp=_timestamp(raw.get("timestamp")),
    )


def _content(msg_type: str, raw: dict[str, Any]) -> tuple[str | None, dict[str, Any]]:
    """The text a classifier can read, and the type's own fields as stored content."""
    body = raw.get(msg_type)
    data: dict[str, Any] = dict(body) if isinstance(body, dict) else {}
    if msg_type == "text":
        return _str(data.get("body")), data
    if msg_type in ("flow", "call_permission"):
        body = raw.get("interactive") or {}
        reply = body.get(body.get("type")) if isinstance(body, dict) else None
        data = dict(reply) if isinstance(reply, dict) else {}
        if msg_type == "flow":
            data["response"] = _flow_response(data.get("response_json"))
        return None, data
    if msg_type == "edit":
        edited = data.get("message")
        inner: dict[str, Any] = edited if isinstance(edited, dict) else {}
        inner_type = str(inner.get("type") or "text")
        inner_text, inner_data = _content(inner_type, inner)
        return inner_text, {
            "original_message_id": data.get("original_message_id"),
            "edited_type": inner_type,
            "message": inner_data,
        }
    if msg_type == "revoke":
        return None, {"original_message_id": data.get("original_message_id")}
    if msg_type == "interactive":
        kind = data.get("type")
        reply = data.get(kind) if isinstance(kind, str) else None
        if isinstance(reply, dict):
            data["reply_id"] = reply.get("id")
            return _str(reply.get("title") or reply.get("body")), data
        return None, data
    if msg_type == "button":  # quick-reply button on a template
        return _str(data.get("text") or data.get("payload")), data
    if msg_type in MEDIA_TYPES:
        return _str(data.get("caption")), data
    if msg_type == "location":  # coordinates, not words the classifier should read
        return None, data
    if msg_type == "contacts":
        return None, {"contacts": raw.get("contacts", [])}
    if msg_type == "reaction":
        return _str(data.get("emoji")), data
    if msg_type == "order":
        return _str(data.get("text")), data
    if msg_type == "system":
        return _str(data.get("body")), data
    # "unsupported" and types Meta adds later: keep what came, including errors.
    if raw.get("errors"):
        data["errors"] = raw["errors"]
    return None, data


def _flow_response(value: Any) -> dict[str, Any]:
    """A WhatsApp Flow's answers (`response_json` is JSON text inside the JSON)."""
    if isinstance(value, dict):
        return value
    try:
        parsed = json.loads(value) if isinstance(value, str) else {}
    except (ValueError, RecursionError):
        return {"unparsed": str(value)[:2000]}
    return parsed if isinstance(parsed, dict) else {"value": parsed}


def _str(value: Any) -> str | None:
    return str(value) if value not in (None, "") else None


def _status(raw: dict[str, Any]) -> StatusUpdate:
    wa_message_id, status = raw.get("id"), raw.get("status")
    if not isinstance(wa_message_id, str) or not isinstance(status, str):
        raise PayloadError("every status needs an 'id' and a 'status'")
    _identifier(wa_message_id, "statuses[].id", MAX_WAMID)
    _identifier(status, "statuses[].status", MAX_TYPE)
    errors = raw.get("errors")
    first = errors[0] if isinstance(errors, list) and errors else errors
    if not isinstance(first, dict):
        first = {}
    return StatusUpdate(
        wa_message_id=wa_message_id,
        status=status,
        timestamp=_timestamp(raw.get("timestamp")),
        recipient_id=_identifier(raw.get("recipient_id"), "statuses[].recipient_id", MAX_RECIPIENT),
        error_code=_error_code(first.get("code")),
        error_title=_str(first.get("title") or first.get("message")),
        callback_data=_identifier(
            raw.get("biz_opaque_callback_data"), "statuses[].biz_opaque_callback_data", MAX_CALLBACK
        ),
    )


def _error_code(code: Any) -> int | None:
    """Meta's numeric error code, if it is one a database integer holds."""
    if isinstance(code, bool) or not isinstance(code, int | str) or not str(code).isdigit():
        return None
    value = int(code)
    return value if value <= _INT32 else None
