"""The approvals page: four-eyes requests waiting for a second account, and the decided ones; one
request in full with Approve and Reject.

Who may see and decide follows ``/api/v1/approvals``: the page needs reading the PKI or the
accounts (the areas with gated operations), each request is shown only to an account that may read
its operation's area, and a decision needs writing one of those areas. The service then decides on
the request's own permission and never lets the requester approve their own (rejecting it withdraws
it); its refusals become pages.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from otward.console.paging import PAGE_SIZE, parse_page
from otward.console.render import PREFIX, SECURITY_HEADERS, render
from otward.console.viewer import Submitted, Viewer, signed_in, signed_in_form
from otward.core.approvals import OPERATION_PERMISSIONS, ApprovalRequest, Decision, Operation, State, describe
from otward.core.authz import Action, Area, Permission
from otward.errors import InvalidRequestError, NotFoundError, PermissionDeniedError
from otward.http.auth import get_pki
from otward.services.pki import Pki

__all__ = ["pending_count", "router"]

router = APIRouter()

_AREAS = (Area.PKI, Area.ADMIN)  # the areas with gated operations (as /api/v1/approvals)
_MAX_REASON = 1024
_NOTICES = {
    "approved": "Approved: the operation was carried out.",
    "rejected": "Rejected: nothing was done.",
    "withdrawn": "Withdrawn: your request will not be carried out.",
}

RequestId = Annotated[int, Path(ge=1, le=2**31 - 1)]


def _require_any(request: Request, viewer: Viewer, action: Action) -> None:
    """Refuse (403, ``authz.denied``) an account that may ``action`` neither the PKI nor the accounts."""
    if any(viewer.may_some(area, action) for area in _AREAS):
        return
    get_pki(request).accounts.authorize(viewer.account, Permission(Area.PKI, action), viewer.actor)
    raise PermissionDeniedError("refused", rule="role")  # not reached: authorize raised


def console_approvals_read(request: Request) -> Viewer:
    """A signed-in account that may read the PKI or the accounts."""
    viewer = signed_in(request)
    _require_any(request, viewer, Action.READ)
    return viewer


async def console_change_approvals_write(request: Request) -> Submitted:
    """A decision form (session, CSRF token, same origin) from an account that may change the PKI
    or the accounts; the operation's own permission is checked by the service."""
    submitted = await signed_in_form(request)
    await run_in_threadpool(_require_any, request, submitted.viewer, Action.WRITE)
    return submitted


def _readable_operations(viewer: Viewer) -> list[Operation]:
    return [
        operation
        for operation, permission in OPERATION_PERMISSIONS.items()
        if viewer.may(permission.area, Action.READ)
    ]


def pending_count(pki: Pki, viewer: Viewer) -> int:
    """How many pending requests ``viewer`` may see (for the navigation or the dashboard); 0 for an
    account that reads neither the PKI nor the accounts."""
    operations = _readable_operations(viewer)
    if not operations:
        return 0
    pki.approvals.expire_due()
    _items, total = pki.stores.approvals.page(pending=True, operations=operations, limit=1, offset=0)
    return total


@router.get("/approvals", response_class=HTMLResponse)
def approvals_page(
    request: Request, viewer: Annotated[Viewer, Depends(console_approvals_read)]
) -> HTMLResponse:
    page = parse_page(request.query_params.get("page"))
    pki = get_pki(request)
    pki.approvals.expire_due()
    operations = _readable_operations(viewer)
    store = pki.stores.approvals
    pending, pending_total = store.page(pending=True, operations=operations, limit=PAGE_SIZE, offset=0)
    offset = (page - 1) * PAGE_SIZE
    decided, decided_total = store.page(pending=False, operations=operations, limit=PAGE_SIZE, offset=offset)
    return render(
        request,
        "approvals.html",
        viewer,
        pending=[_row(r) for r in pending],
        pending_total=pending_total,
        decided=[_row(r) for r in decided],
        decided_total=decided_total,
        page=page,
        first=offset + 1,
        last=offset + len(decided),
        has_previous=page > 1,
        has_next=offset + len(decided) < decided_total,
        title=_title(pending_total),
    )


def _title(pending: int) -> str:
    return f"Approvals ({pending} pending)" if pending else "Approvals"


def _row(request: ApprovalRequest) -> dict[str, object]:
    return {"request": request, "summary": describe(request.operation, request.parameters)}


def _readable(request: Request, viewer: Viewer, request_id: int) -> ApprovalRequest:
    """The request, if this viewer may read its operation's area (else: not found, as the API)."""
    found = get_pki(request).approvals.get(request_id)
    if not viewer.may(found.permission.area, Action.READ):
        raise NotFoundError(f"approval request {request_id} not found", rule="approval")
    return found


@router.get("/approvals/{request_id}", response_class=HTMLResponse)
def approval_page(
    request: Request, request_id: RequestId, viewer: Annotated[Viewer, Depends(console_approvals_read)]
) -> HTMLResponse:
    found = _readable(request, viewer, request_id)
    own = found.requester == viewer.actor.identity
    permitted = viewer.may(found.permission.area, found.permission.action)
    pending = found.state is State.PENDING
    notice = _NOTICES.get(request.query_params.get("done", ""))
    return render(
        request,
        "approval.html",
        viewer,
        item=found,
        summary=describe(found.operation, found.parameters),
        parameters=sorted(found.parameters.items()),
        own=own,
        permitted=permitted,
        may_approve=pending and not own and permitted,
        may_reject=pending and (own or permitted),
        pending=pending,
        notice=notice,
    )


def _decide(request: Request, submitted: Submitted, request_id: int, decision: Decision) -> Response:
    viewer = submitted.viewer
    reason = submitted.form.get("reason") or None
    if reason is not None and len(reason) > _MAX_REASON:
        raise InvalidRequestError(f"reason: at most {_MAX_REASON} characters", rule="reason")
    _readable(request, viewer, request_id)
    decided = get_pki(request).approvals.decide(
        request_id,
        decision,
        viewer.actor,
        lambda permission: viewer.may(permission.area, permission.action),
        reason=reason,
    )
    done = {State.EXECUTED: "approved", State.WITHDRAWN: "withdrawn"}.get(decided.state, "rejected")
    return RedirectResponse(
        f"{PREFIX}/approvals/{request_id}?done={done}", status_code=303, headers=dict(SECURITY_HEADERS)
    )


@router.post("/approvals/{request_id}/approve")
def approve(
    request: Request,
    request_id: RequestId,
    submitted: Annotated[Submitted, Depends(console_change_approvals_write)],
) -> Response:
    """Approve another account's request; it is carried out now, once."""
    return _decide(request, submitted, request_id, Decision.APPROVE)


@router.post("/approvals/{request_id}/reject")
def reject(
    request: Request,
    request_id: RequestId,
    submitted: Annotated[Submitted, Depends(console_change_approvals_write)],
) -> Response:
    """Reject a request (nothing is done); the requester rejecting their own withdraws it."""
    return _decide(request, submitted, request_id, Decision.REJECT)
