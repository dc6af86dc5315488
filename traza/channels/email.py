"""E-mail through SMTP (aiosmtplib), a channel of the recruiting agent.

It reaches candidates who cannot be reached on WhatsApp, or whose agent prefers e-mail.
One `EmailChannel` sends one outbox message: the subject is the message's (the agent's
template `subject`), else the first sentence of its text. The body is plain text; reply
buttons become a list of options. The provider id is the Message-ID, derived from the
message's idempotency key, so a retried send carries the same Message-ID and mail
clients can recognise a duplicate.

SMTP 4xx answers and connection problems are transient (retried); 5xx are permanent.
"""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime
from email.errors import HeaderParseError
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr

import aiosmtplib

from traza.channels.base import PlainTextChannel, SendError
from traza.settings import Settings

SMTP_TIMEOUT_SECONDS = 30.0
IMPLICIT_TLS_PORT = 465
MAX_SUBJECT = 78
_SENTENCE = re.compile(r"(?<=[.!?])\s")


def subject_for(text: str, subject: str | None) -> str:
    """The message's subject, or its first sentence (shortened) when it has none."""
    chosen = " ".join((subject or "").split())
    if chosen:
        return chosen
    first = _SENTENCE.split(" ".join(text.split()), maxsplit=1)[0]
    return first if len(first) <= MAX_SUBJECT else first[: MAX_SUBJECT - 1].rstrip() + "…"


def message_id(callback: str, sender: str) -> str:
    """A Message-ID that is the same for every attempt of one outbox message."""
    domain = parseaddr(sender)[1].rpartition("@")[2] or "traza.invalid"
    digest = hashlib.sha256(callback.encode()).hexdigest()[:32]
    return f"<traza.{digest}@{domain}>"


def _classify(code: int, title: str) -> SendError:
    """SMTP reply codes: 4xx is transient, 5xx permanent."""
    return SendError(code, f"SMTP {code}: {title}".strip(), retryable=400 <= code < 500)


class EmailChannel(PlainTextChannel):
    """Plain-text e-mail through the configured SMTP server (`TRAZA_SMTP_*`)."""

    name = "email"
    label = "e-mail"

    def __init__(self, *, settings: Settings, subject: str | None = None) -> None:
        assert settings.traza_smtp_host and settings.traza_email_from
        self._settings = settings
        self._subject = subject

    def compose(self, *, to: str, text: str, callback: str) -> EmailMessage:
        """The e-mail for one message (headers and plain-text body)."""
        sender = self._settings.traza_email_from or ""
        message = EmailMessage()
        try:
            message["From"] = sender
            message["To"] = to
            message["Subject"] = subject_for(text, self._subject)
        except (HeaderParseError, ValueError, IndexError) as exc:
            raise SendError(None, f"invalid e-mail header: {exc}", retryable=False) from None
        message["Date"] = format_datetime(datetime.now(UTC))
        message["Message-ID"] = message_id(callback, sender)
        message["X-Traza-Reference"] = callback
        message.set_content(text)
        return message

    async def _send(self, to: str, text: str, callback: str) -> str:
        settings = self._settings
        message = self.compose(to=to, text=text, callback=callback)
        implicit_tls = settings.traza_smtp_port == IMPLICIT_TLS_PORT
        password = settings.traza_smtp_password
        try:
            await aiosmtplib.send(
                message,
                hostname=settings.traza_smtp_host,
                port=settings.traza_smtp_port,
                username=settings.traza_smtp_user or None,
                password=password.get_secret_value() if password is not None else None,
                use_tls=implicit_tls,
                start_tls=settings.traza_smtp_starttls and not implicit_tls,
                timeout=SMTP_TIMEOUT_SECONDS,
            )
        except aiosmtplib.SMTPRecipientsRefused as exc:
            refused = exc.recipients[0] if exc.recipients else None
            if refused is None:
                raise SendError(None, "SMTP: recipient refused", retryable=False) from None
            raise _classify(refused.code, refused.message) from None
        except aiosmtplib.SMTPResponseException as exc:
            raise _classify(exc.code, exc.message) from None
        except aiosmtplib.SMTPConnectError as exc:  # includes connect timeouts
            raise SendError(None, f"SMTP connect: {exc.message}", retryable=True) from None
        except (aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPTimeoutError) as exc:
            # The server may have taken the message before the connection went away.
            raise SendError(None, f"SMTP: {exc.message}", retryable=True, maybe_sent=True) from None
        except aiosmtplib.SMTPNotSupported as exc:  # e.g. STARTTLS required but not offered
            raise SendError(None, f"SMTP: {exc.message}", retryable=False) from None
        except (aiosmtplib.SMTPException, OSError) as exc:
            raise SendError(None, f"SMTP: {type(exc).__name__}", retryable=True) from None
        return str(message["Message-ID"])
