"""Meta's update shapes as the Cloud API sends them (like WhatsApp libraries' fixtures)."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

WA = "5215550002222"


def _id() -> str:
    return f"wamid.{uuid.uuid4().hex}"


def message(kind: str, body: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "from": WA,
        "id": _id(),
        "timestamp": str(int(time.time())),
        "type": kind,
        kind: body,
        **extra,
    }


def edit(original: str, new_text: str) -> dict[str, Any]:
    return message(
        "edit",
        {"original_message_id": original, "message": {"type": "text", "text": {"body": new_text}}},
    )


def revoke(original: str) -> dict[str, Any]:
    return message("revoke", {"original_message_id": original})


def reaction(to: str, emoji: str = "👍") -> dict[str, Any]:
    return message("reaction", {"message_id": to, "emoji": emoji})


def sticker() -> dict[str, Any]:
    return message(
        "sticker", {"mime_type": "image/webp", "sha256": "abc=", "id": "1234", "animated": False}
    )


def location() -> dict[str, Any]:
    return message(
        "location",
        {"latitude": 19.4326, "longitude": -99.1332, "name": "Oficina", "address": "Reforma 1"},
    )


def contacts_card() -> dict[str, Any]:
    card = {
        "name": {"formatted_name": "Pedro Páramo", "first_name": "Pedro"},
        "phones": [{"phone": "+52 55 1111 2222", "type": "CELL", "wa_id": "5215511112222"}],
    }
    return {"from": WA, "id": _id(), "timestamp": str(int(time.time())), "type": "contacts",
            "contacts": [card]}  # fmt: skip


def order() -> dict[str, Any]:
    return message(
        "order",
        {
            "catalog_id": "cat-1",
            "text": "quiero dos",
            "product_items": [{"product_retailer_id": "sku-1", "quantity": "2"}],
        },
    )


def flow_completion(answers: dict[str, str]) -> dict[str, Any]:
    return message(
        "interactive",
        {
            "type": "nfm_reply",
            "nfm_reply": {
                "response_json": json.dumps({**answers, "flow_token": "tok-1"}),
                "body": "Sent",
                "name": "postulacion",
            },
        },
        context={"from": "15551234567", "id": "wamid.flow-invite"},
    )


def call_permission(response: str = "accept") -> dict[str, Any]:
    return message(
        "interactive",
        {
            "type": "call_permission_reply",
            "call_permission_reply": {"response": response, "response_source": "user_action"},
        },
    )


def number_change(new_wa_id: str) -> dict[str, Any]:
    return message(
        "system",
        {
            "body": f"User A changed from {WA} to {new_wa_id}",
            "wa_id": new_wa_id,
            "type": "user_changed_number",
        },
    )


def identity_change() -> dict[str, Any]:
    return message(
        "system",
        {"body": "User identity changed", "type": "customer_identity_changed"},
        identity={"acknowledged": True, "created_timestamp": "1697044706", "hash": "x"},
    )


def calls_payload(phone_number_id: str, event: str = "connect") -> dict[str, Any]:
    return {
        "object": "whatsapp_business_account",
        "entry": [
            {
                "id": "WABA1",
                "changes": [
                    {
                        "field": "calls",
                        "value": {
                            "messaging_product": "whatsapp",
                            "metadata": {
                                "display_phone_number": "15551234567",
                                "phone_number_id": phone_number_id,
                            },
                            "contacts": [{"profile": {"name": "María G."}, "wa_id": WA}],
                            "calls": [
                                {
                                    "id": "wacid.1",
                                    "from": WA,
                                    "to": "15551234567",
                                    "event": event,
                                    "timestamp": str(int(time.time())),
                                    "direction": "USER_INITIATED",
                                }
                            ],
                        },
                    }
                ],
            }
        ],
    }
