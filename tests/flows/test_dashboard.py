"""The dashboard over plain HTTP: login, sessions, team scope, CSRF, languages, charts.

The browser tests (`test_dashboard_browser.py`) drive the same pages in Chromium.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import httpx

from api.dashboard import charts, i18n, monitor
from tests.fakes.servers import GraphAPI
from tests.support import ADMIN, add_agent, add_team, configure, say
from tests.support.dashboard import csrf_of, key_of, login

ASK_PERSON = "Quiero hablar con una persona"


async def handed_over(client: httpx.AsyncClient, wa_id: str = "5215550001111") -> tuple[int, int]:
    """A conversation handed to the general team: (conversation id, handoff id)."""
    await say(client, ASK_PERSON, wa_id=wa_id)
    [row] = [
        h
        for h in (await client.get("/handoffs?status=active", headers=ADMIN)).json()
        if h["team"] == "general"
    ]
    return int(row["conversation_id"]), int(row["id"])


# --- sessions ------------------------------------------------------------------------------


async def test_pages_send_the_browser_to_log_in_and_back(client: httpx.AsyncClient) -> None:
    for path in ("/dashboard", "/dashboard/handoffs", "/dashboard/conversations/1"):
        response = await client.get(path)
        assert response.status_code == 303
        assert response.headers["location"].startswith("/dashboard/login?next=")
    response = await client.get("/dashboard/conversations?wa_id=52")
    assert (
        response.headers["location"]
        == "/dashboard/login?next=/dashboard/conversations%3Fwa_id%3D52"
    )

    response = await login(client, "test-admin-key", next="/dashboard/conversations?wa_id=52")
    assert response.status_code == 303
    assert response.headers["location"] == "/dashboard/conversations?wa_id=52"
    cookie = next(
        v for k, v in response.headers.multi_items() if k == "set-cookie" and "traza_session" in v
    )
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/dashboard" in cookie
    assert (await client.get("/dashboard")).status_code == 200


async def test_a_wrong_key_is_refused_and_a_foreign_next_is_ignored(
    client: httpx.AsyncClient,
) -> None:
    response = await login(client, "trz_nope_nope")
    assert response.status_code == 401
    assert "Clave no válida o revocada." in response.text
    assert "traza_session" not in response.headers.get("set-cookie", "")

    response = await login(client, "test-admin-key", next="https://evil.example/x")
    assert response.headers["location"] == "/dashboard"
    response = await login(client, "test-admin-key", next="//evil.example/x")
    assert response.headers["location"] == "/dashboard"


async def test_any_admin_key_survives_the_cookie_and_pages_are_locked_down(
    client: httpx.AsyncClient,
) -> None:
    configure(TRAZA_ADMIN_KEY='clave de "admin"; ñ=1')
    response = await login(client, 'clave de "admin"; ñ=1')
    assert response.status_code == 303
    page = await client.get("/dashboard")
    assert page.status_code == 200 and "Sesión de admin" in page.text
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert page.headers["x-frame-options"] == "DENY" and page.headers["cache-control"] == "no-store"
    htmx = await client.get("/dashboard/static/htmx.min.js")
    assert htmx.status_code == 200 and "htmx 2.0.11" in htmx.text[:200]


async def test_login_needs_the_forms_nonce(client: httpx.AsyncClient) -> None:
    """A login posted from another site (no nonce cookie, or a wrong one) is refused."""
    response = await client.post(
        "/dashboard/login", data={"key": "test-admin-key", "csrf": "forgé", "next": "/dashboard"}
    )
    assert response.status_code == 403
    assert "traza_session" not in response.headers.get("set-cookie", "")


async def test_a_revoked_key_ends_the_session_and_logout_forgets_it(
    client: httpx.AsyncClient,
) -> None:
    vera = await add_agent(client, "vera")
    await login(client, key_of(vera))
    page = await client.get("/dashboard")
    assert page.status_code == 200 and "vera" in page.text

    prefix = key_of(vera).split("_")[1]
    assert (await client.delete(f"/keys/{prefix}", headers=ADMIN)).status_code == 204
    assert (await client.get("/dashboard")).status_code == 303

    await login(client, "test-admin-key")
    page = await client.get("/dashboard")
    response = await client.post("/dashboard/logout", data={"csrf": csrf_of(page.text)})
    assert response.status_code == 303 and response.headers["location"] == "/dashboard/login"
    assert (await client.get("/dashboard")).status_code == 303


# --- scope and CSRF ------------------------------------------------------------------------


async def test_another_teams_conversation_is_a_recorded_403(
    client: httpx.AsyncClient, db: Any, graph_api: GraphAPI
) -> None:
    await add_team(client, "sales")
    sam = await add_agent(client, "sam", teams=["sales"])
    cid, hid = await handed_over(client)

    await login(client, key_of(sam))
    response = await client.get(f"/dashboard/conversations/{cid}")
    assert response.status_code == 403
    assert "Acceso denegado" in response.text
    [denied] = db.execute(
        "SELECT actor, data FROM trace_events WHERE kind = 'access.denied'"
    ).fetchall()
    assert denied["actor"] == "human:sam"
    assert denied["data"]["path"] == f"/dashboard/conversations/{cid}"

    # Nor do they see it listed, nor can they act on its handoff.
    assert (
        f"/dashboard/conversations/{cid}" not in (await client.get("/dashboard/conversations")).text
    )
    inbox = await client.get("/dashboard/handoffs")
    assert f"#{hid}" not in inbox.text
    response = await client.post(
        f"/dashboard/handoffs/{hid}/claim", data={"csrf": csrf_of(inbox.text)}
    )
    assert response.status_code == 403
    assert db.execute("SELECT status FROM handoffs").fetchone()["status"] == "open"
    assert (
        len(db.execute("SELECT 1 FROM trace_events WHERE kind = 'access.denied'").fetchall()) == 2
    )


async def test_actions_without_the_sessions_csrf_token_change_nothing(
    client: httpx.AsyncClient, db: Any, graph_api: GraphAPI
) -> None:
    vera = await add_agent(client, "vera", status="offline")  # no automatic assignment
    _, hid = await handed_over(client)
    await login(client, key_of(vera))
    page = await client.get("/dashboard/handoffs")
    token = csrf_of(page.text)

    for data in ({}, {"csrf": "0" * 64}):
        response = await client.post(f"/dashboard/handoffs/{hid}/claim", data=data)
        assert response.status_code == 403
        assert "El formulario caducó" in response.text
    assert db.execute("SELECT status FROM handoffs").fetchone()["status"] == "open"

    # A token from another session does not work either.
    other = httpx.AsyncClient(transport=client._transport, base_url="http://traza")
    async with other:
        await login(other, "test-admin-key")
        theirs = csrf_of((await other.get("/dashboard/handoffs")).text)
    assert theirs != token
    response = await client.post(f"/dashboard/handoffs/{hid}/claim", data={"csrf": theirs})
    assert response.status_code == 403

    # The header htmx sends works as well as the form field.
    response = await client.post(
        f"/dashboard/handoffs/{hid}/claim", headers={"X-CSRF-Token": token}
    )
    assert response.status_code == 303
    row = db.execute("SELECT status, assigned_agent FROM handoffs").fetchone()
    assert (row["status"], row["assigned_agent"]) == ("accepted", "vera")
    page = await client.get("/dashboard/handoffs")
    assert "Traspaso tomado: ahora es tuyo." in page.text


async def test_an_agent_cannot_take_another_agents_handoff(
    client: httpx.AsyncClient, db: Any, graph_api: GraphAPI
) -> None:
    await add_agent(client, "vera")  # online: the handoff is assigned to her
    otto = await add_agent(client, "otto", status="offline")
    _, hid = await handed_over(client)
    assert db.execute("SELECT assigned_agent FROM handoffs").fetchone()["assigned_agent"] == "vera"

    await login(client, key_of(otto))
    page = await client.get("/dashboard/handoffs")
    assert "Asignado a vera: solo un supervisor puede moverlo." in page.text
    response = await client.post(
        f"/dashboard/handoffs/{hid}/claim", data={"csrf": csrf_of(page.text)}
    )
    assert response.status_code == 403
    assert "assigned to vera" in response.text  # the API's own reason, as detail
    kinds = [r["kind"] for r in db.execute("SELECT kind FROM trace_events ORDER BY id")]
    assert "access.denied" in kinds and "handoff.claimed" not in kinds


# --- the pages -----------------------------------------------------------------------------


async def test_reply_transfer_and_return_to_bot_from_the_conversation_page(
    client: httpx.AsyncClient, db: Any, graph_api: GraphAPI
) -> None:
    await add_team(client, "sales")
    await add_agent(client, "sara", teams=["sales"], status="offline")
    lead = await add_agent(client, "lead", teams=["general", "sales"], role="supervisor")
    cid, hid = await handed_over(client)
    await login(client, key_of(lead))
    here = f"/dashboard/conversations/{cid}"
    page = await client.get(here)
    token = csrf_of(page.text)

    response = await client.post(
        f"/dashboard/handoffs/{hid}/reply", data={"csrf": token, "next": here, "text": "  "}
    )
    assert response.headers["location"] == here
    assert "Escribe una respuesta antes de enviar." in (await client.get(here)).text

    response = await client.post(
        f"/dashboard/handoffs/{hid}/reply",
        data={"csrf": token, "next": here, "text": "Hola, te atiende Lead."},
    )
    assert response.status_code == 303
    from tests.support import drain

    await drain()
    assert graph_api.sent[-1]["text"]["body"] == "Hola, te atiende Lead."

    response = await client.post(
        f"/dashboard/handoffs/{hid}/transfer",
        data={"csrf": token, "next": here, "team": "sales", "agent": "sara", "note": "ventas"},
    )
    assert response.status_code == 303
    row = db.execute("SELECT team, assigned_agent FROM handoffs").fetchone()
    assert (row["team"], row["assigned_agent"]) == ("sales", "sara")
    page = await client.get(here)
    assert "Traspaso transferido." in page.text

    # An agent who is not in the team: the service's refusal, shown on the page.
    response = await client.post(
        f"/dashboard/handoffs/{hid}/transfer",
        data={"csrf": token, "next": here, "team": "sales", "agent": "lead-nope"},
    )
    page = await client.get(here)
    assert "No se pudo con esos datos." in page.text and "lead-nope" in page.text

    response = await client.post(
        f"/dashboard/handoffs/{hid}/return", data={"csrf": token, "next": here}
    )
    assert response.status_code == 303
    assert db.execute("SELECT status FROM handoffs").fetchone()["status"] == "returned"
    page = await client.get(here)
    assert "Conversación devuelta al bot." in page.text
    assert 'data-testid="handoff-panel"' not in page.text  # nothing left to act on

    # Acting on a closed handoff is a conflict, not an error page.
    response = await client.post(
        f"/dashboard/handoffs/{hid}/resolve", data={"csrf": token, "next": here}
    )
    assert response.status_code == 303
    assert "ya no está en ese estado" in (await client.get(here)).text


async def test_the_timeline_answers_the_three_questions(
    client: httpx.AsyncClient, graph_api: GraphAPI
) -> None:
    await say(client, "Hola, ¿cómo va mi aplicación?")
    cid = (await client.get("/conversations", headers=ADMIN)).json()[0]["id"]
    await login(client, "test-admin-key")
    page = (await client.get(f"/dashboard/conversations/{cid}?lang=en")).text

    assert "What was said to this customer, and when?" in page
    assert "Hola, ¿cómo va mi aplicación?" in page  # the customer's words
    assert "Only the bot intervened." in page
    assert "bot:traza applied rule “default-bot” → the bot answers" in page
    assert "What was answered, and when?" in page and "after the customer" in page
    assert "Where was each step recorded?" in page
    # Rows: actor, what, rule and reason, duration, the checkpoint of the graph step.
    rows = re.findall(r'data-kind="([a-z_.]+)" data-actor="([a-z:_-]+)"', page)
    assert ("message.received", "customer") in rows
    assert ("routing.decision", "bot:traza") in rows
    assert ("guardrail.verdict", "bot:traza") in rows
    assert ("message.sent", "system:sender") in rows
    assert "<dt>rule</dt><dd>default-bot</dd>" in page
    assert "<dt>reason</dt><dd>the bot can answer this</dd>" in page
    assert re.search(r'<td class="num">\d+(\.\d)? ms</td>', page)
    assert 'title="checkpoint ' in page


async def test_conversations_are_found_by_number(
    client: httpx.AsyncClient, graph_api: GraphAPI
) -> None:
    await say(client, "Hola", wa_id="5215550001111")
    await say(client, "Hola", wa_id="5215550002222")
    await login(client, "test-admin-key")
    page = (await client.get("/dashboard/conversations?wa_id=%2B5215550002222")).text
    assert "5215550002222" in page and "5215550001111" not in page
    page = (await client.get("/dashboard/conversations?wa_id=555000")).text
    assert page.count('data-testid="conversation-row"') == 2


# --- languages ------------------------------------------------------------------------------


def test_both_languages_have_every_string() -> None:
    assert set(i18n.CATALOGUE["es"]) == set(i18n.CATALOGUE["en"])
    for language in i18n.LANGUAGES:
        for key, text in i18n.CATALOGUE[language].items():
            assert text.strip(), (language, key)


def test_the_language_comes_from_the_query_then_the_cookie_then_the_browser() -> None:
    assert i18n.choose("en", "es", "es") == ("en", True)
    assert i18n.choose(None, "en", "es-ES") == ("en", False)
    assert i18n.choose(None, None, "fr-FR, en;q=0.8, es;q=0.5") == ("en", False)
    assert i18n.choose(None, None, "en;q=0.2, es-MX") == ("es", False)
    assert i18n.choose("de", None, "de") == ("es", False)


async def test_each_page_speaks_one_language(
    client: httpx.AsyncClient, graph_api: GraphAPI
) -> None:
    cid, _ = await handed_over(client)
    await login(client, "test-admin-key")
    pages = (
        "/dashboard",
        "/dashboard/handoffs",
        "/dashboard/conversations",
        f"/dashboard/conversations/{cid}",
    )
    english = await client.get("/dashboard?lang=en")
    assert "traza_lang=en" in english.headers["set-cookie"]
    for path in pages:
        text = (await client.get(path)).text  # the cookie keeps English
        assert 'lang="en"' in text
        for marker in ("Bandeja", "Conversaciones", "Salir", "Espera"):
            assert marker not in text, (path, marker)
    await client.get("/dashboard?lang=es")
    for path in pages:
        text = (await client.get(path)).text
        assert 'lang="es"' in text
        for marker in ("Inbox", "Log out", "Waiting", "Conversations"):
            assert marker not in text, (path, marker)

    client.cookies.delete("traza_lang", path="/dashboard")
    fresh = await client.get("/dashboard", headers={"Accept-Language": "en-GB,en;q=0.9"})
    assert 'lang="en"' in fresh.text


# --- charts --------------------------------------------------------------------------------


def test_charts_are_svg_with_labels_values_and_escaped_text() -> None:
    svg = charts.bar_chart([("lun", 3), ("<mar>", 0), ("mié", 6)], title="Sent", empty="none")
    assert svg.startswith("<svg") and 'aria-label="Sent"' in svg
    assert svg.count("<rect") == 3 and ">6</text>" in svg and "&lt;mar&gt;" in svg
    assert "none" in charts.bar_chart([("a", 0)], title="t", empty="none")
    funnel = charts.funnel([("Sent", 4), ("Read", 3), ("Replied", 1)], title="f", empty="-")
    assert "4 · 100%" in funnel and "3 · 75%" in funnel and "1 · 25%" in funnel


def test_buckets_fill_empty_days_and_switch_to_weeks_for_long_periods() -> None:
    zone = ZoneInfo("Europe/Madrid")
    now = datetime(2026, 3, 10, 12, tzinfo=zone)
    sent = [
        datetime(2026, 3, 8, 23, 30, tzinfo=ZoneInfo("UTC")),
        datetime(2026, 3, 10, 9, tzinfo=zone),
    ]
    daily, weekly = monitor.buckets(sent, start=monitor.since("7d", now), now=now, zone=zone)
    assert not weekly and len(daily) == 8
    assert dict(daily)[date(2026, 3, 9)] == 1  # 23:30 UTC is already Monday in Madrid
    assert dict(daily)[date(2026, 3, 10)] == 1 and dict(daily)[date(2026, 3, 5)] == 0
    weeks, weekly = monitor.buckets(sent, start=monitor.since("90d", now), now=now, zone=zone)
    assert weekly and all(d.weekday() == 0 for d, _ in weeks) and sum(n for _, n in weeks) == 2
