"""Draft the bot's reply: a template from `prompts/`, or the model within its intent.

Decides the draft's text and source: the model (`traza.decisions.llm`, with the
candidate's read-only `tools`) when configured, else or on failure the template.
"""

from __future__ import annotations

import time
from typing import Any

from langgraph.runtime import Runtime

import prompts
from graphs.conversation.context import Context
from graphs.conversation.state import ConversationState
from graphs.conversation.tracing import record_step
from tools import tools_for
from traza import trace
from traza.decisions import llm
from traza.trace import kinds


async def write_reply(state: ConversationState, runtime: Runtime[Context]) -> dict[str, Any]:
    """Write the draft; a model failure falls back to the template and is recorded."""
    started = time.perf_counter()
    intent = state["classification"]["intent"]
    language = state.get("language") or "es"
    template = prompts.reply(intent, language, nombre=state.get("contact_name"))
    draft: dict[str, Any] = {"kind": "text", "text": template, "source": "template"}
    data: dict[str, Any] = {"template": intent, "language": language}
    model = llm.chat_model(runtime.context.llm_model) if runtime.context.use_llm else None
    if model is not None:
        # The conversation's candidate's read-only tools (bound to them, never chosen by the
        # model); booking and other changes go through their own nodes.
        candidate_id = state.get("candidate_id")
        tools = tools_for(candidate_id, read_only=True) if candidate_id else None
        try:
            text = await llm.write_reply(
                model,
                recent=[*state.get("recent", []), *_turn_as_recent(state)],
                intent=intent,
                language=language,
                template=template,
                name=state.get("contact_name"),
                company=runtime.context.company,
                tools=tools,
            )
            draft = {"kind": "text", "text": text, "source": "llm"}
        except llm.LLMError as exc:
            data |= {"llm_error": str(exc), "fallback": "template"}
    await record_step(  # buffered: written with the turn's effect
        conversation_id=state["conversation_id"],
        kind=kinds.REPLY_DRAFTED,
        actor=trace.bot(runtime.context.bot_name),
        data=data | {"source": draft["source"]},
        started=started,
        llm=model is not None,
    )
    return {"draft": draft}


def _turn_as_recent(state: ConversationState) -> list[dict[str, Any]]:
    return [
        {"who": "customer", "type": i.get("type"), "text": i.get("text")}
        for i in state.get("turn") or []
    ]
