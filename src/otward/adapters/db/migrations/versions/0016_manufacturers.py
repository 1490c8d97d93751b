"""Zero-touch onboarding: manufacturers (IDevID CAs) and the devices owners claimed from them.

Revision ID: 0016_manufacturers
Revises: 0015_accounts
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0016_manufacturers"
down_revision = "0015_accounts"
branch_labels = None
depends_on = None

_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "manufacturers",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("ca_pem", sa.Text, nullable=False),
        sa.Column("crl_url", sa.String(2048), nullable=True),
        sa.Column("crl_der", sa.LargeBinary, nullable=True),
        sa.Column("created_at", _TS, nullable=False),
    )
    op.create_table(
        "device_claims",
        sa.Column("manufacturer", sa.String(64), sa.ForeignKey("manufacturers.name"), primary_key=True),
        sa.Column("serial", sa.String(128), primary_key=True),
        sa.Column("owner", sa.String(64), sa.ForeignKey("owners.name"), nullable=False),
        sa.Column("model", sa.String(128), nullable=True),
        sa.Column("public_key_sha256", sa.String(64), nullable=True),
        sa.Column("profile", sa.String(64), nullable=True),
        sa.Column("device_id", sa.String(64), nullable=True),
        sa.Column("claimed_at", _TS, nullable=False),
        sa.Column("idevid_issuer", sa.String(1024), nullable=True),
        sa.Column("idevid_serial", sa.String(42), nullable=True),
        sa.Column("idevid_fingerprint", sa.String(64), nullable=True),
        sa.Column("enrolled_device_id", sa.String(64), nullable=True),
        sa.Column("ldevid_serial", sa.String(42), nullable=True),
        sa.Column("enrolled_at", _TS, nullable=True),
    )
    op.create_index("ix_device_claims_owner", "device_claims", ["owner"])


def downgrade() -> None:
    op.drop_index("ix_device_claims_owner", "device_claims")
    op.drop_table("device_claims")
    op.drop_table("manufacturers")
