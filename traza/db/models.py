"""Application tables. Alembic migrations in `traza/migrations` create them.

Conversation state that the next decision needs lives in the LangGraph checkpoint;
everything else (every message, status and decision) lives here.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    DateTime,
    FetchedValue,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Declarative base with stable constraint names for migrations."""

    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {
        dict[str, Any]: JSONB,
        list[Any]: JSONB,
        datetime: DateTime(timezone=True),
    }


def _now() -> Any:
    return mapped_column(DateTime(timezone=True), server_default=func.now(), nullable=False)


class Inbox(Base):
    """A WhatsApp business number (several per deployment)."""

    __tablename__ = "inboxes"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    phone_number_id: Mapped[str] = mapped_column(String(64), unique=True)
    display_phone_number: Mapped[str | None] = mapped_column(String(32))
    name: Mapped[str | None] = mapped_column(String(200))
    waba_id: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = _now()


class Contact(Base):
    """A customer or candidate, known by `wa_id` and/or Meta's business-scoped user id."""

    __tablename__ = "contacts"
    __table_args__ = (
        CheckConstraint("wa_id IS NOT NULL OR bsuid IS NOT NULL", name="has_identity"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    wa_id: Mapped[str | None] = mapped_column(String(32), unique=True)
    bsuid: Mapped[str | None] = mapped_column(String(128), unique=True)
    profile_name: Mapped[str | None] = mapped_column(String(200))
    locale: Mapped[str | None] = mapped_column(String(16))
    opted_in_at: Mapped[datetime | None]
    opted_out_at: Mapped[datetime | None]
    unreachable_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = _now()


class Conversation(Base):
    """One conversation between an inbox and a contact; one LangGraph thread."""

    __tablename__ = "conversations"
    __table_args__ = (
        CheckConstraint("owner IN ('bot', 'human', 'system')", name="owner_kind"),
        CheckConstraint("status IN ('open', 'closed')", name="status_kind"),
        Index(
            "uq_conversations_open_pair",
            "inbox_id",
            "contact_id",
            unique=True,
            postgresql_where=text("status = 'open'"),
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    inbox_id: Mapped[int] = mapped_column(ForeignKey("inboxes.id"))
    contact_id: Mapped[int] = mapped_column(ForeignKey("contacts.id"), index=True)
    status: Mapped[str] = mapped_column(String(16), server_default="open")
    owner: Mapped[str] = mapped_column(String(16), server_default="bot")
    language: Mapped[str | None] = mapped_column(String(8))
    """The candidate's language as last detected (es, en, pt); replies use it."""
    owner_agent: Mapped[str | None] = mapped_column(String(200))
    team: Mapped[str | None] = mapped_column(String(64), index=True)
    thread_id: Mapped[str] = mapped_column(String(64), unique=True)
    last_inbound_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = _now()
    updated_at: Mapped[datetime] = _now()


class WebhookEvent(Base):
    """A webhook body exactly as Meta sent it (bytes), kept for audit and re-ingest."""

    __tablename__ = "webhook_events"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    received_at: Mapped[datetime] = _now()
    body: Mapped[bytes] = mapped_column(LargeBinary)
    signature: Mapped[str | None] = mapped_column(String(100))
    messages: Mapped[int] = mapped_column(Integer, server_default="0")
    statuses: Mapped[int] = mapped_column(Integer, server_default="0")
    problem: Mapped[str | None] = mapped_column(Text)
    """Why a signed body was stored but not ingested (not JSON, not Meta's shape…)."""


class Message(Base):
    """Every message in or out. Inbound ids are Meta's; outbound rows are the outbox."""

    __tablename__ = "messages"
    __table_args__ = (
        CheckConstraint("direction IN ('in', 'out')", name="direction_kind"),
        Index(
            "ix_messages_unprocessed",
            "conversation_id",
            "id",
            postgresql_where=text("direction = 'in' AND processed_at IS NULL"),
        ),
        Index("ix_messages_conversation", "conversation_id", "id"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    conversation_id: Mapped[int] = mapped_column(ForeignKey("conversations.id"))
    direction: Mapped[str] = mapped_column(String(3))
    wa_message_id: Mapped[str | None] = mapped_column(String(256), unique=True)
    idempotency_key: Mapped[str | None] = mapped_column(String(200), unique=True)
    type: Mapped[str] = mapped_column(String(32))
    content: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default="{}")
    text: Mapped[str | None] = mapped_column(Text)
    actor: Mapped[str] = mapped_column(String(200))
    channel: Mapped[str] = mapped_column(String(32), server_default="whatsapp")
    status: Mapped[str] = mapped_column(String(32))
    attempts: Mapped[int] = mapped_column(Integer, server_default="0")
    error_code: Mapped[int | None] = mapped_column(Integer)
    error_title: Mapped[str | None] = mapped_column(Text)
    wa_timestamp: Mapped[datetime | None]
    created_at: Mapped[datetime] = _now()
    sent_at: Mapped[datetime | None]
    delivered_at: Mapped[datetime | None]
    read_at: Mapped[datetime | None]
    failed_at: Mapped[datetime | None]
    processed_at: Mapped[datetime | None]
    handoff_id: Mapped[int | None] = mapped_column(ForeignKey("handoffs.id"))
    webhook_event_id: Mapped[int | None] = mapped_column(ForeignKey("webhook_events.id"))


class MessageStatus(Base):
    """A status webhook (sent/delivered/read/failed), stored once per (message, status)."""

    __tablename__ = "message_statuses"
    __table_args__ = (UniqueConstraint("wa_message_id", "status", name="uq_message_status"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    wa_message_id: Mapped[str] = mapped_column(String(256), index=True)
    status: Mapped[str] = mapped_column(String(32))
    at: Mapped[datetime | None]
    recipient_id: Mapped[str | None] = mapped_column(String(64))
    error_code: Mapped[int | None] = mapped_column(Integer)
    error_title: Mapped[str | None] = mapped_column(Text)
    callback_data: Mapped[str | None] = mapped_column(String(512), index=True)
    webhook_event_id: Mapped[int | None] = mapped_column(ForeignKey("webhook_events.id"))
    received_at: Mapped[datetime] = _now()


class Handoff(Base):
    """A conversation handed to humans; open until resolved or returned to the bot."""

    __tablename__ = "handoffs"
    __table_args__ = (
        CheckConstraint(
            "status IN ('open', 'assigned', 'accepted', 'resolved', 'returned')",
            name="status_kind",
        ),
        CheckConstraint("sla_state IN ('ok', 'breached')", name="sla_state_kind"),
        Index(
            "uq_handoffs_one_open",
            "conversation_id",
            unique=True,
            postgresql_where=text("status IN ('open', 'assigned', 'accepted')"),
        ),
        Index(
            "ix_handoffs_queue",
            "team",
            "status",
            postgresql_where=text("status IN ('open', 'assigned', 'accepted')"),
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    conversation_id: Mapped[int] = mapped_column(ForeignKey("conversations.id"), index=True)
    status: Mapped[str] = mapped_column(String(16), server_default="open")
    reason: Mapped[str] = mapped_column(String(64))
    summary: Mapped[str | None] = mapped_column(Text)
    created_by: Mapped[str] = mapped_column(String(200))
    assigned_agent: Mapped[str | None] = mapped_column(String(200))
    team: Mapped[str | None] = mapped_column(String(64))
    priority: Mapped[str] = mapped_column(String(32), server_default="normal")
    query_type: Mapped[str | None] = mapped_column(String(64))
    rules_version: Mapped[str | None] = mapped_column(String(32))
    waiting_until: Mapped[datetime | None]
    """Out of hours: the opening time the handoff waits for before assignment."""
    assigned_at: Mapped[datetime | None]
    accepted_at: Mapped[datetime | None]
    first_response_at: Mapped[datetime | None]
    last_response_at: Mapped[datetime | None]
    escalated_to: Mapped[str | None] = mapped_column(String(200))
    sla_state: Mapped[str] = mapped_column(String(16), server_default="ok")
    created_at: Mapped[datetime] = _now()
    closed_at: Mapped[datetime | None]
    closed_by: Mapped[str | None] = mapped_column(String(200))


class TraceEvent(Base):
    """One step of a conversation: who did what, when, why, how long, which checkpoint.

    Append-only and hash-chained per conversation: a trigger sets `seq`, `data_hash`,
    `prev_hash` and `hash` on insert and refuses UPDATE and DELETE (`traza.audit.chain`).
    """

    __tablename__ = "trace_events"
    __table_args__ = (
        Index("ix_trace_events_conversation", "conversation_id", "id"),
        # One chain per conversation, and one (0) for events without a conversation.
        Index("uq_trace_events_chain", text("coalesce(conversation_id, 0)"), "seq", unique=True),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    conversation_id: Mapped[int | None] = mapped_column(ForeignKey("conversations.id"))
    at: Mapped[datetime] = _now()
    kind: Mapped[str] = mapped_column(String(64))
    actor: Mapped[str] = mapped_column(String(200))
    data: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default="{}")
    duration_ms: Mapped[float | None] = mapped_column(Float)
    message_id: Mapped[int | None] = mapped_column(BigInteger)
    thread_id: Mapped[str | None] = mapped_column(String(64))
    step: Mapped[int | None] = mapped_column(Integer)
    llm: Mapped[bool] = mapped_column(Boolean, server_default="false")
    seq: Mapped[int] = mapped_column(BigInteger, server_default=FetchedValue())
    """Position in the conversation's chain (events without a conversation: one chain)."""
    data_hash: Mapped[bytes] = mapped_column(LargeBinary, server_default=FetchedValue())
    prev_hash: Mapped[bytes | None] = mapped_column(LargeBinary, server_default=FetchedValue())
    hash: Mapped[bytes] = mapped_column(LargeBinary, server_default=FetchedValue())


class AuditAnchor(Base):
    """A hash over the chain heads that moved since the previous anchor, chained to it."""

    __tablename__ = "audit_anchors"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    day: Mapped[date] = mapped_column(Date, index=True)
    created_at: Mapped[datetime] = _now()
    created_by: Mapped[str] = mapped_column(String(200))
    events: Mapped[int] = mapped_column(BigInteger)
    """Events newly covered by this anchor."""
    chains: Mapped[int] = mapped_column(Integer)
    heads: Mapped[list[Any]] = mapped_column(JSONB, server_default="[]")
    """`[conversation_id, seq, hash hex]` of each chain head that moved."""
    prev_hash: Mapped[bytes | None] = mapped_column(LargeBinary)
    hash: Mapped[bytes] = mapped_column(LargeBinary)


class Team(Base):
    """A team of human agents; rules give it hours, priorities and SLAs."""

    __tablename__ = "teams"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    description: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = _now()


class HumanAgent(Base):
    """A person who answers conversations (or supervises, or administers), or a system.

    Role `integration` is a system such as the ATS: its keys may only post recruiting
    events for its teams; it never answers conversations.
    """

    __tablename__ = "agents"
    __table_args__ = (
        CheckConstraint(
            "role IN ('agent', 'supervisor', 'admin', 'integration')", name="role_kind"
        ),
        CheckConstraint("status IN ('online', 'away', 'offline')", name="status_kind"),
        CheckConstraint("capacity >= 0", name="capacity_positive"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    email: Mapped[str | None] = mapped_column(String(320))
    role: Mapped[str] = mapped_column(String(16), server_default="agent")
    status: Mapped[str] = mapped_column(String(16), server_default="offline")
    capacity: Mapped[int] = mapped_column(Integer, server_default="5")
    last_assigned_at: Mapped[datetime | None]
    disabled_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = _now()


class AgentTeam(Base):
    """Membership of an agent in a team."""

    __tablename__ = "agent_teams"

    agent_id: Mapped[int] = mapped_column(
        ForeignKey("agents.id", ondelete="CASCADE"), primary_key=True
    )
    team_id: Mapped[int] = mapped_column(
        ForeignKey("teams.id", ondelete="CASCADE"), primary_key=True, index=True
    )


class ApiKey(Base):
    """An API key: only its SHA-256 is stored; the key is shown once when created."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    agent_id: Mapped[int] = mapped_column(ForeignKey("agents.id", ondelete="CASCADE"), index=True)
    prefix: Mapped[str] = mapped_column(String(32), unique=True)
    key_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = _now()
    revoked_at: Mapped[datetime | None]


class DashboardSession(Base):
    """A browser signed in to the dashboard: the cookie holds a random id, only its hash is here.

    Bound to the key that opened it: an agent's key (`api_key_id`), or the bootstrap
    admin key (`admin_mac`, an HMAC of that key under the session id, so the key cannot
    be recovered from this table). Ends at logout, when the key is revoked or the agent
    disabled (`ended_at`, `ended_reason`), after `TRAZA_SESSION_IDLE_MINUTES` without a
    request (`last_seen_at`), and at `expires_at` whatever happens.
    """

    __tablename__ = "dashboard_sessions"
    __table_args__ = (
        CheckConstraint("(api_key_id IS NULL) <> (admin_mac IS NULL)", name="one_key"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    api_key_id: Mapped[int | None] = mapped_column(
        ForeignKey("api_keys.id", ondelete="CASCADE"), index=True
    )
    admin_mac: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = _now()
    last_seen_at: Mapped[datetime] = _now()
    expires_at: Mapped[datetime]
    ended_at: Mapped[datetime | None]
    ended_reason: Mapped[str | None] = mapped_column(String(32))


class Note(Base):
    """An internal note between agents: recorded, never sent to the customer."""

    __tablename__ = "notes"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    conversation_id: Mapped[int] = mapped_column(ForeignKey("conversations.id"), index=True)
    handoff_id: Mapped[int | None] = mapped_column(ForeignKey("handoffs.id"))
    author: Mapped[str] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = _now()


class SlaTimer(Base):
    """One SLA clock of a handoff; a procrastinate job fires at its deadline."""

    __tablename__ = "sla_timers"
    __table_args__ = (
        CheckConstraint(
            "metric IN ('first_response', 'next_response', 'resolution')", name="metric_kind"
        ),
        CheckConstraint(
            "status IN ('running', 'met', 'breached', 'cancelled')", name="status_kind"
        ),
        Index(
            "uq_sla_timers_running",
            "handoff_id",
            "metric",
            unique=True,
            postgresql_where=text("status = 'running'"),
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    handoff_id: Mapped[int] = mapped_column(ForeignKey("handoffs.id"), index=True)
    metric: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16), server_default="running")
    started_at: Mapped[datetime]
    due_at: Mapped[datetime]
    stopped_at: Mapped[datetime | None]
    job_id: Mapped[int | None] = mapped_column(BigInteger)
    rules_version: Mapped[str | None] = mapped_column(String(32))
    actions: Mapped[list[Any]] = mapped_column(JSONB, server_default="[]")


class IntegrationCall(Base):
    """One outbound webhook to an integration: pending, delivered, or dead-lettered."""

    __tablename__ = "integration_calls"
    __table_args__ = (
        CheckConstraint("status IN ('pending', 'delivered', 'dead')", name="status_kind"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    integration: Mapped[str] = mapped_column(String(64))
    event: Mapped[str] = mapped_column(String(64))
    conversation_id: Mapped[int | None] = mapped_column(ForeignKey("conversations.id"), index=True)
    handoff_id: Mapped[int | None] = mapped_column(ForeignKey("handoffs.id"))
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB)
    status: Mapped[str] = mapped_column(String(16), server_default="pending")
    attempts: Mapped[int] = mapped_column(Integer, server_default="0")
    last_error: Mapped[str | None] = mapped_column(Text)
    response_status: Mapped[int | None] = mapped_column(Integer)
    response: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    created_at: Mapped[datetime] = _now()
    delivered_at: Mapped[datetime | None]


class CsatRating(Base):
    """A customer's 1-5 rating of a resolved handoff, attributed to agent, team and bot."""

    __tablename__ = "csat_ratings"
    __table_args__ = (CheckConstraint("rating BETWEEN 1 AND 5", name="rating_range"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    handoff_id: Mapped[int] = mapped_column(ForeignKey("handoffs.id"), unique=True)
    conversation_id: Mapped[int] = mapped_column(ForeignKey("conversations.id"), index=True)
    rating: Mapped[int] = mapped_column(Integer)
    agent: Mapped[str | None] = mapped_column(String(200))
    team: Mapped[str | None] = mapped_column(String(64))
    bot: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = _now()


class Candidate(Base):
    """A person in the talent pool; linked to a WhatsApp contact once they have a number."""

    __tablename__ = "candidates"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    external_id: Mapped[str | None] = mapped_column(String(128), unique=True)
    contact_id: Mapped[int | None] = mapped_column(ForeignKey("contacts.id"), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    wa_id: Mapped[str | None] = mapped_column(String(32), index=True)
    email: Mapped[str | None] = mapped_column(String(320))
    phone: Mapped[str | None] = mapped_column(String(32))
    locale: Mapped[str] = mapped_column(String(16), server_default="es")
    timezone: Mapped[str] = mapped_column(String(64), server_default="Europe/Madrid")
    consent_source: Mapped[str | None] = mapped_column(String(200))
    consent_at: Mapped[datetime | None]
    profile: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default="{}")
    team: Mapped[str | None] = mapped_column(String(64), index=True)
    """The team whose integration key wrote the candidate first: only it may change them."""
    last_reply_at: Mapped[datetime | None]
    paused_at: Mapped[datetime | None]
    """Set after the agent's unanswered-attempt limit; cleared when the candidate writes."""
    created_at: Mapped[datetime] = _now()
    updated_at: Mapped[datetime] = _now()


class Vacancy(Base):
    """An open position."""

    __tablename__ = "vacancies"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    external_id: Mapped[str | None] = mapped_column(String(128), unique=True)
    title: Mapped[str] = mapped_column(String(300))
    location: Mapped[str | None] = mapped_column(String(200))
    required_fields: Mapped[list[Any]] = mapped_column(JSONB, server_default="[]")
    status: Mapped[str] = mapped_column(String(16), server_default="open")
    created_at: Mapped[datetime] = _now()


class Application(Base):
    """A candidate applying to a vacancy, and where in the process they are."""

    __tablename__ = "applications"
    __table_args__ = (UniqueConstraint("candidate_id", "vacancy_id", name="uq_application_pair"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    external_id: Mapped[str | None] = mapped_column(String(128), unique=True)
    candidate_id: Mapped[int] = mapped_column(ForeignKey("candidates.id"), index=True)
    vacancy_id: Mapped[int] = mapped_column(ForeignKey("vacancies.id"), index=True)
    stage: Mapped[str] = mapped_column(String(64), server_default="applied")
    stage_changed_at: Mapped[datetime]
    agent: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[datetime] = _now()


class StageChange(Base):
    """One move of an application between stages: who and when."""

    __tablename__ = "stage_history"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    application_id: Mapped[int] = mapped_column(ForeignKey("applications.id"), index=True)
    from_stage: Mapped[str | None] = mapped_column(String(64))
    to_stage: Mapped[str] = mapped_column(String(64))
    changed_by: Mapped[str] = mapped_column(String(200))
    at: Mapped[datetime]


class Interviewer(Base):
    """Someone who interviews; their availability is weekly ranges in their time zone."""

    __tablename__ = "interviewers"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    external_id: Mapped[str | None] = mapped_column(String(128), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    email: Mapped[str | None] = mapped_column(String(320))
    timezone: Mapped[str] = mapped_column(String(64), server_default="Europe/Madrid")
    availability: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default="{}")
    calendar_token: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = _now()


class Interview(Base):
    """An interview of an application."""

    __tablename__ = "interviews"
    __table_args__ = (
        CheckConstraint(
            "status IN ('scheduled', 'confirmed', 'rescheduled', 'completed', 'no_show', "
            "'cancelled')",
            name="status_kind",
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    external_id: Mapped[str | None] = mapped_column(String(128), unique=True)
    application_id: Mapped[int] = mapped_column(ForeignKey("applications.id"), index=True)
    interviewer_id: Mapped[int | None] = mapped_column(ForeignKey("interviewers.id"), index=True)
    starts_at: Mapped[datetime]
    ends_at: Mapped[datetime]
    location: Mapped[str | None] = mapped_column(String(300))
    video_link: Mapped[str | None] = mapped_column(String(500))
    status: Mapped[str] = mapped_column(String(16), server_default="scheduled")
    confirmed_at: Mapped[datetime | None]
    sequence: Mapped[int] = mapped_column(Integer, server_default="0")
    """iCalendar SEQUENCE: bumped on every change so calendar clients update the event."""
    created_at: Mapped[datetime] = _now()
    updated_at: Mapped[datetime] = _now()


class RecruitingEvent(Base):
    """An event from the ATS, stored once per event id (replays are no-ops)."""

    __tablename__ = "recruiting_events"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    event_id: Mapped[str] = mapped_column(String(200), unique=True)
    type: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB)
    received_at: Mapped[datetime] = _now()


class FollowUp(Base):
    """A proactive message the agent plans; a procrastinate job fires it at `due_at`."""

    __tablename__ = "followups"
    __table_args__ = (
        CheckConstraint(
            "status IN ('scheduled', 'sent', 'skipped', 'cancelled', 'paused', 'failed')",
            name="status_kind",
        ),
        Index(
            "ix_followups_scheduled",
            "candidate_id",
            postgresql_where=text("status = 'scheduled'"),
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    key: Mapped[str] = mapped_column(String(200), unique=True)
    agent: Mapped[str] = mapped_column(String(100))
    trigger: Mapped[str] = mapped_column(String(64))
    candidate_id: Mapped[int] = mapped_column(ForeignKey("candidates.id"))
    application_id: Mapped[int | None] = mapped_column(ForeignKey("applications.id"), index=True)
    interview_id: Mapped[int | None] = mapped_column(ForeignKey("interviews.id"), index=True)
    due_at: Mapped[datetime]
    expect: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default="{}")
    """What must still hold when it fires (stage, interview start…), else it is stale."""
    status: Mapped[str] = mapped_column(String(16), server_default="scheduled")
    reason: Mapped[str | None] = mapped_column(Text)
    job_id: Mapped[int | None] = mapped_column(BigInteger)
    channel: Mapped[str | None] = mapped_column(String(16))
    message_id: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = _now()
    fired_at: Mapped[datetime | None]


# Reports select by time: one index per table and period column they filter on.
Index("ix_conversations_created_at", Conversation.created_at)
Index("ix_messages_created_at", Message.created_at)
Index("ix_handoffs_created_at", Handoff.created_at)
Index("ix_sla_timers_stopped_at", SlaTimer.stopped_at)
Index("ix_csat_ratings_created_at", CsatRating.created_at)
# The talent-pool import finds candidates by e-mail when it has no id or number.
Index("ix_candidates_email", Candidate.email)
