"""Engine creation with durable SQLite settings, and schema migration through Alembic.

Only ``otward init``, ``otward serve`` and ``otward db upgrade`` change the schema
(:func:`upgrade_schema`); every other command checks it (:func:`check_schema`) and leaves an
empty or older database as it found it. A database that cannot be reached is reported with
the driver's reason (refused connection, unknown database or user, unwritable directory).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import Connection, Engine, create_engine, event, inspect, text
from sqlalchemy.exc import SQLAlchemyError

from otward.errors import ConfigError, StorageError

__all__ = ["SchemaChange", "WriterLock", "check_schema", "create_database_engine", "upgrade_schema"]

_MIGRATIONS = Path(__file__).parent / "migrations"
_VERSION_TABLE = "alembic_version"
# pg_advisory_xact_lock key of schema upgrades: the first 8 bytes of SHA-256("otward:schema-upgrade")
# (otward.adapters.db.database.advisory_key, which imports this module).
_MIGRATION_LOCK = int.from_bytes(hashlib.sha256(b"otward:schema-upgrade").digest()[:8], "big", signed=True)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets OCSP and CRL readers run beside the writer; synchronous=FULL makes every
    # commit durable, so a certificate returned to a client survives a power cut.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def create_database_engine(url: str) -> Engine:
    """An engine for ``url`` (``sqlite:///path`` or ``postgresql+psycopg://...``)."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30}, pool_size=8, max_overflow=8)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    if url.startswith("postgresql"):
        return create_engine(url, pool_size=8, max_overflow=8, pool_pre_ping=True)
    raise ConfigError(
        f"database url scheme not supported: '{url.split(':', 1)[0]}' (sqlite or postgresql+psycopg)"
    )


class WriterLock:
    """One writing transaction at a time on a SQLite file, across threads and processes.

    SQLite lets one writer in and makes the others poll: its busy handler sleeps 1, 2, 5 … 100 ms
    between tries. Two service workers writing at once then sat idle in those sleeps (half the CPU
    unused, p99 near a second, in the EST benchmark). A blocking ``flock`` queues them instead and
    wakes the next one as soon as the lock is free. PostgreSQL needs none of this (no-op).
    """

    def __init__(self, path: Path | None) -> None:
        self._path = path
        self._threads = threading.Lock()
        self._fd: int | None = None

    @classmethod
    def for_engine(cls, engine: Engine) -> WriterLock:
        database = engine.url.database
        if engine.dialect.name != "sqlite" or not database or database == ":memory:":
            return cls(None)
        return cls(Path(database).with_name(Path(database).name + "-writer.lock"))

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        if self._path is None:
            yield
            return
        with self._threads:
            if self._fd is None:
                self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600)
            fcntl.flock(self._fd, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        with self._threads:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None


class SchemaChange(NamedTuple):
    """What :func:`upgrade_schema` did: the revision before (None: an empty database) and after."""

    before: str | None
    after: str


def _alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    return config


def _driver_reason(exc: BaseException) -> str:
    """The driver's own words, on one line (psycopg's say which host, port, database or user)."""
    cause = getattr(exc, "orig", None) or exc
    lines = (" ".join(line.split()) for line in str(cause).splitlines())
    text = "; ".join(line for line in lines if line)
    return text.removeprefix("connection failed: ").replace("FATAL: ", "") or type(cause).__name__


def _unreachable(engine: Engine, exc: BaseException) -> StorageError:
    """Why ``engine`` could not connect, said so an operator can act on it."""
    url = engine.url
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        path = Path(url.database)
        directory = path.parent
        if not directory.is_dir():
            reason = f"directory {directory} does not exist"
        elif not os.access(directory, os.W_OK | os.X_OK):
            reason = f"directory {directory} is not writable (SQLite keeps its -wal and -shm files there)"
        elif path.exists() and not os.access(path, os.R_OK | os.W_OK):
            reason = f"{path} is not readable and writable"
        else:
            reason = _driver_reason(exc)
        return StorageError(f"cannot open the SQLite database {path}: {reason}", rule="database-unreachable")
    return StorageError(
        f"cannot connect to the database {url.render_as_string(hide_password=True)}: {_driver_reason(exc)}",
        rule="database-unreachable",
    )


@contextlib.contextmanager
def _transaction(engine: Engine) -> Iterator[Connection]:
    """A transaction on ``engine``; failing to connect is :func:`_unreachable`, not a schema error."""
    try:
        connection = engine.connect()
    except SQLAlchemyError as exc:
        raise _unreachable(engine, exc) from exc
    with connection, connection.begin():
        yield connection


def _revisions(connection: Connection) -> tuple[str | None, str, ScriptDirectory]:
    """The database's schema revision (None when it has none) and the newest this code knows.

    Read from Alembic's table directly: a migration context would log at INFO in every worker."""
    script = ScriptDirectory.from_config(_alembic_config())
    head = script.get_current_head()
    assert head is not None  # noqa: S101 - the migrations ship with the package
    current = None
    if inspect(connection).has_table(_VERSION_TABLE):
        stored = connection.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
        current = ",".join(sorted(stored)) or None  # one row on otward's linear history
    return current, head, script


def _refuse_unknown(engine: Engine, current: str, head: str, script: ScriptDirectory) -> None:
    """A revision this code does not know comes from a newer otward: never touch that schema."""
    try:
        script.get_revision(current)
    except CommandError:
        raise StorageError(
            f"the database {engine.url.render_as_string(hide_password=True)} has schema revision "
            f"{current}, which this otward (schema {head}) does not know: it was upgraded by a newer "
            "otward; run that version",
            rule="schema-newer",
        ) from None


def _refuse_missing_sqlite_file(path: Path) -> None:
    """A read-only command must not create the SQLite file it was pointed at (connecting would)."""
    if path.parent.is_dir() and not path.exists():
        raise StorageError(
            f"the SQLite database {path} does not exist: run 'otward init' for a new installation "
            "(or 'otward db upgrade' to create its schema)",
            rule="schema-missing",
        )


def check_schema(engine: Engine) -> None:
    """Fail unless the database holds the schema this code expects; change nothing.

    A SQLite file that does not exist is reported before connecting: opening it would create it."""
    where = engine.url.render_as_string(hide_password=True)
    database = engine.url.database
    if engine.dialect.name == "sqlite" and database and database != ":memory:":
        _refuse_missing_sqlite_file(Path(database))
    try:
        with _transaction(engine) as connection:
            current, head, script = _revisions(connection)
    except SQLAlchemyError as exc:
        raise StorageError(
            f"cannot read the schema revision of the database {where}: {_driver_reason(exc)}",
            rule="database-unreachable",
        ) from exc
    if current == head:
        return
    if current is None:
        raise StorageError(
            f"the database {where} holds no otward schema: run 'otward db upgrade' to create it "
            "(or 'otward init' for a new installation)",
            rule="schema-missing",
        )
    _refuse_unknown(engine, current, head, script)
    raise StorageError(
        f"the database {where} has schema revision {current}, this otward needs {head}: "
        "run 'otward db upgrade'",
        rule="schema-outdated",
    )


def upgrade_schema(engine: Engine) -> SchemaChange:
    """Bring the schema to the newest migration (idempotent); refuse one a newer otward wrote."""
    config = _alembic_config()
    current: str | None = None
    try:
        with _transaction(engine) as connection:
            if engine.dialect.name == "postgresql":
                # Several nodes starting at once upgrade one after the other; the later ones find
                # the schema current. Held until this transaction ends (migrations are transactional).
                connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK})
            current, head, script = _revisions(connection)
            if current is not None:
                _refuse_unknown(engine, current, head, script)
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
    except SQLAlchemyError as exc:
        raise StorageError(
            f"database schema migration from {current or 'an empty database'} failed: {_driver_reason(exc)}",
            rule="schema-migration",
        ) from exc
    return SchemaChange(current, head)
