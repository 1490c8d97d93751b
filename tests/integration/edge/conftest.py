"""An installation with the example plant imported, a hand-moved clock, holder keys, gatekeepers."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from otward.config import load_settings
from otward.core.keys import KeyType
from otward.edge.gatekeeper import Gatekeeper, load_roots
from otward.services.bootstrap import initialize
from otward.services.pki import Pki
from tests.conftest import Clock

ROOT = Path(__file__).parents[3]
PLANT = ROOT / "examples" / "chemical-plant.yaml"

# Tuesday 2026-12-08, 08:00 in Berlin (CET): inside Carla's early shift and business hours.
TUESDAY_MORNING = datetime(2026, 12, 8, 7, 0, tzinfo=UTC)


@pytest.fixture
def clock() -> Clock:
    clock = Clock()
    clock.now = TUESDAY_MORNING
    return clock


@pytest.fixture
def plant(data_dir: Path, clock: Clock) -> Iterator[Pki]:
    """A SQLite installation with the example plant imported; its clock is ``clock``."""
    initialize(data_dir, key_type=KeyType.EC_P256, organization="ACME Chemicals")
    pki = Pki.open(load_settings(data_dir), clock=clock)
    pki.access.import_yaml(PLANT.read_text())
    yield pki
    pki.close()


@pytest.fixture
def holder_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture
def make_gatekeeper(data_dir: Path, tmp_path: Path, clock: Clock) -> Iterator[Callable[..., Gatekeeper]]:
    """``make_gatekeeper(asset, state="name")``: a gatekeeper trusting the installation's root."""
    opened: list[Gatekeeper] = []

    def make(asset: str = "reactor-1", state: str = "state", **options: object) -> Gatekeeper:
        gatekeeper = Gatekeeper(
            asset,
            load_roots(data_dir / "root.pem"),
            tmp_path / state,
            clock=clock,
            **options,  # type: ignore[arg-type]
        )
        opened.append(gatekeeper)
        return gatekeeper

    yield make
    for gatekeeper in opened:
        gatekeeper.close()


def hours(n: float) -> timedelta:
    return timedelta(hours=n)
