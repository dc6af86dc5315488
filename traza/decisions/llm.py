"""The optional model path (any OpenAI-compatible server through `langchain-openai`).

Every call is bounded by `TRAZA_LLM_TIMEOUT`; callers fall back to the offline path
(or to a human) when a call fails, and record that it did.
"""

from __future__ import annotations

import asyncio
import json
import time
from functools import lru_cache
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)
from pydantic import BaseModel, Field, SecretStr

import prompts
from traza import metrics
from traza.decisions.classifier import Classification
from traza.rules.schema import INTENTS, Intent
from traza.settings import get_settings

MAX_TOOL_ROUNDS = 3


class LLMError(RuntimeError):
    """The model failed or timed out; the message says which."""


class ClassificationOutput(BaseModel):
    """Structured classification of one conversation turn (every judgment head)."""

    intent: Intent
    language: str = Field(description="ISO 639-1 code of the customer's language")
    wants_human: bool = Field(description="asks, directly or not, to talk to a person")
    negotiation: bool = Field(
        default=False, description="salary, pay, offer, benefits or conditions to negotiate"
    )
    frustration: bool = Field(description="complaint, anger, annoyance or repeated failure")
    out_of_scope: bool = Field(
        default=False, description="not about the candidate's own recruiting process"
    )
    opt_out: bool = Field(description="clearly asks to stop receiving messages")
    opt_in: bool = Field(default=False, description="asks to receive messages again")
    confidence: float = Field(ge=0, le=1)


class JudgeOutput(BaseModel):
    """Whether a reply may be sent."""

    allowed: bool
    reason: str = ""


@lru_cache(maxsize=4)
def chat_model(model: str | None = None) -> BaseChatModel | None:
    """The configured chat model, or None when no model is configured."""
    settings = get_settings()
    name = model or settings.traza_llm_model
    if not name or not settings.llm_enabled:
        return None
    from langchain_openai import ChatOpenAI  # noqa: PLC0415  (heavy, only with a model)

    key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else "unused"
    return ChatOpenAI(
        model=name,
        api_key=SecretStr(key),
        base_url=settings.openai_base_url,
        timeout=settings.traza_llm_timeout,
        max_retries=0,
        temperature=0,
    )


async def _bounded(coro: Any, call: str = "model") -> Any:
    timeout = get_settings().traza_llm_timeout
    started = time.perf_counter()
    outcome = "ok"
    try:
        return await asyncio.wait_for(coro, timeout=timeout)
    except TimeoutError:
        outcome = "timeout"
        raise LLMError(f"model call timed out after {timeout:g}s") from None
    except LLMError:
        outcome = "error"
        raise
    except Exception as exc:  # any provider/transport failure degrades the same way
        outcome = type(exc).__name__
        raise LLMError(f"{type(exc).__name__}: {str(exc)[:200]}") from None
    finally:
        metrics.MODEL_SECONDS.labels(call, "ok" if outcome == "ok" else "error").observe(
            time.perf_counter() - started
        )
        if outcome != "ok":
            metrics.MODEL_ERRORS.labels(call, outcome).inc()


def _history(recent: list[dict[str, Any]]) -> list[BaseMessage]:
    messages: list[BaseMessage] = []
    for item in recent:
        text = item.get("text") or f"[{item.get('type', 'message')}]"
        if item.get("who") == "customer":
            messages.append(HumanMessage(text))
        else:
            messages.append(AIMessage(text))
    return messages


async def classify(model: BaseChatModel, texts: list[str]) -> Classification:
    """Classify a turn with structured output."""
    structured = model.with_structured_output(ClassificationOutput, method="function_calling")
    system = prompts.system_prompt("classify", intents=", ".join(INTENTS))
    out = await _bounded(
        structured.ainvoke([SystemMessage(system), HumanMessage("\n".join(texts) or "(empty)")]),
        "classify",
    )
    if not isinstance(out, ClassificationOutput):
        raise LLMError("model returned no classification")
    return Classification(
        intent=out.intent,
        language=(out.language[:2].lower() or "es"),
        frustration=out.frustration,
        wants_human=out.wants_human,
        opt_out=out.opt_out,
        confidence=out.confidence,
        source="llm",
        negotiation=out.negotiation,
        out_of_scope=out.out_of_scope,
        opt_in=out.opt_in,
        opt_out_mode="act" if out.opt_out else None,
    )


async def write_reply(
    model: BaseChatModel,
    *,
    recent: list[dict[str, Any]],
    intent: str,
    language: str,
    template: str,
    name: str | None,
    company: str,
    tone: str = "friendly",
    tools: list[Any] | None = None,
) -> str:
    """Write a reply within the template's intent (tools bound when given)."""
    system = prompts.system_prompt(
        "reply",
        company=company,
        name=name or "the candidate",
        tone=tone,
        language=language,
        intent=intent,
        template=template,
    )
    runnable: Any = model.bind_tools(tools) if tools else model
    by_name = {t.name: t for t in tools or []}
    messages: list[BaseMessage] = [SystemMessage(system), *_history(recent)]
    out = await _bounded(runnable.ainvoke(messages), "write_reply")
    for _ in range(MAX_TOOL_ROUNDS):  # the model may look things up before it answers
        calls = getattr(out, "tool_calls", None) or []
        if not calls:
            break
        messages.append(out)
        for call in calls:
            tool = by_name.get(call["name"])
            result = await tool.ainvoke(call["args"]) if tool else {"error": "no such tool"}
            messages.append(ToolMessage(json.dumps(result, default=str), tool_call_id=call["id"]))
        out = await _bounded(runnable.ainvoke(messages), "write_reply")
    text = out.content if isinstance(out.content, str) else ""
    if not text.strip():
        raise LLMError("model returned an empty reply")
    return text.strip()


async def judge(model: BaseChatModel, text: str) -> tuple[bool, str]:
    """The model's verdict on a reply: (allowed, reason); raises `LLMError` when it can't.

    The reply is passed as delimited content to judge, never as instructions.
    """
    structured = model.with_structured_output(JudgeOutput, method="function_calling")
    out = await _bounded(
        structured.ainvoke(
            [
                SystemMessage(prompts.system_prompt("judge")),
                HumanMessage(f"<reply>\n{text}\n</reply>"),
            ]
        ),
        "judge",
    )
    if not isinstance(out, JudgeOutput):
        raise LLMError("model returned no verdict")
    return out.allowed, out.reason
