"""``otward approvals list|show|approve|reject``: four-eyes approval (docs/administration.md), and
:func:`gate`, which a gated command calls before it acts."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

import typer

from otward.cli.common import (
    Column,
    DataOption,
    DbOption,
    JsonOption,
    cli_actor,
    console,
    count_line,
    handle_errors,
    open_pki,
    print_json,
    print_listing,
    prove_local_admin,
    signed_in_account,
)
from otward.core.approvals import ApprovalRequest, Decision, Operation, State
from otward.core.authz import Action, Area, Permission, is_granted
from otward.errors import PermissionDeniedError
from otward.services.pki import Pki

app = typer.Typer(
    help="Four-eyes approval: list, show, approve or reject the requests that wait for a second account.",
    no_args_is_help=True,
)

IdArgument = Annotated[int, typer.Argument(help="The request's number (otward approvals list)")]
ReasonOption = Annotated[str | None, typer.Option("--reason", help="Why, recorded with the decision")]


def gate(pki: Pki, operation: Operation, parameters: Mapping[str, Any], *, as_json: bool = False) -> bool:
    """True when approvals apply (``[approvals] mode``): the operation is stored as a request and a
    message says who must approve it; the command must then not act. False: go ahead."""
    if not pki.approvals.applies():
        return False
    request = pki.approvals.request(operation, parameters, cli_actor())
    if as_json:
        print_json(_row(request))
    else:
        who = "pki-officer" if request.permission.area is Area.PKI else "admin"
        console.print(
            f"approval request {request.id} stored; another {who} must run "
            f"`otward approvals approve {request.id}` (before {request.expires_at:%Y-%m-%d %H:%M} UTC)",
            highlight=False,
        )
    return True


def _row(request: ApprovalRequest) -> dict[str, Any]:
    return {
        "id": request.id,
        "operation": request.operation.value,
        "parameters": dict(request.parameters),
        "requester": request.requester,
        "state": request.state.value,
        "created_at": request.created_at,
        "expires_at": request.expires_at,
        "decided_by": request.decided_by,
        "decided_at": request.decided_at,
        "reason": request.reason,
    }


def _permitted(permission: Permission) -> bool:
    """Whether the one running the command holds ``permission``: the ``--as`` account's roles; in
    local root mode every permission (whoever reads the data directory)."""
    account = signed_in_account()
    return account is None or is_granted(account.grants, permission)


def _visible(request: ApprovalRequest) -> bool:
    return _permitted(Permission(request.permission.area, Action.READ))


@app.command("list")
@handle_errors
def list_(
    pending: Annotated[bool, typer.Option("--pending", help="Only the requests still waiting")] = False,
    data: DataOption = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """The approval requests whose operations your roles may read (pending ones past their time are
    marked expired first)."""
    with open_pki(data, db) as pki:
        requests = pki.approvals.list(state=State.PENDING if pending else None)
    rows = [_row(r) for r in requests if _visible(r)]
    columns: dict[str, Column] = {
        "id": "id",
        "operation": "operation",
        "parameters": lambda r: ", ".join(f"{k}={v}" for k, v in sorted(r["parameters"].items())),
        "requester": "requester",
        "state": "state",
        "expires (UTC)": "expires_at",
        "decided by": "decided_by",
    }
    print_listing(rows, columns, as_json=as_json, summary=count_line(len(rows), None, "request"))


@app.command("show")
@handle_errors
def show(
    request_id: IdArgument, data: DataOption = None, db: DbOption = None, as_json: JsonOption = False
) -> None:
    """One approval request with its parameters and decision."""
    with open_pki(data, db) as pki:
        request = pki.approvals.get(request_id)
    if not _visible(request):
        raise PermissionDeniedError(
            f"approval request {request_id} concerns {request.permission.area.value},"
            " which your roles do not read",
            rule="role",
        )
    row = _row(request)
    if as_json:
        print_json(row)
        return
    for key, value in row.items():
        console.print(f"{key}: {value if value is not None else '-'}", highlight=False)


def _decide(request_id: int, decision: Decision, reason: str | None, data: Any, db: Any) -> ApprovalRequest:
    with open_pki(data, db) as pki:
        request = pki.approvals.get(request_id)
        if decision is Decision.APPROVE and request.permission == Permission(Area.ADMIN, Action.WRITE):
            prove_local_admin(pki)  # an account or role change: as the admin commands do
        return pki.approvals.decide(request_id, decision, cli_actor(), _permitted, reason=reason)


@app.command("approve")
@handle_errors
def approve(
    request_id: IdArgument, reason: ReasonOption = None, data: DataOption = None, db: DbOption = None
) -> None:
    """Approve someone else's request and carry it out now, as yourself (once: a second approval is
    refused). You need the permission the operation itself needs."""
    request = _decide(request_id, Decision.APPROVE, reason, data, db)
    console.print(f"approval request {request_id} approved and executed: {request.reason}", highlight=False)


@app.command("reject")
@handle_errors
def reject(
    request_id: IdArgument, reason: ReasonOption = None, data: DataOption = None, db: DbOption = None
) -> None:
    """Reject a request (nothing is done); its requester rejecting it withdraws it."""
    request = _decide(request_id, Decision.REJECT, reason, data, db)
    console.print(f"approval request {request_id} {request.state.value}", highlight=False)
