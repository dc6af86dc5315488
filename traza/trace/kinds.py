"""Every trace event kind, in one place: what `trace_events.kind` can hold.

A kind is `<subject>.<what happened>`. Write events with these constants, never a bare
string, so a newcomer can find every writer of a kind with one search. Kinds are stored
values: renaming one changes what old traces, replays, reports and the metric counters
(migration 0009's trigger, which spells the kinds it counts) read — add, never rename.
SQL that filters on a kind spells it in the statement; `ALL` lets tests check that such
literals are known kinds.
"""

from __future__ import annotations

# A turn: what the graph was given and decided
TURN_STARTED = "turn.started"

# Messages in and out: received, queued, sent, statuses, edits
MESSAGE_DELETED = "message.deleted"
MESSAGE_EDITED = "message.edited"
MESSAGE_FALLBACK = "message.fallback"
MESSAGE_HELD_FOR_HUMAN = "message.held_for_human"
MESSAGE_QUEUED = "message.queued"
MESSAGE_REACTED = "message.reacted"
MESSAGE_RECEIVED = "message.received"
MESSAGE_SEND_FAILED = "message.send_failed"
MESSAGE_SENT = "message.sent"
MESSAGE_SKIPPED = "message.skipped"
MESSAGE_STATUS = "message.status"

# Routing
ROUTING_DECISION = "routing.decision"

# Replies the bot wrote
REPLY_DRAFTED = "reply.drafted"
REPLY_SENT_TO_OUTBOX = "reply.sent_to_outbox"

# Guardrails: the verdict on every outgoing text
GUARDRAIL_UNAVAILABLE = "guardrail.unavailable"
GUARDRAIL_VERDICT = "guardrail.verdict"

# Handoffs to humans and what happens to them
HANDOFF_ACCEPTED = "handoff.accepted"
HANDOFF_ASSIGNED = "handoff.assigned"
HANDOFF_CLAIMED = "handoff.claimed"
HANDOFF_CREATED = "handoff.created"
HANDOFF_ESCALATED = "handoff.escalated"
HANDOFF_REASSIGNED = "handoff.reassigned"
HANDOFF_RESUMED = "handoff.resumed"
HANDOFF_TRANSFERRED = "handoff.transferred"

# Who owns the conversation
OWNER_CHANGED = "owner.changed"

# Notes
NOTE_ADDED = "note.added"

# SLA clocks
SLA_BREACHED = "sla.breached"
SLA_CANCELLED = "sla.cancelled"
SLA_MET = "sla.met"
SLA_STARTED = "sla.started"

# Satisfaction surveys
CSAT_REQUESTED = "csat.requested"
CSAT_SKIPPED = "csat.skipped"

# System actions
SYSTEM_ACTION = "system.action"

# Outbound integration calls
INTEGRATION_DEAD_LETTERED = "integration.dead_lettered"
INTEGRATION_DELIVERED = "integration.delivered"
INTEGRATION_FAILED = "integration.failed"
INTEGRATION_QUEUED = "integration.queued"

# Tools the model called
TOOL_BOOK_INTERVIEW = "tool.book_interview"
TOOL_CONFIRM_INTERVIEW = "tool.confirm_interview"
TOOL_RECORD_DATA = "tool.record_data"
TOOL_RESCHEDULE_INTERVIEW = "tool.reschedule_interview"

# The follow-up agent
FOLLOWUP_ALERT = "followup.alert"
FOLLOWUP_CANCELLED = "followup.cancelled"
FOLLOWUP_DEFERRED = "followup.deferred"
FOLLOWUP_DRAFTED = "followup.drafted"
FOLLOWUP_SCHEDULED = "followup.scheduled"
FOLLOWUP_SKIPPED = "followup.skipped"

# Candidates
CANDIDATE_UPDATED = "candidate.updated"

# Candidates
CANDIDATES_IMPORTED = "candidates.imported"

# Contacts (calls, number or identity changes)
CONTACT_CALL = "contact.call"
CONTACT_CALL_PERMISSION = "contact.call_permission"
CONTACT_CHANGED = "contact.changed"

# WhatsApp Flows
FLOW_COMPLETED = "flow.completed"

# Human agents
AGENT_STATUS = "agent.status"

# Access control
ACCESS_DENIED = "access.denied"
ACCESS_THROTTLED = "access.throttled"


def followup_outcome(status: str) -> str:
    """`followup.<status>` for a follow-up that fired without sending (cancelled, skipped)."""
    return f"followup.{status}"


def sla_stopped(status: str) -> str:
    """`sla.<status>` for a clock stopped in time (met) or cancelled."""
    return f"sla.{status}"


ALL = frozenset(
    value for name, value in dict(globals()).items() if name.isupper() and isinstance(value, str)
)
"""Every kind above."""
