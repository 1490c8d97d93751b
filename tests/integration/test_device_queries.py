"""The registry's list queries for the console (SQLite and PostgreSQL): devices filtered by a set of
owners, an id substring taken literally and a status, with their current certificate's expiry;
devices counted per owner; enrollment tokens paged without renewal tokens."""

from __future__ import annotations

from datetime import timedelta

import pytest

from otward.adapters.db.schema import devices
from otward.core.records import DeviceStatus
from otward.services.audit import Actor
from otward.services.pki import Pki

pytestmark = pytest.mark.integration

SETUP = Actor(component="test", identity="local:test")


@pytest.fixture
def registry(pki: Pki) -> Pki:
    """line-1 and line-2; plc-1 enrolled for real, and rows a_1, a%1, b-1 (line-2, disabled) without
    certificates."""
    for owner in ("line-1", "line-2"):
        pki.owners.create(owner, actor=SETUP)
    list(pki.provisioning.provision("line-1", ["plc-1"], actor=SETUP))
    now = pki.clock()
    rows = [
        ("a_1", "line-1", DeviceStatus.ACTIVE),
        ("a%1", "line-1", DeviceStatus.ACTIVE),
        ("ab1", "line-1", DeviceStatus.ACTIVE),
        ("b-1", "line-2", DeviceStatus.DISABLED),
    ]
    with pki.stores.database.engine.begin() as conn:
        conn.execute(
            devices.insert(),
            [
                {
                    "device_id": device_id,
                    "owner": owner,
                    "status": status.value,
                    "profile": "device",
                    "current_serial": None,
                    "enrollment_token_id": None,
                    "first_seen": now,
                    "last_seen": now,
                }
                for device_id, owner, status in rows
            ],
        )
    return pki


def _found(pki: Pki, **query: object) -> tuple[list[str], int]:
    listings, total = pki.devices.find(**query)  # type: ignore[arg-type]
    return [item.device.device_id for item in listings], total


def test_devices_are_found_by_owners_literal_substring_and_status(registry: Pki) -> None:
    assert _found(registry) == (["a%1", "a_1", "ab1", "b-1", "plc-1"], 5)
    assert _found(registry, owners=frozenset({"line-2"})) == (["b-1"], 1)
    assert _found(registry, owners=frozenset({"line-1", "line-2"}), limit=2, offset=1) == (["a_1", "ab1"], 5)
    assert _found(registry, owners=frozenset()) == ([], 0)
    assert _found(registry, id_contains="_") == (["a_1"], 1)  # not a LIKE wildcard
    assert _found(registry, id_contains="%") == (["a%1"], 1)
    assert _found(registry, id_contains="1", status=DeviceStatus.DISABLED) == (["b-1"], 1)


def test_a_listing_carries_the_current_certificates_expiry(registry: Pki) -> None:
    listings, _ = registry.devices.find(id_contains="plc")
    [listing] = listings
    [certificate] = registry.devices.certificates("plc-1")
    assert listing.current_not_valid_after == certificate.not_valid_after
    without, _ = registry.devices.find(id_contains="b-1")
    assert without[0].current_not_valid_after is None


def test_devices_are_counted_per_owner(registry: Pki) -> None:
    assert registry.devices.count_by_owner() == {"line-1": 4, "line-2": 1}


def test_enrollment_tokens_are_paged_newest_first_without_renewal_tokens(registry: Pki) -> None:
    created = []
    for owner in ("line-1", "line-2", "line-1"):
        record, _text = registry.enrollment_tokens.create(owner, actor=SETUP)
        created.append(record.token_id)
    registry.enrollment_tokens.create_renewal(
        "line-1", "plc-1", "device", ttl=timedelta(minutes=5), actor=SETUP
    )
    tokens, total = registry.enrollment_tokens.find()
    assert total == 3
    assert {t.token_id for t in tokens} == set(created)
    assert all(t.kind == "enrollment" for t in tokens)
    mine, total = registry.enrollment_tokens.find(owners=frozenset({"line-2"}))
    assert ([t.token_id for t in mine], total) == ([created[1]], 1)
    page, total = registry.enrollment_tokens.find(limit=1, offset=2)
    assert (len(page), total) == (1, 3)
