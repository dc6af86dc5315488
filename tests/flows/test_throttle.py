"""Throttling of failed authentications: per client and per key prefix, 429 with
`Retry-After`, recorded in the audit trail; successes never count.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from tests.support import ADMIN, add_agent, configure
from tests.support.dashboard import key_of

Clients = Callable[[str], httpx.AsyncClient]


@pytest.fixture
async def app(database_url: str) -> AsyncIterator[FastAPI]:
    from api.main import create_app

    app = create_app(worker=False)
    async with app.router.lifespan_context(app):
        yield app


@pytest.fixture
async def from_ip(app: FastAPI) -> AsyncIterator[Clients]:
    """`from_ip("10.0.0.1")`: a client whose requests come from that address."""
    opened: list[httpx.AsyncClient] = []

    def make(ip: str) -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=app, client=(ip, 40000))
        opened.append(httpx.AsyncClient(transport=transport, base_url="http://traza"))
        return opened[-1]

    yield make
    for client in opened:
        await client.aclose()


def random_key() -> str:
    return f"trz_{secrets.token_hex(4)}_{secrets.token_urlsafe(24)}"


def throttled(db: Any) -> list[dict[str, Any]]:
    return list(
        db.execute(
            "SELECT conversation_id, actor, data FROM trace_events "
            "WHERE kind = 'access.throttled' ORDER BY id"
        ).fetchall()
    )


async def wrong_login(client: httpx.AsyncClient, key: str) -> httpx.Response:
    client.cookies.clear()
    await client.get("/dashboard/login")
    nonce = client.cookies.get("traza_login")
    assert nonce
    return await client.post("/dashboard/login", data={"key": key, "csrf": nonce})


def assert_retry_after(response: httpx.Response, window: int = 60) -> None:
    assert response.status_code == 429, response.text
    assert 1 <= int(response.headers["retry-after"]) <= window


async def test_sixty_wrong_dashboard_logins_end_in_429s_and_another_client_still_logs_in(
    from_ip: Clients, db: Any
) -> None:
    attacker, colleague = from_ip("203.0.113.7"), from_ip("198.51.100.20")
    codes = []
    for _ in range(60):
        response = await wrong_login(attacker, "not-the-admin-key-" + secrets.token_hex(4))
        codes.append(response.status_code)
    assert codes[:49] == [401] * 49 and codes[49:] == [429] * 11  # default: 50 a minute
    assert_retry_after(response)
    assert "Demasiados intentos fallidos" in response.text

    # Recorded once, when the limit was reached, outside any conversation.
    [event] = throttled(db)
    assert event["conversation_id"] is None and event["actor"] == "system:auth"
    assert event["data"]["surface"] == "dashboard" and event["data"]["scope"] == "client"
    assert event["data"]["client"] == "203.0.113.7"
    assert event["data"]["path"] == "/dashboard/login"

    # Another client logs in; the blocked one waits, even with the right key.
    assert (await wrong_login(colleague, "test-admin-key")).status_code == 303
    assert_retry_after(await wrong_login(attacker, "test-admin-key"))


async def test_two_hundred_wrong_api_keys_end_in_429s_and_a_right_key_from_elsewhere_works(
    from_ip: Clients, db: Any
) -> None:
    attacker, colleague = from_ip("203.0.113.7"), from_ip("198.51.100.20")
    vera = await add_agent(colleague, "vera")
    codes = []
    for _ in range(200):
        response = await attacker.get("/me", headers={"Authorization": f"Bearer {random_key()}"})
        codes.append(response.status_code)
    assert codes[:49] == [401] * 49 and set(codes[49:]) == {429}
    assert_retry_after(response)
    assert response.json()["detail"].startswith("too many failed authentications")
    [event] = throttled(db)
    assert event["data"]["surface"] == "api" and event["data"]["scope"] == "client"

    assert (await colleague.get("/me", headers=vera)).status_code == 200
    assert (await colleague.get("/teams", headers=ADMIN)).status_code == 200
    assert_retry_after(await attacker.get("/me", headers=vera))


async def test_wrong_secrets_on_one_prefix_are_throttled_but_its_right_key_still_works(
    from_ip: Clients, db: Any
) -> None:
    admin = from_ip("198.51.100.1")
    vera = await add_agent(admin, "vera")
    prefix = key_of(vera).split("_")[1]
    codes = []
    for n in range(15):  # each guess from another address: only the prefix adds up
        guess = {"Authorization": f"Bearer trz_{prefix}_{secrets.token_urlsafe(24)}"}
        response = await from_ip(f"203.0.113.{n + 1}").get("/me", headers=guess)
        codes.append(response.status_code)
    assert codes == [401] * 9 + [429] * 6  # default: 10 a minute per prefix
    assert_retry_after(response)
    [event] = throttled(db)
    assert event["data"]["scope"] == "key_prefix" and event["data"]["key_prefix"] == prefix

    # Knowing someone's prefix does not lock them out.
    assert (await from_ip("203.0.113.99").get("/me", headers=vera)).status_code == 200
    assert (await admin.get("/me", headers=vera)).status_code == 200


async def test_successes_never_count_and_a_block_lifts_after_its_window(
    from_ip: Clients, db: Any
) -> None:
    configure(TRAZA_AUTH_FAILURES_PER_CLIENT="3 per 2 seconds")
    client = from_ip("203.0.113.7")
    vera = await add_agent(client, "vera")
    for _ in range(100):
        assert (await client.get("/me", headers=vera)).status_code == 200
    assert throttled(db) == []

    wrong = {"Authorization": f"Bearer {random_key()}"}
    codes = [(await client.get("/me", headers=wrong)).status_code for _ in range(4)]
    assert codes == [401, 401, 429, 429]
    assert_retry_after(await client.get("/me", headers=vera), window=2)
    await asyncio.sleep(2.2)
    assert (await client.get("/me", headers=vera)).status_code == 200
    assert (await client.get("/me", headers=wrong)).status_code == 401
