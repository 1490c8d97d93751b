"""What a credential may do: the one authorization decision of the API.

Every protected route names the :class:`Permission` it needs (an area of otward and whether
the request reads or changes it); a token carries a :class:`Scope`, and :func:`is_permitted`
is the only place that decides whether the scope covers the permission. Named
administrators with roles grow out of this table, not beside it.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["SCOPE_PERMISSIONS", "Action", "Area", "Permission", "Scope", "is_permitted", "parse_scope"]


class Area(enum.Enum):
    PKI = "pki"  # CAs, certificates, revocation, service signers
    ENROLLMENT = "enrollment"  # the device registry (owners and enrollment tokens are CLI-only today)
    ACCESS = "access"  # the access model, edge bundles, holder credentials, gatekeeper trails
    AUDIT = "audit"  # the audit trail and its verification
    METRICS = "metrics"  # /metrics


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
