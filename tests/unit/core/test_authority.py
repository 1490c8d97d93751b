"""Where a certificate says its issuer is published, read back into the CA's name."""

from __future__ import annotations

from datetime import timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import AuthorityInformationAccessOID, NameOID

from otward.core.authority import PublicationUrls, issuing_ca_name
from tests.conftest import make_key
from tests.unit.core.conftest import NOW

BASE = "http://pki.plant.example:8080"


def _with_aia(*descriptions: x509.AccessDescription) -> x509.Certificate:
    key = make_key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "leaf")])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW)
        .not_valid_after(NOW + timedelta(days=1))
    )
    if descriptions:
        builder = builder.add_extension(x509.AuthorityInformationAccess(list(descriptions)), critical=False)
    return builder.sign(key, hashes.SHA256())


def _issuers(url: str) -> x509.AccessDescription:
    return x509.AccessDescription(
        AuthorityInformationAccessOID.CA_ISSUERS, x509.UniformResourceIdentifier(url)
    )


@pytest.mark.parametrize(
    ("url", "name"),
    [
        pytest.param(
            PublicationUrls.for_ca("http://pki.plant.example:8080", "line-2").ca_issuers,
            "line-2",
            id="as-written",
        ),
        pytest.param(
            "http://pki.plant.example/otward/ca/issuing.crt", "issuing", id="public-url-with-a-path"
        ),
        pytest.param("http://pki.plant.example/ca/Line-2.crt", None, id="not-a-ca-name"),
        pytest.param("http://pki.plant.example/ca/line-2.der", None, id="not-otwards-layout"),
        pytest.param(
            "http://pki.plant.example/ca/line-2.crt?x=/ca/a.crt", "line-2", id="a-query-is-not-the-path"
        ),
    ],
)
def test_the_issuing_ca_is_named_by_the_ca_issuers_url(url, name):
    assert issuing_ca_name(_with_aia(_issuers(url))) == name


def test_no_aia_or_only_ocsp_names_no_ca():
    assert issuing_ca_name(_with_aia()) is None
    ocsp = x509.AccessDescription(
        AuthorityInformationAccessOID.OCSP, x509.UniformResourceIdentifier("http://x/ca/a.crt")
    )
    assert issuing_ca_name(_with_aia(ocsp)) is None
