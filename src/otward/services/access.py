"""Administering the access model and explaining its decisions (issue 6, ``pki.access``).

Every change is a pure step from ``otward.core.access.changes`` run inside the store's
transaction with an ``access.changed`` audit event. Decisions are Cedar's: the service compiles
the stored model to an asset's slice and asks a :class:`Decider`, the same code the gatekeeper
at the asset runs.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar
from zoneinfo import ZoneInfo

from otward.core.access import changes
from otward.core.access.decision import AccessSlice, Decider, Decision
from otward.core.access.model import (
    AccessModel,
    Asset,
    Grant,
    Person,
    Role,
    Schedule,
    format_minutes,
    parse_access_yaml,
    people_with_explicit_enabled,
)
from otward.core.access.policies import (
    CompiledPolicy,
    asset_slice,
    cedar_schema,
    compile_policies,
    site_policy_texts,
)
from otward.core.audit import AuditEvent, EventType
from otward.errors import InvalidRequestError, NotFoundError
from otward.services.audit import SYSTEM_ACTOR, Actor, AuditLog

__all__ = [
    "AccessAdmin",
    "AccessStore",
    "Explanation",
    "ImportResult",
    "MemoryAccessStore",
    "asset_json",
    "explanation_json",
    "grant_json",
    "parse_instant",
    "person_json",
    "role_json",
    "schedule_json",
]

Change = Callable[[AccessModel | None], tuple[AccessModel, Sequence[AuditEvent]]]
_Entry = TypeVar("_Entry")


class AccessStore(Protocol):
    """Where the access model lives (``SqlAccessStore`` in production)."""

    def load(self) -> AccessModel | None: ...

    def change(self, apply: Change, now: datetime) -> tuple[AccessModel, int, bool]: ...


class MemoryAccessStore:
    """In-memory store for PKI stores without a SQL engine (test fakes); events go to ``append``."""

    def __init__(self, append: Callable[[Sequence[AuditEvent]], object]) -> None:
        self._append = append
        self._model: AccessModel | None = None
        self._revision = 0
        self._lock = threading.Lock()

    def load(self) -> AccessModel | None:
        return self._model

    def change(self, apply: Change, now: datetime) -> tuple[AccessModel, int, bool]:
        with self._lock:
            new, events = apply(self._model)
            if self._model is not None and not changes.diff_models(self._model, new):
                return new, self._revision, False
            self._append(events)
            self._model, self._revision = new, self._revision + 1
            return new, self._revision, True


@dataclass(frozen=True)
class ImportResult:
    """What an import changed; ``revision`` is the model's revision afterwards."""

    site: str
    changed: bool
    revision: int
    details: dict[str, str]


@dataclass(frozen=True)
class Explanation:
    """A decision with what it was based on: local time, and the text of the deciding policies."""

    person: str
    asset: str
    function: str
    at: datetime  # UTC
    decision: Decision
    policy_texts: tuple[str, ...]


