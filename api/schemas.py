"""Pydantic models at the API boundary."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from traza.db.storable import refuse_unstorable


class Input(BaseModel):
    """A request body: text PostgreSQL cannot store (NUL, a lone surrogate) is a 422."""

    @model_validator(mode="before")
    @classmethod
    def _storable(cls, data: Any) -> Any:
        return refuse_unstorable(data)


class ContactPublic(BaseModel):
    """A contact as operators see it."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    wa_id: str | None
    bsuid: str | None
    profile_name: str | None
    locale: str | None
    opted_out_at: datetime | None
    unreachable_at: datetime | None


class ConversationPublic(BaseModel):
    """A conversation with its owner and contact."""

    id: int
    inbox_id: int
    phone_number_id: str
    contact: ContactPublic
    status: str
    owner: str
    owner_agent: str | None
    team: str | None = None
    thread_id: str
    last_inbound_at: datetime | None
    created_at: datetime


class MessagePublic(BaseModel):
    """A message in or out."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    direction: str
    type: str
    text: str | None
    actor: str
    status: str
    channel: str
    wa_message_id: str | None
    error_code: int | None
    error_title: str | None
    created_at: datetime


class TimelineEntry(BaseModel):
    """One step of the trace, with the checkpoint it produced (when a graph step did)."""

    id: int
    at: datetime
    kind: str
    actor: str
    data: dict[str, Any]
    duration_ms: float | None
    message: MessagePublic | None = None
    thread_id: str | None
    step: int | None
    checkpoint_id: str | None


class CheckpointPublic(BaseModel):
    """One checkpoint of the conversation's LangGraph thread."""

    checkpoint_id: str
    parent_checkpoint_id: str | None
    step: int | None
    source: str | None
    created_at: str | None
    next: list[str]
    values: dict[str, Any]
    interrupts: list[dict[str, Any]]


class ActionRequestBody(Input):
    """agent-inbox `ActionRequest` (used by `edit`)."""

    action: str = "reply_to_customer"
    args: dict[str, Any]


class ResumeRequest(Input):
    """agent-inbox `HumanResponse`, plus traza's explicit hand-back flags."""

    type: Literal["accept", "edit", "response", "ignore"]
    args: str | ActionRequestBody | None = None
    return_to_bot: bool = Field(
        default=False, description="after sending, give the conversation back to the bot"
    )
    resolve: bool = Field(default=False, description="mark the handoff resolved (back to bot)")

    @field_validator("args")
    @classmethod
    def _text_not_blank(cls, value: Any) -> Any:
        if isinstance(value, str) and not value.strip():
            raise ValueError("response text must not be empty")
        return value

    @model_validator(mode="after")
    def _args_fit_type(self) -> ResumeRequest:
        if self.type == "response" and not isinstance(self.args, str):
            raise ValueError("type 'response' needs args: the text to send")
        if self.type == "edit" and not (
            isinstance(self.args, ActionRequestBody) and str(self.args.args.get("text", "")).strip()
        ):
            raise ValueError("type 'edit' needs args: {action, args: {text}}")
        return self

    def as_response(self) -> dict[str, Any]:
        """The plain dict the graph receives."""
        args: Any = self.args.model_dump() if isinstance(self.args, BaseModel) else self.args
        return {
            "type": self.type,
            "args": args,
            "return_to_bot": self.return_to_bot,
            "resolve": self.resolve,
        }


class ResumeResult(BaseModel):
    """Where the conversation stands after a resume."""

    conversation_id: int
    owner: str | None
    waiting_for_human: bool


class HandoffPublic(BaseModel):
    """A handoff in the inbox."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    conversation_id: int
    status: str
    reason: str
    summary: str | None
    created_by: str
    assigned_agent: str | None
    team: str | None
    priority: str
    query_type: str | None
    rules_version: str | None
    waiting_until: datetime | None
    assigned_at: datetime | None
    accepted_at: datetime | None
    first_response_at: datetime | None
    escalated_to: str | None
    sla_state: str
    created_at: datetime
    closed_at: datetime | None
    closed_by: str | None


class NoteRequest(Input):
    """An internal note."""

    model_config = ConfigDict(extra="forbid")

    body: str = Field(min_length=1, max_length=5000)


class NotePublic(BaseModel):
    """An internal note between agents."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    conversation_id: int
    handoff_id: int | None
    author: str
    body: str
    created_at: datetime


class TransferRequest(Input):
    """Move a handoff to another team and/or a named agent, with a note."""

    model_config = ConfigDict(extra="forbid")

    team: str | None = Field(default=None, min_length=1, max_length=64)
    agent: str | None = Field(default=None, min_length=1, max_length=200)
    note: str | None = Field(default=None, max_length=5000)

    @model_validator(mode="after")
    def _somewhere(self) -> TransferRequest:
        if self.team is None and self.agent is None:
            raise ValueError("name a 'team', an 'agent', or both")
        return self


Name = Field(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9_.-]*$")


class TeamRequest(Input):
    """A new team."""

    model_config = ConfigDict(extra="forbid")

    name: str = Name
    description: str | None = Field(default=None, max_length=500)


class TeamPublic(BaseModel):
    """A team and its members."""

    name: str
    description: str | None
    members: list[str]
    online: int


class AgentRequest(Input):
    """A new agent."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200, pattern=r"^[\w.@+-]+$")
    teams: list[str] = Field(default_factory=lambda: ["general"])
    role: Literal["agent", "supervisor", "admin", "integration"] = "agent"
    """`integration`: a system such as the ATS, whose key only posts recruiting events."""
    capacity: int = Field(default=5, ge=0, le=1000)
    email: str | None = Field(default=None, max_length=320)


class AgentUpdate(Input):
    """Changes to an agent (any subset)."""

    model_config = ConfigDict(extra="forbid")

    teams: list[str] | None = None
    role: Literal["agent", "supervisor", "admin", "integration"] | None = None
    capacity: int | None = Field(default=None, ge=0, le=1000)
    status: Literal["online", "away", "offline"] | None = None
    disabled: bool | None = None


class StatusUpdate(Input):
    """An agent's own availability."""

    model_config = ConfigDict(extra="forbid")

    status: Literal["online", "away", "offline"]


class AgentPublic(BaseModel):
    """An agent as the API shows it (never with a key)."""

    id: int
    name: str
    email: str | None
    role: str
    status: str
    capacity: int
    load: int
    teams: list[str]
    disabled: bool
    created_at: datetime


class AgentCreated(AgentPublic):
    """A new agent with their API key, shown this once."""

    api_key: str


class KeyCreated(BaseModel):
    """A new API key, shown this once."""

    agent: str
    api_key: str
    prefix: str


class RulesPublic(BaseModel):
    """The active rules and where they came from."""

    version: str | None
    source: str | None
    loaded_at: datetime | None
    last_error: str | None
    rules: dict[str, Any]
