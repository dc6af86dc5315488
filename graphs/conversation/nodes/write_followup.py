"""Draft the agent's proactive follow-up from `traza.recruiting.messages.followup_message`.

Decides whether the model personalises it (never an approved WhatsApp template) and
carries the final text to the plan's fallback channels; the draft then goes through the
same guardrails as any bot reply. No template for the language: recorded, not sent.
"""

from __future__ import annotations

import time
from typing import Any

from langgraph.runtime import Runtime

from graphs.conversation.context import Context
from graphs.conversation.state import ConversationState
from graphs.conversation.tracing import record_step
from traza import trace
from traza.decisions import llm
from traza.recruiting.messages import followup_message
from traza.trace import kinds


async def write_followup(state: ConversationState, runtime: Runtime[Context]) -> dict[str, Any]:
    """Draft the follow-up named by the turn's input."""
    started = time.perf_counter()
    followup: dict[str, Any] = state.get("followup") or {}
    message = followup_message(followup=followup, in_window=bool(state.get("in_window")))
    agent = message.agent
    decision = {
        "route": "bot",
        "rule": f"followup:{followup.get('trigger')}",
        "reason": "proactive follow-up",
        "action": None,
        "bot": followup.get("agent"),
        "inputs": {"followup_id": followup.get("id")},
    }
    draft: dict[str, Any] | None = None
    if message.text is not None:
        draft = {
            "text": message.text,
            "source": f"followup:{followup['trigger']}",
            "key": message.key,
            "kind": "text",
            "content": message.content,
        }
    llm_error = None
    model = llm.chat_model(runtime.context.llm_model) if runtime.context.use_llm else None
    if draft is not None and message.kind != "template" and model is not None and agent is not None:
        # Inside the window the model may personalise within the template's intent; an
        # approved template (outside it) is sent exactly as approved.
        try:
            draft["text"] = await llm.write_reply(
                model,
                recent=state.get("recent") or [],
                intent=f"proactive follow-up ({followup['trigger']}): {agent.objective}",
                language=followup["language"],
                template=draft["text"],
                name=(followup.get("values") or {}).get("nombre"),
                company=agent.context.company,
                tone=agent.tone,
            )
            draft["content"]["body"] = draft["text"]
            draft["source"] = f"llm:followup:{followup['trigger']}"
        except llm.LLMError as exc:
            llm_error = str(exc)
    if draft is not None:
        draft["kind"] = message.kind
        # The text the guardrails check is the one any channel sends.
        if (fallback := message.fallback_content(draft["text"])) is not None:
            draft["content"]["fallback"] = fallback
    await record_step(
        conversation_id=state["conversation_id"],
        kind=kinds.FOLLOWUP_DRAFTED,
        actor=trace.bot(followup.get("agent") or runtime.context.bot_name),
        data={
            "followup_id": followup.get("id"),
            "trigger": followup.get("trigger"),
            "message_kind": draft["kind"] if draft else None,
            "in_window": bool(state.get("in_window")),
            "channel": message.channel,
            "fallback": message.fallback,
            "unavailable": followup.get("unavailable") or {},
            "due_at": followup.get("due_at"),
            "fired_at": followup.get("fired_at"),
            "error": None if draft else "no template for this trigger and language",
            "llm_error": llm_error,
            "source": draft["source"] if draft else None,
        },
        started=started,
        llm=model is not None,
    )
    return {"draft": draft, "decision": decision, "guardrail": None}
