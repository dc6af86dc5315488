"""Logging that never carries phone numbers in clear (message bodies are never logged)."""

from __future__ import annotations

import copy
import logging
import re
from typing import Any

# Seven or more digits in a row (optionally after '+') look like a phone number or wa_id.
_NUMBER = re.compile(r"\+?\d{7,}")


def redact(text: str) -> str:
    """Mask phone-number-like runs of digits, keeping the last two for correlation."""
    return _NUMBER.sub(lambda m: "•" * (len(m.group()) - 2) + m.group()[-2:], text)


class RedactNumbers(logging.Filter):
    """Rewrites a record's message so phone numbers (e.g. `?wa_id=` in URLs) are masked."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Mask the formatted message in place; never drops a record."""
        message = record.getMessage()
        masked = redact(message)
        if masked != message:
            record.msg, record.args = masked, None
        return True


def uvicorn_log_config() -> dict[str, Any]:
    """Uvicorn's default logging, with phone numbers masked in access and error logs."""
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config.setdefault("filters", {})["redact"] = {"()": RedactNumbers}
    for handler in config["handlers"].values():
        handler.setdefault("filters", []).append("redact")
    return config
