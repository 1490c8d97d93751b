"""Enrollment tokens: owner-issued, hashed, limited in time and uses."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, bindparam, func, insert, select, update

from otward.adapters.db import ledger
from otward.adapters.db.database import Database, revoke_once
from otward.adapters.db.schema import enrollment_tokens
from otward.core.audit import AuditEvent
from otward.core.records import EnrollmentTokenRecord

__all__ = ["SqlEnrollmentTokenStore", "spend_token"]

_ENROLLMENT_TOKEN = select(enrollment_tokens).where(enrollment_tokens.c.token_id == bindparam("wanted_token"))
_SPEND_TOKEN = (
    update(enrollment_tokens)
    .where(
        enrollment_tokens.c.token_id == bindparam("spent_token"),
        enrollment_tokens.c.revoked_at.is_(None),
        enrollment_tokens.c.uses < enrollment_tokens.c.uses_allowed,
        enrollment_tokens.c.expires_at > bindparam("spent_at"),
    )
    .values(uses=enrollment_tokens.c.uses + 1)
)


def spend_token(conn: Connection, token_id: str, now: datetime) -> bool:
    """Spend one use inside the caller's transaction: False when revoked, expired or used up."""
    return bool(conn.execute(_SPEND_TOKEN, {"spent_token": token_id, "spent_at": now}).rowcount == 1)


def _enrollment_token(row: Row[Any]) -> EnrollmentTokenRecord:
    return EnrollmentTokenRecord(
        token_id=row.token_id,
        owner=row.owner,
        secret_hash=bytes(row.secret_hash),
        profile=row.profile,
        device_id_pattern=row.device_id_pattern,
        uses_allowed=int(row.uses_allowed),
        uses=int(row.uses),
        expires_at=row.expires_at,
        created_at=row.created_at,
        revoked_at=row.revoked_at,
        kind=row.kind,
    )


class SqlEnrollmentTokenStore:
    """Implements :class:`otward.core.ports.EnrollmentTokenStore`."""

    def __init__(self, database: Database) -> None:
        self._database = database

    def add_enrollment_token(self, token: EnrollmentTokenRecord, events: Sequence[AuditEvent] = ()) -> None:
        with self._database.transaction() as conn:
            conn.execute(
                insert(enrollment_tokens).values(
                    token_id=token.token_id,
                    owner=token.owner,
                    secret_hash=token.secret_hash,
                    profile=token.profile,
                    device_id_pattern=token.device_id_pattern,
                    uses_allowed=token.uses_allowed,
                    uses=token.uses,
                    expires_at=token.expires_at,
                    created_at=token.created_at,
                    revoked_at=token.revoked_at,
                    kind=token.kind,
                )
            )
            ledger.append(conn, events)

    def get_enrollment_token(self, token_id: str) -> EnrollmentTokenRecord | None:
        with self._database.reading() as conn:
            row = conn.execute(_ENROLLMENT_TOKEN, {"wanted_token": token_id}).first()
        return _enrollment_token(row) if row else None

    def find_enrollment_tokens(
        self, *, owners: frozenset[str] | None, limit: int, offset: int
    ) -> tuple[Sequence[EnrollmentTokenRecord], int]:
        conditions = [enrollment_tokens.c.kind == "enrollment"]
        if owners is not None:
            conditions.append(enrollment_tokens.c.owner.in_(sorted(owners)))
        stmt = (
            select(enrollment_tokens)
            .where(*conditions)
            .order_by(enrollment_tokens.c.created_at.desc(), enrollment_tokens.c.token_id)
            .limit(limit)
            .offset(offset)
        )
        count = select(func.count()).select_from(enrollment_tokens).where(*conditions)
        with self._database.reading() as conn:
            rows = conn.execute(stmt).all()
            total = conn.execute(count).scalar_one()
        return [_enrollment_token(r) for r in rows], int(total)

    def list_enrollment_tokens(self, owner: str | None = None) -> Sequence[EnrollmentTokenRecord]:
        stmt = select(enrollment_tokens).order_by(enrollment_tokens.c.created_at)
        if owner is not None:
            stmt = stmt.where(enrollment_tokens.c.owner == owner)
        with self._database.reading() as conn:
            return [_enrollment_token(r) for r in conn.execute(stmt).all()]

    def revoke_enrollment_token(
        self, token_id: str, when: datetime, events: Sequence[AuditEvent] = ()
    ) -> EnrollmentTokenRecord:
        with self._database.transaction() as conn:
            label = f"enrollment token {token_id}"
            row = revoke_once(conn, enrollment_tokens.c.token_id, token_id, label, "token", revoked_at=when)
            ledger.append(conn, events)
        return _enrollment_token(row)

    def use_enrollment_token(self, token_id: str, now: datetime) -> bool:
        """Spend one use, atomically: False when the token is revoked, expired or used up."""
        with self._database.transaction() as conn:
            return spend_token(conn, token_id, now)
