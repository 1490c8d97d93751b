"""Table definitions. Changes go through an Alembic migration in ``migrations/versions``."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    LargeBinary,
    MetaData,
    String,
    Table,
    TypeDecorator,
)

__all__ = ["UtcDateTime", "api_tokens", "authorities", "certificates", "crls", "metadata"]


class UtcDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite stores them naive, in UTC)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the database; otward stores UTC-aware times only")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)  # noqa: S101 - the column type guarantees it
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

authorities = Table(
    "authorities",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("parent", String(64), ForeignKey("authorities.name"), nullable=True),
    Column("certificate_der", LargeBinary, nullable=False),
    Column("key_ref", String(512), nullable=False),
    Column("ocsp_certificate_der", LargeBinary, nullable=False),
    Column("ocsp_key_ref", String(512), nullable=False),
    Column("crl_number", BigInteger, nullable=False, default=0),
    Column("created_at", UtcDateTime, nullable=False),
)

certificates = Table(
    "certificates",
    metadata,
    Column("serial", String(42), primary_key=True),  # lower-case hex, see records.format_serial
    Column("ca", String(64), ForeignKey("authorities.name"), nullable=False),
    Column("profile", String(64), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("subject", String(1024), nullable=False),
    Column("not_valid_before", UtcDateTime, nullable=False),
    Column("not_valid_after", UtcDateTime, nullable=False),
    Column("der", LargeBinary, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("revoked_at", UtcDateTime, nullable=True),
    Column("revocation_reason", String(32), nullable=True),
    Index("ix_certificates_ca_revoked_at", "ca", "revoked_at"),
    Index("ix_certificates_not_valid_after", "not_valid_after"),
    Index("ix_certificates_created_at", "created_at"),
)

crls = Table(
    "crls",
    metadata,
    Column("ca", String(64), ForeignKey("authorities.name"), primary_key=True),
    Column("crl_number", BigInteger, nullable=False),
    Column("this_update", UtcDateTime, nullable=False),
    Column("next_update", UtcDateTime, nullable=False),
    Column("der", LargeBinary, nullable=False),
)

api_tokens = Table(
    "api_tokens",
    metadata,
    Column("token_id", String(32), primary_key=True),
    Column("name", String(128), nullable=False),
    Column("secret_hash", LargeBinary(32), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("revoked_at", UtcDateTime, nullable=True),
)
