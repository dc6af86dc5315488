"""Phone numbers, e-mails, keys, tokens and secrets never reach the logs in clear.

`test_log_hygiene.py` runs a whole scenario through `traza serve` and scans its output.
"""

from __future__ import annotations

import io
import json
import logging
import sys
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from traza import logs
from traza.logs import RedactNumbers, redact, uvicorn_log_config


def test_phone_numbers_are_masked_but_ids_and_codes_stay_readable():
    line = '127.0.0.1 - "GET /conversations?wa_id=5215550001111 HTTP/1.1" 200'
    assert "5215550001111" not in redact(line)
    assert redact(line).endswith('11 HTTP/1.1" 200')
    assert redact("send failed for message 42: 131047 Re-engagement") == (
        "send failed for message 42: 131047 Re-engagement"
    )
    assert "+5215550001111" not in redact("to +5215550001111")


def test_the_filter_rewrites_records_with_arguments():
    record = logging.LogRecord(
        "uvicorn.access", logging.INFO, __file__, 1, "%s %s", ("GET", "/c?wa_id=34600111222"), None
    )
    assert RedactNumbers().filter(record) is True
    assert "34600111222" not in record.getMessage()


def test_uvicorn_handlers_carry_the_filter():
    config = uvicorn_log_config()
    assert all("redact" in h["filters"] for h in config["handlers"].values())


def _access(path: str) -> logging.LogRecord:
    """A record shaped as uvicorn's access logger makes it."""
    return logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        __file__,
        1,
        '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:50000", "GET", path, "1.1", 200),
        None,
    )


def _emit(record: logging.LogRecord, formatter: logging.Formatter) -> str:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    handler.addFilter(logs.Redact())
    handler.handle(record)
    return stream.getvalue()


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_an_access_line_with_a_phone_number_is_one_masked_line_without_a_logging_error(
    capsys: pytest.CaptureFixture[str], fmt: str
) -> None:
    formatter = logs.JsonFormatter() if fmt == "json" else logs.UvicornAccessFormatter()
    short = _emit(_access("/healthz"), formatter)
    line = _emit(_access("/conversations?wa_id=5215550001111"), formatter)
    huge = _emit(_access("/conversations?wa_id=5215550001111&pad=" + "x" * 10_000), formatter)
    assert "Logging error" not in capsys.readouterr().err  # logging reports its errors there
    assert "5215550001111" not in line and "•••••••••••11" in line
    assert line.count("\n") == huge.count("\n") == 1
    copies = 2 if fmt == "json" else 1  # JSON has the path as a field and in the message
    assert len(huge) <= len(short) + copies * (logs.MAX_PATH + 10)
    broken = _emit(_access("/x\n/y\r\nFORGED 200"), formatter)
    assert broken.count("\n") == 1  # a decoded %0A cannot forge a second line


CASES = [
    ("GET /webhooks/whatsapp?hub.mode=subscribe&hub.verify_token=s3cret&hub.challenge=1", "s3cret"),
    ("GET /calendars/cal-Secreto_9f8e7d6c.ics", "cal-Secreto_9f8e7d6c"),
    ("GET /x?token=abc123&access_token=def456&key=ghi&password=jkl", "abc123"),
    ("Authorization: Bearer test-admin-key", "test-admin-key"),
    ("authorization: bearer trz_ab12cd34_Zq9xY8wV7uT6", "Zq9xY8wV7uT6"),
    ("key trz_ab12cd34_Zq9xY8wV7uT6-_x in a message", "Zq9xY8wV7uT6"),
    ("from griselda.zarate@example.com", "griselda.zarate"),
    ("GET /x?email=griselda.zarate%40example.com", "griselda.zarate"),
    ("to +34600111222", "34600111222"),
    ("DETAIL:  Key (wa_id)=(Griselda 34) already exists.", "Griselda"),
    ("DETAIL:  Failing row contains (7, Griselda Zárate, hola).", "Griselda"),
    ("[SQL: INSERT INTO notes] [parameters: {'text': 'nota privada'}]", "nota privada"),
]


