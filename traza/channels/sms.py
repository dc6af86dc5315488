"""SMS through an HTTP provider: a small, generic adapter (httpx).

The provider contract traza speaks (`TRAZA_SMS_URL`, `TRAZA_SMS_TOKEN`):

    POST {TRAZA_SMS_URL}
    Authorization: Bearer {TRAZA_SMS_TOKEN}          (omitted when no token is set)
    Content-Type: application/json

    {"to": "+34600111222", "text": "Hola María, …", "reference": "followup:12:sms"}

- `to` is the number in international format, `text` the whole message (the provider
  splits it into parts), `reference` traza's idempotency key for the message: a
  provider that deduplicates on it never sends a retried message twice.
- A 2xx answer carries the provider's id: `{"id": "…"}`; traza records it as the
  message's provider id.
- 5xx, 429 and timeouts are transient: the send is retried with backoff. Any other 4xx
  is permanent: the message fails with the provider's `error` (or `message`) text.

Most SMS providers take a different body (form fields, other names, basic auth). Map
one with a small relay that translates this contract to the provider's API, or subclass
`SmsChannel` and override `request` and `provider_id`.
"""

from __future__ import annotations

from typing import Any

import httpx

from traza.channels.base import PlainTextChannel, SendError, post_json
from traza.settings import Settings

RATE_LIMITED_STATUS = 429


class SmsChannel(PlainTextChannel):
    """Plain-text SMS through the provider at `TRAZA_SMS_URL`."""

    name = "sms"
    label = "SMS"

    def __init__(self, *, client: httpx.AsyncClient, settings: Settings) -> None:
        assert settings.traza_sms_url
        self._client = client
        self._url = settings.traza_sms_url
        self._headers = {}
        if settings.traza_sms_token is not None:
            self._headers["Authorization"] = f"Bearer {settings.traza_sms_token.get_secret_value()}"

    def request(self, *, to: str, text: str, reference: str) -> dict[str, Any]:
        """The JSON body posted to the provider."""
        return {"to": to, "text": text, "reference": reference}

    def provider_id(self, answer: dict[str, Any]) -> str | None:
        """The provider's id for an accepted message, from its answer."""
        found = answer.get("id")
        return str(found) if found not in (None, "") else None

    async def _send(self, to: str, text: str, callback: str) -> str:
        body = self.request(to=to, text=text, reference=callback)
        response, answer = await post_json(self._client, self._url, body, self._headers)
        status = response.status_code
        if status >= 400:
            title = str(answer.get("error") or answer.get("message") or response.reason_phrase)
            retryable = status >= 500 or status == RATE_LIMITED_STATUS
            raise SendError(status, f"SMS provider: {title}", retryable=retryable)
        found = self.provider_id(answer)
        if found is None:
            raise SendError(None, "the SMS provider answered without a message id", retryable=False)
        return found
