"""WhatsApp through the Cloud API (Graph API `/{phone-number-id}/messages`)."""

from __future__ import annotations

from typing import Any

import httpx

from traza.channels.base import (
    RETRYABLE_CODES,
    Button,
    SendError,
    TemplateParams,
    post_json,
    template_components,
    validate_buttons,
    validate_list,
)
from traza.settings import Settings


class WhatsAppChannel:
    """The WhatsApp Cloud API: `POST {api_base}/{phone_number_id}/messages`."""

    name = "whatsapp"

    def __init__(self, *, client: httpx.AsyncClient, settings: Settings, phone_number_id: str):
        assert settings.whatsapp_access_token is not None
        self._client = client
        self._url = f"{settings.whatsapp_api_base}/{phone_number_id}/messages"
        self._headers = {
            "Authorization": f"Bearer {settings.whatsapp_access_token.get_secret_value()}"
        }

    async def _post(self, body: dict[str, Any]) -> dict[str, Any]:
        response, data = await post_json(self._client, self._url, body, self._headers)
        if response.status_code >= 400 or "error" in data:
            error = data.get("error") or {}
            code = error.get("code")
            title = str(error.get("message") or error.get("title") or response.reason_phrase)
            retryable = code in RETRYABLE_CODES or response.status_code >= 500
            raise SendError(code, title, retryable=retryable)
        return data

    async def _send(self, to: str, callback: str, kind: str, payload: dict[str, Any]) -> str:
        body = {
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": to,
            "type": kind,
            kind: payload,
            "biz_opaque_callback_data": callback,
        }
        data = await self._post(body)
        try:
            return str(data["messages"][0]["id"])
        except (KeyError, IndexError, TypeError):
            raise SendError(
                None, "Graph API answered without a message id", retryable=False
            ) from None

    async def send_text(self, *, to: str, text: str, callback: str) -> str:  # noqa: D102
        return await self._send(to, callback, "text", {"body": text, "preview_url": False})

    async def send_template(  # noqa: D102
        self,
        *,
        to: str,
        name: str,
        language: str,
        params: TemplateParams,
        callback: str,
        button_payloads: list[str] | None = None,
    ) -> str:
        template: dict[str, Any] = {"name": name, "language": {"code": language}}
        if components := template_components(params, button_payloads):
            template["components"] = components
        return await self._send(to, callback, "template", template)

    async def send_buttons(  # noqa: D102
        self, *, to: str, body: str, buttons: list[Button], callback: str
    ) -> str:
        validate_buttons(buttons)
        interactive = {
            "type": "button",
            "body": {"text": body},
            "action": {
                "buttons": [
                    {"type": "reply", "reply": {"id": b.id, "title": b.title}} for b in buttons
                ]
            },
        }
        return await self._send(to, callback, "interactive", interactive)

    async def send_list(  # noqa: D102
        self, *, to: str, body: str, button: str, rows: list[Button], callback: str
    ) -> str:
        validate_list(button, rows)
        interactive = {
            "type": "list",
            "body": {"text": body},
            "action": {
                "button": button,
                "sections": [{"rows": [{"id": r.id, "title": r.title} for r in rows]}],
            },
        }
        return await self._send(to, callback, "interactive", interactive)

    async def mark_read(self, *, message_id: str) -> None:  # noqa: D102
        await self._post(
            {"messaging_product": "whatsapp", "status": "read", "message_id": message_id}
        )
