"""Device registry, attestation challenges, owner options, renewal tokens.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("owners") as batch:
        batch.add_column(
            sa.Column("allow_server_keygen", sa.Boolean, nullable=False, server_default=sa.false())
        )
        batch.add_column(sa.Column("renewal_grace_days", sa.Integer, nullable=False, server_default="0"))
    with op.batch_alter_table("enrollment_tokens") as batch:
        batch.add_column(sa.Column("kind", sa.String(16), nullable=False, server_default="enrollment"))
    with op.batch_alter_table("certificates") as batch:
        batch.add_column(sa.Column("device_id", sa.String(64), nullable=True))
    op.create_index("ix_certificates_device_id", "certificates", ["device_id"])
    op.create_table(
        "devices",
        sa.Column("device_id", sa.String(64), primary_key=True),
        sa.Column("owner", sa.String(64), sa.ForeignKey("owners.name"), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("profile", sa.String(64), nullable=False),
        sa.Column("current_serial", sa.String(42), nullable=True),
        sa.Column("enrollment_token_id", sa.String(32), nullable=True),
        sa.Column("first_seen", _TS, nullable=False),
        sa.Column("last_seen", _TS, nullable=False),
        sa.Column("last_attested_at", _TS, nullable=True),
    )
    op.create_index("ix_devices_owner", "devices", ["owner"])
    op.create_table(
        "device_challenges",
        sa.Column("challenge_id", sa.String(32), primary_key=True),
        sa.Column("device_id", sa.String(64), nullable=False),
        sa.Column("purpose", sa.String(16), nullable=False),
        sa.Column("nonce", sa.LargeBinary(32), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("expires_at", _TS, nullable=False),
        sa.Column("used_at", _TS, nullable=True),
    )
    op.create_index("ix_device_challenges_expires_at", "device_challenges", ["expires_at"])


def downgrade() -> None:
    op.drop_index("ix_device_challenges_expires_at", "device_challenges")
    op.drop_table("device_challenges")
    op.drop_index("ix_devices_owner", "devices")
    op.drop_table("devices")
    op.drop_index("ix_certificates_device_id", "certificates")
    with op.batch_alter_table("certificates") as batch:
        batch.drop_column("device_id")
    with op.batch_alter_table("enrollment_tokens") as batch:
        batch.drop_column("kind")
    with op.batch_alter_table("owners") as batch:
        batch.drop_column("allow_server_keygen")
        batch.drop_column("renewal_grace_days")