class AccessAdmin:
    """People, robots and grants of the site; policies, slices and explanations."""

    def __init__(self, store: AccessStore, *, clock: Callable[[], datetime], audit: AuditLog) -> None:
        self._store = store
        self._clock = clock
        self._audit = audit

    # --- reading --------------------------------------------------------------------------------

    def model(self) -> AccessModel:
        """The stored model; NotFoundError before the first import."""
        model = self._store.load()
        if model is None:
            raise NotFoundError(
                "no access model yet: run 'otward access import FILE.yaml' first", rule="access-model"
            )
        return model

    def people(self) -> Sequence[Person]:
        return sorted(self.model().people, key=lambda person: person.id)

    def person(self, person_id: str) -> Person:
        person = self.model().person(person_id)
        if person is None:
            raise NotFoundError(f"person '{person_id}' not found", rule="access-person")
        return person

    def assets(self) -> Sequence[Asset]:
        return sorted(self.model().assets, key=lambda asset: asset.id)

    def asset(self, asset_id: str) -> Asset:
        asset = self.model().asset(asset_id)
        if asset is None:
            raise NotFoundError(f"asset '{asset_id}' not found", rule="access-asset")
        return asset

    def roles(self) -> Sequence[Role]:
        return sorted(self.model().roles, key=lambda role: role.id)

    def schedules(self) -> Sequence[Schedule]:
        return sorted(self.model().schedules, key=lambda schedule: schedule.name)

    def grants(self, *, role: str | None = None, asset: str | None = None) -> Sequence[Grant]:
        return [
            grant
            for grant in self.model().grants
            if (role is None or grant.role == role) and (asset is None or asset in grant.assets)
        ]

    def policies(self, asset: str | None = None) -> list[CompiledPolicy]:
        """The site's forbid policies and every grant's permit (for ``asset`` only, if given)."""
        model = self.model()
        if asset is not None and model.asset(asset) is None:
            raise NotFoundError(f"unknown asset '{asset}'", rule="access-asset")
        site = [CompiledPolicy(pid, "", "*", text) for pid, text in site_policy_texts().items()]
        return site + compile_policies(model, asset)

    def schema(self) -> str:
        """The Cedar schema the policies are written against."""
        return cedar_schema(self.model())

    def asset_slice(self, asset_id: str) -> AccessSlice:
        """What ``asset_id`` needs to decide alone, from the current model."""
        return asset_slice(self.model(), asset_id)

    def explain(self, person: str, asset: str, function: str, at: datetime | None = None) -> Explanation:
        """Decide as the asset would at ``at`` (default now), and show the policies that decided."""
        model = self.model()
        if model.person(person) is None:
            raise NotFoundError(f"person '{person}' not found", rule="access-person")
        when = at or self._clock()
        if when.tzinfo is None:
            raise InvalidRequestError("the time needs a UTC offset or zone", rule="access-time")
        access_slice = asset_slice(model, asset, include=(person,))
        decision = Decider(access_slice).decide(person, function, when)
        texts = {policy.id: policy.text for policy in self.policies(asset)}
        return Explanation(
            person=person,
            asset=asset,
            function=function,
            at=when.astimezone(UTC),
            decision=decision,
            policy_texts=tuple(texts[pid] for pid in decision.policies if pid in texts),
        )

    def who_may(self, asset: str, function: str, at: datetime | None = None) -> list[tuple[Person, Decision]]:
        """Everyone whose roles have a grant for ``function`` on ``asset``, each decided at ``at``.

        The same slice and Decider as :meth:`explain` (one slice, parsed once, one Cedar call per
        person); people without such a grant are left out, as the asset denies them anyway.
        """
        model = self.model()
        target = model.asset(asset)
        if target is None:
            raise NotFoundError(f"asset '{asset}' not found", rule="access-asset")
        if function not in target.functions:
            raise NotFoundError(f"asset '{asset}' has no function '{function}'", rule="access-function")
        when = at or self._clock()
        access_slice = asset_slice(model, asset)
        decider = Decider(access_slice)
        roles = {
            grant.role for grant in model.grants if asset in grant.assets and function in grant.functions
        }
        return [
            (person, decider.decide(person.id, function, when))
            for person in sorted(model.people, key=lambda p: p.id)
            if roles.intersection(person.roles)
        ]

    # --- changing -------------------------------------------------------------------------------

    def _change(
        self,
        actor: Actor,
        subject: str | Callable[[], str],
        action: str,
        step: Callable[[AccessModel], AccessModel],
    ) -> AccessModel:
        """Run ``step`` on the stored model in the store's transaction; returns the model written."""

        def apply(current: AccessModel | None) -> tuple[AccessModel, Sequence[AuditEvent]]:
            if current is None:
                raise NotFoundError(
                    "no access model yet: run 'otward access import FILE.yaml' first", rule="access-model"
                )
            new = step(current)
            details = {"change": action, **changes.diff_models(current, new).details()}
            name = subject if isinstance(subject, str) else subject()
            return new, [self._audit.event(actor, EventType.ACCESS_CHANGED, name, details=details)]

        return self._store.change(apply, self._clock())[0]

    def import_yaml(
        self, text: str, actor: Actor = SYSTEM_ACTOR, *, replace_all: bool = False
    ) -> ImportResult:
        """Load the YAML format; idempotent (re-importing the same file changes nothing).

        See :func:`otward.core.access.changes.merge_import` for what is kept.
        """
        imported = parse_access_yaml(text)
        explicit = people_with_explicit_enabled(text)
        holder: dict[str, dict[str, str]] = {}

        def apply(current: AccessModel | None) -> tuple[AccessModel, Sequence[AuditEvent]]:
            new = changes.merge_import(current, imported, explicit_enabled=explicit, replace_all=replace_all)
            details = changes.diff_models(current, new).details()
            holder["details"] = details
            event = self._audit.event(
                actor,
                EventType.ACCESS_CHANGED,
                f"site:{new.site}",
                details={"change": "import", "replace": str(replace_all).lower(), **details},
            )
            return new, [event]

        model, revision, changed = self._store.change(apply, self._clock())
        return ImportResult(model.site, changed, revision, holder.get("details", {}) if changed else {})

    def add_person(self, person: Person, actor: Actor = SYSTEM_ACTOR) -> Person:
        """Add a person or robot; ConflictError if the id exists."""
        model = self._change(
            actor, f"person:{person.id}", "person.added", lambda m: changes.put_person(m, person, create=True)
        )
        return _stored(model.person(person.id))

    def update_person(self, person: Person, actor: Actor = SYSTEM_ACTOR) -> Person:
        """Replace a person's data (NotFoundError if unknown)."""
        model = self._change(
            actor,
            f"person:{person.id}",
            "person.updated",
            lambda m: changes.put_person(m, person, create=False),
        )
        return _stored(model.person(person.id))

    def remove_person(self, person_id: str, actor: Actor = SYSTEM_ACTOR) -> None:
        self._change(
            actor, f"person:{person_id}", "person.removed", lambda m: changes.remove_person(m, person_id)
        )

    def disable_person(self, person_id: str, actor: Actor = SYSTEM_ACTOR) -> Person:
        """Deny the person everything from the next slice on; their data stays."""
        model = self._change(
            actor,
            f"person:{person_id}",
            "person.disabled",
            lambda m: changes.set_enabled(m, person_id, False),
        )
        return _stored(model.person(person_id))

    def enable_person(self, person_id: str, actor: Actor = SYSTEM_ACTOR) -> Person:
        model = self._change(
            actor, f"person:{person_id}", "person.enabled", lambda m: changes.set_enabled(m, person_id, True)
        )
        return _stored(model.person(person_id))

    def add_grant(
        self,
        role: str,
        assets: Iterable[str],
        functions: Iterable[str],
        when: str | None = None,
        actor: Actor = SYSTEM_ACTOR,
    ) -> Grant:
        """Append a grant (id ``<role>-<n>``); checked against roles, assets, functions, schedules."""
        created: list[Grant] = []

        def step(model: AccessModel) -> AccessModel:
            new, grant = changes.add_grant(model, role, list(assets), list(functions), when)
            created[:] = [grant]
            return new

        self._change(actor, lambda: f"grant:{created[0].id}", "grant.added", step)
        return replace(created[0])

    def remove_grant(self, grant_id: str, actor: Actor = SYSTEM_ACTOR) -> None:
        self._change(actor, f"grant:{grant_id}", "grant.removed", lambda m: changes.remove_grant(m, grant_id))

    def put_asset(self, asset: Asset, *, create: bool, actor: Actor = SYSTEM_ACTOR) -> Asset:
        """Add an asset (``create``; ConflictError if it exists) or replace one (NotFoundError if not)."""
        action = "asset.added" if create else "asset.updated"
        model = self._change(
            actor, f"asset:{asset.id}", action, lambda m: changes.put_asset(m, asset, create=create)
        )
        return _stored(model.asset(asset.id))

    def amend_asset(
        self,
        asset_id: str,
        *,
        kind: str | None = None,
        functions: Sequence[str] | None = None,
        inside: str | None = None,
        clear_inside: bool = False,
        actor: Actor = SYSTEM_ACTOR,
    ) -> Asset:
        """Change only what is given, read and written in one transaction (no concurrent change lost)."""
        model = self._change(
            actor,
            f"asset:{asset_id}",
            "asset.updated",
            lambda m: changes.amend_asset(
                m, asset_id, kind=kind, functions=functions, inside=inside, clear_inside=clear_inside
            ),
        )
        return _stored(model.asset(asset_id))

    def remove_asset(self, asset_id: str, actor: Actor = SYSTEM_ACTOR) -> None:
        """Remove an asset no grant names (ConflictError names the grants that still do)."""
        self._change(actor, f"asset:{asset_id}", "asset.removed", lambda m: changes.remove_asset(m, asset_id))

    def put_role(self, role: Role, *, create: bool, actor: Actor = SYSTEM_ACTOR) -> Role:
        action = "role.added" if create else "role.updated"
        model = self._change(
            actor, f"role:{role.id}", action, lambda m: changes.put_role(m, role, create=create)
        )
        return _stored(model.role(role.id))

    def remove_role(self, role_id: str, actor: Actor = SYSTEM_ACTOR) -> None:
        """Remove a role no grant and no person uses."""
        self._change(actor, f"role:{role_id}", "role.removed", lambda m: changes.remove_role(m, role_id))

    def put_schedule(self, schedule: Schedule, *, create: bool, actor: Actor = SYSTEM_ACTOR) -> Schedule:
        """Add a weekly schedule or change one's hours (its grants and shifts follow at the next bundle)."""
        action = "schedule.added" if create else "schedule.updated"
        model = self._change(
            actor,
            f"schedule:{schedule.name}",
            action,
            lambda m: changes.put_schedule(m, schedule, create=create),
        )
        return _stored(model.schedule(schedule.name))

    def amend_schedule(
        self,
        name: str,
        *,
        days: Sequence[str] | None = None,
        start: str | None = None,
        end: str | None = None,
        actor: Actor = SYSTEM_ACTOR,
    ) -> Schedule:
        """Change only the days or hours given, in one transaction."""
        model = self._change(
            actor,
            f"schedule:{name}",
            "schedule.updated",
            lambda m: changes.amend_schedule(m, name, days=days, start=start, end=end),
        )
        return _stored(model.schedule(name))

    def remove_schedule(self, name: str, actor: Actor = SYSTEM_ACTOR) -> None:
        """Remove a schedule no grant and no person's shift uses."""
        self._change(
            actor, f"schedule:{name}", "schedule.removed", lambda m: changes.remove_schedule(m, name)
        )


