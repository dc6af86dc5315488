"""The active rules (`GET /rules`) and an explicit reload (`POST /rules/reload`)."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, status

from api.deps import AdminDep, OperatorDep
from api.schemas import RulesPublic
from traza.rules import active
from traza.rules.loader import RulesError

router = APIRouter(prefix="/rules", tags=["rules"])


async def _public() -> RulesPublic:
    loaded = await active.current()
    return RulesPublic(
        **active.status(),
        rules=loaded.rules.model_dump(mode="json", exclude={"integrations"})
        | {
            "integrations": {
                name: {"url": str(i.url), "max_attempts": i.max_attempts}
                for name, i in loaded.rules.integrations.items()
            }
        },
    )


@router.get("", response_model=RulesPublic)
async def show_rules(operator: OperatorDep) -> RulesPublic:
    """The rules every decision uses now, their version, and the last refused reload."""
    return await _public()


@router.post("/reload", response_model=RulesPublic)
async def reload_rules(operator: AdminDep) -> RulesPublic:
    """Validate the rules file and make it active; a bad file is refused (422, with lines)."""
    try:
        await active.reload()
    except RulesError as exc:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            detail={
                "message": "rules refused; the previous rules stay active",
                "problems": [
                    {"file": p.file, "line": p.line, "where": p.where, "problem": p.message}
                    for p in exc.problems
                ],
            },
        ) from None
    return await _public()
