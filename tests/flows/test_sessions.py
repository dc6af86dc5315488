"""Dashboard sessions are server-side: the cookie is a random id, never the key.

A copied cookie is no API key, and it stops working at logout, when its key is revoked,
when its agent is disabled, when it has been idle too long and at its absolute expiry.
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import httpx

from tests.support import ADMIN, add_agent, configure
from tests.support.dashboard import csrf_of, key_of, login

COOKIE = "traza_session"


async def signed_in(client: httpx.AsyncClient, key: str) -> str:
    """Log in with `key`; the session cookie the browser got."""
    response = await login(client, key)
    assert response.status_code == 303, response.text
    cookie = client.cookies.get(COOKIE)
    assert cookie
    return cookie


async def with_cookie(client: httpx.AsyncClient, cookie: str, path: str = "/dashboard") -> int:
    """What a browser that only has a copy of `cookie` gets at `path`."""
    client.cookies.clear()
    response = await client.get(path, headers={"Cookie": f"{COOKIE}={cookie}"})
    return response.status_code


def session_row(db: Any, cookie: str) -> dict[str, Any]:
    row = db.execute(
        "SELECT * FROM dashboard_sessions WHERE token_hash = %s",
        (hashlib.sha256(cookie.encode()).hexdigest(),),
    ).fetchone()
    assert row is not None
    return dict(row)


async def test_the_cookie_is_a_random_id_that_is_no_key(client: httpx.AsyncClient, db: Any) -> None:
    vera = await add_agent(client, "vera")
    key = key_of(vera)
    cookie = await signed_in(client, key)
    secret = key.split("_", 2)[2]  # the prefix is hex; the secret may itself hold "_"
    assert key not in cookie and secret not in cookie
    padded = cookie + "=" * (-len(cookie) % 4)
    assert key.encode() not in base64.urlsafe_b64decode(padded.split(".")[-1].encode())
    assert len(cookie) >= 40  # 256 random bits

    # Only its hash is stored, bound to the key that opened it.
    row = session_row(db, cookie)
    [key_id] = db.execute("SELECT id FROM api_keys").fetchall()
    assert row["api_key_id"] == key_id["id"] and row["admin_mac"] is None
    stored = " ".join(str(v) for v in row.values())
    assert cookie not in stored and key not in stored

    # The cookie is not a Bearer key, not even for the agent it belongs to.
    for as_bearer in (cookie, f"{COOKIE}={cookie}"):
        response = await client.get("/me", headers={"Authorization": f"Bearer {as_bearer}"})
        assert response.status_code == 401
    assert (await with_cookie(client, cookie)) == 200

    # The same for the admin key: two logins, two different ids, neither the key.
    first = await signed_in(client, "test-admin-key")
    second = await signed_in(client, "test-admin-key")
    assert first != second and "test-admin-key" not in first
    assert session_row(db, first)["admin_mac"] not in (None, "test-admin-key")
    response = await client.get("/me", headers={"Authorization": f"Bearer {first}"})
    assert response.status_code == 401


async def test_a_copied_cookie_stops_working_after_logout(
    client: httpx.AsyncClient, db: Any
) -> None:
    vera = await add_agent(client, "vera")
    cookie = await signed_in(client, key_of(vera))
    other = await signed_in(client, key_of(vera))  # another browser of hers
    client.cookies.clear()
    page = await client.get("/dashboard", headers={"Cookie": f"{COOKIE}={cookie}"})
    response = await client.post(
        "/dashboard/logout",
        data={"csrf": csrf_of(page.text)},
        headers={"Cookie": f"{COOKIE}={cookie}"},
    )
    assert response.status_code == 303
    assert (await with_cookie(client, cookie)) == 303  # to the login page
    assert session_row(db, cookie)["ended_reason"] == "logout"
    assert (await with_cookie(client, other)) == 200  # only that session ended


async def test_a_copied_cookie_stops_working_when_its_key_is_revoked(
    client: httpx.AsyncClient, db: Any
) -> None:
    vera = await add_agent(client, "vera")
    spare = await client.post("/agents/1/keys", headers=ADMIN)
    assert spare.status_code == 201
    cookie = await signed_in(client, key_of(vera))
    spare_cookie = await signed_in(client, spare.json()["api_key"])
    prefix = key_of(vera).split("_")[1]
    assert (await client.delete(f"/keys/{prefix}", headers=ADMIN)).status_code == 204
    assert (await with_cookie(client, cookie)) == 303
    assert session_row(db, cookie)["ended_reason"] == "key_revoked"
    assert (await with_cookie(client, spare_cookie)) == 200  # her other key's session lives


async def test_a_copied_cookie_stops_working_when_the_agent_is_disabled_for_good(
    client: httpx.AsyncClient, db: Any
) -> None:
    vera = await add_agent(client, "vera")
    cookie = await signed_in(client, key_of(vera))
    admin_cookie = await signed_in(client, "test-admin-key")
    [agent] = db.execute("SELECT id FROM agents WHERE name = 'vera'").fetchall()
    changed = await client.patch(f"/agents/{agent['id']}", json={"disabled": True}, headers=ADMIN)
    assert changed.status_code == 200
    assert (await with_cookie(client, cookie)) == 303
    assert session_row(db, cookie)["ended_reason"] == "agent_disabled"
    assert (await with_cookie(client, admin_cookie)) == 200

    # Enabled again, her key works, but the old session does not come back.
    changed = await client.patch(f"/agents/{agent['id']}", json={"disabled": False}, headers=ADMIN)
    assert changed.status_code == 200
    assert (await client.get("/me", headers=vera)).status_code == 200
    assert (await with_cookie(client, cookie)) == 303


async def test_a_copied_cookie_stops_working_after_idle_time_and_at_expiry(
    client: httpx.AsyncClient, db: Any
) -> None:
    configure(TRAZA_SESSION_IDLE_MINUTES="30", TRAZA_SESSION_MAX_HOURS="8")
    vera = await add_agent(client, "vera")
    response = await login(client, key_of(vera))
    assert "Max-Age=28800" in response.headers["set-cookie"]
    busy, idle, old = [await signed_in(client, key_of(vera)) for _ in range(3)]
    row = session_row(db, busy)
    assert 8 * 3600 - 60 < (row["expires_at"] - row["created_at"]).total_seconds() <= 8 * 3600 + 1

    # Activity keeps a session alive; 30 minutes without a request end it.
    db.execute(
        "UPDATE dashboard_sessions SET last_seen_at = now() - interval '29 minutes' "
        "WHERE token_hash = ANY(%s)",
        ([session_row(db, c)["token_hash"] for c in (busy, idle)],),
    )
    assert (await with_cookie(client, busy)) == 200
    refreshed = session_row(db, busy)["last_seen_at"]
    assert refreshed > session_row(db, idle)["last_seen_at"]
    db.execute(
        "UPDATE dashboard_sessions SET last_seen_at = now() - interval '31 minutes' "
        "WHERE token_hash = %s",
        (session_row(db, idle)["token_hash"],),
    )
    assert (await with_cookie(client, idle)) == 303
    assert (await with_cookie(client, busy)) == 200

    # However busy, a session ends at its absolute expiry.
    db.execute(
        "UPDATE dashboard_sessions SET expires_at = now() - interval '1 second' "
        "WHERE token_hash = %s",
        (session_row(db, old)["token_hash"],),
    )
    assert (await with_cookie(client, old)) == 303


async def test_an_admin_session_ends_when_the_admin_key_changes(client: httpx.AsyncClient) -> None:
    cookie = await signed_in(client, "test-admin-key")
    assert (await with_cookie(client, cookie)) == 200
    configure(TRAZA_ADMIN_KEY="a-new-admin-key")
    assert (await with_cookie(client, cookie)) == 303


async def test_csrf_tokens_belong_to_one_session(client: httpx.AsyncClient, db: Any) -> None:
    first = await signed_in(client, "test-admin-key")
    first_csrf = csrf_of((await client.get("/dashboard")).text)
    second = await signed_in(client, "test-admin-key")
    second_csrf = csrf_of((await client.get("/dashboard")).text)
    assert first_csrf != second_csrf

    # The first session's token does not log the second out; the second's does.
    client.cookies.clear()
    headers = {"Cookie": f"{COOKIE}={second}"}
    refused = await client.post("/dashboard/logout", data={"csrf": first_csrf}, headers=headers)
    assert refused.status_code == 403
    assert (await with_cookie(client, second)) == 200
    done = await client.post("/dashboard/logout", data={"csrf": second_csrf}, headers=headers)
    assert done.status_code == 303
    assert (await with_cookie(client, second)) == 303
    assert (await with_cookie(client, first)) == 200
