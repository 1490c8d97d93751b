"""What a credential may do: the one authorization decision of the API and the CLI.

Every protected route and command names the :class:`Permission` it needs (an area of otward and
whether the request reads or changes it). A token carries a :class:`Scope`; an account holds
grants (a :class:`Role`, for every owner or one: ``enrollment-officer:line-2`` limits a role to one owner's
devices and tokens). :func:`is_permitted` decides a scope, :func:`is_granted` an account's grants
(its token's scope intersected with its roles: a token never exceeds its account), for one
resource's owner when the resource has one. Nothing else decides.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = [
    "OWNER_SCOPED_ROLES",
    "ROLE_PERMISSIONS",
    "SCOPE_PERMISSIONS",
    "Action",
    "Area",
    "Grant",
    "Permission",
    "Role",
    "Scope",
    "format_grants",
    "is_granted",
    "is_permitted",
    "owner_limit",
    "parse_grant",
    "parse_scope",
]


class Area(enum.Enum):
    PKI = "pki"  # CAs, certificates, revocation, service signers
    ENROLLMENT = "enrollment"  # the device registry (owners and enrollment tokens are CLI-only today)
    ACCESS = "access"  # the access model, edge bundles, holder credentials, gatekeeper trails
    AUDIT = "audit"  # the audit trail and its verification
    METRICS = "metrics"  # /metrics
    ADMIN = "admin"  # accounts and their roles


class Action(enum.Enum):
    READ = "read"
    WRITE = "write"


@dataclass(frozen=True)
class Permission:
    area: Area
    action: Action

    def __str__(self) -> str:
        return f"{self.area.value}:{self.action.value}"


class Scope(enum.Enum):
    """What an API token is for, chosen when it is made."""

    ADMIN = "admin"  # everything
    READ = "read"  # read everything, change nothing (auditors, dashboards)
    METRICS = "metrics"  # only /metrics (Prometheus)
    ENROLL_ADMIN = "enroll-admin"  # the device registry
    ACCESS_ADMIN = "access-admin"  # the access model, bundles, credentials, gatekeeper trails


def _all(action: Action | None = None) -> frozenset[Permission]:
    actions = [action] if action else list(Action)
    return frozenset(Permission(area, a) for area in Area for a in actions)


def _area(area: Area) -> frozenset[Permission]:
    return frozenset(Permission(area, action) for action in Action)


SCOPE_PERMISSIONS: Mapping[Scope, frozenset[Permission]] = {
    Scope.ADMIN: _all(),
    Scope.READ: _all(Action.READ),
    Scope.METRICS: frozenset({Permission(Area.METRICS, Action.READ)}),
    Scope.ENROLL_ADMIN: _area(Area.ENROLLMENT),
    Scope.ACCESS_ADMIN: _area(Area.ACCESS),
}


def is_permitted(scope: Scope, permission: Permission) -> bool:
    """True when a credential of ``scope`` may do what ``permission`` names; deny otherwise."""
    return permission in SCOPE_PERMISSIONS.get(scope, frozenset())


def parse_scope(text: str) -> Scope:
    """The scope named ``text``; ValueError naming the known ones otherwise."""
    try:
        return Scope(text)
    except ValueError:
        known = ", ".join(s.value for s in Scope)
        raise ValueError(f"unknown token scope '{text}' (known: {known})") from None


class Role(enum.Enum):
    """What a named account is for (docs/administration.md has the table)."""

    ADMIN = "admin"  # accounts and roles
    PKI_OFFICER = "pki-officer"  # CAs, profiles, certificates, revocation, signers
    ENROLLMENT_OFFICER = "enrollment-officer"  # owners, enrollment tokens, devices
    ACCESS_MANAGER = "access-manager"  # the access model, bundles, credentials, edge tokens
    AUDITOR = "auditor"  # read everything, verify and export the trail; change nothing
    METRICS = "metrics"  # only /metrics


ROLE_PERMISSIONS: Mapping[Role, frozenset[Permission]] = {
    Role.ADMIN: _area(Area.ADMIN),
    Role.PKI_OFFICER: _area(Area.PKI),
    Role.ENROLLMENT_OFFICER: _area(Area.ENROLLMENT),
    Role.ACCESS_MANAGER: _area(Area.ACCESS),
    Role.AUDITOR: _all(Action.READ),
    Role.METRICS: frozenset({Permission(Area.METRICS, Action.READ)}),
}

OWNER_SCOPED_ROLES = frozenset({Role.ENROLLMENT_OFFICER})
"""Roles that may be limited to one owner (the device registry is the only area with owners)."""


@dataclass(frozen=True, order=True)
class Grant:
    """A role an account holds, for every owner (``owner`` None) or one owner's resources only."""

    role: Role
    owner: str | None = None

    def __str__(self) -> str:
        return self.role.value if self.owner is None else f"{self.role.value}:{self.owner}"


def parse_grant(text: str) -> Grant:
    """``ROLE`` or ``ROLE:OWNER``; ValueError naming the known roles otherwise."""
    name, sep, owner = text.strip().partition(":")
    try:
        role = Role(name)
    except ValueError:
        known = ", ".join(r.value for r in Role)
        raise ValueError(f"unknown role '{name}' (known: {known})") from None
    if not sep:
        return Grant(role)
    if role not in OWNER_SCOPED_ROLES:
        raise ValueError(f"role '{role.value}' cannot be limited to an owner (only enrollment-officer)")
    if not owner or not owner.strip() or owner != owner.strip():
        raise ValueError(f"role '{text}': the owner after ':' is empty or padded")
    return Grant(role, owner)


def format_grants(grants: frozenset[Grant] | set[Grant]) -> str:
    """Grants as stored and shown: sorted, comma-separated."""
    return ",".join(sorted(str(g) for g in grants))


def _covers(grant: Grant, permission: Permission, owner: str | None) -> bool:
    if permission not in ROLE_PERMISSIONS.get(grant.role, frozenset()):
        return False
    if grant.owner is None:
        return True
    return owner == grant.owner  # an owner-limited grant never covers owner-less or other owners' things


def is_granted(
    grants: frozenset[Grant],
    permission: Permission,
    *,
    scope: Scope | None = None,
    owner: str | None = None,
) -> bool:
    """True when an account holding ``grants`` (through a token of ``scope``, if any) may do what
    ``permission`` names to a resource of ``owner`` (None: a resource without owner, or every
    owner's, which an owner-limited grant never covers). Deny otherwise."""
    if scope is not None and not is_permitted(scope, permission):
        return False
    return any(_covers(grant, permission, owner) for grant in grants)


def owner_limit(grants: frozenset[Grant], permission: Permission) -> frozenset[str] | None:
    """The owners whose resources ``grants`` reach under ``permission``: None for all of them, an
    empty set for none."""
    covering = [g for g in grants if permission in ROLE_PERMISSIONS.get(g.role, frozenset())]
    if any(g.owner is None for g in covering):
        return None
    return frozenset(g.owner for g in covering if g.owner is not None)
