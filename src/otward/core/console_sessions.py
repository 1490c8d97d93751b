"""Sessions of the web console: what a browser's cookie stands for, and when it stops counting.

A session is a random identifier plus a random secret. The browser holds both in one cookie
(``<id>.<secret>``); the database holds only the SHA-256 of the secret, so a copy of the database
signs nobody in. A session ends at sign-out, after ``idle`` without a request, or ``absolute``
after sign-in, whichever comes first (OWASP's session management guidance), and when the account's
password or TOTP secret changes. The CSRF token of a
session is derived from its secret, so it needs no storage and changes with every sign-in.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import hmac
import re
from dataclasses import dataclass
from datetime import datetime, timedelta

__all__ = [
    "COOKIE_BYTES_MAX",
    "ConsoleSession",
    "SessionState",
    "SessionTimeouts",
    "credentials_stamp",
    "csrf_token",
    "is_csrf_token",
    "parse_session_cookie",
    "secret_hash",
    "session_state",
]

COOKIE_BYTES_MAX = 128
"""A cookie is 32 hex characters, a dot and 43 base64url characters; anything longer is refused unread."""

_COOKIE = re.compile(r"([0-9a-f]{32})\.([A-Za-z0-9_-]{43})")
_CSRF_LABEL = b"otward console csrf v1"


@dataclass(frozen=True)
class SessionTimeouts:
    idle: timedelta
    absolute: timedelta


@dataclass(frozen=True)
class ConsoleSession:
    """One signed-in browser: whose it is and its times (never the secret itself)."""

    session_id: str
    account: str
    secret_hash: bytes
    created_at: datetime
    last_seen_at: datetime
    expires_at: datetime  # the absolute end, fixed at sign-in
    credentials_stamp: bytes = b""  # of the account's password and TOTP secret at sign-in
    ended_at: datetime | None = None
    source: str | None = None


class SessionState(enum.Enum):
    LIVE = "live"
    IDLE = "idle"  # no request for longer than the idle timeout
    EXPIRED = "expired"  # past the absolute timeout
    ENDED = "ended"  # signed out


def session_state(session: ConsoleSession, now: datetime, timeouts: SessionTimeouts) -> SessionState:
    """Whether ``session`` still signs its browser in at ``now``."""
    if session.ended_at is not None:
        return SessionState.ENDED
    if now >= session.expires_at:
        return SessionState.EXPIRED
    if now >= session.last_seen_at + timeouts.idle:
        return SessionState.IDLE
    return SessionState.LIVE


def credentials_stamp(password_hash: str | None, totp_secret: bytes | None) -> bytes:
    """What a session remembers of the account's credentials: a new password or a new TOTP secret
    changes it, and so ends every session signed in with the old ones."""
    digest = hashlib.sha256(b"otward console credentials v1\0")
    digest.update((password_hash or "").encode())
    digest.update(b"\0")
    digest.update(totp_secret or b"")
    return digest.digest()


def secret_hash(secret: str) -> bytes:
    return hashlib.sha256(secret.encode("ascii")).digest()


def parse_session_cookie(value: str) -> tuple[str, str] | None:
    """``(session_id, secret)`` from a cookie value, or None for anything not shaped like one."""
    if len(value) > COOKIE_BYTES_MAX:
        return None
    match = _COOKIE.fullmatch(value)  # not match: "$" would let a trailing newline through
    return (match.group(1), match.group(2)) if match else None


def csrf_token(secret: str) -> str:
    """The token every form and htmx request of this session must carry: an HMAC of a fixed label
    under the session secret (the cookie is HttpOnly, so a page script never sees the secret)."""
    mac = hmac.new(secret.encode("ascii"), _CSRF_LABEL, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode("ascii")


def is_csrf_token(secret: str, offered: str | None) -> bool:
    """True when ``offered`` is this session's CSRF token (compared in constant time)."""
    if not offered or len(offered) > 64:
        return False
    return hmac.compare_digest(csrf_token(secret).encode("ascii"), offered.encode("ascii", "replace"))
