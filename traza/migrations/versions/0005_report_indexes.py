"""indexes for reports by period and for finding candidates by e-mail

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29 14:00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEXES = (
    ("ix_conversations_created_at", "conversations", "created_at"),
    ("ix_messages_created_at", "messages", "created_at"),
    ("ix_handoffs_created_at", "handoffs", "created_at"),
    ("ix_sla_timers_stopped_at", "sla_timers", "stopped_at"),
    ("ix_csat_ratings_created_at", "csat_ratings", "created_at"),
    ("ix_candidates_email", "candidates", "email"),
)


def upgrade() -> None:
    for name, table, column in INDEXES:
        op.create_index(name, table, [column])


def downgrade() -> None:
    for name, table, _ in INDEXES:
        op.drop_index(name, table_name=table)
