"""Named accounts with roles; every API token belongs to one.

The migration creates the account ``admin`` (no password yet: ``otward admin passwd admin`` sets
one) holding every role but ``metrics``, and attaches every existing token to it, so tokens made
before keep exactly the rights they had (docs/administration.md).

Revision ID: 0015_accounts
Revises: 0014_notifications
Create Date: 2026-12-07
"""

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0015_accounts"
down_revision = "0014_notifications"
branch_labels = None
depends_on = None

FIRST_ADMIN_GRANTS = "access-manager,admin,auditor,enrollment-officer,pki-officer"


def upgrade() -> None:
    accounts = op.create_table(
        "accounts",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("grants", sa.String(1024), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("password_hash", sa.String(256), nullable=True),
        sa.Column("totp_secret", sa.LargeBinary(64), nullable=True),
        sa.Column("totp_last_step", sa.BigInteger, nullable=True),
        sa.Column("disabled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("failed_signins", sa.Integer, nullable=False, server_default="0"),
        sa.Column("locked_until", sa.DateTime(timezone=True), nullable=True),
    )
    op.bulk_insert(
        accounts,
        [
            {
                "name": "admin",
                "grants": FIRST_ADMIN_GRANTS,
                "created_at": datetime.now(UTC),
                "failed_signins": 0,
            }
        ],
    )
    with op.batch_alter_table("api_tokens") as batch:
        batch.add_column(sa.Column("account", sa.String(64), nullable=False, server_default="admin"))


def downgrade() -> None:
    with op.batch_alter_table("api_tokens") as batch:
        batch.drop_column("account")
    op.drop_table("accounts")
