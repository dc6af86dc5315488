"""Write the agent's proactive follow-up: its template in the candidate's language and tone.

Inside WhatsApp's 24-hour window the message is free text (with reply buttons when the
template has them); outside it, the approved template with named parameters. By e-mail
or SMS (the first channel of the follow-up's plan when WhatsApp cannot reach the
candidate, or when the agent prefers them) it is the text, with the template's subject
and the buttons as options. When the plan has e-mail or SMS after WhatsApp, the message
carries them as its fallback, with the same text. The draft then goes through the same
guardrails as any bot reply.
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
from traza.recruiting.agents import active_agents
from traza.recruiting.messages import fill, render, template_params
from traza.trace import kinds

FALLBACK_CHANNELS = ("email", "sms")


async def write_followup(state: ConversationState, runtime: Runtime[Context]) -> dict[str, Any]:
    """Draft the follow-up named by the turn's input."""
    started = time.perf_counter()
    followup: dict[str, Any] = state.get("followup") or {}
    agent = active_agents().get(followup.get("agent", ""))
    template = agent.template(followup["trigger"], followup["language"]) if agent else None
    decision = {
        "route": "bot",
        "rule": f"followup:{followup.get('trigger')}",
        "reason": "proactive follow-up",
        "action": None,
        "bot": followup.get("agent"),
        "inputs": {"followup_id": followup.get("id")},
    }
    draft: dict[str, Any] | None = None
    plan: list[str] = list(followup.get("channels") or ["whatsapp"])
    channel, fallback = plan[0], [c for c in plan[1:] if c in FALLBACK_CHANNELS]
    subject: str | None = None
    buttons: list[dict[str, str]] = []
    if agent is not None and template is not None:
        values: dict[str, str] = followup.get("values") or {}
        text = render(agent, template, values)
        subject = fill(template.subject, values) if template.subject else None
        content: dict[str, Any] = {
            "body": text,
            "followup_id": followup["id"],
            "trigger": followup["trigger"],
            "proactive": True,
        }
        kind = "text"
        draft = {
            "text": text,
            "source": f"followup:{followup['trigger']}",
            "key": f"followup:{followup['id']}",
            "kind": "text",
            "content": content,
        }
        interview = followup.get("interview_id")
        payloads = [f"interview:confirm:{interview}", f"interview:reschedule:{interview}"]
        if template.buttons and interview:
            buttons = [
                {"id": p, "title": b[:20]} for p, b in zip(payloads, template.buttons, strict=False)
            ]
        if channel != "whatsapp":  # e-mail or SMS: the text, buttons as options
            content["channel"] = channel
            if subject and channel == "email":
                content["subject"] = subject
            if buttons:
                kind = "interactive"
                content["buttons"] = buttons
        elif state.get("in_window"):
            if buttons:
                kind = "interactive"
                content["buttons"] = buttons
        elif template.whatsapp_template is not None:
            kind = "template"
            content |= {
                "name": template.whatsapp_template.name,
                "language": template.whatsapp_template.language,
                "params": template_params(template, values),
            }
            if template.buttons and interview:
                content["button_payloads"] = payloads[: len(template.buttons)]
    llm_error = None
    model = llm.chat_model(runtime.context.llm_model) if runtime.context.use_llm else None
    if draft is not None and kind != "template" and model is not None and agent is not None:
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
        draft["kind"] = kind
        if fallback:  # the text the guardrails check is the one any channel sends
            draft["content"]["fallback"] = {
                "channels": fallback,
                "text": draft["text"],
                "subject": subject,
                "buttons": buttons,
            }
    await record_step(
        conversation_id=state["conversation_id"],
        kind=kinds.FOLLOWUP_DRAFTED,
        actor=trace.bot(followup.get("agent") or runtime.context.bot_name),
        data={
            "followup_id": followup.get("id"),
            "trigger": followup.get("trigger"),
            "message_kind": draft["kind"] if draft else None,
            "in_window": bool(state.get("in_window")),
            "channel": channel,
            "fallback": fallback,
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
