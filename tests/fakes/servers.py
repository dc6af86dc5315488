"""Local servers that speak external protocols over a real socket (tests only).

- `GraphAPI`: the WhatsApp Cloud API's `POST /{phone_number_id}/messages`.
- `OpenAICompatible`: `POST /v1/chat/completions`, with tool calls for structured output.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LocalServer:
    """Runs a FastAPI app with uvicorn on 127.0.0.1 in the current event loop."""

    def __init__(self, app: FastAPI) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._server = uvicorn.Server(
            uvicorn.Config(
                app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="off"
            )
        )
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> LocalServer:
        self._task = asyncio.create_task(self._server.serve())
        while not self._server.started:
            await asyncio.sleep(0.01)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._server.should_exit = True
        if self._task:
            await self._task


@dataclass
class GraphAPI:
    """A WhatsApp Cloud API stand-in. Queue errors with `fail_next(code, ...)`."""

    requests: list[dict[str, Any]] = field(default_factory=list)
    errors: list[tuple[int, int, str]] = field(default_factory=list)
    token: str = "test-token"
    delay: float = 0.0  # seconds before answering (a slow or timed-out Graph API)

    def fail_next(self, code: int, title: str = "error", *, http_status: int = 400, times: int = 1):
        for _ in range(times):
            self.errors.append((http_status, code, title))

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.post("/{phone_number_id}/messages")
        async def messages(phone_number_id: str, request: Request) -> JSONResponse:
            body = await request.json()
            wamid = f"wamid.out.{uuid.uuid4().hex}"
            self.requests.append(
                {
                    "phone_number_id": phone_number_id,
                    "authorization": request.headers.get("authorization"),
                    "body": body,
                    "wamid": wamid,  # the id a successful send answers with
                }
            )
            if self.delay:
                await asyncio.sleep(self.delay)
            if request.headers.get("authorization") != f"Bearer {self.token}":
                return JSONResponse(
                    {"error": {"code": 190, "message": "Invalid OAuth access token"}}, 401
                )
            if self.errors:
                status, code, title = self.errors.pop(0)
                return JSONResponse(
                    {"error": {"code": code, "message": title, "type": "OAuthException"}}, status
                )
            if body.get("status") == "read":
                return JSONResponse({"success": True})
            return JSONResponse(
                {
                    "messaging_product": "whatsapp",
                    "contacts": [{"input": body.get("to"), "wa_id": body.get("to")}],
                    "messages": [{"id": wamid}],
                }
            )

        return app

    @property
    def sent(self) -> list[dict[str, Any]]:
        return [r["body"] for r in self.requests if r["body"].get("type")]


Script = Callable[[dict[str, Any]], dict[str, Any]]


@dataclass
class OpenAICompatible:
    """An OpenAI-compatible chat server. Tool calls answer structured-output requests.

    `classification`, `judge` and `reply` set what it answers; `delay` makes it slow.
    """

    classification: dict[str, Any] = field(
        default_factory=lambda: {
            "intent": "greeting",
            "language": "es",
            "frustration": False,
            "wants_human": False,
            "opt_out": False,
            "confidence": 0.95,
        }
    )
    judge: dict[str, Any] = field(default_factory=lambda: {"allowed": True, "reason": ""})
    reply: str = "¡Hola! Soy el asistente del modelo."
    tool_calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    """Calls to the graph's tools the model makes, one per request, before replying."""
    delay: float = 0.0
    fail_status: int | None = None
    requests: list[dict[str, Any]] = field(default_factory=list)

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.post("/v1/chat/completions")
        async def completions(request: Request) -> JSONResponse:
            body = await request.json()
            self.requests.append(body)
            if self.delay:
                await asyncio.sleep(self.delay)
            if self.fail_status:
                return JSONResponse({"error": {"message": "boom"}}, self.fail_status)
            tools = body.get("tools") or []
            names = [t["function"]["name"] for t in tools]
            message: dict[str, Any]
            if "ClassificationOutput" in names or "JudgeOutput" in names:
                name = "ClassificationOutput" if "ClassificationOutput" in names else "JudgeOutput"
                args = self.classification if name == "ClassificationOutput" else self.judge
                message = {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": f"call_{uuid.uuid4().hex[:8]}",
                            "type": "function",
                            "function": {"name": name, "arguments": json.dumps(args)},
                        }
                    ],
                }
                finish = "tool_calls"
            elif names and self.tool_calls:
                name, args = self.tool_calls.pop(0)
                message = {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": f"call_{uuid.uuid4().hex[:8]}",
                            "type": "function",
                            "function": {"name": name, "arguments": json.dumps(args)},
                        }
                    ],
                }
                finish = "tool_calls"
            else:
                message = {"role": "assistant", "content": self.reply}
                finish = "stop"
            return JSONResponse(
                {
                    "id": f"chatcmpl-{uuid.uuid4().hex[:8]}",
                    "object": "chat.completion",
                    "created": int(time.time()),
                    "model": body.get("model", "fake"),
                    "choices": [{"index": 0, "message": message, "finish_reason": finish}],
                    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
                }
            )

        return app

    def calls_of(self, tool: str) -> list[dict[str, Any]]:
        return [
            r
            for r in self.requests
            if tool in [t["function"]["name"] for t in r.get("tools") or []]
        ]


@dataclass
class WebhookReceiver:
    """An integration endpoint (helpdesk, CRM) receiving traza's signed webhooks.

    `answers` is consumed one per request: an int status code, or (status, json body).
    When it is empty the receiver answers 200 with `default_body`.
    """

    requests: list[dict[str, Any]] = field(default_factory=list)
    answers: list[int | tuple[int, Any]] = field(default_factory=list)
    default_body: Any = field(default_factory=lambda: {"ticket": "T-1"})

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.post("/hook")
        async def hook(request: Request) -> JSONResponse:
            raw = await request.body()
            self.requests.append(
                {"headers": dict(request.headers), "raw": raw, "body": json.loads(raw)}
            )
            answer = self.answers.pop(0) if self.answers else (200, self.default_body)
            status, body = answer if isinstance(answer, tuple) else (answer, {"error": "x"})
            return JSONResponse(body, status_code=status)

        return app
