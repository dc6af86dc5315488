"""Check the draft in layers: entities, other people's data, the reply classifier, the judge.

Decides whether the draft may go (`traza.decisions.guardrails.check`); a blocked one turns
the decision into a handoff. Whose data the reply may hold: `people_for_reply`.
"""

from __future__ import annotations

import time
from typing import Any

from langgraph.runtime import Runtime

from graphs.conversation.context import Context
from graphs.conversation.state import ConversationState
from graphs.conversation.tracing import record_step
from traza import trace
from traza.decisions import guardrails, llm
from traza.recruiting.people import people_for_reply
from traza.trace import kinds


async def check_guardrails(state: ConversationState, runtime: Runtime[Context]) -> dict[str, Any]:
    """A blocked draft is never sent: the turn goes to a human with category and span.

    The judge (with a model) fails closed: if it cannot answer, the reply is held and
    recorded as `guardrail.unavailable`.
    """
    started = time.perf_counter()
    draft = state.get("draft") or {}
    text = str(draft.get("text") or "")
    model = llm.chat_model(runtime.context.llm_model) if runtime.context.use_llm else None

    async def judge(reply: str) -> tuple[bool, str]:
        assert model is not None
        return await llm.judge(model, reply)

    people = await people_for_reply(
        state["conversation_id"], text, contact_name=state.get("contact_name")
    )
    verdict = await guardrails.check(text, people=people, judge=judge if model else None)
    update: dict[str, Any] = {"guardrail": verdict.as_dict()}
    data: dict[str, Any] = {"draft_source": draft.get("source")}
    if not verdict.allowed:
        data["blocked_text"] = text
        span = f" («{verdict.span}»)" if verdict.span else ""
        update["decision"] = {
            **state["decision"],
            "route": "human",
            "rule": "guardrail",
            "reason": f"reply blocked by {verdict.source}: {', '.join(verdict.policies)}{span}",
            "guardrail": {
                "categories": verdict.policies,
                "span": verdict.span,
                "layer": verdict.source,
            },
        }
    unavailable = guardrails.UNAVAILABLE in verdict.policies
    await record_step(  # buffered: written with the turn's effect
        conversation_id=state["conversation_id"],
        kind=kinds.GUARDRAIL_UNAVAILABLE if unavailable else kinds.GUARDRAIL_VERDICT,
        actor=trace.bot(runtime.context.bot_name),
        data=verdict.as_dict() | data,
        started=started,
        llm=model is not None,
    )
    return update
