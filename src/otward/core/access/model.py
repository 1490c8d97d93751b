"""The access model of a site: schedules, assets, roles, grants, people and robots.

Values only. The YAML format is the one of ``examples/chemical-plant.yaml``; :func:`parse_access_yaml`
turns it into an :class:`AccessModel` and :func:`validate_model` checks the cross references, so a bad
entry is named in the error ("grants.operator[3].assets: unknown asset 'reactor-9'") instead of
surfacing later as a silent deny.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import date
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml  # type: ignore[import-untyped]  # PyYAML ships no stubs; pyproject lists none

from otward.core.identifiers import ACCESS_ID
from otward.errors import InvalidRequestError, ParseError

__all__ = [
    "AREA_FUNCTIONS",
    "OWN_SHIFT",
    "WEEKDAYS",
    "AccessModel",
    "Asset",
    "AssetKind",
    "Grant",
    "Person",
    "PersonKind",
    "Role",
    "Schedule",
    "format_minutes",
    "make_asset",
    "make_schedule",
    "parse_access_yaml",
    "parse_date",
    "parse_minutes",
    "people_with_explicit_enabled",
    "validate_grant",
    "validate_identifier",
    "validate_model",
    "validate_person",
    "validate_timezone",
]

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
OWN_SHIFT = "own-shift"
AREA_FUNCTIONS = ("enter",)
_TIME = re.compile(r"^(\d{2}):(\d{2})$")


class AssetKind(enum.Enum):
    """Areas are entered; machines and systems have functions."""

    AREA = "area"
    MACHINE = "machine"
    SYSTEM = "system"


class PersonKind(enum.Enum):
    """Robots hold roles and shifts like people; the kind is shown, not decided on."""

    PERSON = "person"
    ROBOT = "robot"


@dataclass(frozen=True)
class Schedule:
    """A weekly window in local site time: ``start`` included, ``end`` excluded, in minutes.

    ``end`` may be 1440 (``24:00``). A window whose end is not after its start crosses midnight and
    belongs to the day it starts: Monday 22:00-06:00 covers Monday 22:00 to Tuesday 06:00.
    """

    name: str
    days: tuple[str, ...]
    start: int
    end: int

    @property
    def overnight(self) -> bool:
        """True when the window crosses midnight."""
        return self.end <= self.start

    def describe(self) -> str:
        """Human form, e.g. ``mon,tue 22:00-06:00 (crosses midnight)``."""
        text = f"{','.join(self.days)} {format_minutes(self.start)}-{format_minutes(self.end)}"
        return text + (" (crosses midnight)" if self.overnight else "")


@dataclass(frozen=True)
class Asset:
    """An area, machine or system; ``inside`` names the area that contains it (informational)."""

    id: str
    kind: AssetKind
    functions: tuple[str, ...]
    inside: str | None = None


@dataclass(frozen=True)
class Role:
    """A role; people in an ``external`` role must have validity dates."""

    id: str
    external: bool = False


@dataclass(frozen=True)
class Grant:
    """Allows ``role`` the ``functions`` on ``assets`` (where the asset has them), ``when`` given."""

    id: str
    role: str
    assets: tuple[str, ...]
    functions: tuple[str, ...]
    when: str | None = None  # a schedule name, OWN_SHIFT, or None for always


@dataclass(frozen=True)
class Person:
    """A person or robot; validity dates are whole local days, both inclusive."""

    id: str
    name: str
    roles: tuple[str, ...]
    kind: PersonKind = PersonKind.PERSON
    shift: str | None = None
    valid_from: date | None = None
    valid_until: date | None = None
    enabled: bool = True


@dataclass(frozen=True)
class AccessModel:
    """Everything needed to compile a site's Cedar policies and entities."""

    site: str
    timezone: str
    schedules: tuple[Schedule, ...] = ()
    assets: tuple[Asset, ...] = ()
    roles: tuple[Role, ...] = ()
    grants: tuple[Grant, ...] = ()
    people: tuple[Person, ...] = ()
    _index: dict[str, dict[str, Any]] = field(default_factory=dict, init=False, repr=False, compare=False)

    def _lookup(self, kind: str, items: Iterable[Any]) -> dict[str, Any]:
        cached = self._index.get(kind)
        if cached is None:
            cached = {item.id if kind != "schedules" else item.name: item for item in items}
            self._index[kind] = cached
        return cached

    def schedule(self, name: str) -> Schedule | None:
        """The schedule called ``name``, or None."""
        found: Schedule | None = self._lookup("schedules", self.schedules).get(name)
        return found

    def asset(self, asset_id: str) -> Asset | None:
        """The asset ``asset_id``, or None."""
        found: Asset | None = self._lookup("assets", self.assets).get(asset_id)
        return found

    def role(self, role_id: str) -> Role | None:
        """The role ``role_id``, or None."""
        found: Role | None = self._lookup("roles", self.roles).get(role_id)
        return found

    def person(self, person_id: str) -> Person | None:
        """The person or robot ``person_id``, or None."""
        found: Person | None = self._lookup("people", self.people).get(person_id)
        return found

    def with_people(self, people: Iterable[Person]) -> AccessModel:
        """A copy with ``people`` instead of the current ones."""
        return replace(self, people=tuple(people))


