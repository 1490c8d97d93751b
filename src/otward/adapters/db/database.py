"""One database and its unit of work: short transactions, one writer at a time on SQLite.

Every aggregate's store (certificates, devices, audit, ...) writes through the same
:class:`Database`, so an action and the events that record it always share one
transaction. Every SQLAlchemy error is wrapped in :class:`StorageError` so that the
services never see driver exceptions.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Column, Connection, Engine, Row, select, text, update
from sqlalchemy.exc import IntegrityError as DbIntegrityError
from sqlalchemy.exc import SQLAlchemyError

from otward.adapters.db.engine import WriterLock
from otward.errors import ConflictError, NotFoundError, OtwardError, StorageError

__all__ = ["STORED_CONFLICT", "Database", "advisory_key", "database_errors", "revoke_once"]

STORED_CONFLICT = "stored-conflict"  # the rule of a ConflictError the database raised (a unique key)


@contextmanager
def database_errors() -> Iterator[None]:
    """Driver errors become otward errors; the services never see SQLAlchemy's."""
    try:
        yield
    except OtwardError:
        raise
    except DbIntegrityError as exc:
        raise ConflictError("the record conflicts with one already stored", rule=STORED_CONFLICT) from exc
    except SQLAlchemyError as exc:
        raise StorageError("database operation failed") from exc


class Database:
    """The engine, its writer lock and the two ways in: :meth:`reading` and :meth:`transaction`."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._writer_lock = WriterLock.for_engine(engine)

    def close(self) -> None:
        """Release the database connections and the writer lock's file."""
        self.engine.dispose()
        self._writer_lock.close()

    @contextmanager
    def reading(self) -> Iterator[Connection]:
        """A connection for reads only: no BEGIN/COMMIT round of its own (SQLite reads in autocommit)."""
        with database_errors(), self.engine.connect() as connection:
            yield connection

    @contextmanager
    def singleton(self, name: str) -> Iterator[bool]:
        """Whether this process may run the cluster-wide job ``name`` now: True for one holder at a
        time across every process and node on this database, False (at once, never waiting) for the
        others, who skip the job this round.

        PostgreSQL: a session-level advisory lock on a connection of its own, released when the
        block ends or, should the process die, when its connection closes. SQLite (one host): a
        non-blocking ``flock`` on a file beside the database. An in-memory database has one process.
        """
        if self.engine.dialect.name == "postgresql":
            with self._advisory_lock(advisory_key(name)) as held:
                yield held
            return
        database = self.engine.url.database
        if not database or database == ":memory:":
            yield True
            return
        path = Path(database).with_name(f"{Path(database).name}-{name}.lock")
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False
                return
            yield True
        finally:
            os.close(fd)  # closing the descriptor releases the flock

    @contextmanager
    def _advisory_lock(self, key: int) -> Iterator[bool]:
        with database_errors(), self.engine.connect() as connection:
            held = bool(
                connection.execute(text("SELECT pg_try_advisory_lock(:key)"), {"key": key}).scalar_one()
            )
            connection.commit()  # the lock is the session's, not the transaction's
            try:
                yield held
            finally:
                if held:
                    connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": key})
                    connection.commit()

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """A writing transaction: one at a time per SQLite file (the writer lock), driver errors mapped."""
        with database_errors(), self._writer_lock.held(), self.engine.begin() as connection:
            yield connection


def revoke_once(
    conn: Connection, key: Column[str], value: str, label: str, rule: str, **changes: object
) -> Row[Any]:
    """Set ``revoked_at`` (and ``changes``) on the row whose ``key`` is ``value``, only if it is not yet
    revoked: a revocation is never rewritten or undone. Returns the row as stored."""
    table = key.table
    changed = conn.execute(
        update(table).where(key == value, table.c.revoked_at.is_(None)).values(**changes)
    ).rowcount
    row = conn.execute(select(table).where(key == value)).first()
    if row is None:
        raise NotFoundError(f"{label} not found", rule=rule)
    if changed != 1:
        raise ConflictError(f"{label} is already revoked", rule="already-revoked")
    return row


def advisory_key(name: str) -> int:
    """The PostgreSQL advisory lock key of the otward job ``name`` (a signed 64-bit integer derived
    from the name, so that otward's locks do not meet another application's small numbers)."""
    digest = hashlib.sha256(b"otward:" + name.encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)
