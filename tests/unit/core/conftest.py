"""A throwaway root and issuing CA built with the core alone (no database, no files)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from otward.core.authority import AuthorityInfo, PublicationUrls
from otward.core.issuance import build_ca_certificate

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


@dataclass(frozen=True)
class TestCa:
    info: AuthorityInfo
    key: ec.EllipticCurvePrivateKey


def _name(cn: str) -> x509.Name:
    return x509.Name(
        [x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Test"), x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    )


def make_ca(
    name: str,
    parent: TestCa | None = None,
    *,
    permitted_dns: tuple[str, ...] = (),
    path_length: int | None = 0,
    lifetime: timedelta = timedelta(days=3650),
) -> TestCa:
    key = ec.generate_private_key(ec.SECP256R1())
    builder = build_ca_certificate(
        subject=_name(f"{name} CA"),
        public_key=key.public_key(),
        serial_number=x509.random_serial_number() | (1 << 100),
        not_valid_before=NOW - timedelta(days=1),
        not_valid_after=NOW + lifetime,
        path_length=path_length,
        issuer=parent.info if parent else None,
        permitted_dns=permitted_dns,
    )
    from cryptography.hazmat.primitives import hashes

    certificate = builder.sign(parent.key if parent else key, hashes.SHA256())
    urls = PublicationUrls.for_ca("http://127.0.0.1:8080", name)
    return TestCa(AuthorityInfo(name=name, certificate=certificate, urls=urls), key)


@pytest.fixture(scope="session")
def root_ca() -> TestCa:
    return make_ca("root", path_length=None)


@pytest.fixture(scope="session")
def issuing_ca(root_ca: TestCa) -> TestCa:
    return make_ca("issuing", root_ca)
