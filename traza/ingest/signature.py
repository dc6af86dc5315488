"""Meta's `X-Hub-Signature-256`: HMAC-SHA256 of the raw body with the app secret."""

from __future__ import annotations

import hashlib
import hmac

PREFIX = "sha256="


def sign(body: bytes, secret: str) -> str:
    """The header value Meta would send for `body` (used by `traza simulate` and tests)."""
    return PREFIX + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def is_valid(body: bytes, header: str | None, secret: str) -> bool:
    """Constant-time check of the header against the body's HMAC."""
    if not header or not header.startswith(PREFIX):
        return False
    # Compared as bytes: `compare_digest` refuses non-ASCII str (headers arrive latin-1).
    given = header.strip().encode("utf-8", "replace")
    return hmac.compare_digest(sign(body, secret).encode(), given)
