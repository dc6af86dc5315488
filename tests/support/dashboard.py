"""Signing in to the dashboard in tests: a key's value, the login form, the CSRF token."""

from __future__ import annotations

import re

import httpx

CSRF = re.compile(r'name="csrf" value="([0-9a-f]{64})"')


def key_of(headers: dict[str, str]) -> str:
    return headers["Authorization"].removeprefix("Bearer ")


async def login(client: httpx.AsyncClient, key: str, *, next: str = "/dashboard") -> httpx.Response:
    """Log `client` in through the form, as a fresh browser does."""
    client.cookies.clear()
    await client.get("/dashboard/login")
    nonce = client.cookies.get("traza_login")
    assert nonce
    return await client.post("/dashboard/login", data={"key": key, "csrf": nonce, "next": next})


def csrf_of(html: str) -> str:
    found = CSRF.search(html)
    assert found, "no CSRF token on the page"
    return found.group(1)