def _stored(entry: _Entry | None) -> _Entry:
    """An entry of the model a change has just written: there by construction."""
    assert entry is not None  # noqa: S101 - the change put it there
    return entry


# --- shared by the CLI and the HTTP API ----------------------------------------------------------


def parse_instant(text: str, timezone: str) -> datetime:
    """ISO 8601 time; without an offset it is local site time (the earlier one if a DST change repeats it)."""
    try:
        value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise InvalidRequestError(
            f"--at: bad time {text!r} (ISO 8601, e.g. 2026-11-30T23:00 local or 2026-11-30T22:00Z)",
            rule="access-time",
        ) from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=ZoneInfo(timezone))
    try:  # a year of margin each side: the instant is shown in UTC and in the site's zone
        in_range = 2 <= value.astimezone(UTC).year <= 9998
    except OverflowError:
        in_range = False
    if not in_range:
        raise InvalidRequestError(f"--at: {text!r} is outside the years 2 to 9998", rule="access-time")
    return value


def person_json(person: Person) -> dict[str, Any]:
    """The JSON form of a person (CLI and API share it)."""
    return {
        "id": person.id,
        "name": person.name,
        "kind": person.kind.value,
        "roles": list(person.roles),
        "shift": person.shift,
        "valid_from": person.valid_from.isoformat() if person.valid_from else None,
        "valid_until": person.valid_until.isoformat() if person.valid_until else None,
        "enabled": person.enabled,
    }


