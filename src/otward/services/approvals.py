"""Four-eyes approval (docs/administration.md): a gated operation is stored as a request and carried
out by the process of a second account that approves it, through the same service call the command
would have made. The state moves pending → approved with a compare-and-set before anything is
carried out, so a request runs at most once however many approvers race."""

from __future__ import annotations

import dataclasses
import ipaddress
import json
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from otward.config import ApprovalSettings
from otward.core.approvals import (
    ApprovalMode,
    ApprovalRequest,
    Decision,
    Operation,
    State,
    applies,
    check_decision,
)
from otward.core.audit import EventType, Outcome
from otward.core.authz import Permission, format_grants, parse_grant
from otward.core.keys import KeyType
from otward.core.revocation import parse_reason
from otward.errors import ConflictError, NotFoundError, OtwardError, PermissionDeniedError
from otward.services.audit import Actor, AuditLog

if TYPE_CHECKING:
    from otward.adapters.db.approvals import SqlApprovalStore
    from otward.services.pki import Pki

__all__ = ["ApprovalService", "Executor", "approval_executors"]

Executor = Callable[[Mapping[str, Any], Actor], str]
"""Carries out one operation with its stored parameters as ``actor``; returns a one-line result."""


class ApprovalService:
    def __init__(
        self,
        store: SqlApprovalStore,
        *,
        settings: ApprovalSettings,
        clock: Callable[[], datetime],
        audit: AuditLog,
        admin_count: Callable[[], int],
        executors: Mapping[Operation, Executor],
    ) -> None:
        self._store = store
        self._settings = settings
        self._clock = clock
        self._audit = audit
        self._admin_count = admin_count
        self._executors = executors

    @property
    def threshold(self) -> int:
        """Revoking more certificates than this at once needs approval (no such operation yet)."""
        return self._settings.bulk_revocation_threshold

    def applies(self) -> bool:
        """True when gated operations wait for a second account (``[approvals] mode``)."""
        return applies(ApprovalMode(self._settings.mode), self._admin_count())

    def request(self, operation: Operation, parameters: Mapping[str, Any], actor: Actor) -> ApprovalRequest:
        """Store ``operation`` with ``parameters`` (JSON-able, never a secret) as a pending request of
        ``actor``; audited as ``approval.requested``."""
        now = self._clock()
        json.dumps(dict(parameters))  # fail here, not at approval, on a parameter JSON cannot carry
        request = ApprovalRequest(
            id=0,
            operation=operation,
            parameters=dict(parameters),
            requester=actor.identity,
            created_at=now,
            expires_at=now + self._settings.lifetime,
        )

        def events(request_id: int) -> list[Any]:
            return [
                self._audit.event(
                    actor,
                    EventType.APPROVAL_REQUESTED,
                    _subject(request_id),
                    details=_details(request, expires_at=request.expires_at.isoformat()),
                )
            ]

        request_id = self._store.add(request, events)
        return dataclasses.replace(request, id=request_id)

    def get(self, request_id: int) -> ApprovalRequest:
        self.expire_due()
        request = self._store.get(request_id)
        if request is None:
            raise NotFoundError(f"approval request {request_id} not found", rule="approval")
        return request

    def list(self, *, state: State | None = None) -> Sequence[ApprovalRequest]:
        self.expire_due()
        return self._store.list(state=state)

    def expire_due(self) -> int:
        """Mark pending requests past their time expired (``approval.expired``); how many were."""
        now = self._clock()
        count = 0
        for request in self._store.list(state=State.PENDING):
            if now < request.expires_at:
                continue
            event = self._audit.event(
                _system(), EventType.APPROVAL_EXPIRED, _subject(request.id), details=_details(request)
            )
            if self._store.transition(
                request.id,
                State.PENDING,
                State.EXPIRED,
                decided_by=None,
                decided_at=now,
                reason=None,
                events=[event],
            ):
                count += 1
        return count

    def decide(
        self,
        request_id: int,
        decision: Decision,
        actor: Actor,
        permitted: Callable[[Permission], bool],
        *,
        reason: str | None = None,
    ) -> ApprovalRequest:
        """Approve (and carry out) or reject request ``request_id`` as ``actor``, whose credential
        holds a permission when ``permitted`` says so. Refused: the requester approving their own
        (they may withdraw it by rejecting), an approver without the operation's permission, a
        request already decided or expired."""
        now = self._clock()
        request = self.get(request_id)
        try:
            new = check_decision(request, decision, actor.identity, permitted(request.permission), now)
        except PermissionError as exc:
            self._audit.record(
                self._audit.event(
                    actor,
                    EventType.AUTHZ_DENIED,
                    _subject(request_id),
                    outcome=Outcome.FAILURE,
                    reason=str(exc),
                    details={"permission": str(request.permission), "operation": request.operation.value},
                )
            )
            raise PermissionDeniedError(str(exc), rule="four-eyes") from None
        except ValueError as exc:
            raise ConflictError(str(exc), rule="approval-decided") from None
        kind = EventType.APPROVAL_APPROVED if new is State.APPROVED else EventType.APPROVAL_REJECTED
        extra = {"requester": request.requester, "decision": new.value}
        if reason:
            extra["reason"] = reason
        event = self._audit.event(actor, kind, _subject(request_id), details=_details(request, **extra))
        if not self._store.transition(
            request_id,
            State.PENDING,
            new,
            decided_by=actor.identity,
            decided_at=now,
            reason=reason,
            events=[event],
        ):
            raise ConflictError(
                f"approval request {request_id} was decided meanwhile", rule="approval-decided"
            )
        decided = dataclasses.replace(
            request, state=new, decided_by=actor.identity, decided_at=now, reason=reason
        )
        if new is not State.APPROVED:
            return decided
        return self._execute(decided, actor)

    def _execute(self, request: ApprovalRequest, actor: Actor) -> ApprovalRequest:
        """Carry out an approved request once: only the process whose compare-and-set moved it to
        approved gets here; the result (or the error) is stored with the state."""
        try:
            result = self._executors[request.operation](request.parameters, actor)
        except Exception as exc:  # the request must not stay "approved" whatever went wrong
            message = (
                exc.message if isinstance(exc, OtwardError) else f"internal error ({type(exc).__name__})"
            )
            failed = self._audit.event(
                actor,
                EventType.APPROVAL_APPROVED,
                _subject(request.id),
                outcome=Outcome.FAILURE,
                reason=message,
                details=_details(request, requester=request.requester, decision="failed"),
            )
            self._store.transition(
                request.id,
                State.APPROVED,
                State.FAILED,
                decided_by=None,
                decided_at=self._clock(),
                reason=message[:1024],
                events=[failed],
            )
            raise
        self._store.transition(
            request.id,
            State.APPROVED,
            State.EXECUTED,
            decided_by=None,
            decided_at=self._clock(),
            reason=result[:1024],
        )
        return dataclasses.replace(request, state=State.EXECUTED, reason=result)


