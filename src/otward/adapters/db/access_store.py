"""The access model in the database: read whole, changed in one transaction with its audit event.

A change is a function from the stored model to the next one (``otward.core.access.changes``). The
store runs it inside the write transaction, after locking the site row, so two administrators never
overwrite each other's change; it writes only the rows that differ and appends the caller's
``access.changed`` events to the audit chain in the same transaction (``ledger.append``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, Table, delete, insert, select, update

from otward.adapters.db import ledger
from otward.adapters.db.access_schema import (
    access_assets,
    access_grants,
    access_people,
    access_roles,
    access_schedules,
    access_site,
)
from otward.adapters.db.database import STORED_CONFLICT, Database
from otward.core.access.model import (
    AccessModel,
    Asset,
    AssetKind,
    Grant,
    Person,
    PersonKind,
    Role,
    Schedule,
)
from otward.core.audit import AuditEvent
from otward.errors import ConflictError

__all__ = ["AccessChange", "SqlAccessStore"]

AccessChange = Callable[[AccessModel | None], tuple[AccessModel, Sequence[AuditEvent]]]
"""Current model (None before the first import) -> next model and the events that record it."""

_SITE_ID = 1


@contextmanager
def _concurrent_change() -> Iterator[None]:
    """A unique key the database refused is another writer's change; the model's own conflicts
    (an id that exists, an asset still in use) pass unchanged."""
    try:
        yield
    except ConflictError as exc:
        if exc.rule != STORED_CONFLICT:
            raise
        raise ConflictError("the access model changed concurrently; try again") from exc


def _json(values: Sequence[str]) -> str:
    return json.dumps(list(values))


def _rows(model: AccessModel) -> dict[Table, dict[str, dict[str, Any]]]:
    """Every row the model is stored as, per table, by primary key."""
    return {
        access_schedules: {
            s.name: {"name": s.name, "days": ",".join(s.days), "start_minute": s.start, "end_minute": s.end}
            for s in model.schedules
        },
        access_assets: {
            a.id: {
                "asset_id": a.id,
                "kind": a.kind.value,
                "inside": a.inside,
                "functions": _json(a.functions),
            }
            for a in model.assets
        },
        access_roles: {r.id: {"role_id": r.id, "external": r.external} for r in model.roles},
        access_grants: {
            g.id: {
                "grant_id": g.id,
                "position": position,
                "role": g.role,
                "assets": _json(g.assets),
                "functions": _json(g.functions),
                "when_schedule": g.when,
            }
            for position, g in enumerate(model.grants)
        },
        access_people: {
            p.id: {
                "person_id": p.id,
                "name": p.name,
                "kind": p.kind.value,
                "roles": _json(p.roles),
                "shift": p.shift,
                "valid_from": p.valid_from,
                "valid_until": p.valid_until,
                "enabled": p.enabled,
            }
            for p in model.people
        },
    }


def _key(table: Table) -> Any:
    return next(iter(table.primary_key.columns))


def _write_difference(conn: Connection, old: AccessModel | None, new: AccessModel) -> bool:
    """Insert, update and delete only what differs; True if anything did."""
    before = _rows(old) if old is not None else {table: {} for table in _rows(new)}
    after = _rows(new)
    changed = False
    for table, rows in after.items():
        previous: Mapping[str, dict[str, Any]] = before[table]
        key = _key(table)
        gone = sorted(set(previous) - set(rows))
        if gone:
            conn.execute(delete(table).where(key.in_(gone)))
        added = [row for ident, row in rows.items() if ident not in previous]
        if added:
            conn.execute(insert(table), added)
        for ident, row in rows.items():
            if ident in previous and previous[ident] != row:
                conn.execute(update(table).where(key == ident).values(**row))
                changed = True
        changed = changed or bool(gone or added)
    return changed


def _schedule(row: Row[Any]) -> Schedule:
    return Schedule(
        name=row.name, days=tuple(row.days.split(",")), start=int(row.start_minute), end=int(row.end_minute)
    )


def _asset(row: Row[Any]) -> Asset:
    return Asset(
        id=row.asset_id,
        kind=AssetKind(row.kind),
        functions=tuple(json.loads(row.functions)),
        inside=row.inside,
    )


def _grant(row: Row[Any]) -> Grant:
    return Grant(
        id=row.grant_id,
        role=row.role,
        assets=tuple(json.loads(row.assets)),
        functions=tuple(json.loads(row.functions)),
        when=row.when_schedule,
    )


def _person(row: Row[Any]) -> Person:
    return Person(
        id=row.person_id,
        name=row.name,
        roles=tuple(json.loads(row.roles)),
        kind=PersonKind(row.kind),
        shift=row.shift,
        valid_from=row.valid_from,
        valid_until=row.valid_until,
        enabled=bool(row.enabled),
    )


def _load(conn: Connection) -> tuple[AccessModel, int] | None:
    site = conn.execute(select(access_site).where(access_site.c.id == _SITE_ID)).first()
    if site is None:
        return None
    model = AccessModel(
        site=site.name,
        timezone=site.timezone,
        schedules=tuple(
            _schedule(r) for r in conn.execute(select(access_schedules).order_by(access_schedules.c.name))
        ),
        assets=tuple(
            _asset(r) for r in conn.execute(select(access_assets).order_by(access_assets.c.asset_id))
        ),
        roles=tuple(
            Role(id=r.role_id, external=bool(r.external))
            for r in conn.execute(select(access_roles).order_by(access_roles.c.role_id))
        ),
        grants=tuple(
            _grant(r) for r in conn.execute(select(access_grants).order_by(access_grants.c.position))
        ),
        people=tuple(
            _person(r) for r in conn.execute(select(access_people).order_by(access_people.c.person_id))
        ),
    )
    return model, int(site.revision)


class SqlAccessStore:
    """Reads and changes the access model on the PKI's engine (SQLite or PostgreSQL)."""

    def __init__(self, database: Database) -> None:
        self._database = database

    def load(self) -> AccessModel | None:
        """The stored model, or None before the first import."""
        loaded = self.load_with_revision()
        return loaded[0] if loaded else None

    def load_with_revision(self) -> tuple[AccessModel, int] | None:
        """The stored model and its revision (incremented by every change)."""
        with self._database.reading() as conn:
            return _load(conn)

    def change(self, apply: AccessChange, now: datetime) -> tuple[AccessModel, int, bool]:
        """Run ``apply`` on the current model and store the result with its events, atomically.

        Returns the new model, its revision and whether anything changed (nothing is written,
        not even the events, when the model stays the same).
        """
        with _concurrent_change(), self._database.transaction() as conn:
            # A write first: it takes the row lock (PostgreSQL) or the write lock (SQLite) before
            # the model is read, so concurrent changes queue instead of overwriting each other.
            conn.execute(
                update(access_site)
                .where(access_site.c.id == _SITE_ID)
                .values(revision=access_site.c.revision)
            )
            loaded = _load(conn)
            current, revision = loaded if loaded else (None, 0)
            new, events = apply(current)
            site_changed = current is None or (current.site, current.timezone) != (new.site, new.timezone)
            changed = _write_difference(conn, current, new) or site_changed
            if not changed:
                return new, revision, False
            revision += 1
            values = {"name": new.site, "timezone": new.timezone, "revision": revision, "updated_at": now}
            if current is None:
                conn.execute(insert(access_site).values(id=_SITE_ID, **values))
            else:
                conn.execute(update(access_site).where(access_site.c.id == _SITE_ID).values(**values))
            ledger.append(conn, events)
        return new, revision, True
