"""Named accounts: the record, the name rule, the lock-out back-off and the TOTP second factor.

Pure decisions only: the time comes in as an argument (RFC 6238 codes are checked with
cryptography's :class:`~cryptography.hazmat.primitives.twofactor.totp.TOTP`, which takes it too),
password hashing and storage live in the service and the adapters.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.twofactor import InvalidToken
from cryptography.hazmat.primitives.twofactor.totp import TOTP

from otward.core.authz import Grant

__all__ = [
    "TOTP_DIGITS",
    "TOTP_SECRET_BYTES",
    "TOTP_STEP",
    "AccountRecord",
    "LockoutPolicy",
    "actor_identity",
    "locked_until",
    "matching_totp_step",
    "totp_provisioning_uri",
    "validate_account_name",
]

_NAME = re.compile(r"^[a-z][a-z0-9._-]{0,63}$")

TOTP_STEP = 30  # seconds (RFC 6238 section 4: the recommended time step)
TOTP_DIGITS = 6
TOTP_SECRET_BYTES = 20  # 160 bits, RFC 4226 section 4's recommended length for HMAC-SHA-1


@dataclass(frozen=True)
class AccountRecord:
    """A named administrator or a service identity (no password: it only holds API tokens)."""

    name: str
    grants: frozenset[Grant]
    created_at: datetime
    password_hash: str | None = field(default=None, repr=False)
    totp_secret: bytes | None = field(default=None, repr=False)
    totp_last_step: int | None = None  # the last accepted time step: a code is good once
    disabled_at: datetime | None = None
    failed_signins: int = 0  # consecutive failures since the last success
    locked_until: datetime | None = None

    @property
    def is_service(self) -> bool:
        return self.password_hash is None


def validate_account_name(name: str) -> None:
    """ValueError unless ``name`` is a lower-case word (letters, digits, . _ -; 64 at most)."""
    if not _NAME.fullmatch(name):  # match: "$" would accept a trailing newline
        raise ValueError(
            f"account name {name!r}: use a lower-case letter then letters, digits, '.', '_' or '-'"
            " (64 at most)"
        )


def actor_identity(name: str) -> str:
    """How the audit trail names an account: ``admin:alice``."""
    return f"admin:{name}"


@dataclass(frozen=True)
class LockoutPolicy:
    """After ``threshold`` consecutive failed sign-ins an account is locked for ``base``, doubling
    with every further failure up to ``maximum``."""

    threshold: int = 5
    base: timedelta = timedelta(seconds=30)
    maximum: timedelta = timedelta(hours=1)


def locked_until(failures: int, now: datetime, policy: LockoutPolicy) -> datetime | None:
    """When an account with ``failures`` consecutive failures (the latest at ``now``) may try again;
    None while it is under the threshold."""
    if failures < policy.threshold:
        return None
    doublings = min(failures - policy.threshold, 32)  # 2**32 * base exceeds any sane maximum
    return now + min(policy.base * (1 << doublings), policy.maximum)


def _totp(secret: bytes) -> TOTP:
    # HMAC-SHA-1 is RFC 6238's default and the only algorithm every authenticator app honours;
    # HMAC does not rely on SHA-1's collision resistance (docs/administration.md).
    return TOTP(secret, TOTP_DIGITS, hashes.SHA1(), TOTP_STEP, enforce_key_length=True)  # noqa: S303


def matching_totp_step(
    secret: bytes, code: str, now: datetime, *, last_step: int | None, skew: int = 1
) -> int | None:
    """The time step whose code ``code`` is (now, or up to ``skew`` steps either side for clock
    drift), if that step is later than ``last_step`` (a code already used, or an older one, is
    refused: RFC 6238 section 5.2); None otherwise."""
    if len(code) != TOTP_DIGITS or not code.isascii() or not code.isdigit():
        return None
    current = int(now.timestamp()) // TOTP_STEP
    totp = _totp(secret)
    matched: int | None = None
    for step in range(current - skew, current + skew + 1):  # every candidate, whatever matches
        try:
            totp.verify(code.encode(), step * TOTP_STEP)
        except InvalidToken:
            continue
        matched = step
    if matched is None or (last_step is not None and matched <= last_step):
        return None
    return matched


def totp_provisioning_uri(secret: bytes, account: str, issuer: str) -> str:
    """The ``otpauth://totp/...`` URI an authenticator app reads (as a QR code or typed)."""
    return _totp(secret).get_provisioning_uri(account, issuer)
