"""``/api/v1/approvals``: four-eyes approval requests, and their approval or rejection
(docs/administration.md). A token is let in when it reads (list) or writes (decide) the PKI or the
accounts, the areas with gated operations; each request is then shown or decided on its own
operation's permission, and never approved by its requester."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request
from pydantic import BaseModel, ConfigDict, Field

from otward.core.approvals import ApprovalRequest, Decision
from otward.core.authz import Action, Area, Permission
from otward.errors import NotFoundError
from otward.http.auth import Caller, get_pki, permitted_any

__all__ = ["ApprovalOut", "DecisionRequest", "router"]

router = APIRouter(prefix="/api/v1/approvals", tags=["approvals"])

_AREAS = (Area.PKI, Area.ADMIN)
Reader = Annotated[Caller, Depends(permitted_any(_AREAS, Action.READ))]
Decider = Annotated[Caller, Depends(permitted_any(_AREAS, Action.WRITE))]
RequestId = Annotated[int, Path(ge=1, le=2**31 - 1, description="The request's number")]


class ApprovalOut(BaseModel):
    id: int
    operation: str
    parameters: dict[str, Any]
    requester: str
    state: str = Field(description="pending, approved, executed, failed, rejected, withdrawn or expired")
    created_at: datetime
    expires_at: datetime
    decided_by: str | None
    decided_at: datetime | None
    reason: str | None

    @classmethod
    def from_request(cls, request: ApprovalRequest) -> ApprovalOut:
        return cls(
            id=request.id,
            operation=request.operation.value,
            parameters=dict(request.parameters),
            requester=request.requester,
            state=request.state.value,
            created_at=request.created_at,
            expires_at=request.expires_at,
            decided_by=request.decided_by,
            decided_at=request.decided_at,
            reason=request.reason,
        )


class DecisionRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str | None = Field(default=None, max_length=1024, description="Why, recorded with the decision")


def _readable(caller: Caller, request: ApprovalRequest) -> bool:
    return caller.holds(Permission(request.permission.area, Action.READ))


@router.get("", response_model=list[ApprovalOut])
def list_approvals(request: Request, caller: Reader) -> list[ApprovalOut]:
    """The approval requests whose operations the token may read, oldest first."""
    return [ApprovalOut.from_request(r) for r in get_pki(request).approvals.list() if _readable(caller, r)]


def _decide(
    request: Request, caller: Caller, request_id: int, decision: Decision, body: DecisionRequest | None
) -> ApprovalOut:
    pki = get_pki(request)
    if not _readable(caller, pki.approvals.get(request_id)):
        raise NotFoundError(f"approval request {request_id} not found", rule="approval")
    decided = pki.approvals.decide(
        request_id, decision, caller.actor, caller.holds, reason=body.reason if body else None
    )
    return ApprovalOut.from_request(decided)


@router.post("/{request_id}/approve", response_model=ApprovalOut)
def approve(
    request_id: RequestId, request: Request, caller: Decider, body: DecisionRequest | None = None
) -> ApprovalOut:
    """Approve another account's request and carry it out now (once); the token needs the
    operation's own permission. 403 for the requester's own request, 409 when already decided."""
    return _decide(request, caller, request_id, Decision.APPROVE, body)


@router.post("/{request_id}/reject", response_model=ApprovalOut)
def reject(
    request_id: RequestId, request: Request, caller: Decider, body: DecisionRequest | None = None
) -> ApprovalOut:
    """Reject a request (nothing is done); the requester rejecting their own withdraws it."""
    return _decide(request, caller, request_id, Decision.REJECT, body)
