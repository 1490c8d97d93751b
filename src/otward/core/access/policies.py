"""Compile an :class:`AccessModel` to Cedar: policies, entities, schema and per-asset slices.

Cedar schema (see :func:`cedar_schema`)::

    entity Role { external: Bool };
    entity Person in [Role] { name, kind, enabled, shift?: {name, days, start, end, overnight},
                              validFrom?: datetime, validUntil?: datetime };
    entity Asset { kind: String, inside?: String };
    action "<function>" appliesTo { principal: Person, resource: Asset, context: Context };

One grant gives one ``permit`` per asset it names (``@id("<grant>/<asset>")``), so an asset's
slice holds only its own policies. Assets have no parents: entering an area does not imply
entering the areas inside it. Two site-wide ``forbid`` policies deny disabled people and people
outside their validity dates. Schedules compile to conditions on the request context; ``own-shift``
compiles to one generic condition over the person's ``shift`` attribute, so changing a shift
changes an entity, not the policies.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from otward.core.access.decision import DISABLED_POLICY, VALIDITY_POLICY, AccessSlice
from otward.core.access.model import (
    OWN_SHIFT,
    AccessModel,
    Grant,
    Person,
    Schedule,
)
from otward.errors import NotFoundError

__all__ = [
    "CompiledPolicy",
    "asset_entity",
    "asset_slice",
    "cedar_schema",
    "compile_policies",
    "entities",
    "person_entity",
    "policy_set_text",
    "policy_text",
    "schedule_condition",
    "site_policy_texts",
]

_SITE_POLICIES = f"""@id("{DISABLED_POLICY}")
forbid (principal, action, resource)
unless {{ principal.enabled }};

