"""Web console sessions (docs/console.md): the cookie's secret only as a SHA-256.

Revision ID: 0018_console_sessions
Revises: 0017_approvals
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0018_console_sessions"
down_revision = "0017_approvals"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "console_sessions",
        sa.Column("session_id", sa.String(32), primary_key=True),
        sa.Column("account", sa.String(64), nullable=False),
        sa.Column("secret_hash", sa.LargeBinary(32), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("credentials_stamp", sa.LargeBinary(32), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("source", sa.String(64), nullable=True),
    )
    op.create_index("ix_console_sessions_account", "console_sessions", ["account"])


def downgrade() -> None:
    op.drop_index("ix_console_sessions_account", "console_sessions")
    op.drop_table("console_sessions")
