"""The local outbox: no WhatsApp token, so messages stay in traza's own outbox."""

from __future__ import annotations

import uuid

from traza.channels.base import Button, TemplateParams, validate_buttons, validate_list


class LocalOutboxChannel:
    """Used when no WhatsApp token is configured: messages stay in traza's own outbox.

    The message row is the record; this channel only hands out local message ids so the
    rest of the pipeline (statuses, trace, `traza simulate`) works unchanged.
    """

    name = "local"

    async def _accept(self) -> str:
        return f"local.{uuid.uuid4().hex}"

    async def send_text(self, *, to: str, text: str, callback: str) -> str:  # noqa: D102
        return await self._accept()

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
        return await self._accept()

    async def send_buttons(  # noqa: D102
        self, *, to: str, body: str, buttons: list[Button], callback: str
    ) -> str:
        validate_buttons(buttons)
        return await self._accept()

    async def send_list(  # noqa: D102
        self, *, to: str, body: str, button: str, rows: list[Button], callback: str
    ) -> str:
        validate_list(button, rows)
        return await self._accept()

    async def mark_read(self, *, message_id: str) -> None:  # noqa: D102
        return None
