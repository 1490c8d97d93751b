"""Named accounts: add, change, remove, and sign in with a password (Argon2id) and an optional TOTP
code, with a lock-out that backs off exponentially. The roles an account holds are what its tokens
and its CLI commands may do (:func:`otward.core.authz.is_granted`)."""

from __future__ import annotations

import dataclasses
import functools
import os
import secrets
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import NoReturn

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from otward.core.accounts import (
    TOTP_SECRET_BYTES,
    AccountRecord,
    LockoutPolicy,
    actor_identity,
    locked_until,
    matching_totp_step,
    totp_provisioning_uri,
    validate_account_name,
)
from otward.core.audit import EventType, Outcome
from otward.core.authz import Grant, Permission, Role, format_grants, is_granted, owner_limit
from otward.core.ports import AccountStore
from otward.errors import (
    AuthenticationError,
    ConflictError,
    InvalidRequestError,
    NotFoundError,
    PermissionDeniedError,
)
from otward.services.audit import SYSTEM_ACTOR, Actor, AuditLog

__all__ = ["MAX_PASSWORD_BYTES", "MIN_PASSWORD_LENGTH", "SIGNIN_FAILED", "AccountService", "whose_refusal"]

MIN_PASSWORD_LENGTH = 12
MAX_PASSWORD_BYTES = 1024  # Argon2 takes any length; a bound keeps a request from buying CPU
SIGNIN_FAILED = (
    "sign-in failed (unknown account, wrong password or code, or the account is locked or disabled)"
)
"""The one answer to every failed sign-in, so that it names no account (no user enumeration)."""

# argon2-cffi's defaults are RFC 9106's second recommended option (Argon2id, t=3, 64 MiB, p=4).
_HASHER = PasswordHasher()


@functools.cache
def _dummy_hash() -> str:
    """A hash to verify against when the account does not exist, so that the answer takes as long."""
    return _HASHER.hash(secrets.token_urlsafe(16))


def _password_matches(stored: str | None, password: str) -> bool:
    try:
        return _HASHER.verify(stored or _dummy_hash(), password) and stored is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def _check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise InvalidRequestError(
            f"a password needs at least {MIN_PASSWORD_LENGTH} characters", rule="password-length"
        )
    if len(password.encode()) > MAX_PASSWORD_BYTES:
        raise InvalidRequestError(
            f"a password has at most {MAX_PASSWORD_BYTES} bytes", rule="password-length"
        )


