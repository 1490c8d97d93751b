"""Web console sessions: start one at sign-in, resume it from the cookie on every request, end it
at sign-out. Each request also re-reads the account, so disabling or removing an account, changing
its roles, its password or its TOTP secret takes effect on its open sessions at their next request."""

from __future__ import annotations

import dataclasses
import hmac
import secrets
from collections.abc import Callable
from datetime import datetime, timedelta

from otward.core.accounts import AccountRecord
from otward.core.audit import EventType
from otward.core.console_sessions import (
    ConsoleSession,
    SessionState,
    SessionTimeouts,
    credentials_stamp,
    parse_session_cookie,
    secret_hash,
    session_state,
)
from otward.core.ports import AccountStore, ConsoleSessionStore
from otward.errors import AuthenticationError
from otward.services.audit import Actor, AuditLog

__all__ = ["SESSION_EXPIRED", "TOUCH_INTERVAL", "ConsoleSessions", "ResumedSession"]

SESSION_EXPIRED = "your session has ended; please sign in again"
TOUCH_INTERVAL = timedelta(seconds=30)
"""A session's last request is written at most this often (a page view is not a database write)."""


@dataclasses.dataclass(frozen=True)
class ResumedSession:
    """A live session, its account as stored now, and the cookie secret (for the CSRF token)."""

    session: ConsoleSession
    account: AccountRecord
    secret: str


class ConsoleSessions:
    def __init__(
        self,
        store: ConsoleSessionStore,
        accounts: AccountStore,
        *,
        clock: Callable[[], datetime],
        audit: AuditLog,
        timeouts: SessionTimeouts,
    ) -> None:
        self._store = store
        self._accounts = accounts
        self._clock = clock
        self._audit = audit
        self.timeouts = timeouts

    def start(self, account: AccountRecord, actor: Actor) -> tuple[ConsoleSession, str]:
        """A new session for ``account`` (already signed in with its password) and the cookie value;
        always a new identifier, so a session fixed before sign-in is never reused."""
        now = self._clock()
        session_id = secrets.token_hex(16)
        secret = secrets.token_urlsafe(32)
        session = ConsoleSession(
            session_id=session_id,
            account=account.name,
            secret_hash=secret_hash(secret),
            created_at=now,
            last_seen_at=now,
            expires_at=now + self.timeouts.absolute,
            credentials_stamp=credentials_stamp(account.password_hash, account.totp_secret),
            source=(actor.source or "")[:64] or None,
        )
        self._store.add_session(session)
        return session, f"{session_id}.{secret}"

    def resume(self, cookie: str | None) -> ResumedSession:
        """The live session a cookie stands for; AuthenticationError (one message) for a missing,
        malformed, unknown, ended, idle or expired one, or one whose account is disabled or gone."""
        parsed = parse_session_cookie(cookie or "")
        if parsed is None:
            raise AuthenticationError(SESSION_EXPIRED, rule="session")
        session_id, secret = parsed
        session = self._store.get_session(session_id)
        if session is None or not hmac.compare_digest(session.secret_hash, secret_hash(secret)):
            raise AuthenticationError(SESSION_EXPIRED, rule="session")
        now = self._clock()
        if session_state(session, now, self.timeouts) is not SessionState.LIVE:
            raise AuthenticationError(SESSION_EXPIRED, rule="session")
        account = self._accounts.get_account(session.account)
        if account is None or account.disabled_at is not None:
            raise AuthenticationError(SESSION_EXPIRED, rule="session")
        current = credentials_stamp(account.password_hash, account.totp_secret)
        if not hmac.compare_digest(session.credentials_stamp, current):  # a new password or TOTP secret
            raise AuthenticationError(SESSION_EXPIRED, rule="session")
        if now - session.last_seen_at >= TOUCH_INTERVAL:
            self._store.touch_session(session_id, now)
            session = dataclasses.replace(session, last_seen_at=now)
        return ResumedSession(session, account, secret)

    def end(self, resumed: ResumedSession, actor: Actor) -> None:
        """Sign out: the session stops counting at once, on every node."""
        event = self._audit.event(
            actor,
            EventType.SESSION_ENDED,
            f"account:{resumed.account.name}",
            details={"session": resumed.session.session_id[:8], "reason": "signed out"},
        )
        self._store.end_session(resumed.session.session_id, self._clock(), [event])

    def purge(self) -> int:
        """Forget sessions that ended or expired more than a day ago."""
        return self._store.purge_sessions(self._clock() - timedelta(days=1))