def approval_executors(pki: Pki) -> dict[Operation, Executor]:
    """Each gated operation as the service call its command makes, from the stored parameters."""

    def ca_create(p: Mapping[str, Any], actor: Actor) -> str:
        loaded = pki.authorities.create_subordinate(
            p["name"],
            parent=p["parent"],
            key_type=KeyType.parse(p["key_type"]),
            organization=p["organization"],
            path_length=p["path_length"],
            permitted_dns=tuple(p["permitted_dns"]),
            permitted_ip=tuple(ipaddress.ip_network(n, strict=True) for n in p["permitted_ip"]),
            actor=actor,
        )
        pki.revocation.publish_crl(loaded.name, actor)
        return f"created CA {loaded.name} under {loaded.parent}"

    def ca_revoke(p: Mapping[str, Any], actor: Actor) -> str:
        record = pki.revocation.revoke_authority(p["name"], parse_reason(p["reason"]), actor)
        return f"revoked CA {p['name']} (certificate {record.serial}, reason {p['reason']})"

    def signer_rotate(p: Mapping[str, Any], actor: Actor) -> str:
        info = pki.signers.rotate(p["name"], revoke_previous=parse_reason(p["reason"]), actor=actor)
        return f"rotated the {p['name']} signer (new certificate {info.summary()['serial']})"

    def account_add(p: Mapping[str, Any], actor: Actor) -> str:
        grants = frozenset(parse_grant(g) for g in p["roles"])
        pki.accounts.add(p["name"], grants, actor)
        return f"added account {p['name']} with roles {format_grants(grants)} (no password yet)"

    def account_roles(p: Mapping[str, Any], actor: Actor) -> str:
        grants = frozenset(parse_grant(g) for g in p["roles"])
        pki.accounts.set_grants(p["name"], grants, actor)
        return f"roles of {p['name']}: {format_grants(grants)}"

    return {
        Operation.CA_CREATE: ca_create,
        Operation.CA_REVOKE: ca_revoke,
        Operation.SIGNER_ROTATE_REVOKE: signer_rotate,
        Operation.ACCOUNT_ADD: account_add,
        Operation.ACCOUNT_ROLES: account_roles,
    }


def _subject(request_id: int) -> str:
    return f"approval:{request_id}"


def _system() -> Actor:
    return Actor(component="ca", identity="system")


def _details(request: ApprovalRequest, **extra: str) -> dict[str, str]:
    return {
        "operation": request.operation.value,
        "parameters": json.dumps(dict(request.parameters), sort_keys=True),
        **extra,
    }
