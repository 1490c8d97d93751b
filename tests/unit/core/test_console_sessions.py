"""Console session values: when a session counts, what a cookie may look like, the CSRF token."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest

from otward.core.console_sessions import (
    COOKIE_BYTES_MAX,
    ConsoleSession,
    SessionState,
    SessionTimeouts,
    credentials_stamp,
    csrf_token,
    is_csrf_token,
    parse_session_cookie,
    secret_hash,
    session_state,
)

T0 = datetime(2026, 12, 7, 8, 0, tzinfo=UTC)
TIMEOUTS = SessionTimeouts(idle=timedelta(minutes=15), absolute=timedelta(hours=8))
SECRET = "s" * 43
SESSION = ConsoleSession(
    session_id="0" * 32,
    account="alice",
    secret_hash=secret_hash(SECRET),
    created_at=T0,
    last_seen_at=T0,
    expires_at=T0 + TIMEOUTS.absolute,
)


@pytest.mark.parametrize(
    ("last_seen", "now", "ended", "state"),
    [
        (T0, T0, None, SessionState.LIVE),
        (T0, T0 + timedelta(minutes=14, seconds=59), None, SessionState.LIVE),
        (T0, T0 + timedelta(minutes=15), None, SessionState.IDLE),
        (T0 + timedelta(hours=7, minutes=59), T0 + timedelta(hours=8), None, SessionState.EXPIRED),
        (T0, T0 + timedelta(minutes=1), T0, SessionState.ENDED),
    ],
    ids=["fresh", "just-before-idle", "idle", "absolute-beats-activity", "signed-out"],
)
def test_session_state(
    last_seen: datetime, now: datetime, ended: datetime | None, state: SessionState
) -> None:
    session = dataclasses.replace(SESSION, last_seen_at=last_seen, ended_at=ended)
    assert session_state(session, now, TIMEOUTS) is state


@pytest.mark.parametrize(
    "value",
    [
        "",
        "0" * 32,
        "0" * 32 + "." + "A" * 42,
        "0" * 31 + "g." + "A" * 43,
        "0" * 32 + "." + "A" * 42 + "=",
        "0" * 32 + "." + "A" * 43 + "\n",
        "x" * (COOKIE_BYTES_MAX + 1),
        "0" * 32 + ".." + "A" * 42,
    ],
)
def test_malformed_cookies_are_refused_unread(value: str) -> None:
    assert parse_session_cookie(value) is None


def test_a_well_formed_cookie_splits() -> None:
    assert parse_session_cookie("ab" * 16 + "." + "A-_" * 14 + "z") == ("ab" * 16, "A-_" * 14 + "z")


def test_csrf_token_is_bound_to_the_session_secret() -> None:
    token = csrf_token(SECRET)
    assert is_csrf_token(SECRET, token)
    assert not is_csrf_token("t" * 43, token)
    assert not is_csrf_token(SECRET, None)
    assert not is_csrf_token(SECRET, "")
    assert not is_csrf_token(SECRET, token[:-1])
    assert not is_csrf_token(SECRET, token + "é")
    assert not is_csrf_token(SECRET, "x" * 65)


def test_the_credentials_stamp_changes_with_the_password_or_the_totp_secret() -> None:
    stamp = credentials_stamp("$argon2id$a", None)
    assert stamp == credentials_stamp("$argon2id$a", None)
    assert stamp != credentials_stamp("$argon2id$b", None)
    assert stamp != credentials_stamp("$argon2id$a", b"\x01" * 20)
    assert credentials_stamp("$argon2id$a", b"\x01" * 20) != credentials_stamp("$argon2id$a", b"\x02" * 20)
    assert credentials_stamp(None, None) != credentials_stamp("", b"\0")
