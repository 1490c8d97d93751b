"""The central side on SQLite and PostgreSQL: trail pushes stored exactly once, in chain order."""

from __future__ import annotations

from datetime import timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from otward.edge.gatekeeper import Gatekeeper, load_roots
from otward.edge.holder import run_exchange

from .conftest import PLANT

pytestmark = pytest.mark.integration


def test_trail_push_is_idempotent_and_checks_the_chain(pki, installation, tmp_path):
    pki.access.import_yaml(PLANT.read_text())
    key = ec.generate_private_key(ec.SECP256R1())
    credential = pki.edge.issue_credential("anna", key.public_key(), ttl=timedelta(hours=1)).token
    with Gatekeeper("reactor-1", load_roots(installation / "root.pem"), tmp_path / "state") as gatekeeper:
        gatekeeper.install_bundle(pki.edge.issue_bundle("reactor-1").token)
        for function in ("start", "stop", "read-data", "start"):
            run_exchange(gatekeeper, credential, key, function)
        records = list(gatekeeper.trail.records())
    assert len(records) == 5

    gap = pki.edge.push_trail("reactor-1", records[2:])
    assert (gap.acknowledged, gap.stored) == (0, 0)
    assert gap.problem is not None
    assert "gap" in gap.problem
    first = pki.edge.push_trail("reactor-1", records[:3])
    assert (first.acknowledged, first.stored, first.problem) == (3, 3, None)
    again = pki.edge.push_trail("reactor-1", records)  # the first three again, then the rest
    assert (again.acknowledged, again.stored, again.problem) == (5, 2, None)
    assert pki.edge.push_trail("reactor-1", records).stored == 0
    stored = pki.edge.trail("reactor-1")
    assert [(r.sequence, r.hash) for r in stored] == [(r.sequence, r.hash) for r in records]
    assert [r.event for r in stored] == [r.event for r in records]
    assert pki.edge.store.trail_head("reactor-1") == 5
    assert pki.edge.trail("mixer-2") == []
