"""Follow-up agents as configuration: `TRAZA_CONFIG_DIR/agents/*.yaml`, one agent per file.

The fields are the seed's steps 1-5: name, objective, tone and channels; company
context; limits; triggers; templates per trigger and language. Validated like the rules
file (every problem with its file and line); several agents may run side by side.
"""

from __future__ import annotations

import logging
import re
from datetime import time, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from traza.decisions import guardrails
from traza.rules.loader import Problem, RulesError, parse_model, problems_at
from traza.rules.schema import WEEKDAYS, Duration, TimeRange, Weekday
from traza.settings import get_settings

log = logging.getLogger(__name__)

TRIGGERS = (
    "application_received",
    "no_activity",
    "stage_changed",
    "interview_24h",
    "interview_unconfirmed",
    "interview_1h",
    "post_interview",
    "closure",
    "reactivation",
)
Trigger = Literal[
    "application_received",
    "no_activity",
    "stage_changed",
    "interview_24h",
    "interview_unconfirmed",
    "interview_1h",
    "post_interview",
    "closure",
    "reactivation",
]
PLACEHOLDERS = {
    "nombre",
    "nombre_completo",
    "vacante",
    "firma",
    "empresa",
    "etapa",
    "fecha",
    "hora",
    "lugar",
    "link",
    "faltantes",
    "plazo",
}
_FIELD = re.compile(r"{(\w+)}")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Context(_Strict):
    """What the agent knows about the company (seed step 3)."""

    company: str = Field(min_length=1)
    process: str | None = None
    policy: str | None = None
    signature: str = Field(min_length=1)
    response_time: str | None = None
    """How long the team takes to answer after an interview, e.g. "5 días hábiles"."""


class ContactHours(_Strict):
    """When the agent may write, in the candidate's time zone."""

    days: list[Weekday] = ["mon", "tue", "wed", "thu", "fri"]
    hours: TimeRange = (time(9), time(19))


class Limits(_Strict):
    """Seed step 4: operational limits."""

    max_attempts: int = Field(default=3, ge=1, le=10)
    """Proactive messages without an answer before the agent pauses."""
    contact_hours: ContactHours = ContactHours()


class TriggerConfig(_Strict):
    """When one trigger acts (the unused fields of a trigger are ignored)."""

    enabled: bool = True
    wait: Duration | None = None
    """After the event (application_received, post_interview)."""
    after: Duration | None = None
    """Without movement (no_activity) or without contact (reactivation)."""
    before: Duration | None = None
    """Before the interview (interview_24h, interview_1h, interview_unconfirmed)."""
    stages: list[str] | None = None
    """Stages that trigger a message (stage_changed, closure)."""
    alert: Literal["handoff", "none"] = "handoff"
    """interview_unconfirmed: how the team is alerted."""


DEFAULT_TRIGGERS: dict[str, dict[str, Any]] = {
    "application_received": {"wait": "1h"},
    "no_activity": {"after": "3d"},
    "stage_changed": {"stages": ["interview", "offer"]},
    "interview_24h": {"before": "24h"},
    "interview_unconfirmed": {"before": "4h"},
    "interview_1h": {"before": "1h"},
    "post_interview": {"wait": "2h"},
    "closure": {"stages": ["hired", "rejected"]},
    "reactivation": {"enabled": False, "after": "90d"},
}


class WhatsAppTemplate(_Strict):
    """An approved WhatsApp template: used outside the 24-hour window."""

    name: str = Field(min_length=1, max_length=512)
    language: str = Field(min_length=2, max_length=16)
    params: list[str] = []
    """Placeholder names, in the template's order ({{1}}, {{2}}…)."""


def _tone_text(value: Any) -> Any:
    return {"any": value} if isinstance(value, str) else value


class Template(_Strict):
    """One trigger's message in one language."""

    text: Annotated[dict[str, str], BeforeValidator(_tone_text)]
    """Free text (inside the window), or one text per tone: {formal: …, friendly: …}."""
    subject: str | None = None
    """E-mail subject when the message goes by e-mail."""
    whatsapp_template: WhatsAppTemplate | None = None
    buttons: list[str] = []
    """Reply button titles (interview_24h: confirm / reschedule)."""


class BotAgentConfig(_Strict):
    """One follow-up agent: a bot's configuration (objective, tone, channels, triggers)."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")
    objective: str = Field(min_length=1)
    tone: Literal["formal", "friendly", "casual"] = "friendly"
    channels: list[Literal["whatsapp", "email", "sms"]] = Field(
        default=["whatsapp", "email"], min_length=1
    )
    inbox: str | None = None
    """phone_number_id to write from (default: the only inbox)."""
    languages: list[str] = ["es", "en"]
    context: Context
    limits: Limits = Limits()
    triggers: dict[Trigger, TriggerConfig] = {}
    templates: dict[Trigger, dict[str, Template]]

    @model_validator(mode="after")
    def _fill_triggers(self) -> BotAgentConfig:
        merged = {
            name: TriggerConfig.model_validate(
                # A trigger named in the file is on unless it says `enabled: false`.
                DEFAULT_TRIGGERS[name]
                | {"enabled": True}
                | self.triggers[name].model_dump(exclude_unset=True)
                if name in self.triggers
                else DEFAULT_TRIGGERS[name]
            )
            for name in TRIGGERS
        }
        object.__setattr__(self, "triggers", merged)
        return self

    def trigger(self, name: str) -> TriggerConfig:
        """A trigger's settings (defaults filled in)."""
        return self.triggers[name]  # type: ignore[index]

    def template(self, trigger: str, language: str) -> Template | None:
        """The template for a trigger in a language (falling back to the first language)."""
        per_language = self.templates.get(trigger)  # type: ignore[call-overload]
        if not per_language:
            return None
        found: Template | None = per_language.get(language) or per_language.get(self.languages[0])
        return found


