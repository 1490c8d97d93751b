"""Four-eyes approval: a change that needs a second account is stored as a request and carried out
only when another account, holding the permission the change itself needs, approves it.

Pure rules, no I/O: which operations are gated (:class:`Operation`, each with the one
:class:`~otward.core.authz.Permission` of the command table), when approvals apply (:func:`applies`),
and who may decide a request (:func:`check_decision`). A request is decided once; the store changes
its state with a compare-and-set, so that two approvers cannot both carry it out.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from otward.core.authz import Action, Area, Permission

__all__ = [
    "OPERATION_PERMISSIONS",
    "ApprovalMode",
    "ApprovalRequest",
    "Decision",
    "Operation",
    "State",
    "applies",
    "check_decision",
    "describe",
    "expiry",
    "is_expired",
]


class Operation(enum.Enum):
    """What may wait for a second account (docs/administration.md, "Four-eyes approval")."""

    CA_CREATE = "ca.create"  # otward ca create NAME --parent P
    CA_REVOKE = "ca.revoke"  # otward ca revoke NAME --reason R
    SIGNER_ROTATE_REVOKE = "signer.rotate_revoke"  # signer rotate NAME --revoke-previous R
    ACCOUNT_ADD = "account.add"  # otward admin add NAME --role ...
    ACCOUNT_ROLES = "account.roles"  # otward admin roles NAME --role ...


_PKI_WRITE = Permission(Area.PKI, Action.WRITE)
_ADMIN_WRITE = Permission(Area.ADMIN, Action.WRITE)

OPERATION_PERMISSIONS: Mapping[Operation, Permission] = {
    Operation.CA_CREATE: _PKI_WRITE,
    Operation.CA_REVOKE: _PKI_WRITE,
    Operation.SIGNER_ROTATE_REVOKE: _PKI_WRITE,
    Operation.ACCOUNT_ADD: _ADMIN_WRITE,
    Operation.ACCOUNT_ROLES: _ADMIN_WRITE,
}
"""The permission each operation needs: the same entry as its command in the permission table, so
that the approver needs exactly what the requester needed."""


class ApprovalMode(enum.Enum):
    AUTO = "auto"  # on once two enabled accounts hold the admin role
    ON = "on"
    OFF = "off"


class State(enum.Enum):
    PENDING = "pending"
    APPROVED = "approved"  # decided; being carried out by the approving process
    EXECUTED = "executed"
    FAILED = "failed"  # approved, but the operation itself failed (details in reason)
    REJECTED = "rejected"
    WITHDRAWN = "withdrawn"  # rejected by its own requester
    EXPIRED = "expired"


class Decision(enum.Enum):
    APPROVE = "approve"
    REJECT = "reject"


@dataclass(frozen=True)
class ApprovalRequest:
    """A gated operation waiting for (or decided by) a second account. ``parameters`` are what the
    operation is carried out with, JSON-able and never a secret."""

    id: int
    operation: Operation
    parameters: Mapping[str, Any]
    requester: str  # the actor identity: admin:alice, local:root
    created_at: datetime
    expires_at: datetime
    state: State = State.PENDING
    decided_by: str | None = None
    decided_at: datetime | None = None
    reason: str | None = None

    @property
    def permission(self) -> Permission:
        return OPERATION_PERMISSIONS[self.operation]


def applies(mode: ApprovalMode, enabled_admins: int) -> bool:
    """True when gated operations wait for a second account: ``on``, or ``auto`` with at least two
    enabled admin accounts (with one, there is nobody to approve)."""
    if mode is ApprovalMode.ON:
        return True
    return mode is ApprovalMode.AUTO and enabled_admins >= 2


def is_expired(request: ApprovalRequest, now: datetime) -> bool:
    return request.state is State.PENDING and now >= request.expires_at


def check_decision(
    request: ApprovalRequest,
    decision: Decision,
    decider: str,
    permitted: bool,
    now: datetime,
) -> State:
    """The state ``decider`` (an actor identity; ``permitted`` whether its credential holds the
    operation's permission, :func:`otward.core.authz.is_granted`) moves ``request`` to; ValueError
    (not pending, expired) or PermissionError (own approval, no permission) saying why not.

    Nobody approves their own request; the requester may withdraw it. Deciding needs the
    operation's own permission; a request is decided once and not after it expired."""
    if request.state is not State.PENDING:
        raise ValueError(f"approval request {request.id} is {request.state.value}, not pending")
    if now >= request.expires_at:
        raise ValueError(f"approval request {request.id} expired at {request.expires_at.isoformat()}")
    own = decider == request.requester
    if own and decision is Decision.APPROVE:
        raise PermissionError(
            f"approval request {request.id} was made by {decider}: another account must approve it"
        )
    if own:
        return State.WITHDRAWN
    if not permitted:
        raise PermissionError(
            f"{decider} may not decide approval request {request.id}: it needs {request.permission}"
        )
    return State.APPROVED if decision is Decision.APPROVE else State.REJECTED


def expiry(created_at: datetime, lifetime: timedelta) -> datetime:
    return created_at + lifetime


def _words(value: Any) -> str:
    if isinstance(value, list | tuple):
        return ", ".join(str(v) for v in value) if value else "none"
    return str(value)


def describe(operation: Operation, parameters: Mapping[str, Any]) -> str:
    """What carrying out ``operation`` with ``parameters`` will do, in one sentence for people who
    decide it (the console); a parameter that is missing reads as "?"."""

    def p(name: str) -> str:
        return _words(parameters[name]) if name in parameters else "?"

    if operation is Operation.CA_CREATE:
        limits = [f"path length {p('path_length')}"] if parameters.get("path_length") is not None else []
        if parameters.get("permitted_dns"):
            limits.append(f"DNS names under {p('permitted_dns')}")
        if parameters.get("permitted_ip"):
            limits.append(f"addresses in {p('permitted_ip')}")
        more = f"; limited to {'; '.join(limits)}" if limits else ""
        return (
            f"Create the subordinate CA {p('name')} under {p('parent')} "
            f"({p('key_type')} key, organization {p('organization')}{more})"
        )
    if operation is Operation.CA_REVOKE:
        return f"Revoke the CA {p('name')} (reason {p('reason')})"
    if operation is Operation.SIGNER_ROTATE_REVOKE:
        return (
            f"Rotate the {p('name')} signer to a new key and certificate and revoke the previous "
            f"certificate (reason {p('reason')})"
        )
    if operation is Operation.ACCOUNT_ADD:
        return f"Add the account {p('name')} with the roles {p('roles')}"
    return f"Set the roles of the account {p('name')} to {p('roles')}"
