"""What every output channel shares: the interface, buttons, errors and their limits.

Channels only speak to the provider; the sender (`traza.outbound.sender`) decides what
to send, when, and what to do with each error.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import httpx

# Graph API errors the sender treats specially.
RATE_LIMITED = 130429
PAIR_RATE_LIMITED = 131056
OUTSIDE_WINDOW = 131047
UNREACHABLE = 131026
RETRYABLE_CODES = frozenset({RATE_LIMITED, PAIR_RATE_LIMITED, 1, 2, 4, 80007, 131000, 131016})

MAX_BUTTONS = 3
MAX_BUTTON_TITLE = 20


TemplateParams = list[str] | dict[str, str]


class SendError(Exception):
    """The provider refused or failed a send."""

    def __init__(
        self, code: int | None, title: str, *, retryable: bool, maybe_sent: bool = False
    ) -> None:
        super().__init__(f"{code}: {title}")
        self.code = code
        self.title = title
        self.retryable = retryable
        # The request may have reached the provider (e.g. a read timeout): Meta may
        # have accepted it, so a retry must first look for its status webhook.
        self.maybe_sent = maybe_sent


@dataclass(frozen=True, slots=True)
class Button:
    """An interactive reply button."""

    id: str
    title: str


class OutputChannel(Protocol):
    """What every channel offers the sender."""

    name: str

    async def send_text(self, *, to: str, text: str, callback: str) -> str:
        """Send free text; return the provider's message id."""
        ...

    async def send_template(
        self,
        *,
        to: str,
        name: str,
        language: str,
        params: TemplateParams,
        callback: str,
        button_payloads: list[str] | None = None,
    ) -> str:
        """Send an approved template; return the message id.

        `params` are the body's parameters: a list in the template's order ({{1}}, {{2}}…)
        or a dict by name (templates with named parameters). `button_payloads` are what
        the template's quick-reply buttons answer with, in the buttons' order.
        """
        ...

    async def send_buttons(
        self, *, to: str, body: str, buttons: list[Button], callback: str
    ) -> str:
        """Send interactive reply buttons; return the message id."""
        ...

    async def send_list(
        self, *, to: str, body: str, button: str, rows: list[Button], callback: str
    ) -> str:
        """Send an interactive list (one section of up to 10 rows); return the message id."""
        ...

    async def mark_read(self, *, message_id: str) -> None:
        """Mark an inbound message as read."""
        ...


MAX_LIST_ROWS = 10
MAX_ROW_TITLE = 24


def validate_list(button: str, rows: list[Button]) -> None:
    """WhatsApp lists: 1-10 rows, titles of at most 24 characters, a button of at most 20."""
    if not 1 <= len(rows) <= MAX_LIST_ROWS:
        raise ValueError(f"list rows: between 1 and {MAX_LIST_ROWS}, got {len(rows)}")
    if not button or len(button) > MAX_BUTTON_TITLE:
        raise ValueError(f"list button text must be 1-{MAX_BUTTON_TITLE} characters")
    for row in rows:
        if not row.title or len(row.title) > MAX_ROW_TITLE:
            raise ValueError(f"list row title must be 1-{MAX_ROW_TITLE} characters")


def template_components(
    params: TemplateParams, button_payloads: list[str] | None
) -> list[dict[str, Any]]:
    """A template's `components`: body parameters, then one per quick-reply payload."""
    components: list[dict[str, Any]] = []
    if isinstance(params, dict):
        parameters = [
            {"type": "text", "parameter_name": name, "text": value}
            for name, value in params.items()
        ]
    else:
        parameters = [{"type": "text", "text": value} for value in params]
    if parameters:
        components.append({"type": "body", "parameters": parameters})
    for index, payload in enumerate(button_payloads or []):
        components.append(
            {
                "type": "button",
                "sub_type": "quick_reply",
                "index": str(index),  # the Cloud API types the index as a string
                "parameters": [{"type": "payload", "payload": payload}],
            }
        )
    return components


def as_plain_text(body: str, options: list[str]) -> str:
    """A message with reply options, for channels without buttons (e-mail, SMS)."""
    if not options:
        return body
    return body + "\n\n" + "\n".join(f"- {option}" for option in options)


def validate_buttons(buttons: list[Button]) -> None:
    """WhatsApp allows at most 3 reply buttons with titles of at most 20 characters."""
    if not 1 <= len(buttons) <= MAX_BUTTONS:
        raise ValueError(f"reply buttons: between 1 and {MAX_BUTTONS}, got {len(buttons)}")
    for button in buttons:
        if not button.title or len(button.title) > MAX_BUTTON_TITLE:
            raise ValueError(f"button title must be 1-{MAX_BUTTON_TITLE} characters")


async def post_json(
    client: httpx.AsyncClient, url: str, body: dict[str, Any], headers: dict[str, str]
) -> tuple[httpx.Response, dict[str, Any]]:
    """POST `body` to a provider; the response and its JSON object (empty when it has none).

    A failure before the request left is retryable; one after it may have been sent.
    """
    try:
        response = await client.post(url, json=body, headers=headers)
    except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
        raise SendError(None, f"transport: {type(exc).__name__}", retryable=True) from None
    except httpx.HTTPError as exc:
        raise SendError(
            None, f"transport: {type(exc).__name__}", retryable=True, maybe_sent=True
        ) from None
    try:
        data = response.json()
    except ValueError:
        data = {}
    return response, data if isinstance(data, dict) else {}


class PlainTextChannel:
    """A channel without templates or buttons (e-mail, SMS): everything goes as text.

    Subclasses set `name` and `label` and implement `_send(to, text, callback)`.
    """

    name = "text"
    label = "text"

    async def _send(self, to: str, text: str, callback: str) -> str:
        raise NotImplementedError

    async def send_text(self, *, to: str, text: str, callback: str) -> str:  # noqa: D102
        return await self._send(to, text, callback)

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
        raise SendError(
            None, f"a WhatsApp template cannot go by {self.label}: send its text", retryable=False
        )

    async def send_buttons(  # noqa: D102
        self, *, to: str, body: str, buttons: list[Button], callback: str
    ) -> str:
        validate_buttons(buttons)
        return await self._send(to, as_plain_text(body, [b.title for b in buttons]), callback)

    async def send_list(  # noqa: D102
        self, *, to: str, body: str, button: str, rows: list[Button], callback: str
    ) -> str:
        validate_list(button, rows)
        return await self._send(to, as_plain_text(body, [r.title for r in rows]), callback)

    async def mark_read(self, *, message_id: str) -> None:  # noqa: D102
        return None
