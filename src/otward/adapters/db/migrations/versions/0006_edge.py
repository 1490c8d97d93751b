"""Edge gatekeeper: bundle versions per asset, bundles, credentials, pushed trails, sync tokens.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "edge_assets",
        sa.Column("asset", sa.String(128), primary_key=True),
        sa.Column("last_version", sa.BigInteger, nullable=False),
        sa.Column("ttl_seconds", sa.Integer, nullable=False),
        sa.Column("fail_open", sa.Text, nullable=False),
        sa.Column("trail_sequence", sa.BigInteger, nullable=False),
        sa.Column("trail_hash", sa.LargeBinary(32), nullable=False),
        sa.Column("updated_at", _TS, nullable=False),
    )
    op.create_table(
        "edge_bundles",
        sa.Column("asset", sa.String(128), primary_key=True),
        sa.Column("version", sa.BigInteger, primary_key=True),
        sa.Column("issued_at", _TS, nullable=False),
        sa.Column("expires_at", _TS, nullable=False),
        sa.Column("content_hash", sa.LargeBinary(32), nullable=False),
        sa.Column("token", sa.Text, nullable=False),
    )
    op.create_table(
        "edge_credentials",
        sa.Column("credential_id", sa.String(32), primary_key=True),
        sa.Column("person", sa.String(128), nullable=False),
        sa.Column("key_thumbprint", sa.String(64), nullable=False),
        sa.Column("issued_at", _TS, nullable=False),
        sa.Column("expires_at", _TS, nullable=False),
        sa.Column("revoked_at", _TS, nullable=True),
    )
    op.create_index("ix_edge_credentials_person", "edge_credentials", ["person"])
    op.create_index("ix_edge_credentials_revoked_at", "edge_credentials", ["revoked_at"])
    op.create_table(
        "edge_trail",
        sa.Column("asset", sa.String(128), primary_key=True),
        sa.Column("sequence", sa.BigInteger, primary_key=True),
        sa.Column("previous_hash", sa.LargeBinary(32), nullable=False),
        sa.Column("hash", sa.LargeBinary(32), nullable=False),
        sa.Column("event", sa.Text, nullable=False),
        sa.Column("received_at", _TS, nullable=False),
    )
    op.create_table(
        "edge_tokens",
        sa.Column("token_id", sa.String(32), primary_key=True),
        sa.Column("asset", sa.String(128), nullable=False),
        sa.Column("secret_hash", sa.LargeBinary(32), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("revoked_at", _TS, nullable=True),
    )


def downgrade() -> None:
    op.drop_table("edge_tokens")
    op.drop_table("edge_trail")
    op.drop_index("ix_edge_credentials_revoked_at", "edge_credentials")
    op.drop_index("ix_edge_credentials_person", "edge_credentials")
    op.drop_table("edge_credentials")
    op.drop_table("edge_bundles")
    op.drop_table("edge_assets")
