"""Access model of the site: schedules, assets, roles, grants, people and robots (issue 6).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "access_site",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("timezone", sa.String(64), nullable=False),
        sa.Column("revision", sa.BigInteger, nullable=False),
        sa.Column("updated_at", _TS, nullable=False),
    )
    op.create_table(
        "access_schedules",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("days", sa.String(32), nullable=False),
        sa.Column("start_minute", sa.Integer, nullable=False),
        sa.Column("end_minute", sa.Integer, nullable=False),
    )
    op.create_table(
        "access_assets",
        sa.Column("asset_id", sa.String(64), primary_key=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("inside", sa.String(64), nullable=True),
        sa.Column("functions", sa.Text, nullable=False),
    )
    op.create_table(
        "access_roles",
        sa.Column("role_id", sa.String(64), primary_key=True),
        sa.Column("external", sa.Boolean, nullable=False),
    )
    op.create_table(
        "access_grants",
        sa.Column("grant_id", sa.String(80), primary_key=True),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("role", sa.String(64), nullable=False),
        sa.Column("assets", sa.Text, nullable=False),
        sa.Column("functions", sa.Text, nullable=False),
        sa.Column("when_schedule", sa.String(64), nullable=True),
    )
    op.create_index("ix_access_grants_role", "access_grants", ["role"])
    op.create_table(
        "access_people",
        sa.Column("person_id", sa.String(64), primary_key=True),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("roles", sa.Text, nullable=False),
        sa.Column("shift", sa.String(64), nullable=True),
        sa.Column("valid_from", sa.Date, nullable=True),
        sa.Column("valid_until", sa.Date, nullable=True),
        sa.Column("enabled", sa.Boolean, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("access_people")
    op.drop_index("ix_access_grants_role", "access_grants")
    op.drop_table("access_grants")
    op.drop_table("access_roles")
    op.drop_table("access_assets")
    op.drop_table("access_schedules")
    op.drop_table("access_site")
