"""Owners (the accounts devices belong to) and enrollment tokens.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "owners",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("ca", sa.String(64), sa.ForeignKey("authorities.name"), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
    )
    op.create_table(
        "enrollment_tokens",
        sa.Column("token_id", sa.String(32), primary_key=True),
        sa.Column("owner", sa.String(64), sa.ForeignKey("owners.name"), nullable=False),
        sa.Column("secret_hash", sa.LargeBinary(32), nullable=False),
        sa.Column("profile", sa.String(64), nullable=False),
        sa.Column("device_id_pattern", sa.String(128), nullable=False),
        sa.Column("uses_allowed", sa.Integer, nullable=False),
        sa.Column("uses", sa.Integer, nullable=False),
        sa.Column("expires_at", _TS, nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("revoked_at", _TS, nullable=True),
    )
    op.create_index("ix_enrollment_tokens_owner", "enrollment_tokens", ["owner"])


def downgrade() -> None:
    op.drop_index("ix_enrollment_tokens_owner", "enrollment_tokens")
    op.drop_table("enrollment_tokens")
    op.drop_table("owners")
