"""The four-eyes rules: nobody approves their own request, the approver needs the operation's own
permission, a request is decided once and not after it expired, and when approvals apply."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from otward.core.approvals import (
    OPERATION_PERMISSIONS,
    ApprovalMode,
    ApprovalRequest,
    Decision,
    Operation,
    State,
    applies,
    check_decision,
    is_expired,
)
from otward.core.authz import Action, Area, Permission

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


def pending(**changes: object) -> ApprovalRequest:
    values: dict[str, object] = {
        "id": 7,
        "operation": Operation.CA_REVOKE,
        "parameters": {"name": "plant-a", "reason": "keyCompromise"},
        "requester": "admin:alice",
        "created_at": NOW,
        "expires_at": NOW + timedelta(hours=24),
    }
    values.update(changes)
    return ApprovalRequest(**values)  # type: ignore[arg-type]


def test_another_account_with_the_permission_approves():
    assert check_decision(pending(), Decision.APPROVE, "admin:bob", True, NOW) is State.APPROVED
    assert check_decision(pending(), Decision.REJECT, "admin:bob", True, NOW) is State.REJECTED


def test_the_requester_never_approves_but_may_withdraw():
    with pytest.raises(PermissionError, match="another account must approve"):
        check_decision(pending(), Decision.APPROVE, "admin:alice", True, NOW)
    assert check_decision(pending(), Decision.REJECT, "admin:alice", False, NOW) is State.WITHDRAWN


def test_local_root_mode_is_one_identity_like_any_other():
    request = pending(requester="local:operator")
    with pytest.raises(PermissionError):
        check_decision(request, Decision.APPROVE, "local:operator", True, NOW)
    assert check_decision(request, Decision.APPROVE, "local:root", True, NOW) is State.APPROVED


def test_an_approver_without_the_operations_permission_is_refused():
    with pytest.raises(PermissionError, match="needs pki:write"):
        check_decision(pending(), Decision.APPROVE, "admin:carol", False, NOW)
    with pytest.raises(PermissionError):
        check_decision(pending(), Decision.REJECT, "admin:carol", False, NOW)


@pytest.mark.parametrize("state", [s for s in State if s is not State.PENDING])
def test_a_request_is_decided_once(state):
    with pytest.raises(ValueError, match="not pending"):
        check_decision(pending(state=state), Decision.APPROVE, "admin:bob", True, NOW)


def test_expiry():
    request = pending()
    late = request.expires_at
    assert not is_expired(request, late - timedelta(seconds=1))
    assert is_expired(request, late)
    with pytest.raises(ValueError, match="expired"):
        check_decision(request, Decision.APPROVE, "admin:bob", True, late)


def test_when_approvals_apply():
    assert not applies(ApprovalMode.AUTO, 1)
    assert applies(ApprovalMode.AUTO, 2)
    assert applies(ApprovalMode.ON, 1)
    assert not applies(ApprovalMode.OFF, 5)


def test_each_operation_needs_what_its_command_needs():
    from otward.cli.permissions import COMMANDS

    commands = {
        Operation.CA_CREATE: "ca create",
        Operation.CA_REVOKE: "ca revoke",
        Operation.SIGNER_ROTATE_REVOKE: "signer rotate",
        Operation.ACCOUNT_ADD: "admin add",
        Operation.ACCOUNT_ROLES: "admin roles",
    }
    assert set(commands) == set(Operation)
    for operation, command in commands.items():
        assert OPERATION_PERMISSIONS[operation] == COMMANDS[command]
    assert OPERATION_PERMISSIONS[Operation.ACCOUNT_ROLES] == Permission(Area.ADMIN, Action.WRITE)
