"""A generic SMS provider over HTTP, speaking the contract of `traza.channels.sms`."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse


@dataclass
class SmsProvider:
    """`POST /messages` with a bearer token; answers `{"id": …}`. Queue errors with `fail_next`."""

    token: str = "sms-token"
    requests: list[dict[str, Any]] = field(default_factory=list)
    errors: list[tuple[int, str]] = field(default_factory=list)

    def fail_next(self, status: int, error: str = "error", *, times: int = 1) -> None:
        self.errors.extend([(status, error)] * times)

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.post("/messages")
        async def messages(request: Request) -> JSONResponse:
            body = await request.json()
            self.requests.append(
                {"authorization": request.headers.get("authorization"), "body": body}
            )
            if request.headers.get("authorization") != f"Bearer {self.token}":
                return JSONResponse({"error": "invalid token"}, 401)
            if self.errors:
                status, error = self.errors.pop(0)
                return JSONResponse({"error": error}, status)
            return JSONResponse({"id": f"sms-{uuid.uuid4().hex[:12]}", "status": "queued"}, 201)

        return app

    @property
    def sent(self) -> list[dict[str, Any]]:
        return [r["body"] for r in self.requests]
