"""Four-eyes approval requests (docs/administration.md, "Four-eyes approval").

Revision ID: 0017_approvals
Revises: 0016_manufacturers
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0017_approvals"
down_revision = "0016_manufacturers"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "approval_requests",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("operation", sa.String(64), nullable=False),
        sa.Column("parameters", sa.Text, nullable=False),
        sa.Column("requester", sa.String(128), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("decided_by", sa.String(128), nullable=True),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("reason", sa.String(1024), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("approval_requests")