@pytest.mark.parametrize(("line", "secret"), CASES)
def test_secrets_and_personal_data_are_masked_wherever_they_appear(line: str, secret: str) -> None:
    masked = redact(line)
    assert secret not in masked
    assert "•••" in masked or "[parameters hidden]" in masked


def test_what_is_not_secret_stays_readable() -> None:
    assert redact("GET /handoffs?status=open&period=30d") == "GET /handoffs?status=open&period=30d"
    assert redact("key trz_ab12cd34_Zq9xY8wV7uT6").startswith("key trz_ab12cd34_")  # the prefix
    assert redact("DETAIL:  Key (wa_id)=(34600111222) already exists.") == (
        "DETAIL:  Key (wa_id)=(•••) already exists."
    )


def test_a_record_that_cannot_be_formatted_becomes_one_short_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    record = logging.LogRecord("traza.x", logging.INFO, __file__, 1, "%s and %s", ("one",), None)
    for formatter in (logs.TextFormatter(logs.TEXT_FORMAT), logs.JsonFormatter()):
        line = _emit(record, formatter)
        assert line.count("\n") == 1 and "could not be formatted" in line
    bad_access = _access("/x")
    bad_access.args = None  # what the former filter left behind
    assert "could not be formatted" in _emit(bad_access, logs.UvicornAccessFormatter())
    assert "Logging error" not in capsys.readouterr().err


def test_json_lines_carry_a_masked_traceback_in_one_line() -> None:
    try:
        raise ValueError("DETAIL:  Key (wa_id)=(5215550001111) already exists.")
    except ValueError:
        record = logging.LogRecord(
            "traza.x", logging.ERROR, __file__, 1, "for %s", ("ana@example.com",), sys.exc_info()
        )
    line = _emit(record, logs.JsonFormatter())
    assert line.count("\n") == 1
    entry = json.loads(line)
    assert entry["level"] == "ERROR" and entry["message"] == "for •••@•••"
    assert "ValueError" in entry["exc"] and "5215550001111" not in entry["exc"]


def test_configure_and_uvicorn_use_the_chosen_format() -> None:
    root = logging.getLogger()
    saved, level = root.handlers[:], root.level
    try:
        logs.configure("warning", "json")
        [handler] = root.handlers
        assert isinstance(handler.formatter, logs.JsonFormatter) and root.level == logging.WARNING
        logs.configure("info", "text")
        assert isinstance(root.handlers[0].formatter, logs.TextFormatter)
    finally:
        root.handlers[:] = saved
        root.setLevel(level)
    config = uvicorn_log_config("json")
    assert {f["()"] for f in config["formatters"].values()} == {"traza.logs.JsonFormatter"}
    assert uvicorn_log_config()["formatters"]["access"]["()"] == "traza.logs.UvicornAccessFormatter"


def test_the_log_format_setting_is_checked() -> None:
    from tests.support import configure
    from traza.settings import SettingsError, get_settings, load_settings

    configure(TRAZA_LOG_FORMAT="json")
    assert get_settings().traza_log_format == "json"
    configure(TRAZA_LOG_FORMAT="xml")
    with pytest.raises(SettingsError, match="TRAZA_LOG_FORMAT"):
        load_settings()


async def test_sql_errors_never_carry_their_parameters(database_url: str) -> None:
    from traza.db.engine import dispose_engine, session_scope

    insert = text("INSERT INTO contacts (wa_id, profile_name) VALUES (:wa_id, :name)")
    params: dict[str, Any] = {"wa_id": "5215550009876", "name": "Griselda Zárate"}
    try:
        async with session_scope() as session:
            await session.execute(insert, params)
        with pytest.raises(IntegrityError) as raised:
            async with session_scope() as session:
                await session.execute(insert, params)
    finally:
        await dispose_engine()
    message = str(raised.value)
    assert "Griselda" not in message and "hide_parameters" in message
    try:
        raise raised.value
    except IntegrityError:
        record = logging.LogRecord(
            "traza.x", logging.ERROR, __file__, 1, "insert failed", None, sys.exc_info()
        )
    line = _emit(record, logs.TextFormatter(logs.TEXT_FORMAT))
    assert "5215550009876" not in line and "Griselda" not in line and "Key (wa_id)=(•••)" in line