def asset_json(asset: Asset) -> dict[str, Any]:
    """The JSON form of an asset (CLI and API share it)."""
    return {
        "id": asset.id,
        "kind": asset.kind.value,
        "functions": list(asset.functions),
        "inside": asset.inside,
    }


def role_json(role: Role) -> dict[str, Any]:
    """The JSON form of a role (CLI and API share it)."""
    return {"id": role.id, "external": role.external}


def schedule_json(schedule: Schedule) -> dict[str, Any]:
    """The JSON form of a schedule: the YAML's fields, plus whether it crosses midnight."""
    return {
        "name": schedule.name,
        "days": list(schedule.days),
        "from": format_minutes(schedule.start),
        "to": format_minutes(schedule.end),
        "overnight": schedule.overnight,
    }


def grant_json(grant: Grant) -> dict[str, Any]:
    """The JSON form of a grant (CLI and API share it)."""
    return {
        "id": grant.id,
        "role": grant.role,
        "assets": list(grant.assets),
        "functions": list(grant.functions),
        "when": grant.when,
    }


def explanation_json(explanation: Explanation) -> dict[str, Any]:
    """The JSON form of an explanation (CLI and API share it)."""
    decision = explanation.decision
    return {
        "decision": "allow" if decision.allowed else "deny",
        "reason": decision.reason,
        "person": explanation.person,
        "asset": explanation.asset,
        "function": explanation.function,
        "at": explanation.at.isoformat(),
        "local_time": decision.local_time,
        "policies": list(decision.policies),
        "policy_texts": list(explanation.policy_texts),
    }
