"""Changes to an access model: merging an import, adding/removing grants and people, diffs for the audit.

Every administrative change is a pure function from the current model to the next one, validated
as a whole; the store then writes the difference and an ``access.changed`` event in one transaction.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from otward.core.access.model import AccessModel, Grant, Person, validate_grant, validate_model
from otward.errors import ConflictError, InvalidRequestError, NotFoundError

__all__ = [
    "Changes",
    "ModelDiff",
    "add_grant",
    "diff_models",
    "merge_import",
    "put_person",
    "remove_grant",
    "remove_person",
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
    """Add ``person`` (``create``: refuse an existing id) or replace the one with its id."""
    exists = model.person(person.id) is not None
    if create and exists:
        raise ConflictError(f"person '{person.id}' already exists", rule="access-person-exists")
    people = tuple(person if p.id == person.id else p for p in model.people)
    updated = model.with_people(people if exists else (*model.people, person))
    validate_model(updated)
    return updated


def remove_person(model: AccessModel, person_id: str) -> AccessModel:
    """The model without ``person_id``."""
    if model.person(person_id) is None:
        raise NotFoundError(f"person '{person_id}' not found", rule="access-person")
    return model.with_people(p for p in model.people if p.id != person_id)


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