def validate_identifier(value: object, where: str) -> str:
    """Return ``value`` if it is a safe id (letters, digits, ``.``, ``_``, ``-``; max 64)."""
    if not isinstance(value, str) or not ACCESS_ID.is_valid(value):
        raise ParseError(
            f"{where}: bad id {value!r} (letters, digits, '.', '_', '-'; at most 64; starts alphanumeric)",
            rule="access-id",
        )
    return value


def parse_minutes(value: object, where: str, *, allow_24: bool = False) -> int:
    """``"HH:MM"`` to minutes since midnight; ``24:00`` only where ``allow_24`` (a window's end)."""
    text = value if isinstance(value, str) else None
    match = _TIME.fullmatch(text) if text is not None else None
    if match is not None:
        hours, minutes = int(match.group(1)), int(match.group(2))
        total = hours * 60 + minutes
        if (hours < 24 and minutes < 60) or (allow_24 and total == 1440):
            return total
    upper = "24:00" if allow_24 else "23:59"
    raise ParseError(f"{where}: bad time {value!r} (expected HH:MM, 00:00..{upper})", rule="access-time")


def format_minutes(minutes: int) -> str:
    """Minutes since midnight to ``HH:MM`` (1440 gives ``24:00``)."""
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def parse_date(value: object, where: str) -> date:
    """``"YYYY-MM-DD"`` (or a YAML date) to a :class:`date`."""
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        try:
            return date.fromisoformat(value) if len(value) == 10 else _bad_date(value, where)
        except ValueError:
            pass
    return _bad_date(value, where)


def _bad_date(value: object, where: str) -> date:
    raise ParseError(f"{where}: bad date {value!r} (expected YYYY-MM-DD)", rule="access-date")


def _mapping(value: object, where: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ParseError(f"{where}: expected a mapping, got {type(value).__name__}", rule="access-yaml")
    return value


def _list(value: object, where: str) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, str) or not isinstance(value, list):
        raise ParseError(f"{where}: expected a list, got {type(value).__name__}", rule="access-yaml")
    return value


