"""CRLs record how many revocations they cover, so a CRL behind a committed revocation is found.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # NULL for CRLs signed before this revision: they count as behind and are re-signed once.
    with op.batch_alter_table("crls") as batch:
        batch.add_column(sa.Column("revoked_count", sa.BigInteger, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("crls") as batch:
        batch.drop_column("revoked_count")
