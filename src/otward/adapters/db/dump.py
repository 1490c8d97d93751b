"""A database's rows as a portable dump, and back: what ``otward backup`` and ``restore`` move.

SQLite is copied with its online backup API (``sqlite3.Connection.backup``: a consistent copy while
the service writes). PostgreSQL is dumped by SQLAlchemy, every table in one ``REPEATABLE READ READ
ONLY`` transaction (one snapshot), to JSON Lines: no ``pg_dump`` of the server's major version is needed
on the machine taking the backup, and the same loader restores it into PostgreSQL or SQLite
(docs/backup.md). Tables are read by reflection, so a dump of an older schema loads into a database
migrated to that same revision before it is upgraded.
"""

from __future__ import annotations

import base64
import json
import sqlite3
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import IO, Any, Final

from alembic import command
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import Connection, Engine, MetaData, Table, delete, insert, inspect, select, text

from otward.adapters.db.engine import _alembic_config
from otward.errors import ParseError, StorageError

__all__ = [
    "DUMP_FORMAT",
    "DumpHeader",
    "database_tables",
    "dump_rows",
    "head_revision",
    "is_known_revision",
    "iter_dump",
    "iter_table_rows",
    "load_rows",
    "schema_revision",
    "sqlite_online_backup",
    "upgrade_to",
]

DUMP_FORMAT: Final = "otward-dump"
_VERSION_TABLE = "alembic_version"
_BATCH = 500


@dataclass(frozen=True)
class DumpHeader:
    revision: str
    dialect: str


def schema_revision(conn: Connection) -> str | None:
    """The schema revision (Alembic) of the database ``conn`` reads, None when it has none."""
    if not inspect(conn).has_table(_VERSION_TABLE):
        return None
    rows = conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
    return ",".join(sorted(rows)) or None


def database_tables(engine: Engine) -> list[str]:
    """The tables a database holds (a restore target must hold none)."""
    with engine.connect() as conn:
        return sorted(inspect(conn).get_table_names())


def sqlite_online_backup(database: Path, target: Path) -> None:
    """A consistent copy of the SQLite file ``database`` at ``target`` while others write to it."""
    source = sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=30)
    try:
        destination = sqlite3.connect(target)
        try:
            source.backup(destination)
        finally:
            destination.close()
    except sqlite3.Error as exc:
        raise StorageError(f"cannot copy the SQLite database {database}: {exc}", rule="backup") from exc
    finally:
        source.close()


def _ordered_tables(conn: Connection) -> list[Table]:
    metadata = MetaData()
    metadata.reflect(conn)
    return [t for t in metadata.sorted_tables if t.name != _VERSION_TABLE]


def _self_parent(table: Table) -> tuple[str, str] | None:
    """(column, referenced column) of a foreign key of ``table`` to itself (a CA's parent)."""
    for fk in table.foreign_keys:
        if fk.column.table.name == table.name:
            return fk.parent.name, fk.column.name
    return None


def _parents_first(rows: list[dict[str, Any]], column: str, referenced: str) -> list[dict[str, Any]]:
    done: set[Any] = set()
    ordered: list[dict[str, Any]] = []
    pending = rows
    while pending:
        later = [r for r in pending if r[column] is not None and r[column] not in done]
        ready = [r for r in pending if r[column] is None or r[column] in done]
        if not ready:  # a cycle or a dangling parent: the database refuses it, naming the row
            ready = later
            later = []
        ordered += ready
        done.update(r[referenced] for r in ready)
        pending = later
    return ordered


