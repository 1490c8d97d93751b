"""Named accounts (passwords only as Argon2id hashes) and the revocation of their tokens on removal."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Row, delete, insert, select, update

from otward.adapters.db import ledger
from otward.adapters.db.database import Database
from otward.adapters.db.schema import accounts, api_tokens
from otward.core.accounts import AccountRecord
from otward.core.audit import AuditEvent
from otward.core.authz import format_grants, parse_grant
from otward.errors import ConflictError, NotFoundError

__all__ = ["SqlAccountStore"]


def _record(row: Row[Any]) -> AccountRecord:
    return AccountRecord(
        name=row.name,
        grants=frozenset(parse_grant(g) for g in row.grants.split(",") if g),
        created_at=row.created_at,
        password_hash=row.password_hash,
        totp_secret=bytes(row.totp_secret) if row.totp_secret is not None else None,
        totp_last_step=row.totp_last_step,
        disabled_at=row.disabled_at,
        failed_signins=row.failed_signins,
        locked_until=row.locked_until,
    )


def _values(account: AccountRecord) -> dict[str, Any]:
    return {
        "grants": format_grants(account.grants),
        "password_hash": account.password_hash,
        "totp_secret": account.totp_secret,
        "totp_last_step": account.totp_last_step,
        "disabled_at": account.disabled_at,
        "failed_signins": account.failed_signins,
        "locked_until": account.locked_until,
    }


class SqlAccountStore:
    """Implements :class:`otward.core.ports.AccountStore`."""

    def __init__(self, database: Database) -> None:
        self._database = database

    def add_account(self, account: AccountRecord, events: Sequence[AuditEvent] = ()) -> None:
        with self._database.transaction() as conn:
            if conn.execute(select(accounts.c.name).where(accounts.c.name == account.name)).first():
                raise ConflictError(f"account '{account.name}' exists", rule="account-exists")
            ledger.append(conn, events)
            conn.execute(
                insert(accounts).values(name=account.name, created_at=account.created_at, **_values(account))
            )

    def get_account(self, name: str) -> AccountRecord | None:
        with self._database.reading() as conn:
            row = conn.execute(select(accounts).where(accounts.c.name == name)).first()
        return _record(row) if row is not None else None

    def list_accounts(self) -> Sequence[AccountRecord]:
        with self._database.reading() as conn:
            rows = conn.execute(select(accounts).order_by(accounts.c.name)).all()
        return [_record(r) for r in rows]

    def save_account(self, account: AccountRecord, events: Sequence[AuditEvent] = ()) -> None:
        """Store ``account``'s changed fields (with their events, if any, in one transaction)."""
        with self._database.transaction() as conn:
            changed = conn.execute(
                update(accounts).where(accounts.c.name == account.name).values(**_values(account))
            ).rowcount
            if changed != 1:
                raise NotFoundError(f"account '{account.name}' not found", rule="account")
            ledger.append(conn, events)

    def remove_account(self, name: str, when: datetime, events: Sequence[AuditEvent] = ()) -> None:
        """Delete the account and revoke its tokens that are not yet revoked."""
        with self._database.transaction() as conn:
            if conn.execute(delete(accounts).where(accounts.c.name == name)).rowcount != 1:
                raise NotFoundError(f"account '{name}' not found", rule="account")
            conn.execute(
                update(api_tokens)
                .where(api_tokens.c.account == name, api_tokens.c.revoked_at.is_(None))
                .values(revoked_at=when)
            )
            ledger.append(conn, events)
