"""Classify the turn: intent, language, frustration, asks-for-a-person, opt-out, confidence."""

from __future__ import annotations

import time
from typing import Any

from langgraph.runtime import Runtime

from graphs.conversation.context import Context
from graphs.conversation.state import ConversationState
from graphs.conversation.tracing import record_step
from traza import trace
from traza.decisions import llm
from traza.decisions.classifier import Classification, classify_turn


async def classify(state: ConversationState, runtime: Runtime[Context]) -> dict[str, Any]:
    """Use the model when configured; fall back to the offline classifier on any failure."""
    started = time.perf_counter()
    turn = state.get("turn") or []
    texts = [i.get("text") or "" for i in turn]
    result: Classification | None = None
    data: dict[str, Any] = {}
    model = llm.chat_model(runtime.context.llm_model) if runtime.context.use_llm else None
    if model is not None:
        try:
            result = await llm.classify(model, texts)
        except llm.LLMError as exc:
            data["llm_error"] = str(exc)
            data["fallback"] = "rules"
    if result is None:
        result = classify_turn(
            texts,
            types=[i.get("type") or "text" for i in turn],
            payloads=[p for i in turn if (p := i.get("payload"))],
            language_hint=state.get("language"),
        )
    streak = state.get("unknown_streak", 0) + 1 if result.intent == "unknown" else 0
    await record_step(  # buffered: written with the turn's effect
        conversation_id=state["conversation_id"],
        kind="classification",
        actor=trace.bot(runtime.context.bot_name),
        data=result.as_dict() | data,
        started=started,
        llm=result.source == "llm" or "llm_error" in data,
    )
    return {
        "classification": result.as_dict(),
        "language": result.language,
        "unknown_streak": streak,
    }
