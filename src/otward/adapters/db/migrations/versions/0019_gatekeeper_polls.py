"""A gatekeeper's last bundle poll and the version it held (the console's Gatekeepers page).

Revision ID: 0019_gatekeeper_polls
Revises: 0018_console_sessions
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0019_gatekeeper_polls"
down_revision = "0018_console_sessions"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("edge_assets") as table:
        table.add_column(sa.Column("polled_at", sa.DateTime(timezone=True), nullable=True))
        table.add_column(sa.Column("held_version", sa.BigInteger, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("edge_assets") as table:
        table.drop_column("held_version")
        table.drop_column("polled_at")
