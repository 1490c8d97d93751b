"""CA lifecycle: CAs under an external root, pending CAs awaiting their certificate, rollover links.

Revision ID: 0012_ca_lifecycle
Revises: 0011_enrollment_retry
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0012_ca_lifecycle"
down_revision = "0011_enrollment_retry"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("authorities") as batch:
        batch.add_column(sa.Column("external_chain_pem", sa.Text(), nullable=True))
        batch.add_column(sa.Column("superseded_by", sa.String(64), nullable=True))
    op.create_table(
        "pending_authorities",
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("key_ref", sa.String(512), nullable=False),
        sa.Column("csr_der", sa.LargeBinary(), nullable=False),
        sa.Column("path_length", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_pending_authorities"),
    )


def downgrade() -> None:
    op.drop_table("pending_authorities")
    with op.batch_alter_table("authorities") as batch:
        batch.drop_column("superseded_by")
        batch.drop_column("external_chain_pem")
