"""Check the draft against the policies (and the model judge, when configured)."""

from __future__ import annotations

import time
from typing import Any

from langgraph.runtime import Runtime

from graphs.conversation.context import Context
from graphs.conversation.state import ConversationState
from graphs.conversation.tracing import record_step
from traza import trace
from traza.decisions import llm
from traza.decisions.guardrails import check_reply


async def check_guardrails(state: ConversationState, runtime: Runtime[Context]) -> dict[str, Any]:
    """A blocked draft is not sent: the turn is escalated to a human, with the reason."""
    started = time.perf_counter()
    draft = state.get("draft") or {}
    verdict = check_reply(str(draft.get("text") or ""))
    data: dict[str, Any] = {}
    model = llm.chat_model(runtime.context.llm_model) if runtime.context.use_llm else None
    if verdict.allowed and model is not None:
        try:
            verdict = await llm.judge(model, str(draft.get("text") or ""))
        except llm.LLMError as exc:
            data |= {"llm_error": str(exc), "fallback": "policy"}
    update: dict[str, Any] = {"guardrail": verdict.as_dict()}
    if not verdict.allowed:
        data["blocked_text"] = draft.get("text")
        update["decision"] = {
            **state["decision"],
            "route": "human",
            "rule": "guardrail",
            "reason": f"reply blocked: {', '.join(verdict.policies)}",
        }
    await record_step(  # buffered: written with the turn's effect
        conversation_id=state["conversation_id"],
        kind="guardrail.verdict",
        actor=trace.bot(runtime.context.bot_name),
        data=verdict.as_dict() | data | {"draft_source": draft.get("source")},
        started=started,
        llm=model is not None,
    )
    return update