@id("{VALIDITY_POLICY}")
forbid (principal, action, resource)
when {{
  (principal has validFrom && context.today < principal.validFrom) ||
  (principal has validUntil && context.today > principal.validUntil)
}};
"""

_OWN_SHIFT_CONDITION = """principal has shift &&
  ((principal.shift.days.contains(context.weekday) &&
    context.minute >= principal.shift.start &&
    (principal.shift.overnight || context.minute < principal.shift.end)) ||
   (principal.shift.overnight &&
    principal.shift.days.contains(context.yesterday) &&
    context.minute < principal.shift.end))"""


class CompiledPolicy:
    """One Cedar policy and where it came from."""

    __slots__ = ("asset", "grant", "id", "text")

    def __init__(self, policy_id: str, grant: str, asset: str, text: str) -> None:
        self.id = policy_id
        self.grant = grant
        self.asset = asset
        self.text = text


def _quote(value: str) -> str:
    return json.dumps(value)


def _days(days: Iterable[str]) -> str:
    return "[" + ", ".join(_quote(day) for day in days) + "]"


def schedule_condition(schedule: Schedule) -> str:
    """The Cedar condition that holds while ``schedule`` does (local wall-clock time)."""
    days = _days(schedule.days)
    if not schedule.overnight:
        return (
            f"{days}.contains(context.weekday) &&\n"
            f"  context.minute >= {schedule.start} && context.minute < {schedule.end}"
        )
    return (
        f"({days}.contains(context.weekday) && context.minute >= {schedule.start}) ||\n"
        f"  ({days}.contains(context.yesterday) && context.minute < {schedule.end})"
    )


def policy_text(model: AccessModel, grant: Grant, asset_id: str, functions: Iterable[str]) -> str:
    """The Cedar ``permit`` for ``grant`` on one asset."""
    policy_id = f"{grant.id}/{asset_id}"
    actions = ", ".join(f"Action::{_quote(function)}" for function in functions)
    head = [f"@id({_quote(policy_id)})", f"@grant({_quote(grant.id)})"]
    condition = ""
    if grant.when == OWN_SHIFT:
        head.append(f"@when({_quote(OWN_SHIFT)})")
        condition = (
            "\nwhen {\n  // the person's own shift; a window crossing midnight belongs to its start day\n"
            f"  {_OWN_SHIFT_CONDITION}\n}}"
        )
    elif grant.when is not None:
        schedule = model.schedule(grant.when)
        if schedule is None:
            raise NotFoundError(f"grant {grant.id}: unknown schedule {grant.when!r}", rule="access-schedule")
        head.append(f"@when({_quote(schedule.name)})")
        condition = (
            f"\nwhen {{\n  // {schedule.name}: {schedule.describe()}, local time\n"
            f"  {schedule_condition(schedule)}\n}}"
        )
    return (
        "\n".join(head)
        + "\npermit (\n"
        + f"  principal in Role::{_quote(grant.role)},\n"
        + f"  action in [{actions}],\n"
        + f"  resource == Asset::{_quote(asset_id)}\n"
        + ")"
        + condition
        + ";\n"
    )


def compile_policies(model: AccessModel, asset: str | None = None) -> list[CompiledPolicy]:
    """Every grant's permit per asset (only ``asset``'s when given), in grant order."""
    compiled: list[CompiledPolicy] = []
    for grant in model.grants:
        for asset_id in grant.assets:
            if asset is not None and asset_id != asset:
                continue
            target = model.asset(asset_id)
            if target is None:
                raise NotFoundError(f"grant {grant.id}: unknown asset {asset_id!r}", rule="access-asset")
            functions = [function for function in grant.functions if function in target.functions]
            if functions:
                compiled.append(
                    CompiledPolicy(
                        f"{grant.id}/{asset_id}",
                        grant.id,
                        asset_id,
                        policy_text(model, grant, asset_id, functions),
                    )
                )
    return compiled


def site_policy_texts() -> dict[str, str]:
    """The two site-wide ``forbid`` policies (disabled, outside validity dates) by ``@id``."""
    first, second = _SITE_POLICIES.split("\n\n")
    return {DISABLED_POLICY: first + "\n", VALIDITY_POLICY: second}


def policy_set_text(model: AccessModel, asset: str | None = None) -> str:
    """The whole Cedar policy set (for one asset when given), site policies first."""
    parts = [_SITE_POLICIES] + [policy.text for policy in compile_policies(model, asset)]
    return "\n".join(parts)


def _date(value: Any) -> dict[str, Any]:
    return {"__extn": {"fn": "datetime", "arg": value.isoformat()}}


def person_entity(model: AccessModel, person: Person) -> dict[str, Any]:
    """The Cedar entity of a person or robot, its roles as parents."""
    attrs: dict[str, Any] = {"name": person.name, "kind": person.kind.value, "enabled": person.enabled}
    if person.shift is not None:
        shift = model.schedule(person.shift)
        if shift is None:
            raise NotFoundError(f"person {person.id}: unknown shift {person.shift!r}", rule="access-schedule")
        attrs["shift"] = {
            "name": shift.name,
            "days": list(shift.days),
            "start": shift.start,
            "end": shift.end,
            "overnight": shift.overnight,
        }
    if person.valid_from is not None:
        attrs["validFrom"] = _date(person.valid_from)
    if person.valid_until is not None:
        attrs["validUntil"] = _date(person.valid_until)
    return {
        "uid": {"type": "Person", "id": person.id},
        "attrs": attrs,
        "parents": [{"type": "Role", "id": role} for role in sorted(person.roles)],
    }


def _role_entity(model: AccessModel, role_id: str) -> dict[str, Any]:
    role = model.role(role_id)
    return {
        "uid": {"type": "Role", "id": role_id},
        "attrs": {"external": bool(role and role.external)},
        "parents": [],
    }


def asset_entity(model: AccessModel, asset_id: str) -> dict[str, Any]:
    """The Cedar entity of an asset (no parents: access to an area is not inherited)."""
    asset = model.asset(asset_id)
    if asset is None:
        raise NotFoundError(f"unknown asset {asset_id!r}", rule="access-asset")
    attrs: dict[str, Any] = {"kind": asset.kind.value}
    if asset.inside is not None:
        attrs["inside"] = asset.inside
    return {"uid": {"type": "Asset", "id": asset.id}, "attrs": attrs, "parents": []}


def entities(model: AccessModel, people: Iterable[Person] | None = None) -> list[dict[str, Any]]:
    """Entities for all assets, roles and ``people`` (default: everyone), deterministic order."""
    chosen = sorted(model.people if people is None else people, key=lambda person: person.id)
    result = [_role_entity(model, role.id) for role in sorted(model.roles, key=lambda role: role.id)]
    result += [asset_entity(model, asset.id) for asset in sorted(model.assets, key=lambda asset: asset.id)]
    result += [person_entity(model, person) for person in chosen]
    return result


def asset_slice(model: AccessModel, asset: str, *, include: Iterable[str] = ()) -> AccessSlice:
    """Only what concerns ``asset``: its policies, the people whose roles have a grant on it, their roles.

    Disabled people are included with ``enabled: false`` so the asset denies them with that reason.
    ``include`` adds people regardless (``explain`` shows why someone without a grant is denied).
    """
    extra = set(include)
    target = model.asset(asset)
    if target is None:
        raise NotFoundError(f"unknown asset {asset!r}", rule="access-asset")
    compiled = compile_policies(model, asset)
    granted_roles = {policy.grant for policy in compiled}
    roles_with_grant = {grant.role for grant in model.grants if grant.id in granted_roles}
    people = sorted(
        (
            person
            for person in model.people
            if person.id in extra or roles_with_grant.intersection(person.roles)
        ),
        key=lambda person: person.id,
    )
    role_ids = sorted({role for person in people for role in person.roles})
    slice_entities: list[Mapping[str, Any]] = [asset_entity(model, asset)]
    slice_entities += [_role_entity(model, role_id) for role_id in role_ids]
    slice_entities += [person_entity(model, person) for person in people]
    return AccessSlice(
        site=model.site,
        timezone=model.timezone,
        asset=asset,
        functions=target.functions,
        policies="\n".join([_SITE_POLICIES] + [policy.text for policy in compiled]),
        entities=tuple(slice_entities),
    )


def cedar_schema(model: AccessModel) -> str:
    """The Cedar schema (human syntax) the compiled policies validate against."""
    functions = sorted({function for asset in model.assets for function in asset.functions})
    actions = ", ".join(_quote(function) for function in functions) or '"enter"'
    return f"""entity Role {{ external: Bool }};
entity Person in [Role] {{
  name: String,
  kind: String,
  enabled: Bool,
  shift?: {{ name: String, days: Set<String>, start: Long, end: Long, overnight: Bool }},
  validFrom?: datetime,
  validUntil?: datetime,
}};
entity Asset {{ kind: String, inside?: String }};
type Context = {{ weekday: String, yesterday: String, minute: Long, today: datetime, localTime: String }};
action {actions} appliesTo {{ principal: Person, resource: Asset, context: Context }};
"""
