"""Follow-up messages from the agent's templates, with the seed's placeholders filled."""

from __future__ import annotations

import re
from typing import Any
from zoneinfo import ZoneInfo

from traza.db.models import Application, Candidate, Interview, Vacancy
from traza.recruiting.agents import BotAgentConfig, Template

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


__all__ = ["Any", "fill", "missing_fields", "placeholders", "render", "template_params"]
