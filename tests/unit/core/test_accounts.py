"""Accounts in the core: roles and grants (owner-limited too), lock-out back-off, TOTP (RFC 6238
test vectors with a fixed clock, replay refusal)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from otward.core.accounts import (
    LockoutPolicy,
    locked_until,
    matching_totp_step,
    totp_provisioning_uri,
    validate_account_name,
)
from otward.core.authz import (
    Action,
    Area,
    Grant,
    Permission,
    Role,
    Scope,
    format_grants,
    is_granted,
    owner_limit,
    parse_grant,
)

RFC6238_SECRET = b"12345678901234567890"  # RFC 6238 Appendix B, the SHA-1 key
READ_DEVICES = Permission(Area.ENROLLMENT, Action.READ)
WRITE_DEVICES = Permission(Area.ENROLLMENT, Action.WRITE)


def at(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


# RFC 6238 Appendix B (SHA-1 rows), the last six of the eight digits: TOTP truncates modulo 10**digits.
@pytest.mark.parametrize(
    ("seconds", "code"),
    [
        (59, "287082"),
        (1111111109, "081804"),
        (1111111111, "050471"),
        (1234567890, "005924"),
        (2000000000, "279037"),
    ],
)
def test_rfc6238_vectors_match_at_their_time(seconds, code):
    assert matching_totp_step(RFC6238_SECRET, code, at(seconds), last_step=None) == seconds // 30


def test_a_code_is_good_one_step_either_side_and_not_two():
    code = "081804"  # step 37037036
    assert matching_totp_step(RFC6238_SECRET, code, at(1111111109 + 30), last_step=None) == 37037036
    assert matching_totp_step(RFC6238_SECRET, code, at(1111111109 - 30), last_step=None) == 37037036
    assert matching_totp_step(RFC6238_SECRET, code, at(1111111109 + 61), last_step=None) is None


def test_a_code_already_used_or_older_is_refused():
    code, now = "081804", at(1111111109)
    step = matching_totp_step(RFC6238_SECRET, code, now, last_step=None)
    assert step is not None
    assert matching_totp_step(RFC6238_SECRET, code, now, last_step=step) is None
    assert matching_totp_step(RFC6238_SECRET, code, now + timedelta(seconds=20), last_step=step) is None
    assert matching_totp_step(RFC6238_SECRET, code, now, last_step=step - 1) == step


@pytest.mark.parametrize("code", ["", "08180", "0818040", "08180x", "٠٨١٨٠٤", " 81804"])
def test_malformed_codes_never_match(code):
    assert matching_totp_step(RFC6238_SECRET, code, at(1111111109), last_step=None) is None


def test_the_provisioning_uri_is_otpauth_totp_with_issuer():
    uri = totp_provisioning_uri(RFC6238_SECRET, "alice", "otward")
    assert uri.startswith("otpauth://totp/otward:alice?")
    assert "secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ" in uri  # base32 of the key
    assert "issuer=otward" in uri


def test_lockout_starts_at_the_threshold_and_doubles_up_to_the_maximum():
    policy = LockoutPolicy(threshold=3, base=timedelta(seconds=10), maximum=timedelta(minutes=1))
    now = at(1_000_000)
    assert [locked_until(n, now, policy) for n in (0, 1, 2)] == [None, None, None]
    waits = [locked_until(n, now, policy) - now for n in (3, 4, 5, 6, 7, 100)]  # type: ignore[operator]
    assert waits == [timedelta(seconds=s) for s in (10, 20, 40, 60, 60, 60)]


@pytest.mark.parametrize("name", ["alice", "prometheus", "ot.eng-2", "a" * 64])
def test_account_names_accepted(name):
    validate_account_name(name)


@pytest.mark.parametrize("name", ["", "Alice", "1st", "a b", "a" * 65, "admin:x", "ü", "alice\n"])
def test_account_names_refused(name):
    with pytest.raises(ValueError, match="account name"):
        validate_account_name(name)


def test_grants_parse_and_format():
    assert parse_grant("pki-officer") == Grant(Role.PKI_OFFICER)
    assert parse_grant("enrollment-officer:line-2") == Grant(Role.ENROLLMENT_OFFICER, "line-2")
    assert format_grants({Grant(Role.PKI_OFFICER), Grant(Role.ENROLLMENT_OFFICER, "line-2")}) == (
        "enrollment-officer:line-2,pki-officer"
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("root", "unknown role"),
        ("pki-officer:line-2", "cannot be limited"),
        ("enrollment-officer:", "empty"),
        ("enrollment-officer: x", "padded"),
    ],
)
def test_bad_grants_are_refused(text, message):
    with pytest.raises(ValueError, match=message):
        parse_grant(text)


# What each role may do, spelled out apart from ROLE_PERMISSIONS (the code under test).
EXPECTED = {
    Role.ADMIN: {("admin", "read"), ("admin", "write")},
    Role.PKI_OFFICER: {("pki", "read"), ("pki", "write")},
    Role.ENROLLMENT_OFFICER: {("enrollment", "read"), ("enrollment", "write")},
    Role.ACCESS_MANAGER: {("access", "read"), ("access", "write")},
    Role.AUDITOR: {(a, "read") for a in ("pki", "enrollment", "access", "audit", "metrics", "admin")},
    Role.METRICS: {("metrics", "read")},
}


@pytest.mark.parametrize("role", list(Role), ids=lambda r: r.value)
def test_each_role_covers_exactly_its_table_row(role):
    granted = {
        (area.value, action.value)
        for area in Area
        for action in Action
        if is_granted(frozenset({Grant(role)}), Permission(area, action))
    }
    assert granted == EXPECTED[role]


def test_a_token_never_exceeds_its_account_nor_its_scope():
    officer = frozenset({Grant(Role.PKI_OFFICER)})
    assert is_granted(officer, Permission(Area.PKI, Action.WRITE), scope=Scope.ADMIN)
    assert not is_granted(officer, Permission(Area.ACCESS, Action.WRITE), scope=Scope.ADMIN)  # the account
    assert not is_granted(officer, Permission(Area.PKI, Action.WRITE), scope=Scope.READ)  # the scope
    assert is_granted(officer, Permission(Area.PKI, Action.READ), scope=Scope.READ)
    assert not is_granted(frozenset(), Permission(Area.PKI, Action.READ), scope=Scope.ADMIN)


def test_an_owner_limited_grant_covers_only_its_owner():
    line2 = frozenset({Grant(Role.ENROLLMENT_OFFICER, "line-2")})
    assert is_granted(line2, WRITE_DEVICES, owner="line-2")
    assert not is_granted(line2, WRITE_DEVICES, owner="line-3")
    assert not is_granted(line2, READ_DEVICES, owner=None)  # every owner's, or none: refused
    assert owner_limit(line2, READ_DEVICES) == frozenset({"line-2"})
    both = line2 | {Grant(Role.ENROLLMENT_OFFICER)}
    assert is_granted(both, WRITE_DEVICES, owner="line-3")
    assert owner_limit(both, READ_DEVICES) is None
    assert owner_limit(frozenset({Grant(Role.PKI_OFFICER)}), READ_DEVICES) == frozenset()
