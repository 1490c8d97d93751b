"""Where each asset's gatekeeper stands (the console's Gatekeepers page), on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from otward.config import load_settings
from otward.edge.gatekeeper import Gatekeeper, load_roots
from otward.edge.holder import run_exchange
from otward.services.pki import Pki

from .conftest import PLANT

pytestmark = pytest.mark.integration


def test_sync_status_has_the_newest_bundle_and_last_trail_push_per_asset(pki, installation, tmp_path):
    assert pki.edge.sync_status() == ([], 0)
    pki.access.import_yaml(PLANT.read_text())
    key = ec.generate_private_key(ec.SECP256R1())
    credential = pki.edge.issue_credential("anna", key.public_key(), ttl=timedelta(hours=1)).token
    pki.edge.issue_bundle("mixer-2")
    first = pki.edge.issue_bundle("reactor-1")
    newest = pki.edge.issue_bundle("reactor-1", ttl=timedelta(days=2))
    with Gatekeeper("reactor-1", load_roots(installation / "root.pem"), tmp_path / "state") as gatekeeper:
        gatekeeper.install_bundle(newest.token)
        run_exchange(gatekeeper, credential, key, "start")
        records = list(gatekeeper.trail.records())
    pki.edge.push_trail("reactor-1", records)

    statuses, total = pki.edge.sync_status()
    assert total == 2
    mixer, reactor = statuses
    assert (mixer.asset, mixer.bundle_version, mixer.trail_sequence, mixer.last_trail_at) == (
        "mixer-2",
        1,
        0,
        None,
    )
    assert (reactor.asset, reactor.bundle_version, reactor.trail_sequence) == ("reactor-1", 2, len(records))
    assert reactor.bundle_issued_at == newest.issued_at
    assert reactor.bundle_expires_at == newest.expires_at != first.expires_at
    assert reactor.last_trail_at is not None
    assert reactor.last_trail_at >= newest.issued_at
    page, total = pki.edge.sync_status(limit=1, offset=1)
    assert ([s.asset for s in page], total) == (["reactor-1"], 2)


@pytest.fixture
def clocked(installation, database_url, clock):
    """The installation of ``pki`` (SQLite or PostgreSQL) on the hand-moved clock."""
    opened = Pki.open(load_settings(installation, database_url=database_url), clock=clock)
    yield opened
    opened.close()


def test_a_poll_records_the_version_the_gatekeeper_holds(clocked, clock):
    pki = clocked
    pki.access.import_yaml(PLANT.read_text())
    pki.edge.issue_bundle("reactor-1")
    newest = pki.edge.issue_bundle("reactor-1", ttl=timedelta(days=2))
    (status,), _ = pki.edge.sync_status()
    assert (status.held_version, status.last_poll_at, status.is_behind) == (None, None, False)

    assert pki.edge.bundle_after("reactor-1", 1) == newest  # a gatekeeper holding version 1 polls
    (status,), _ = pki.edge.sync_status()
    assert (status.held_version, status.last_poll_at, status.is_behind) == (1, clock.now, True)

    first_poll = clock.now
    clock.advance(timedelta(seconds=20))
    assert pki.edge.bundle_after("reactor-1", 1) == newest  # the same again within a minute: no write
    (status,), _ = pki.edge.sync_status()
    assert status.last_poll_at == first_poll

    assert pki.edge.bundle_after("reactor-1", newest.version) is None  # it took the new one: written now
    (status,), _ = pki.edge.sync_status()
    assert (status.held_version, status.last_poll_at, status.is_behind) == (newest.version, clock.now, False)
