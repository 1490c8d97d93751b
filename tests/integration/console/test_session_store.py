"""Console sessions on both databases: stored hashed, resumed, touched, ended once, purged."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from otward.adapters.db.schema import console_sessions
from otward.core.authz import Grant, Role
from otward.errors import AuthenticationError
from otward.services.audit import Actor
from otward.services.console_sessions import TOUCH_INTERVAL
from otward.services.pki import Pki

pytestmark = pytest.mark.integration

ACTOR = Actor(component="console", identity="anonymous", source="192.0.2.7")


def test_a_session_round_trip(pki: Pki) -> None:
    account = pki.accounts.add(
        "carol", frozenset({Grant(Role.AUDITOR)}), ACTOR, password="a long enough password"
    )
    session, cookie = pki.console_sessions.start(account, ACTOR)
    session_id, secret = cookie.split(".")
    assert session.session_id == session_id
    with pki.stores.database.reading() as conn:
        row = conn.execute(select(console_sessions)).one()
    assert secret.encode() not in bytes(row.secret_hash)  # only the SHA-256 is stored
    assert row.source == "192.0.2.7"

    resumed = pki.console_sessions.resume(cookie)
    assert resumed.account.name == "carol"
    with pytest.raises(AuthenticationError):
        pki.console_sessions.resume(f"{session_id}.{'B' * 43}")  # right id, wrong secret

    pki.stores.console_sessions.touch_session(session_id, session.last_seen_at + TOUCH_INTERVAL)
    pki.stores.console_sessions.touch_session(session_id, session.last_seen_at)  # never back in time
    stored = pki.stores.console_sessions.get_session(session_id)
    assert stored is not None
    assert stored.last_seen_at == session.last_seen_at + TOUCH_INTERVAL

    pki.console_sessions.end(resumed, ACTOR)
    assert not pki.stores.console_sessions.end_session(session_id, stored.last_seen_at)  # once only
    with pytest.raises(AuthenticationError):
        pki.console_sessions.resume(cookie)
    assert pki.stores.console_sessions.purge_sessions(session.expires_at) == 1
    assert pki.stores.console_sessions.get_session(session_id) is None