def _references(agent: BotAgentConfig) -> list[tuple[tuple[Any, ...], str]]:
    problems: list[tuple[tuple[Any, ...], str]] = []
    for trigger, config in agent.triggers.items():
        if config.enabled and trigger != "interview_unconfirmed" and trigger not in agent.templates:
            problems.append((("templates",), f"trigger '{trigger}' is enabled but has no template"))
    for trigger, languages in agent.templates.items():
        for language, template in languages.items():
            texts = [*template.text.values(), template.subject or ""]
            if template.whatsapp_template:
                texts.append(" ".join(f"{{{p}}}" for p in template.whatsapp_template.params))
            for text in texts:
                for field in _FIELD.findall(text):
                    if field not in PLACEHOLDERS:
                        problems.append(
                            (
                                ("templates", trigger, language),
                                f"unknown placeholder {{{field}}} "
                                f"(known: {', '.join(sorted(PLACEHOLDERS))})",
                            )
                        )
            if len(template.buttons) > 3:
                problems.append(
                    (("templates", trigger, language, "buttons"), "at most 3 reply buttons")
                )
            for tone, text in template.text.items():
                problems += [
                    (("templates", trigger, language, "text", tone), problem)
                    for problem in template_violations(agent, text)
                ]
    return problems


SAMPLE = {
    "nombre": "Ana",
    "nombre_completo": "Ana Pérez",
    "vacante": "Analista de datos",
    "etapa": "entrevista",
    "fecha": "martes 14 de marzo",
    "hora": "10:00",
    "lugar": "Av. Reforma 123",
    "link": "https://example.com/entrevista",
    "faltantes": "tu CV",
    "plazo": "5 días hábiles",
}
"""Sample values a template is rendered with before its guardrail check."""


def template_violations(agent: BotAgentConfig, text: str) -> list[str]:
    """Guardrail problems of a template rendered with sample data (empty: it may send)."""
    values = SAMPLE | {"firma": agent.context.signature or "", "empresa": agent.context.company}
    rendered = _FIELD.sub(lambda m: str(values.get(m.group(1), m.group(0))), text)
    verdict = guardrails.check_reply(rendered)
    if verdict.allowed:
        return []
    return [
        f"agent '{agent.name}': template breaks the guardrail policy "
        f"({', '.join(verdict.policies)}, layer {verdict.source}): «{verdict.span}»"
    ]


def parse_agent(text: str, *, source: str) -> BotAgentConfig:
    """Validate one agent file."""
    agent, tree = parse_model(text, source=source, model=BotAgentConfig)
    if found := _references(agent):
        raise problems_at(tree, source, found)
    return agent


def agents_dir() -> Path | None:
    """`TRAZA_CONFIG_DIR/agents` when it exists."""
    folder = get_settings().traza_config_dir
    if folder is None or not (folder / "agents").is_dir():
        return None
    return folder / "agents"


def load_agents(folder: Path | None = None) -> dict[str, BotAgentConfig]:
    """Every agent file in the folder; raise `RulesError` listing every problem."""
    folder = folder or agents_dir()
    if folder is None:
        return {}
    agents: dict[str, BotAgentConfig] = {}
    problems: list[Problem] = []
    for path in sorted([*folder.glob("*.yaml"), *folder.glob("*.yml")]):
        try:
            agent = parse_agent(path.read_text(encoding="utf-8"), source=str(path))
        except RulesError as exc:
            problems.extend(exc.problems)
            continue
        if agent.name in agents:
            problems.append(Problem(str(path), None, "name", f"agent '{agent.name}' twice"))
        agents[agent.name] = agent
    if problems:
        raise RulesError(problems)
    return agents


@lru_cache(maxsize=1)
def _cached(folder: str | None, stamp: tuple[int, ...]) -> dict[str, BotAgentConfig]:
    return load_agents(Path(folder) if folder else None)


_last_good: dict[str, dict[str, BotAgentConfig]] = {}


def active_agents() -> dict[str, BotAgentConfig]:
    """The configured agents (re-read when a file changes).

    A changed folder with a bad file (a template that breaks a guardrail included) is
    refused: the previous agents stay active and the problems are logged.
    """
    folder = agents_dir()
    if folder is None:
        return {}
    stamp = tuple(p.stat().st_mtime_ns for p in sorted(folder.glob("*.y*ml")))
    try:
        agents = _cached(str(folder), stamp)
    except RulesError as exc:
        previous = _last_good.get(str(folder), {})
        kept = ", ".join(sorted(previous)) or "none"
        log.error("agent files refused, keeping the previous agents (%s):\n%s", kept, exc)
        return previous
    _last_good[str(folder)] = agents
    return agents


def contact_window_open(agent: BotAgentConfig, local: Any) -> bool:
    """Whether a local datetime is inside the agent's contact hours."""
    hours = agent.limits.contact_hours
    start, end = hours.hours
    return WEEKDAYS[local.weekday()] in hours.days and start <= local.time() < end


def next_contact_time(agent: BotAgentConfig, local: Any) -> Any:
    """The next local datetime inside contact hours (itself when inside)."""
    hours = agent.limits.contact_hours
    start, _ = hours.hours
    for day in range(8):
        candidate = (local + timedelta(days=day)).replace(
            hour=start.hour, minute=start.minute, second=0, microsecond=0
        )
        if day == 0 and contact_window_open(agent, local):
            return local
        if WEEKDAYS[candidate.weekday()] in hours.days and candidate > local:
            return candidate
    return local
