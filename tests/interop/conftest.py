"""Fixtures for the interop tests: one real ``otward serve`` for the whole run, and sub-CAs made beside it.

Starting a server per test would cost about a second each, so the interop tests share one.
That keeps them order-independent as long as every test works on certificates it issued
itself and compares CRL numbers before and after, never against fixed values.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from cryptography import x509

from tests.conftest import RunningServer, start_server, stop_server
from tests.interop.helpers import Api, RetiredCa, SubCa, otward_cli, write

# Reasons the retired sub-CAs are revoked with, so the root's CRL carries several.
RETIRED_CA_REASONS = {"retired-a": "cACompromise", "retired-b": "cessationOfOperation"}


@pytest.fixture(scope="session")
def interop_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    running = start_server(tmp_path_factory.mktemp("interop") / "data")
    try:
        yield running
    finally:
        stop_server(running)


@pytest.fixture(scope="session")
def api(interop_server: RunningServer) -> Iterator[Api]:
    client = Api(interop_server)
    try:
        yield client
    finally:
        client.close()


def _create_sub_ca(
    server: RunningServer, tmp_path_factory: pytest.TempPathFactory, name: str, *extra: str
) -> SubCa:
    otward_cli(server.data_dir, "ca", "create", name, "--parent", "root", *extra)
    chain = otward_cli(server.data_dir, "ca", "export", name).stdout
    chain_file = write(tmp_path_factory.mktemp(name) / f"{name}-chain.pem", chain)
    certificate = x509.load_pem_x509_certificates(chain.encode())[0]
    return SubCa(name=name, certificate=certificate, chain_file=chain_file)


@pytest.fixture(scope="session")
def plant_a(interop_server: RunningServer, tmp_path_factory: pytest.TempPathFactory) -> SubCa:
    """``otward ca create plant-a --parent root --permitted-dns plant-a.example`` beside the server."""
    return _create_sub_ca(interop_server, tmp_path_factory, "plant-a", "--permitted-dns", "plant-a.example")


@pytest.fixture(scope="session")
def lifelong(interop_server: RunningServer, tmp_path_factory: pytest.TempPathFactory) -> SubCa:
    """``otward ca create lifelong --parent root --key-type ec-p521``: a P-521 CA (ECDSA with SHA-512)."""
    return _create_sub_ca(interop_server, tmp_path_factory, "lifelong", "--key-type", "ec-p521")


@pytest.fixture(scope="session")
def retired_cas(
    interop_server: RunningServer, api: Api, tmp_path_factory: pytest.TempPathFactory
) -> list[RetiredCa]:
    """Two sub-CAs that each issued a leaf and were then revoked (with different reasons)."""
    retired = []
    for name, reason in RETIRED_CA_REASONS.items():
        sub_ca = _create_sub_ca(interop_server, tmp_path_factory, name)
        leaf = api.issue("tls-client", ca=name, cn=f"operator-{name}")
        api.revoke(f"{sub_ca.certificate.serial_number:x}", reason)
        retired.append(RetiredCa(ca=sub_ca, leaf=leaf, reason=reason))
    return retired
