"""Follow-up messages from the agent's templates, with the seed's placeholders filled.

`followup_message` writes a fired follow-up for the first channel of its plan.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

from traza.db.models import Application, Candidate, Interview, Vacancy
from traza.outbound.sender import FALLBACK_CHANNELS
from traza.recruiting.agents import BotAgentConfig, Template, active_agents

_FIELD = re.compile(r"{(\w+)}")
FIELD_LABELS = {
    "cv_url": {"es": "tu CV", "en": "your CV"},
    "years_experience": {"es": "tus años de experiencia", "en": "your years of experience"},
    "city": {"es": "tu ciudad", "en": "your city"},
    "email": {"es": "tu correo", "en": "your e-mail"},
    "availability": {"es": "tu disponibilidad", "en": "your availability"},
}


def missing_fields(candidate: Candidate, vacancy: Vacancy | None) -> list[str]:
    """Profile fields the vacancy needs that the candidate has not given."""
    profile = candidate.profile or {}
    have = {k for k, v in profile.items() if v not in (None, "")}
    if candidate.email:
        have.add("email")
    return [f for f in (vacancy.required_fields if vacancy else []) if f not in have]


def placeholders(
    agent: BotAgentConfig,
    candidate: Candidate,
    application: Application | None,
    vacancy: Vacancy | None,
    interview: Interview | None,
) -> dict[str, str]:
    """Every placeholder's value for this candidate (missing ones are empty)."""
    lang = candidate.locale if candidate.locale in ("es", "en") else "es"
    values = {
        "nombre": candidate.name.split()[0] if candidate.name else "",
        "nombre_completo": candidate.name or "",
        "vacante": vacancy.title if vacancy else "",
        "firma": agent.context.signature,
        "empresa": agent.context.company,
        "etapa": application.stage if application else "",
        "plazo": agent.context.response_time or "",
        "faltantes": "",
    }
    missing = missing_fields(candidate, vacancy)
    if missing:
        labels = [FIELD_LABELS.get(f, {}).get(lang, f.replace("_", " ")) for f in missing]
        ask = (
            "Para completar tu perfil, ¿nos compartes "
            if lang == "es"
            else ("To complete your profile, could you share ")
        )
        values["faltantes"] = ask + ", ".join(labels) + "? "
    if interview is not None:
        local = interview.starts_at.astimezone(ZoneInfo(candidate.timezone))
        values |= {
            "fecha": local.strftime("%d/%m/%Y"),
            "hora": local.strftime("%H:%M"),
            "lugar": interview.location or interview.video_link or "",
            "link": interview.video_link or interview.location or "",
        }
    return values


def fill(text: str, values: dict[str, str]) -> str:
    """Replace `{placeholder}`s; unknown ones become empty (validated at load time)."""
    filled = _FIELD.sub(lambda m: values.get(m.group(1), ""), text)
    return re.sub(r"\s+", " ", filled).strip()


def render(agent: BotAgentConfig, template: Template, values: dict[str, str]) -> str:
    """The template's text in the agent's tone."""
    text = (
        template.text.get(agent.tone)
        or template.text.get("any")
        or next(iter(template.text.values()))
    )
    return fill(text, values)


def template_params(template: Template, values: dict[str, str]) -> list[str]:
    """The approved WhatsApp template's parameters, in order."""
    assert template.whatsapp_template is not None
    return [values.get(p, "") or "-" for p in template.whatsapp_template.params]


@dataclass(kw_only=True)
class FollowupMessage:
    """A fired follow-up, written from its agent's template for the plan's first channel."""

    channel: str
    """The first channel of the follow-up's plan (WhatsApp when it has none)."""
    fallback: list[str]
    """The plan's e-mail or SMS after its first channel."""
    agent: BotAgentConfig | None = None
    text: str | None = None
    """None when the agent has no template for the trigger and language."""
    key: str | None = None
    """The outbox idempotency key: one message per follow-up."""
    kind: str = "text"
    """`text`, `interactive` (reply buttons) or `template` (WhatsApp's approved one)."""
    content: dict[str, Any] = field(default_factory=dict)
    subject: str | None = None
    buttons: list[dict[str, str]] = field(default_factory=list)

    def fallback_content(self, text: str) -> dict[str, Any] | None:
        """The fallback channels with `text` (the one the guardrails check), if any."""
        if not self.fallback:
            return None
        return {
            "channels": self.fallback,
            "text": text,
            "subject": self.subject,
            "buttons": self.buttons,
        }


def followup_message(*, followup: dict[str, Any], in_window: bool) -> FollowupMessage:
    """Write the follow-up `followup` (a fired follow-up's turn input) from its template.

    Inside WhatsApp's 24-hour window it is free text (with reply buttons when the template
    has them); outside it, the approved template with its named parameters. By e-mail or
    SMS it is the text, with the template's subject (e-mail) and the buttons as options.
    """
    agent = active_agents().get(followup.get("agent", ""))
    template = agent.template(followup["trigger"], followup["language"]) if agent else None
    plan: list[str] = list(followup.get("channels") or ["whatsapp"])
    message = FollowupMessage(
        channel=plan[0], fallback=[c for c in plan[1:] if c in FALLBACK_CHANNELS], agent=agent
    )
    if agent is None or template is None:
        return message
    values: dict[str, str] = followup.get("values") or {}
    text = render(agent, template, values)
    message.text, message.key = text, f"followup:{followup['id']}"
    message.subject = fill(template.subject, values) if template.subject else None
    message.content = content = {
        "body": text,
        "followup_id": followup["id"],
        "trigger": followup["trigger"],
        "proactive": True,
    }
    interview = followup.get("interview_id")
    payloads = [f"interview:confirm:{interview}", f"interview:reschedule:{interview}"]
    if template.buttons and interview:
        message.buttons = [
            {"id": p, "title": b[:20]} for p, b in zip(payloads, template.buttons, strict=False)
        ]
    if message.channel != "whatsapp":  # e-mail or SMS: the text, buttons as options
        content["channel"] = message.channel
        if message.subject and message.channel == "email":
            content["subject"] = message.subject
        if message.buttons:
            message.kind = "interactive"
            content["buttons"] = message.buttons
    elif in_window:
        if message.buttons:
            message.kind = "interactive"
            content["buttons"] = message.buttons
    elif template.whatsapp_template is not None:
        message.kind = "template"
        content |= {
            "name": template.whatsapp_template.name,
            "language": template.whatsapp_template.language,
            "params": template_params(template, values),
        }
        if template.buttons and interview:
            content["button_payloads"] = payloads[: len(template.buttons)]
    return message


__all__ = [
    "Any",
    "FollowupMessage",
    "fill",
    "followup_message",
    "missing_fields",
    "placeholders",
    "render",
    "template_params",
]
