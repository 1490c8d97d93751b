"""One database and its unit of work: short transactions, one writer at a time on SQLite.

Every aggregate's store (certificates, devices, audit, ...) writes through the same
:class:`Database`, so an action and the events that record it always share one
transaction. Every SQLAlchemy error is wrapped in :class:`StorageError` so that the
services never see driver exceptions.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Column, Connection, Engine, Row, select, update
from sqlalchemy.exc import IntegrityError as DbIntegrityError
from sqlalchemy.exc import SQLAlchemyError

from otward.adapters.db.engine import WriterLock
from otward.errors import ConflictError, NotFoundError, OtwardError, StorageError

__all__ = ["STORED_CONFLICT", "Database", "database_errors", "revoke_once"]

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
