"""Changes to an access model: merging an import, adding/removing grants and people, diffs for the audit.

Every administrative change is a pure function from the current model to the next one, validated
as a whole; the store then writes the difference and an ``access.changed`` event in one transaction.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from otward.core.access.model import (
    OWN_SHIFT,
    AccessModel,
    Asset,
    AssetKind,
    Grant,
    Person,
    Role,
    Schedule,
    format_minutes,
    make_asset,
    make_schedule,
    validate_grant,
    validate_model,
)
from otward.errors import ConflictError, InvalidRequestError, NotFoundError

__all__ = [
    "Changes",
    "ModelDiff",
    "add_grant",
    "amend_asset",
    "amend_schedule",
    "diff_models",
    "merge_import",
    "put_asset",
    "put_person",
    "put_role",
    "put_schedule",
    "remove_asset",
    "remove_grant",
    "remove_person",
    "remove_role",
    "remove_schedule",
    "set_enabled",
]


@dataclass(frozen=True)
class Changes:
    """Ids added, changed and removed in one kind of entry."""

    added: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.added or self.changed or self.removed)

    def summary(self) -> str:
        """``+2 ~1 -0`` form for audit details and CLI output."""
        return f"+{len(self.added)} ~{len(self.changed)} -{len(self.removed)}"


@dataclass(frozen=True)
class ModelDiff:
    """What differs between two models, per kind of entry."""

    site: bool
    schedules: Changes
    assets: Changes
    roles: Changes
    grants: Changes
    people: Changes

    def __bool__(self) -> bool:
        return self.site or any(self.kinds().values())

    def kinds(self) -> dict[str, Changes]:
        """The per-kind changes by name."""
        return {
            "schedules": self.schedules,
            "assets": self.assets,
            "roles": self.roles,
            "grants": self.grants,
            "people": self.people,
        }

    def details(self) -> dict[str, str]:
        """Audit details: one ``+a ~c -r`` entry per kind that changed."""
        result = {name: changes.summary() for name, changes in self.kinds().items() if changes}
        if self.site:
            result["site"] = "changed"
        return result


def _changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> Changes:
    return Changes(
        added=tuple(sorted(set(new) - set(old))),
        changed=tuple(sorted(key for key in set(new) & set(old) if new[key] != old[key])),
        removed=tuple(sorted(set(old) - set(new))),
    )


def diff_models(old: AccessModel | None, new: AccessModel) -> ModelDiff:
    """The difference from ``old`` (None: nothing stored yet) to ``new``."""
    before = old or AccessModel(site="", timezone="")

    def by_id(items: Iterable[Any], key: str = "id") -> dict[str, Any]:
        return {getattr(item, key): item for item in items}

    grants_before = {g.id: (position, g) for position, g in enumerate(before.grants)}
    grants_after = {g.id: (position, g) for position, g in enumerate(new.grants)}
    grant_changes = _changes(
        {key: value[1] for key, value in grants_before.items()},
        {key: value[1] for key, value in grants_after.items()},
    )
    return ModelDiff(
        site=(before.site, before.timezone) != (new.site, new.timezone),
        schedules=_changes(by_id(before.schedules, "name"), by_id(new.schedules, "name")),
        assets=_changes(by_id(before.assets), by_id(new.assets)),
        roles=_changes(by_id(before.roles), by_id(new.roles)),
        grants=grant_changes,
        people=_changes(by_id(before.people), by_id(new.people)),
    )


def _upsert(current: Iterable[Any], incoming: Iterable[Any], key: str) -> tuple[Any, ...]:
    merged = {getattr(item, key): item for item in current}
    for item in incoming:
        merged[getattr(item, key)] = item
    return tuple(merged.values())


def merge_import(
    current: AccessModel | None,
    imported: AccessModel,
    *,
    explicit_enabled: frozenset[str] = frozenset(),
    replace_all: bool = False,
) -> AccessModel:
    """The model after importing ``imported`` over ``current``.

    Schedules, assets, roles and people in the file are added or updated; the grants of every
    role the file lists grants for are replaced by the file's. Entries the file does not name are
    kept, unless ``replace_all``. A person's ``enabled`` comes from the file only where the file
    sets it, so re-importing never re-enables someone an administrator disabled.
    """
    if current is None:
        return imported
    people = []
    for person in imported.people:
        existing = current.person(person.id)
        if existing is not None and person.id not in explicit_enabled:
            person = replace(person, enabled=existing.enabled)
        people.append(person)
    if replace_all:
        merged = replace(imported, people=tuple(people))
    else:
        file_roles = {grant.role for grant in imported.grants}
        merged = AccessModel(
            site=imported.site,
            timezone=imported.timezone,
            schedules=_upsert(current.schedules, imported.schedules, "name"),
            assets=_upsert(current.assets, imported.assets, "id"),
            roles=_upsert(current.roles, imported.roles, "id"),
            grants=tuple(g for g in current.grants if g.role not in file_roles) + imported.grants,
            people=_upsert(current.people, people, "id"),
        )
    validate_model(merged)
    return merged


def put_person(model: AccessModel, person: Person, *, create: bool) -> AccessModel:
    """Add ``person`` (``create``: refuse an existing id) or replace the one with its id (refuse an
    unknown one)."""
    return _put_entry(model, "people", person, create=create)


def remove_person(model: AccessModel, person_id: str) -> AccessModel:
    """The model without ``person_id`` (nothing refers to a person)."""
    return _remove_entry(model, "people", person_id, users=())


def set_enabled(model: AccessModel, person_id: str, enabled: bool) -> AccessModel:
    """Disable or enable ``person_id``; everything else about the person stays."""
    person = model.person(person_id)
    if person is None:
        raise NotFoundError(f"person '{person_id}' not found", rule="access-person")
    return model.with_people(replace(p, enabled=enabled) if p.id == person_id else p for p in model.people)


def add_grant(
    model: AccessModel, role: str, assets: Iterable[str], functions: Iterable[str], when: str | None
) -> tuple[AccessModel, Grant]:
    """Append a grant with the next free id ``<role>-<n>``; validated against the model."""
    numbers = [
        int(suffix)
        for grant in model.grants
        if grant.role == role
        for prefix, _, suffix in [grant.id.rpartition("-")]
        if prefix == role and suffix.isdigit()
    ]
    grant = Grant(
        id=f"{role}-{max(numbers, default=0) + 1}",
        role=role,
        assets=tuple(dict.fromkeys(assets)),
        functions=tuple(dict.fromkeys(functions)),
        when=when,
    )
    if not grant.assets or not grant.functions:
        raise InvalidRequestError("a grant needs at least one asset and one function", rule="access-grant")
    validate_grant(model, grant, f"grant {grant.id}")
    return replace(model, grants=(*model.grants, grant)), grant


def remove_grant(model: AccessModel, grant_id: str) -> AccessModel:
    """The model without grant ``grant_id``."""
    if not any(grant.id == grant_id for grant in model.grants):
        raise NotFoundError(f"grant '{grant_id}' not found", rule="access-grant")
    return replace(model, grants=tuple(grant for grant in model.grants if grant.id != grant_id))


# --- people, assets, roles and schedules, one at a time ---------------------------------------------
#
# Adding or replacing an entry runs the whole model's validation, so a change that would leave a grant
# naming a function the asset no longer has is refused with that grant named. Removing one that is
# still in use is refused with its users listed: nothing is removed behind an administrator's back.


_KINDS = {"people": "person", "assets": "asset", "roles": "role", "schedules": "schedule"}


def _key(item: Any) -> str:
    return str(item.name if isinstance(item, Schedule) else item.id)


def _put_entry(model: AccessModel, field: str, item: Any, *, create: bool) -> AccessModel:
    """``model`` with ``item`` added to (``create``) or replacing its namesake in the tuple ``field``,
    validated as a whole."""
    kind, item_id = _KINDS[field], _key(item)
    items: tuple[Any, ...] = getattr(model, field)
    exists = any(_key(existing) == item_id for existing in items)
    if create and exists:
        raise ConflictError(f"{kind} '{item_id}' already exists", rule=f"access-{kind}-exists")
    if not create and not exists:
        raise NotFoundError(f"{kind} '{item_id}' not found", rule=f"access-{kind}")
    entries = tuple(item if _key(e) == item_id else e for e in items) if exists else (*items, item)
    replacing: dict[str, Any] = {field: entries}
    updated = replace(model, **replacing)
    validate_model(updated)
    return updated


def _remove_entry(model: AccessModel, field: str, item_id: str, *, users: Iterable[str]) -> AccessModel:
    """``model`` without ``item_id`` in ``field``; refused while ``users`` names anything using it."""
    kind = _KINDS[field]
    items: tuple[Any, ...] = getattr(model, field)
    if not any(_key(item) == item_id for item in items):
        raise NotFoundError(f"{kind} '{item_id}' not found", rule=f"access-{kind}")
    _refuse_in_use(kind, item_id, users)
    remaining: dict[str, Any] = {field: tuple(item for item in items if _key(item) != item_id)}
    return replace(model, **remaining)


def _refuse_in_use(kind: str, item_id: str, users: Iterable[str]) -> None:
    named = sorted(users)
    if named:
        shown = ", ".join(named[:10]) + (f" and {len(named) - 10} more" if len(named) > 10 else "")
        raise ConflictError(
            f"{kind} '{item_id}' is still used by {shown}; change or remove those first",
            rule=f"access-{kind}-in-use",
        )


def put_asset(model: AccessModel, asset: Asset, *, create: bool) -> AccessModel:
    """Add ``asset`` (``create``) or replace the asset with its id (its grants must still fit)."""
    return _put_entry(model, "assets", asset, create=create)


def amend_asset(
    model: AccessModel,
    asset_id: str,
    *,
    kind: str | None = None,
    functions: Iterable[str] | None = None,
    inside: str | None = None,
    clear_inside: bool = False,
) -> AccessModel:
    """Change only what is given of ``asset_id``; the rest stays as stored. Functions kept from the
    stored asset do not carry over to an area (its one function is ``enter``)."""
    current = model.asset(asset_id)
    if current is None:
        raise NotFoundError(f"asset '{asset_id}' not found", rule="access-asset")
    new_kind = kind or current.kind.value
    if functions is None:
        functions = () if new_kind == AssetKind.AREA.value else current.functions
    area = None if clear_inside else (inside if inside is not None else current.inside)
    return put_asset(model, make_asset(asset_id, new_kind, functions, area), create=False)


def remove_asset(model: AccessModel, asset_id: str) -> AccessModel:
    """The model without ``asset_id``; refused while grants name it or assets are inside it."""
    users = [f"grant {g.id}" for g in model.grants if asset_id in g.assets]
    users += [f"asset {a.id} (inside it)" for a in model.assets if a.inside == asset_id]
    return _remove_entry(model, "assets", asset_id, users=users)


def put_role(model: AccessModel, role: Role, *, create: bool) -> AccessModel:
    """Add ``role`` or replace it (making a role external needs validity dates on its people)."""
    return _put_entry(model, "roles", role, create=create)


def remove_role(model: AccessModel, role_id: str) -> AccessModel:
    """The model without ``role_id``; refused while grants are for it or people hold it."""
    users = [f"grant {g.id}" for g in model.grants if g.role == role_id]
    users += [f"person {p.id}" for p in model.people if role_id in p.roles]
    return _remove_entry(model, "roles", role_id, users=users)


def put_schedule(model: AccessModel, schedule: Schedule, *, create: bool) -> AccessModel:
    """Add ``schedule`` or replace the one with its name (its grants and shifts follow the new hours)."""
    if schedule.name == OWN_SHIFT:
        raise InvalidRequestError(f"the schedule name '{OWN_SHIFT}' is reserved", rule="access-schedule")
    return _put_entry(model, "schedules", schedule, create=create)


def amend_schedule(
    model: AccessModel,
    name: str,
    *,
    days: Iterable[str] | None = None,
    start: str | None = None,
    end: str | None = None,
) -> AccessModel:
    """Change only the days or hours given of schedule ``name``; the rest stays as stored."""
    current = model.schedule(name)
    if current is None:
        raise NotFoundError(f"schedule '{name}' not found", rule="access-schedule")
    schedule = make_schedule(
        name,
        current.days if days is None else days,
        format_minutes(current.start) if start is None else start,
        format_minutes(current.end) if end is None else end,
    )
    return put_schedule(model, schedule, create=False)


def remove_schedule(model: AccessModel, name: str) -> AccessModel:
    """The model without schedule ``name``; refused while grants or people's shifts use it."""
    users = [f"grant {g.id}" for g in model.grants if g.when == name]
    users += [f"person {p.id} (shift)" for p in model.people if p.shift == name]
    return _remove_entry(model, "schedules", name, users=users)
