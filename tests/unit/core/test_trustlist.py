"""The OPC UA trust list plan: which file goes where, and what is refused."""

from __future__ import annotations

from datetime import timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding

from otward.core.revocation import build_crl
from otward.core.trustlist import TrustListEntry, issuer_names, plan_trust_list
from otward.errors import InvalidRequestError, PolicyViolationError
from tests.unit.core import conftest as ca_fixtures
from tests.unit.core.conftest import NOW, make_ca


def _crl(ca: ca_fixtures.TestCa) -> bytes:
    builder = build_crl(ca.info, [], crl_number=1, this_update=NOW, next_update=NOW + timedelta(days=7))
    return builder.sign(ca.key, hashes.SHA256()).public_bytes(Encoding.DER)


def _entry(name: str, ca: ca_fixtures.TestCa, crl: bytes | None = None) -> TrustListEntry:
    return TrustListEntry(name, ca.info.certificate, _crl(ca) if crl is None else crl)


def test_trusted_and_issuers_go_to_their_directories(root_ca, issuing_ca):
    plan = plan_trust_list([_entry("issuing", issuing_ca)], [_entry("root", root_ca)])
    assert [f.path for f in plan] == [
        "trusted/certs/issuing.der",
        "trusted/crl/issuing.crl",
        "issuers/certs/root.der",
        "issuers/crl/root.crl",
    ]
    assert x509.load_der_x509_certificate(plan[0].content) == issuing_ca.info.certificate
    assert x509.load_der_x509_crl(plan[1].content).issuer == issuing_ca.info.certificate.subject


def test_nothing_to_trust_is_refused(root_ca):
    with pytest.raises(InvalidRequestError, match="at least one trusted CA"):
        plan_trust_list([], [_entry("root", root_ca)])


def test_a_ca_in_both_lists_is_refused(issuing_ca):
    with pytest.raises(PolicyViolationError, match="listed twice"):
        plan_trust_list([_entry("issuing", issuing_ca)], [_entry("issuing", issuing_ca)])


@pytest.mark.parametrize("name", ["../etc", "Issuing", "a/b", ""])
def test_unsafe_file_names_are_refused(issuing_ca, name):
    with pytest.raises(InvalidRequestError, match="safe file name"):
        plan_trust_list([_entry(name, issuing_ca)], [])


def test_crl_of_another_ca_is_refused(root_ca, issuing_ca):
    with pytest.raises(InvalidRequestError, match="issued by someone else"):
        plan_trust_list([_entry("issuing", issuing_ca, _crl(root_ca))], [])


def test_crl_with_a_forged_signature_is_refused(issuing_ca):
    impostor = make_ca("issuing", None)  # same subject, another key
    forged = ca_fixtures.TestCa(issuing_ca.info, impostor.key)
    with pytest.raises(InvalidRequestError, match="does not verify"):
        plan_trust_list([_entry("issuing", issuing_ca, _crl(forged))], [])


def test_garbage_crl_is_refused(issuing_ca):
    with pytest.raises(InvalidRequestError, match="not DER"):
        plan_trust_list([_entry("issuing", issuing_ca, b"not a crl")], [])


def test_issuer_names_are_the_untrusted_ancestors_once():
    chains = {
        "plant-a": ["plant-a", "root"],
        "plant-b": ["plant-b", "root"],
        "line-1": ["line-1", "plant-a", "root"],
    }
    assert issuer_names(chains, ["plant-b", "line-1"]) == ["root", "plant-a"]
    assert issuer_names(chains, ["plant-a", "line-1"]) == ["root"]
