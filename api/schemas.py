"""Pydantic models at the API boundary."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


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


class ActionRequestBody(BaseModel):
    """agent-inbox `ActionRequest` (used by `edit`)."""

    action: str = "reply_to_customer"
    args: dict[str, Any]


class ResumeRequest(BaseModel):
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
    created_at: datetime
    closed_at: datetime | None
    closed_by: str | None
