"""Phone numbers never reach the logs in clear."""

from __future__ import annotations

import logging

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
