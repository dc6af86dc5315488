"""Property-based fuzzing of every endpoint in the OpenAPI: bad input is a 4xx, never a 5xx.

Schemathesis generates requests from the app's own schema — valid and invalid bodies,
odd strings (NUL, lone surrogates) and numbers, ids past a bigint — and sends them
through ASGI with the admin key; `not_a_server_error` fails the test on any 5xx. The
run is derandomised with a fixed seed, so it is the same run every time and a failure
names the case (and a curl line) that caused it. The body-taking endpoints that write
the most also get schemathesis's coverage phase: every boundary of every field.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
import schemathesis
from schemathesis.checks import not_a_server_error
from schemathesis.config import HealthCheck
from schemathesis.generation import GenerationMode
from starlette_testclient import TestClient

from api.main import create_app
from tests.support import ADMIN, sign, text_message, wa_payload

APP = create_app(worker=False)
SEED = 20260314


def _schema(*, max_examples: int, phases: list[str]) -> Any:
    loaded = schemathesis.openapi.from_dict(APP.openapi(), config=schemathesis.Config())
    loaded.config.seed = SEED
    loaded.config.update(headers=ADMIN, suppress_health_check=[HealthCheck.all])
    loaded.config.generation.update(
        modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE],
        max_examples=max_examples,
        deterministic=True,
        database="none",  # no example database: what runs is what the seed says
    )
    loaded.config.phases.update(phases=phases)
    return loaded


every_endpoint = _schema(max_examples=12, phases=["examples", "fuzzing"])
writers = _schema(max_examples=1, phases=["coverage"]).include(
    path_regex=r"^/(recruiting/events|conversations/\{conversation_id\}/notes|agents)$",
    method="POST",
)
CASES: list[str] = []


@pytest.fixture(scope="module")
async def api(database_url: str) -> AsyncIterator[TestClient]:
    """The app behind a test client that runs its lifespan once, on its own event loop."""
    from traza.db.engine import dispose_engine

    await dispose_engine()  # pools of earlier tests belong to the tests' event loop
    with TestClient(APP, base_url="http://traza", raise_server_exceptions=False) as client:
        yield client


# --- the 500s fuzzing found before, each now a 4xx with a machine-readable detail -----------

BIG = 2**63  # one past a bigint
KNOWN = [
    ("GET", f"/agents/{BIG}", None, ["path", "agent_id"]),
    ("PATCH", f"/agents/{BIG}", {"capacity": 1}, ["path", "agent_id"]),
    ("GET", f"/conversations/{BIG}/audit.jsonl", None, ["path", "conversation_id"]),
    ("POST", f"/conversations/{BIG}/notes", {"body": "hola"}, ["path", "conversation_id"]),
    ("GET", "/conversations/-1", None, ["path", "conversation_id"]),
    ("POST", f"/handoffs/{BIG}/claim", None, ["path", "handoff_id"]),
    ("POST", "/recruiting/events", {"id": "a\u0000", "type": "interview.cancelled"}, ["body"]),
    ("POST", "/recruiting/events", {"id": "\ud800", "type": "interview.cancelled"}, ["body"]),
    (
        "POST",
        "/recruiting/events",
        {"id": "e", "type": "application.created", "application_id": "a" * 500},
        ["body", "application_id"],
    ),
    (
        "POST",
        "/recruiting/events",
        {"id": "e", "type": "interview.scheduled", "starts_at": "9999-12-31T23:59:59Z"},
        ["body", "starts_at"],
    ),
    (
        "POST",
        "/recruiting/events",
        {"id": "e", "type": "interview.scheduled", "starts_at": "2026-03-02T10:00:00"},
        ["body", "starts_at"],
    ),
    (
        "POST",
        "/recruiting/events",
        {"id": "e", "type": "application.created", "occurred_at": 1e20},
        ["body", "occurred_at"],
    ),
    (
        "POST",
        "/recruiting/events",
        {
            "id": "e",
            "type": "candidate.updated",
            "candidate": {"external_id": "c", "profile": {"k\ud800": 1}},
        },
        ["body"],
    ),
]


@pytest.mark.parametrize(("method", "path", "body", "loc"), KNOWN)
def test_known_server_errors_are_now_a_422_naming_the_input(
    api: TestClient, method: str, path: str, body: Any, loc: list[str]
) -> None:
    content = None if body is None else json.dumps(body).encode()  # with \\u escapes
    response = api.request(
        method, path, data=content, headers=ADMIN | {"content-type": "application/json"}
    )
    assert response.status_code == 422, response.text
    [error] = response.json()["detail"]
    assert error["loc"] == loc and error["msg"] and error["type"]


def test_a_note_that_cannot_be_stored_is_a_422(api: TestClient) -> None:
    body = json.dumps(wa_payload(messages=[text_message("hola")])).encode()
    posted = api.post("/webhooks/whatsapp", data=body, headers={"X-Hub-Signature-256": sign(body)})
    assert posted.status_code == 200, posted.text
    [conversation] = api.get("/conversations", headers=ADMIN).json()
    for text in ("a\u0000b", "a\ud800b"):
        response = api.post(
            f"/conversations/{conversation['id']}/notes",
            data=json.dumps({"body": text}).encode(),
            headers=ADMIN | {"content-type": "application/json"},
        )
        assert response.status_code == 422, response.text
        assert "body" in response.json()["detail"][0]["msg"]


def _call(case: Any, api: TestClient) -> None:
    CASES.append(case.operation.label)
    case.call_and_validate(session=api, headers=ADMIN, checks=[not_a_server_error])


@every_endpoint.parametrize()
def test_no_input_makes_a_server_error(case: Any, api: TestClient) -> None:
    _call(case, api)


@writers.parametrize()
def test_no_boundary_of_a_writers_fields_makes_a_server_error(case: Any, api: TestClient) -> None:
    _call(case, api)


def test_the_run_was_a_few_hundred_cases_over_every_endpoint() -> None:
    operations = {f"{m.upper()} {p}" for p, ms in APP.openapi()["paths"].items() for m in ms}
    if len(CASES) < 300:
        pytest.skip("run alone or with -k: the fuzz tests above did not all run")
    assert set(CASES) == operations
