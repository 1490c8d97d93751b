"""Web console sessions: one row per sign-in, the cookie's secret only as its SHA-256."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Row, delete, insert, select, update

from otward.adapters.db import ledger
from otward.adapters.db.database import Database
from otward.adapters.db.schema import console_sessions
from otward.core.audit import AuditEvent
from otward.core.console_sessions import ConsoleSession

__all__ = ["SqlConsoleSessionStore"]


def _record(row: Row[Any]) -> ConsoleSession:
    return ConsoleSession(
        session_id=row.session_id,
        account=row.account,
        secret_hash=bytes(row.secret_hash),
        created_at=row.created_at,
        last_seen_at=row.last_seen_at,
        expires_at=row.expires_at,
        credentials_stamp=bytes(row.credentials_stamp),
        ended_at=row.ended_at,
        source=row.source,
    )


class SqlConsoleSessionStore:
    """Implements :class:`otward.core.ports.ConsoleSessionStore`."""

    def __init__(self, database: Database) -> None:
        self._database = database

    def add_session(self, session: ConsoleSession, events: Sequence[AuditEvent] = ()) -> None:
        with self._database.transaction() as conn:
            ledger.append(conn, events)
            conn.execute(
                insert(console_sessions).values(
                    session_id=session.session_id,
                    account=session.account,
                    secret_hash=session.secret_hash,
                    created_at=session.created_at,
                    last_seen_at=session.last_seen_at,
                    expires_at=session.expires_at,
                    credentials_stamp=session.credentials_stamp,
                    ended_at=session.ended_at,
                    source=session.source,
                )
            )

    def get_session(self, session_id: str) -> ConsoleSession | None:
        with self._database.reading() as conn:
            row = conn.execute(
                select(console_sessions).where(console_sessions.c.session_id == session_id)
            ).first()
        return _record(row) if row is not None else None

    def touch_session(self, session_id: str, when: datetime) -> None:
        """Record a request at ``when`` (never moves the time back, never revives an ended session)."""
        with self._database.transaction() as conn:
            conn.execute(
                update(console_sessions)
                .where(
                    console_sessions.c.session_id == session_id,
                    console_sessions.c.ended_at.is_(None),
                    console_sessions.c.last_seen_at < when,
                )
                .values(last_seen_at=when)
            )

    def end_session(self, session_id: str, when: datetime, events: Sequence[AuditEvent] = ()) -> bool:
        """End the session (sign-out) with its events in one transaction; False if it had ended."""
        with self._database.transaction() as conn:
            ended = conn.execute(
                update(console_sessions)
                .where(console_sessions.c.session_id == session_id, console_sessions.c.ended_at.is_(None))
                .values(ended_at=when)
            ).rowcount
            if ended:
                ledger.append(conn, events)
        return bool(ended)

    def purge_sessions(self, before: datetime) -> int:
        """Delete sessions that ended or expired before ``before``; returns how many."""
        with self._database.transaction() as conn:
            gone = conn.execute(
                delete(console_sessions).where(
                    (console_sessions.c.expires_at < before) | (console_sessions.c.ended_at < before)
                )
            ).rowcount
        return int(gone)
