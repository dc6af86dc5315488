"""The dashboard in a real browser: headless Chromium (Debian's) driven by Playwright.

The app is served by uvicorn on a free local port, in this test's event loop; the worker
runs when the test calls `drain()`. Each test takes full-page screenshots; with
TRAZA_UPDATE_SCREENSHOTS=1 they replace those in `docs/screenshots/` (the README's).
Without /usr/bin/chromium the tests are skipped, except in CI (`CI` set), where that is
a failure: `.ci/run` installs it.
"""

from __future__ import annotations

import json
import os
import tempfile
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fakes.servers import GraphAPI, LocalServer
from tests.support import (
    ADMIN,
    PHONE_NUMBER_ID,
    add_agent,
    configure,
    drain,
    fire_timers,
    post_webhook,
    say,
    status,
    wa_payload,
)
from traza.clock import FrozenClock

CHROMIUM = Path("/usr/bin/chromium")
ROOT = Path(__file__).resolve().parents[2]
# The README's screenshots are refreshed with TRAZA_UPDATE_SCREENSHOTS=1; otherwise they
# go to a scratch folder, so a test run leaves the checkout clean.
SHOTS = (
    ROOT / "docs" / "screenshots"
    if os.environ.get("TRAZA_UPDATE_SCREENSHOTS") == "1"
    else Path(tempfile.mkdtemp(prefix="traza-screenshots-"))
)
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

if not CHROMIUM.exists():
    reason = f"{CHROMIUM} is missing (apt-get install chromium); .ci/run installs it"
    if os.environ.get("CI"):
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason, allow_module_level=True)

from playwright.async_api import Browser, Page, async_playwright, expect  # noqa: E402


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            yield chromium
        finally:
            await chromium.close()


@pytest.fixture
async def traza(client: httpx.AsyncClient) -> AsyncIterator[str]:
    """The app on a real port (pools opened by the `client` fixture's lifespan)."""
    from api.main import create_app

    async with LocalServer(create_app(worker=False)) as server:
        yield server.url


CONSOLE_ERRORS: list[str] = []


@pytest.fixture(autouse=True)
def no_console_errors() -> Any:
    """No script error and no Content-Security-Policy violation on any page."""
    CONSOLE_ERRORS.clear()
    yield
    # Refused answers (401 for a wrong key…) are logged as failed loads: expected.
    unexpected = [e for e in CONSOLE_ERRORS if not e.startswith("Failed to load resource")]
    assert unexpected == [], CONSOLE_ERRORS


async def new_page(browser: Browser, *, language: str = "es-ES") -> Page:
    context = await browser.new_context(
        viewport={"width": 1280, "height": 800}, locale=language, device_scale_factor=1
    )
    page = await context.new_page()
    page.set_default_timeout(15_000)
    page.on(
        "console",
        lambda message: CONSOLE_ERRORS.append(message.text) if message.type == "error" else None,
    )
    page.on("pageerror", lambda error: CONSOLE_ERRORS.append(str(error)))
    return page


async def shoot(page: Page, name: str, *, full_page: bool = True) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    await page.screenshot(path=str(path), full_page=full_page)
    assert path.stat().st_size > 1000, f"{path} is empty"


async def log_in(page: Page, base: str, key: str, *, next: str = "") -> None:
    await page.goto(f"{base}/dashboard{next}")
    await expect(page.get_by_label("Clave de API")).to_be_visible()
    await page.get_by_label("Clave de API").fill(key)
    await page.get_by_role("button", name="Entrar").click()
    await expect(page.get_by_test_id("operator")).to_be_visible()


def key_of(headers: dict[str, str]) -> str:
    return headers["Authorization"].removeprefix("Bearer ")


# --- log in --------------------------------------------------------------------------------


async def test_log_in_with_a_key_a_wrong_one_is_refused(
    browser: Browser, traza: str, client: httpx.AsyncClient
) -> None:
    vera = await add_agent(client, "vera")
    page = await new_page(browser)
    await page.goto(f"{traza}/dashboard/handoffs")
    await expect(page).to_have_url(f"{traza}/dashboard/login?next=/dashboard/handoffs")
    await expect(page.get_by_role("heading", name="Entrar")).to_be_visible()
    await shoot(page, "login")

    await page.get_by_label("Clave de API").fill("trz_0000_not-a-key")
    await page.get_by_role("button", name="Entrar").click()
    await expect(page.get_by_test_id("login-error")).to_have_text("Clave no válida o revocada.")

    await page.get_by_label("Clave de API").fill(key_of(vera))
    await page.get_by_role("button", name="Entrar").click()
    await expect(page.get_by_test_id("operator")).to_contain_text("Sesión de vera (agente)")
    await expect(page.get_by_role("heading", name="Bandeja de traspasos")).to_be_visible()
    cookies = {c["name"]: c for c in await page.context.cookies()}
    session = cookies["traza_session"]
    assert session["httpOnly"] and session["sameSite"] == "Strict"
    assert await page.evaluate("document.cookie") == ""  # scripts cannot read the key

    await page.get_by_role("link", name="Inicio", exact=True).click()
    await expect(page.get_by_test_id("home-inbox")).to_contain_text("0 sin tomar")


