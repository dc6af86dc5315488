"""Liveness (`/metrics` is in `api/routes/metrics.py`)."""

from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy import text

from api.deps import SessionDep

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz(session: SessionDep) -> dict[str, str]:
    """200 when the API can reach its database."""
    await session.execute(text("SELECT 1"))
    return {"status": "ok"}
