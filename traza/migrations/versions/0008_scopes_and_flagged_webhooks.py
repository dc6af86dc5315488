"""integration keys, the team that owns a candidate, and webhooks stored but flagged

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03 16:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_constraint(op.f("ck_agents_role_kind"), "agents", type_="check")
    op.create_check_constraint(
        op.f("ck_agents_role_kind"),
        "agents",
        "role IN ('agent', 'supervisor', 'admin', 'integration')",
    )
    op.add_column("candidates", sa.Column("team", sa.String(length=64), nullable=True))
    op.create_index(op.f("ix_candidates_team"), "candidates", ["team"], unique=False)
    op.add_column("webhook_events", sa.Column("problem", sa.Text(), nullable=True))


def downgrade() -> None:
    op.drop_column("webhook_events", "problem")
    op.drop_index(op.f("ix_candidates_team"), table_name="candidates")
    op.drop_column("candidates", "team")
    op.execute(
        "UPDATE agents SET role = 'agent', disabled_at = coalesce(disabled_at, now()) "
        "WHERE role = 'integration'"
    )
    op.drop_constraint(op.f("ck_agents_role_kind"), "agents", type_="check")
    op.create_check_constraint(
        op.f("ck_agents_role_kind"), "agents", "role IN ('agent', 'supervisor', 'admin')"
    )
