"""Where each asset's gatekeeper stands (the console's Gatekeepers page), on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from otward.edge.gatekeeper import Gatekeeper, load_roots
from otward.edge.holder import run_exchange

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
