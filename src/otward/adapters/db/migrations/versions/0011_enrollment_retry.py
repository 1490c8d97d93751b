"""A token enrollment can be repeated: the key its request was signed with is kept with the device.

Revision ID: 0011_enrollment_retry
Revises: 0010
Create Date: 2026-12-15
"""

import sqlalchemy as sa
from alembic import op

revision = "0011_enrollment_retry"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("devices") as batch:
        batch.add_column(sa.Column("enrollment_key_pin", sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("devices") as batch:
        batch.drop_column("enrollment_key_pin")