# --- a conversation's timeline; claim and reply --------------------------------------------


async def test_a_conversations_timeline_then_claim_a_handoff_and_reply(
    browser: Browser, traza: str, client: httpx.AsyncClient, graph_api: GraphAPI, db: Any
) -> None:
    vera = await add_agent(client, "vera", status="offline")  # stays unassigned: she claims
    await say(client, "Hola, ¿cómo va mi aplicación?")
    await say(client, "Quiero hablar con una persona")
    cid = int((await client.get("/conversations", headers=ADMIN)).json()[0]["id"])
    hid = int(db.execute("SELECT id FROM handoffs").fetchone()["id"])

    page = await new_page(browser)
    await log_in(page, traza, key_of(vera))

    # The timeline: the customer's words, the bot's decision with its rule, the reply.
    await page.goto(f"{traza}/dashboard/conversations/{cid}")
    timeline = page.get_by_test_id("timeline")
    customer = timeline.locator('tr[data-kind="message.received"][data-actor="customer"]')
    await expect(customer.first).to_contain_text("Hola, ¿cómo va mi aplicación?")
    decision = timeline.locator('tr[data-kind="routing.decision"]')
    await expect(decision.first).to_contain_text("default-bot")
    await expect(decision.last).to_contain_text("asks-for-person")
    await expect(decision.last).to_contain_text("customer asked for a person")
    await expect(timeline.locator('tr[data-kind="message.queued"]').first).to_contain_text(
        "Tu aplicación sigue en revisión"
    )
    await expect(page.get_by_test_id("q-who")).to_contain_text(
        "bot:traza aplicó la regla «asks-for-person» → pasa a una persona"
    )

    # The inbox: claim the handoff, then answer the customer.
    await page.get_by_role("link", name="Bandeja", exact=True).click()
    row = page.locator(f"#handoff-{hid}")
    await expect(page.get_by_test_id(f"status-{hid}")).to_have_text("sin tomar")
    await expect(row).to_contain_text("asks-for-person")
    await shoot(page, "inbox")
    await page.get_by_test_id(f"claim-{hid}").click()
    await expect(page.get_by_test_id("flash")).to_have_text("Traspaso tomado: ahora es tuyo.")
    await expect(page.get_by_test_id(f"status-{hid}")).to_have_text("aceptado")

    await page.get_by_test_id(f"reply-text-{hid}").fill("Hola María, soy Vera. ¿En qué te ayudo?")
    await page.get_by_test_id(f"reply-{hid}").click()
    await expect(page.get_by_test_id("flash")).to_contain_text("Respuesta en cola")
    await drain()  # the sender delivers it
    assert graph_api.sent[-1]["text"]["body"] == "Hola María, soy Vera. ¿En qué te ayudo?"
    assert graph_api.sent[-1]["to"] == "5215550001111"

    await page.goto(f"{traza}/dashboard/conversations/{cid}")
    human = page.get_by_test_id("timeline").locator('tr[data-actor="human:vera"]')
    await expect(human.first).to_be_visible()
    await expect(
        page.get_by_test_id("timeline").locator('tr[data-kind="message.queued"]').last
    ).to_contain_text("Hola María, soy Vera.")
    await expect(page.get_by_test_id("q-who")).to_contain_text("Intervinieron un bot y personas.")
    await expect(page.get_by_test_id("q-answered")).to_contain_text("human:vera")
    await shoot(page, "conversation")

    await page.get_by_role("link", name="EN", exact=True).click()
    await expect(page.get_by_test_id("q-who")).to_contain_text("A bot and humans intervened.")
    await expect(page.get_by_role("heading", name="Timeline")).to_be_visible()
    await shoot(page, "conversation-en", full_page=False)  # the header; the rest as above

    await page.get_by_role("link", name="Conversations", exact=True).click()
    await expect(page.get_by_test_id("conversation-row")).to_contain_text("5215550001111")
    await shoot(page, "conversations-en")


# --- the follow-up agent's monitor ---------------------------------------------------------

CANDIDATES = [
    ("cand-1", "María García", "5215550001111"),
    ("cand-2", "Carlos Ruiz", "5215550003333"),
    ("cand-3", "Pedro López", "5215550004444"),
]


def agent_config() -> None:

    folder = Path(tempfile.mkdtemp(prefix="traza-agents-"))
    (folder / "agents").mkdir()
    text = (ROOT / "examples/config/agents/seguimiento.yaml").read_text(encoding="utf-8")
    text = text.replace(
        "channels: [whatsapp, email]", f"inbox: '{PHONE_NUMBER_ID}'\nchannels: [whatsapp, email]"
    )
    # Any day, any hour: the test runs on the real date (the database stamps rows with it).
    week = 'days: [mon, tue, wed, thu, fri], hours: "09:00-19:00"'
    assert week in text
    text = text.replace(week, 'days: [mon, tue, wed, thu, fri, sat, sun], hours: "00:00-24:00"')
    (folder / "agents" / "seguimiento.yaml").write_text(text, encoding="utf-8")
    configure(TRAZA_CONFIG_DIR=str(folder))