def _keys(entry: Mapping[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(str(key) for key in entry if key not in allowed)
    if unknown:
        raise ParseError(
            f"{where}: unknown field {unknown[0]!r} (allowed: {', '.join(sorted(allowed))})",
            rule="access-yaml",
        )


def _names(value: object, where: str) -> tuple[str, ...]:
    items = _list(value, where)
    names = tuple(validate_identifier(item, where) for item in items)
    if len(set(names)) != len(names):
        raise ParseError(f"{where}: duplicate entries", rule="access-yaml")
    return names


def _parse_schedule(name: str, entry: Mapping[str, Any]) -> Schedule:
    where = f"schedules.{name}"
    _keys(entry, {"days", "from", "to"}, where)
    days = _names(entry.get("days"), f"{where}.days")
    for day in days:
        if day not in WEEKDAYS:
            raise ParseError(
                f"{where}.days: unknown day {day!r} (use {', '.join(WEEKDAYS)})", rule="access-day"
            )
    if not days:
        raise ParseError(f"{where}.days: at least one day is needed", rule="access-day")
    start = parse_minutes(entry.get("from"), f"{where}.from")
    end = parse_minutes(entry.get("to"), f"{where}.to", allow_24=True)
    if start == end:
        raise ParseError(
            f"{where}: 'from' equals 'to'; use 00:00 to 24:00 for whole days", rule="access-time"
        )
    ordered = tuple(day for day in WEEKDAYS if day in days)
    return Schedule(name=name, days=ordered, start=start, end=end)


def make_schedule(name: str, days: Iterable[str], start: str, end: str) -> Schedule:
    """Build a schedule from its text form (the CLI and API use this)."""
    return _parse_schedule(
        validate_identifier(name, "schedule"), {"days": list(days), "from": start, "to": end}
    )


def _parse_asset(asset_id: str, entry: Mapping[str, Any]) -> Asset:
    where = f"assets.{asset_id}"
    _keys(entry, {"kind", "inside", "in", "functions"}, where)
    try:
        kind = AssetKind(entry.get("kind"))
    except ValueError:
        raise ParseError(
            f"{where}.kind: unknown kind {entry.get('kind')!r} (use area, machine or system)",
            rule="access-asset",
        ) from None
    if "inside" in entry and "in" in entry:
        raise ParseError(f"{where}: give either 'inside' or 'in', not both", rule="access-asset")
    parent = entry.get("inside", entry.get("in"))
    inside = validate_identifier(parent, f"{where}.inside") if parent is not None else None
    functions = _names(entry.get("functions"), f"{where}.functions")
    if kind is AssetKind.AREA:
        if functions and functions != AREA_FUNCTIONS:
            raise ParseError(f"{where}.functions: an area has only 'enter'", rule="access-asset")
        functions = AREA_FUNCTIONS
    elif not functions:
        raise ParseError(
            f"{where}.functions: a {kind.value} needs at least one function", rule="access-asset"
        )
    return Asset(id=asset_id, kind=kind, functions=functions, inside=inside)


def make_asset(asset_id: str, kind: str, functions: Iterable[str], inside: str | None = None) -> Asset:
    """Build an asset from its text form (the CLI and API use this); an area's function is ``enter``."""
    entry: dict[str, Any] = {"kind": kind, "functions": list(functions)}
    if inside is not None:
        entry["inside"] = inside
    return _parse_asset(validate_identifier(asset_id, "asset"), entry)


def _parse_grant(role: str, index: int, entry: Mapping[str, Any]) -> Grant:
    where = f"grants.{role}[{index}]"
    _keys(entry, {"assets", "functions", "when"}, where)
    assets = _names(entry.get("assets"), f"{where}.assets")
    functions = _names(entry.get("functions"), f"{where}.functions")
    if not assets or not functions:
        raise ParseError(f"{where}: needs at least one asset and one function", rule="access-grant")
    when = entry.get("when")
    if when is not None:
        when = validate_identifier(when, f"{where}.when")
    return Grant(id=f"{role}-{index}", role=role, assets=assets, functions=functions, when=when)


def _parse_person(index: int, entry: Mapping[str, Any]) -> Person:
    where = f"people[{index}]"
    _keys(entry, {"id", "name", "roles", "shift", "valid", "kind", "enabled"}, where)
    person_id = validate_identifier(entry.get("id"), f"{where}.id")
    where = f"people.{person_id}"
    name = entry.get("name", person_id)
    if not isinstance(name, str) or not name.strip():
        raise ParseError(f"{where}.name: expected a non-empty string", rule="access-person")
    try:
        kind = PersonKind(entry.get("kind", "person"))
    except ValueError:
        raise ParseError(
            f"{where}.kind: unknown kind {entry.get('kind')!r} (use person or robot)", rule="access-person"
        ) from None
    shift = entry.get("shift")
    if shift is not None:
        shift = validate_identifier(shift, f"{where}.shift")
    valid = _mapping(entry.get("valid"), f"{where}.valid")
    _keys(valid, {"from", "to"}, f"{where}.valid")
    valid_from = parse_date(valid["from"], f"{where}.valid.from") if valid.get("from") is not None else None
    valid_until = parse_date(valid["to"], f"{where}.valid.to") if valid.get("to") is not None else None
    enabled = entry.get("enabled", True)
    if not isinstance(enabled, bool):
        raise ParseError(f"{where}.enabled: expected true or false", rule="access-person")
    return Person(
        id=person_id,
        name=name.strip(),
        roles=_names(entry.get("roles"), f"{where}.roles"),
        kind=kind,
        shift=shift,
        valid_from=valid_from,
        valid_until=valid_until,
        enabled=enabled,
    )


def parse_access_yaml(text: str) -> AccessModel:
    """Parse and validate the YAML access format; raises :class:`ParseError` naming the bad entry.

    ``enabled`` of a person defaults to true here; an importer that must not re-enable a person
    disabled by an administrator can ask :func:`people_with_explicit_enabled`.
    """
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ParseError(f"not valid YAML: {exc}", rule="access-yaml") from exc
    except RecursionError:  # PyYAML composes nested collections recursively
        raise ParseError("not valid YAML: nested too deeply", rule="access-yaml") from None
    except ValueError as exc:  # a timestamp that is no date (2026-13-45): PyYAML's datetime raises
        raise ParseError(f"not valid YAML: {exc}", rule="access-yaml") from None
    root = _mapping(data, "document")
    _keys(root, {"site", "timezone", "schedules", "assets", "roles", "grants", "people"}, "document")
    site = validate_identifier(root.get("site"), "site")
    timezone = root.get("timezone")
    if not isinstance(timezone, str):
        raise ParseError(
            f"timezone: expected an IANA time zone name, got {timezone!r}", rule="access-timezone"
        )
    schedules = tuple(
        _parse_schedule(validate_identifier(name, "schedules"), _mapping(entry, f"schedules.{name}"))
        for name, entry in _mapping(root.get("schedules"), "schedules").items()
    )
    assets = tuple(
        _parse_asset(validate_identifier(name, "assets"), _mapping(entry, f"assets.{name}"))
        for name, entry in _mapping(root.get("assets"), "assets").items()
    )
    roles = []
    for name, entry in _mapping(root.get("roles"), "roles").items():
        where = f"roles.{validate_identifier(name, 'roles')}"
        body = _mapping(entry, where)
        _keys(body, {"external"}, where)
        external = body.get("external", False)
        if not isinstance(external, bool):
            raise ParseError(f"{where}.external: expected true or false", rule="access-role")
        roles.append(Role(id=name, external=external))
    grants = []
    for role, entries in _mapping(root.get("grants"), "grants").items():
        validate_identifier(role, "grants")
        for index, entry in enumerate(_list(entries, f"grants.{role}"), start=1):
            grants.append(_parse_grant(role, index, _mapping(entry, f"grants.{role}[{index}]")))
    people = tuple(
        _parse_person(index, _mapping(entry, f"people[{index}]"))
        for index, entry in enumerate(_list(root.get("people"), "people"), start=1)
    )
    model = AccessModel(
        site=site,
        timezone=timezone,
        schedules=schedules,
        assets=assets,
        roles=tuple(roles),
        grants=tuple(grants),
        people=people,
    )
    validate_model(model)
    return model


def people_with_explicit_enabled(text: str) -> frozenset[str]:
    """Ids of people whose ``enabled`` the YAML sets; call only on text that parsed."""
    data = yaml.safe_load(text) or {}
    return frozenset(
        str(entry["id"])
        for entry in data.get("people") or ()
        if isinstance(entry, Mapping) and "enabled" in entry
    )


def _duplicates(kind: str, ids: Iterable[str]) -> None:
    seen: set[str] = set()
    for item in ids:
        if item in seen:
            raise ParseError(f"{kind}.{item}: defined twice", rule="access-duplicate")
        seen.add(item)


def validate_timezone(name: str) -> None:
    """Raise unless ``name`` is a known IANA time zone."""
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # "Europe" is a directory: IsADirectoryError
        raise ParseError(f"timezone: unknown IANA time zone {name!r}", rule="access-timezone") from None


def validate_grant(model: AccessModel, grant: Grant, where: str | None = None) -> None:
    """Raise unless ``grant`` refers to a known role, assets, functions and schedule."""
    where = where or f"grants.{grant.id}"
    if model.role(grant.role) is None:
        raise InvalidRequestError(f"{where}: unknown role {grant.role!r}", rule="access-role")
    offered: set[str] = set()
    for asset_id in grant.assets:
        asset = model.asset(asset_id)
        if asset is None:
            raise InvalidRequestError(f"{where}.assets: unknown asset {asset_id!r}", rule="access-asset")
        offered.update(asset.functions)
    for function in grant.functions:
        if function not in offered:
            raise InvalidRequestError(
                f"{where}.functions: unknown function {function!r} "
                f"(none of {', '.join(grant.assets)} has it)",
                rule="access-function",
            )
    if grant.when is not None and grant.when != OWN_SHIFT and model.schedule(grant.when) is None:
        raise InvalidRequestError(
            f"{where}.when: unknown schedule {grant.when!r} (a schedule name or '{OWN_SHIFT}')",
            rule="access-schedule",
        )


def validate_person(model: AccessModel, person: Person) -> None:
    """Raise unless ``person`` refers to known roles and shift and has sane validity dates."""
    where = f"people.{person.id}"
    for role_id in person.roles:
        role = model.role(role_id)
        if role is None:
            raise InvalidRequestError(f"{where}.roles: unknown role {role_id!r}", rule="access-role")
        if role.external and (person.valid_from is None or person.valid_until is None):
            raise InvalidRequestError(
                f"{where}.valid: role {role_id!r} is external, so 'valid' needs both 'from' and 'to'",
                rule="access-validity",
            )
    if person.shift is not None and model.schedule(person.shift) is None:
        raise InvalidRequestError(f"{where}.shift: unknown schedule {person.shift!r}", rule="access-schedule")
    if person.valid_from and person.valid_until and person.valid_from > person.valid_until:
        raise InvalidRequestError(
            f"{where}.valid: 'from' {person.valid_from} is after 'to' {person.valid_until}",
            rule="access-validity",
        )


def validate_model(model: AccessModel) -> None:
    """Check every cross reference; raises :class:`InvalidRequestError` naming the bad entry."""
    validate_timezone(model.timezone)
    _duplicates("schedules", (schedule.name for schedule in model.schedules))
    _duplicates("assets", (asset.id for asset in model.assets))
    _duplicates("roles", (role.id for role in model.roles))
    _duplicates("grants", (grant.id for grant in model.grants))
    _duplicates("people", (person.id for person in model.people))
    for schedule in model.schedules:
        if schedule.name == OWN_SHIFT:
            raise ParseError(f"schedules.{OWN_SHIFT}: the name is reserved", rule="access-schedule")
    for asset in model.assets:
        if asset.inside is not None:
            parent = model.asset(asset.inside)
            if parent is None or parent.kind is not AssetKind.AREA:
                raise InvalidRequestError(
                    f"assets.{asset.id}.inside: {asset.inside!r} is not a known area", rule="access-asset"
                )
            if parent.id == asset.id:
                raise InvalidRequestError(f"assets.{asset.id}.inside: an area cannot be inside itself")
    for grant in model.grants:
        prefix, _, number = grant.id.rpartition("-")
        where = f"grants.{grant.role}[{number}]" if prefix == grant.role and number.isdigit() else None
        validate_grant(model, grant, where)
    for person in model.people:
        validate_person(model, person)