def iter_table_rows(conn: Connection) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every row of every table (but Alembic's), tables in foreign-key order, parents before
    children within a table that refers to itself."""
    for table in _ordered_tables(conn):
        primary = list(table.primary_key.columns)
        statement = select(table).order_by(*primary) if primary else select(table)
        self_fk = _self_parent(table)
        if self_fk is not None:
            rows = [dict(r._mapping) for r in conn.execute(statement)]
            for ordered in _parents_first(rows, *self_fk):
                yield table.name, ordered
            continue
        for row in conn.execution_options(yield_per=_BATCH).execute(statement):
            yield table.name, dict(row._mapping)


_PLAIN: Final = frozenset({str, int, float, bool, type(None)})


def _encode(value: Any) -> Any:
    if type(value) in _PLAIN:  # most values: one set look-up
        return value
    if isinstance(value, bytes | memoryview):
        return {"$b": base64.b64encode(bytes(value)).decode()}
    if isinstance(value, datetime):
        moment = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        return {"$t": moment.isoformat()}
    if isinstance(value, date):
        return {"$d": value.isoformat()}
    return value


def _decode(value: Any) -> Any:
    if isinstance(value, dict):
        if "$b" in value:
            return base64.b64decode(value["$b"], validate=True)
        if "$t" in value:
            return datetime.fromisoformat(value["$t"]).astimezone(UTC)
        if "$d" in value:
            return date.fromisoformat(value["$d"])
        raise ValueError(f"unknown value {value!r}")
    return value


def dump_rows(conn: Connection, out: IO[bytes], dialect: str) -> tuple[str, dict[str, int]]:
    """Write the rows ``conn`` sees as JSON Lines (a header line, then one row a line); returns the
    schema revision and the row count of each table."""
    revision = schema_revision(conn)
    if revision is None:
        raise StorageError("the database holds no otward schema; nothing to back up", rule="schema-missing")
    header = {"format": DUMP_FORMAT, "version": 1, "revision": revision, "dialect": dialect}
    out.write(json.dumps(header).encode() + b"\n")
    counts: dict[str, int] = {}
    for table, row in iter_table_rows(conn):
        line = {"table": table, "row": {k: _encode(v) for k, v in row.items()}}
        out.write(json.dumps(line, separators=(",", ":")).encode() + b"\n")
        counts[table] = counts.get(table, 0) + 1
    return revision, counts


def iter_dump(lines: Iterable[bytes], source: str) -> tuple[DumpHeader, Iterator[tuple[str, dict[str, Any]]]]:
    """The header and the rows of a dump written by :func:`dump_rows`."""
    iterator = iter(lines)
    try:
        header = json.loads(next(iterator))
        if header.get("format") != DUMP_FORMAT or header.get("version") != 1:
            raise ValueError("not an otward dump")
        parsed = DumpHeader(str(header["revision"]), str(header["dialect"]))
    except (StopIteration, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ParseError(f"{source}: not an otward database dump ({exc})", rule="backup-format") from None

    def rows() -> Iterator[tuple[str, dict[str, Any]]]:
        for number, line in enumerate(iterator, start=2):
            try:
                body = json.loads(line)
                yield str(body["table"]), {str(k): _decode(v) for k, v in body["row"].items()}
            except (ValueError, KeyError, TypeError, AttributeError) as exc:
                raise ParseError(
                    f"{source}, line {number}: not a dump row ({exc})", rule="backup-format"
                ) from None

    return parsed, rows()


def head_revision() -> str:
    """The newest schema revision this otward's migrations know."""
    head = ScriptDirectory.from_config(_alembic_config()).get_current_head()
    assert head is not None  # noqa: S101 - the migrations ship with the package
    return head


def is_known_revision(revision: str) -> bool:
    """Whether this otward's migrations know ``revision`` (a backup of a newer otward's is refused)."""
    try:
        ScriptDirectory.from_config(_alembic_config()).get_revision(revision)
    except CommandError:
        return False
    return True


def upgrade_to(conn: Connection, revision: str) -> None:
    """Create or upgrade the schema to ``revision`` inside the caller's transaction."""
    config = _alembic_config()
    config.attributes["connection"] = conn
    command.upgrade(config, revision)


def load_rows(conn: Connection, rows: Iterable[tuple[str, dict[str, Any]]]) -> dict[str, int]:
    """Insert dumped rows into the tables of ``conn``'s schema (at the dump's revision); returns the
    count per table. PostgreSQL sequences are moved past the ids loaded."""
    metadata = MetaData()
    metadata.reflect(conn)
    # Rows the migrations seeded (the ledger's one row) give way to the dumped ones.
    for table in reversed(metadata.sorted_tables):
        if table.name != _VERSION_TABLE:
            conn.execute(delete(table))
    sqlite = conn.dialect.name == "sqlite"
    counts: dict[str, int] = {}
    batch: list[dict[str, Any]] = []
    current: Table | None = None

    def flush() -> None:
        if current is not None and batch:
            conn.execute(insert(current), batch)
            batch.clear()

    for name, row in rows:
        table = metadata.tables.get(name)
        if table is None:
            raise ParseError(
                f"the dump holds rows of table {name!r}, which the schema lacks", rule="backup-format"
            )
        if table is not current:
            flush()
            current = table
        if sqlite:
            row = {
                k: v.astimezone(UTC).replace(tzinfo=None) if isinstance(v, datetime) else v
                for k, v in row.items()
            }
        batch.append(row)
        counts[name] = counts.get(name, 0) + 1
        if len(batch) >= _BATCH:
            flush()
    flush()
    if conn.dialect.name == "postgresql":
        for table in metadata.sorted_tables:
            for column in table.primary_key.columns:
                sequence = conn.execute(
                    text("SELECT pg_get_serial_sequence(:t, :c)"), {"t": table.name, "c": column.name}
                ).scalar()
                if sequence:
                    highest = f'SELECT MAX("{column.name}") FROM "{table.name}"'  # noqa: S608 - reflected names
                    conn.execute(
                        text(f"SELECT setval(:s, COALESCE(({highest}), 0) + 1, false)"), {"s": sequence}
                    )
    return counts
