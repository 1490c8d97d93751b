"""Notifications: the outbox (one row per message and channel) and the conditions already announced.

Revision ID: 0014_notifications
Revises: 0013_nodes
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0014_notifications"
down_revision = "0013_nodes"
branch_labels = None
depends_on = None

_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "notify_outbox",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("notification_id", sa.String(32), nullable=False),
        sa.Column("channel", sa.String(255), nullable=False),
        sa.Column("event", sa.String(32), nullable=False),
        sa.Column("subject", sa.String(255), nullable=False),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_attempt_at", _TS, nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("updated_at", _TS, nullable=False),
        sa.Column("last_error", sa.String(1024), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_notify_outbox"),
        sa.UniqueConstraint("notification_id", "channel", name="uq_notify_outbox_notification_id_channel"),
    )
    op.create_index("ix_notify_outbox_status_next_attempt_at", "notify_outbox", ["status", "next_attempt_at"])
    op.create_table(
        "notify_conditions",
        sa.Column("key", sa.String(255), nullable=False),
        sa.Column("event", sa.String(32), nullable=False),
        sa.Column("marks", sa.Text, nullable=False),
        sa.Column("updated_at", _TS, nullable=False),
        sa.PrimaryKeyConstraint("key", name="pk_notify_conditions"),
    )


def downgrade() -> None:
    op.drop_table("notify_conditions")
    op.drop_index("ix_notify_outbox_status_next_attempt_at", table_name="notify_outbox")
    op.drop_table("notify_outbox")
