"""Authorities, certificates, CRLs and API tokens.

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "authorities",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("parent", sa.String(64), sa.ForeignKey("authorities.name"), nullable=True),
        sa.Column("certificate_der", sa.LargeBinary, nullable=False),
        sa.Column("key_ref", sa.String(512), nullable=False),
        sa.Column("ocsp_certificate_der", sa.LargeBinary, nullable=False),
        sa.Column("ocsp_key_ref", sa.String(512), nullable=False),
        sa.Column("crl_number", sa.BigInteger, nullable=False),
        sa.Column("created_at", _TS, nullable=False),
    )
    op.create_table(
        "certificates",
        sa.Column("serial", sa.String(42), primary_key=True),
        sa.Column("ca", sa.String(64), sa.ForeignKey("authorities.name"), nullable=False),
        sa.Column("profile", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("subject", sa.String(1024), nullable=False),
        sa.Column("not_valid_before", _TS, nullable=False),
        sa.Column("not_valid_after", _TS, nullable=False),
        sa.Column("der", sa.LargeBinary, nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("revoked_at", _TS, nullable=True),
        sa.Column("revocation_reason", sa.String(32), nullable=True),
    )
    op.create_index("ix_certificates_ca_revoked_at", "certificates", ["ca", "revoked_at"])
    op.create_index("ix_certificates_not_valid_after", "certificates", ["not_valid_after"])
    op.create_index("ix_certificates_created_at", "certificates", ["created_at"])
    op.create_table(
        "crls",
        sa.Column("ca", sa.String(64), sa.ForeignKey("authorities.name"), primary_key=True),
        sa.Column("crl_number", sa.BigInteger, nullable=False),
        sa.Column("this_update", _TS, nullable=False),
        sa.Column("next_update", _TS, nullable=False),
        sa.Column("der", sa.LargeBinary, nullable=False),
    )
    op.create_table(
        "api_tokens",
        sa.Column("token_id", sa.String(32), primary_key=True),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("secret_hash", sa.LargeBinary(32), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("revoked_at", _TS, nullable=True),
    )


def downgrade() -> None:
    op.drop_table("api_tokens")
    op.drop_table("crls")
    op.drop_table("certificates")
    op.drop_table("authorities")
