"""The baseline for webhook ack: a bare FastAPI endpoint that only inserts one row."""

from __future__ import annotations

import os

from fastapi import FastAPI, Request
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

engine = create_async_engine(
    os.environ["DATABASE_URL"].replace("postgresql://", "postgresql+psycopg://", 1),
    # The same pool the bench gives traza (TRAZA_DB_POOL_SIZE): no connection churn at the
    # closed loop's 32 concurrent requests.
    pool_size=int(os.environ.get("TRAZA_DB_POOL_SIZE", "20")),
    max_overflow=int(os.environ.get("TRAZA_DB_POOL_SIZE", "20")),
)
app = FastAPI()


@app.post("/ingest")
async def ingest(request: Request) -> dict[str, bool]:
    body = await request.body()
    async with engine.begin() as conn:
        await conn.execute(text("INSERT INTO bare_events (body) VALUES (:b)"), {"b": body})
    return {"ok": True}