class AccountService:
    def __init__(
        self,
        store: AccountStore,
        *,
        clock: Callable[[], datetime],
        audit: AuditLog,
        lockout: LockoutPolicy | None = None,
        issuer: str = "otward",
    ) -> None:
        self._store = store
        self._clock = clock
        self._audit = audit
        self._lockout = lockout or LockoutPolicy()
        self._issuer = issuer

    # -- reading -------------------------------------------------------------------------------

    def get(self, name: str) -> AccountRecord:
        account = self._store.get_account(name)
        if account is None:
            raise NotFoundError(f"account '{name}' not found", rule="account")
        return account

    def list(self) -> Sequence[AccountRecord]:
        return self._store.list_accounts()

    def admin_capable(self) -> int:
        """How many enabled accounts may change accounts and roles (the ``admin`` role)."""
        return sum(1 for a in self._store.list_accounts() if _is_admin(a))

    # -- changing ------------------------------------------------------------------------------

    def add(
        self, name: str, grants: frozenset[Grant], actor: Actor = SYSTEM_ACTOR, *, password: str | None = None
    ) -> AccountRecord:
        """A new account holding ``grants``; without ``password`` a service identity, which signs in
        never and acts only through its API tokens."""
        try:
            validate_account_name(name)
        except ValueError as exc:
            raise InvalidRequestError(str(exc), rule="account-name") from None
        if not grants:
            raise InvalidRequestError("an account needs at least one role (--role)", rule="role")
        if password is not None:
            _check_password(password)
        record = AccountRecord(
            name=name,
            grants=grants,
            created_at=self._clock(),
            password_hash=_HASHER.hash(password) if password is not None else None,
        )
        details = {"roles": format_grants(grants), "kind": "service" if password is None else "person"}
        event = self._audit.event(actor, EventType.ACCOUNT_CREATED, _subject(name), details=details)
        self._store.add_account(record, [event])
        return record

    def set_grants(self, name: str, grants: frozenset[Grant], actor: Actor = SYSTEM_ACTOR) -> AccountRecord:
        if not grants:
            raise InvalidRequestError("an account needs at least one role (--role)", rule="role")
        before = self.get(name)
        after = dataclasses.replace(before, grants=grants)
        self._keep_an_admin(before, after)
        details = {"change": "roles", "from": format_grants(before.grants), "to": format_grants(grants)}
        return self._save(after, actor, details)

    def set_password(self, name: str, password: str, actor: Actor = SYSTEM_ACTOR) -> AccountRecord:
        """A new password; it also lifts a lock-out (the recovery path of a locked-out account)."""
        _check_password(password)
        account = dataclasses.replace(
            self.get(name), password_hash=_HASHER.hash(password), failed_signins=0, locked_until=None
        )
        return self._save(account, actor, {"change": "password"})

    def disable(self, name: str, actor: Actor = SYSTEM_ACTOR) -> AccountRecord:
        before = self.get(name)
        if before.disabled_at is not None:
            raise ConflictError(f"account '{name}' is already disabled", rule="account-disabled")
        after = dataclasses.replace(before, disabled_at=self._clock())
        self._keep_an_admin(before, after)
        return self._save(after, actor, {"change": "disabled"})

    def enable(self, name: str, actor: Actor = SYSTEM_ACTOR) -> AccountRecord:
        """Enable a disabled account; it also lifts a lock-out."""
        account = dataclasses.replace(self.get(name), disabled_at=None, failed_signins=0, locked_until=None)
        return self._save(account, actor, {"change": "enabled"})

    def remove(self, name: str, actor: Actor = SYSTEM_ACTOR) -> None:
        """Delete the account; its API tokens are revoked with it."""
        before = self.get(name)
        if _is_admin(before) and self.admin_capable() <= 1:
            raise ConflictError(f"account '{name}' is the last enabled admin", rule="last-admin")
        event = self._audit.event(actor, EventType.ACCOUNT_REMOVED, _subject(name))
        self._store.remove_account(name, self._clock(), [event])

    def new_totp(self, name: str, actor: Actor = SYSTEM_ACTOR) -> str:
        """A new TOTP secret for a person's account (replacing any earlier one); returns the
        ``otpauth://`` URI, the only time the secret leaves the database."""
        account = self.get(name)
        if account.is_service:
            raise InvalidRequestError(
                f"account '{name}' has no password (a service identity): TOTP is a second factor",
                rule="totp",
            )
        secret = os.urandom(TOTP_SECRET_BYTES)
        self._save(
            dataclasses.replace(account, totp_secret=secret, totp_last_step=None), actor, {"change": "totp"}
        )
        return totp_provisioning_uri(secret, name, self._issuer)

    # -- signing in ----------------------------------------------------------------------------

    def sign_in(self, name: str, password: str, code: str | None, actor: Actor) -> AccountRecord:
        """The account, if ``password`` (and ``code``, when it has TOTP) are right and it is neither
        disabled nor locked; AuthenticationError with the same message otherwise. A password is
        checked (Argon2id) in every case, against a dummy hash for an unknown name, so the answer
        takes as long. Failures count towards the lock-out and are audited; a code is good once."""
        now = self._clock()
        account = self._store.get_account(name) if len(name) <= 64 else None
        bounded = password if len(password.encode()) <= MAX_PASSWORD_BYTES else ""
        matches = _password_matches(account.password_hash if account else None, bounded) and bool(bounded)
        if account is None:
            self._failed(None, name, "unknown account", actor)
        if account.disabled_at is not None:
            self._failed(account, name, "account disabled", actor, count=False)
        if account.locked_until is not None and account.locked_until > now:
            self._failed(account, name, "account locked", actor, count=False)
        if not matches:
            self._failed(account, name, "wrong password", actor)
        step = None
        if account.totp_secret is not None:
            step = matching_totp_step(account.totp_secret, code or "", now, last_step=account.totp_last_step)
            if step is None:
                self._failed(account, name, "wrong or reused TOTP code", actor)
        signed_in = dataclasses.replace(
            account,
            failed_signins=0,
            locked_until=None,
            totp_last_step=step if step is not None else account.totp_last_step,
        )
        event = self._audit.event(
            dataclasses.replace(actor, identity=actor_identity(name), credential="password"),
            EventType.SIGNIN_SUCCEEDED,
            _subject(name),
            details={"second_factor": "totp" if step is not None else "none"},
        )
        self._store.save_account(signed_in, [event])
        return signed_in

    def authorize(
        self, account: AccountRecord, permission: Permission, actor: Actor, *, owner: str | None = None
    ) -> None:
        """Refuse (PermissionDeniedError, recorded as ``authz.denied``) what the account's roles do
        not cover for a resource of ``owner`` (:func:`otward.core.authz.is_granted`)."""
        if is_granted(account.grants, permission, owner=owner):
            return
        roles = format_grants(account.grants)
        whose = whose_refusal(account.grants, permission, owner)
        reason = (
            f"account '{account.name}' (roles {roles}) may not"
            f" {permission.action.value} {permission.area.value}{whose}"
        )
        denied = self._audit.event(
            actor,
            EventType.AUTHZ_DENIED,
            _subject(account.name),
            outcome=Outcome.FAILURE,
            reason=reason,
            details={"permission": str(permission), "roles": roles},
        )
        self._audit.record(denied)
        raise PermissionDeniedError(reason, rule="role")

    # -- helpers -------------------------------------------------------------------------------

    def _failed(
        self, account: AccountRecord | None, name: str, reason: str, actor: Actor, *, count: bool = True
    ) -> NoReturn:
        subject = _subject(name) if account is not None else "(unknown account)"
        failure = self._audit.event(
            actor, EventType.AUTH_FAILED, subject, outcome=Outcome.FAILURE, reason=reason
        )
        if account is None or not count:
            self._audit.record_failure(failure)
            raise AuthenticationError(SIGNIN_FAILED, rule="sign-in")
        now = self._clock()
        failures = account.failed_signins + 1
        until = locked_until(failures, now, self._lockout)
        events = [failure]
        if until is not None:
            events.append(
                self._audit.event(
                    actor,
                    EventType.ACCOUNT_LOCKED,
                    subject,
                    details={"until": until.isoformat(), "failures": str(failures)},
                )
            )
        self._store.save_account(
            dataclasses.replace(account, failed_signins=failures, locked_until=until), events
        )
        raise AuthenticationError(SIGNIN_FAILED, rule="sign-in")

    def _keep_an_admin(self, before: AccountRecord, after: AccountRecord) -> None:
        if _is_admin(before) and not _is_admin(after) and self.admin_capable() <= 1:
            raise ConflictError(
                f"account '{before.name}' is the last enabled admin; add another first", rule="last-admin"
            )

    def _save(self, account: AccountRecord, actor: Actor, details: dict[str, str]) -> AccountRecord:
        event = self._audit.event(actor, EventType.ACCOUNT_CHANGED, _subject(account.name), details=details)
        self._store.save_account(account, [event])
        return account


def _subject(name: str) -> str:
    return f"account:{name}"


def _is_admin(account: AccountRecord) -> bool:
    return account.disabled_at is None and Grant(Role.ADMIN) in account.grants


def whose_refusal(grants: frozenset[Grant], permission: Permission, owner: str | None) -> str:
    """The owner part of a refusal: which owner was asked for, and which the roles reach."""
    if owner is not None:
        return f" of owner '{owner}'"
    reach = owner_limit(grants, permission)
    if reach:
        return f" of every owner (only of {', '.join(sorted(reach))}: name the owner or device)"
    return ""
