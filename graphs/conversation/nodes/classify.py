"""Classify the turn: the judgment model's heads, intent and language (plus the model's, if any).

Decides the classification, the language and the unknown-answer streak; a changed language
is stored through `traza.conversations.repository.set_language`.
"""

from __future__ import annotations

import time
from typing import Any

from langgraph.runtime import Runtime

from graphs.conversation.context import Context
from graphs.conversation.state import ConversationState
from graphs.conversation.tracing import record_step
from traza import trace
from traza.conversations.repository import set_language
from traza.decisions import llm
from traza.decisions.classifier import classify_turn, combine
from traza.rules import active


async def classify(state: ConversationState, runtime: Runtime[Context]) -> dict[str, Any]:
    """The offline model always decides; a configured model adds signals, never removes one.

    A model failure or timeout leaves the offline verdict alone, recorded as a fallback.
    """
    started = time.perf_counter()
    turn = state.get("turn") or []
    texts = [i.get("text") or "" for i in turn]
    rules = await active.current()
    result = classify_turn(
        texts,
        types=[i.get("type") or "text" for i in turn],
        payloads=[p for i in turn if (p := i.get("payload"))],
        language_hint=state.get("language"),
        policy=rules.rules.judgment,
    )
    data: dict[str, Any] = {}
    model = llm.chat_model(runtime.context.llm_model) if runtime.context.use_llm else None
    if model is not None and result.source == "model":
        try:
            result = combine(result, await llm.classify(model, texts))
        except llm.LLMError as exc:
            data["llm_error"] = str(exc)
            data["fallback"] = "model"
    if result.language != state.get("language") and result.source != "type":
        await set_language(state["conversation_id"], result.language)
    streak = state.get("unknown_streak", 0) + 1 if result.intent == "unknown" else 0
    await record_step(  # buffered: written with the turn's effect
        conversation_id=state["conversation_id"],
        kind="classification",
        actor=trace.bot(runtime.context.bot_name),
        data=result.as_dict() | data,
        started=started,
        llm=result.llm is not None or "llm_error" in data,
    )
    return {
        "classification": result.as_dict(),
        "language": result.language,
        "unknown_streak": streak,
    }