async def event(client: httpx.AsyncClient, **body: Any) -> None:
    body.setdefault("id", f"evt-{uuid.uuid4().hex[:8]}")
    response = await client.post(
        "/recruiting/events",
        content=json.dumps(body, default=str),
        headers={**ADMIN, "content-type": "application/json"},
    )
    assert response.status_code == 200, response.text


async def test_the_follow_up_agents_monitor_figures(
    browser: Browser,
    traza: str,
    client: httpx.AsyncClient,
    graph_api: GraphAPI,
    frozen: FrozenClock,
) -> None:
    agent_config()
    now = datetime.now(UTC)
    frozen.set(now - timedelta(hours=1, minutes=5))  # they apply; confirmation due in 1 h
    for external_id, name, wa_id in CANDIDATES:
        await event(
            client,
            type="application.created",
            occurred_at=frozen.now(),
            candidate={
                "external_id": external_id,
                "name": name,
                "wa_id": wa_id,
                "locale": "es",
                "timezone": "Europe/Madrid",
                "consent_source": "formulario web",
                "consent_at": "2026-03-01T09:00:00+01:00",
                "profile": {"city": "Madrid", "cv_url": "https://cv.example/x"},
            },
            vacancy={"external_id": "vac-1", "title": "Desarrolladora Backend"},
            application_id=f"app-{external_id}",
        )
    frozen.set(now - timedelta(minutes=4))  # the confirmations are due
    await fire_timers()
    confirmations = [r for r in graph_api.requests if r["body"].get("type") == "template"]
    assert len(confirmations) == 3
    # María and Carlos read it (status webhooks) and answer; Pedro does not.
    for request in confirmations[:2]:
        for state in ("delivered", "read"):
            sent = status(request["wamid"], state, recipient_id=request["body"]["to"])
            assert (await post_webhook(client, wa_payload(statuses=[sent]))).status_code == 200
    await say(client, "Gracias, quedo atenta", wa_id="5215550001111")
    frozen.set(now)
    await say(client, "Quiero negociar el salario antes de seguir", wa_id="5215550003333")

    admin = await new_page(browser)
    await log_in(admin, traza, "test-admin-key", next="?tz=Europe/Madrid")
    await expect(admin.get_by_test_id("home-inbox")).to_contain_text("1 sin tomar")
    await expect(admin.get_by_test_id("agent-card")).to_contain_text("3 enviados")
    await shoot(admin, "home")
    await admin.get_by_role("link", name="Agentes de seguimiento").click()
    await admin.get_by_test_id("agent-card").first.click()
    await expect(
        admin.get_by_role("heading", name="Monitorear agente: seguimiento")
    ).to_be_visible()
    figures = admin.get_by_test_id("figures")
    await expect(admin.get_by_test_id("figure-sent").locator(".value")).to_have_text("3")
    await expect(admin.get_by_test_id("figure-sent")).to_contain_text("Mensajes enviados")
    await expect(admin.get_by_test_id("figure-open")).to_contain_text("66.7%")
    await expect(admin.get_by_test_id("figure-reply")).to_contain_text("66.7%")
    await expect(admin.get_by_test_id("figure-escalations").locator(".value")).to_have_text("1")
    await expect(figures).to_contain_text("Satisfacción")
    recent = admin.get_by_test_id("recent")
    await expect(recent).to_contain_text("Envió confirmación a María G.")
    await expect(recent).to_contain_text("Envió confirmación a Pedro L.")
    await expect(recent).to_contain_text("Escaló caso de Carlos R. (negociación)")
    await expect(admin.get_by_test_id("escalated")).to_contain_text(
        "Carlos R. – Pide negociar salario [Pendiente]"
    )
    await expect(admin.locator("svg.chart")).to_have_count(3)
    await shoot(admin, "monitor")

    # The same figures in English, and the period selector.
    await admin.get_by_role("link", name="EN", exact=True).click()
    await expect(admin.get_by_test_id("figure-sent")).to_contain_text("Messages sent")
    await expect(admin.get_by_test_id("figure-reply")).to_contain_text("Replies received")
    await expect(admin.get_by_test_id("recent")).to_contain_text("Sent confirmation to María G.")
    await expect(admin.get_by_test_id("escalated")).to_contain_text(
        "Wants to negotiate salary [Pending]"
    )
    await shoot(admin, "monitor-en")
    frozen.set(now + timedelta(days=30))  # a month later, nothing in the last 7 days
    await admin.get_by_role("link", name="7 days").click()
    await expect(admin.get_by_test_id("figure-sent").locator(".value")).to_have_text("0")
    await expect(admin.get_by_test_id("recent")).to_contain_text("No activity in this period.")
