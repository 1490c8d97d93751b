"""Several nodes on one database: key files and the service's TLS identity shared through it, and
a partial index on revoked certificates for the once-a-second CRL check.

Revision ID: 0013_nodes
Revises: 0012_ca_lifecycle
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0013_nodes"
down_revision = "0012_ca_lifecycle"
branch_labels = None
depends_on = None

_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "shared_files",
        sa.Column("name", sa.String(512), primary_key=True),
        sa.Column("data", sa.LargeBinary, nullable=True),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("destroyed_at", _TS, nullable=True),
    )
    op.create_index(
        "ix_certificates_revoked",
        "certificates",
        ["ca"],
        postgresql_where=sa.text("revoked_at IS NOT NULL"),
        sqlite_where=sa.text("revoked_at IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_certificates_revoked", table_name="certificates")
    op.drop_table("shared_files")
