"""Tables of the access model (issue 6), on the shared ``metadata``; created by migration 0005.

Lists (days, functions, assets of a grant, roles of a person) are stored as JSON text: the model is
always read and validated as a whole (``otward.core.access.model.validate_model``) before a change
is written, so cross references are checked there rather than by foreign keys.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, Column, Date, Index, Integer, String, Table, Text

from otward.adapters.db.schema import UtcDateTime, metadata

__all__ = [
    "access_assets",
    "access_grants",
    "access_people",
    "access_roles",
    "access_schedules",
    "access_site",
]

access_site = Table(
    "access_site",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),  # always 1
    Column("name", String(64), nullable=False),
    Column("timezone", String(64), nullable=False),
    Column("revision", BigInteger, nullable=False),  # +1 on every change
    Column("updated_at", UtcDateTime, nullable=False),
)

access_schedules = Table(
    "access_schedules",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("days", String(32), nullable=False),  # "mon,tue,..."
    Column("start_minute", Integer, nullable=False),
    Column("end_minute", Integer, nullable=False),  # 1..1440; <= start: crosses midnight
)

access_assets = Table(
    "access_assets",
    metadata,
    Column("asset_id", String(64), primary_key=True),
    Column("kind", String(16), nullable=False),
    Column("inside", String(64), nullable=True),
    Column("functions", Text, nullable=False),  # JSON list
)

access_roles = Table(
    "access_roles",
    metadata,
    Column("role_id", String(64), primary_key=True),
    Column("external", Boolean, nullable=False),
)

access_grants = Table(
    "access_grants",
    metadata,
    Column("grant_id", String(80), primary_key=True),
    Column("position", Integer, nullable=False),  # order of the grants, as imported or added
    Column("role", String(64), nullable=False),
    Column("assets", Text, nullable=False),  # JSON list
    Column("functions", Text, nullable=False),  # JSON list
    Column("when_schedule", String(64), nullable=True),  # schedule name, "own-shift" or NULL
    Index("ix_access_grants_role", "role"),
)

access_people = Table(
    "access_people",
    metadata,
    Column("person_id", String(64), primary_key=True),
    Column("name", String(255), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("roles", Text, nullable=False),  # JSON list
    Column("shift", String(64), nullable=True),
    Column("valid_from", Date, nullable=True),
    Column("valid_until", Date, nullable=True),
    Column("enabled", Boolean, nullable=False),
)
