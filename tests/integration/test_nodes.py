"""Two nodes of one installation on one PostgreSQL database, in process: what one node renews or
creates (the service's TLS identity, an OCSP responder, a signer, a CA) happens once and reaches
the other node through the database, which is all they share besides the copied data directory."""

from __future__ import annotations

import shutil
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509 import ocsp

from otward.adapters.db import Database, create_database_engine
from otward.config import load_settings, read_passphrase
from otward.core.audit import EventType
from otward.core.keys import KeyType
from otward.core.records import CertificateFilter
from otward.services.audit import SYSTEM_ACTOR
from otward.services.bootstrap import TlsFiles, initialize, renew_service_certificate_if_due
from otward.services.pki import Pki
from otward.services.signers import AUDIT_SIGNER
from otward.services.transparency import TransparencyLog
from tests.conftest import _postgres_database, build_csr, make_key, ocsp_request_der

pytestmark = [pytest.mark.postgres, pytest.mark.integration]


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def two_nodes(tmp_path: Path) -> Iterator[tuple[Pki, Pki, Clock]]:
    for url in _postgres_database():
        first = tmp_path / "node-1"
        initialize(first, organization="ACME Chemicals", database_url=url)
        second = Path(shutil.copytree(first, tmp_path / "node-2"))
        clock = Clock()
        a = Pki.open(load_settings(first, database_url=url), clock=clock)
        b = Pki.open(load_settings(second, database_url=url), clock=clock)
        try:
            yield a, b, clock
        finally:
            a.close()
            b.close()


def _tls_server_serials(pki: Pki) -> set[str]:
    records, _ = pki.stores.certificates.list_certificates(
        CertificateFilter(profile="tls-server"), limit=100, offset=0
    )
    return {r.serial for r in records}


def test_service_identity_is_renewed_once_and_installed_by_the_other_node(two_nodes):
    a, b, clock = two_nodes
    before = _tls_server_serials(a)
    certificate = x509.load_pem_x509_certificates(
        TlsFiles.in_dir(a.settings.data_dir).certificate_chain.read_bytes()
    )[0]
    lifetime = certificate.not_valid_after_utc - certificate.not_valid_before_utc
    clock.now = certificate.not_valid_before_utc + lifetime * 3 / 4  # past two thirds: due on both

    reasons: list[str | None] = []
    barrier = threading.Barrier(2)

    def renew(pki: Pki) -> None:
        barrier.wait()
        reasons.append(renew_service_certificate_if_due(pki, pki.settings.data_dir))

    threads = [threading.Thread(target=renew, args=(pki,)) for pki in (a, b)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # Whoever did not renew installs the renewed identity, now or at its next check.
    for pki in (a, b):
        renew_service_certificate_if_due(pki, pki.settings.data_dir)

    assert len(_tls_server_serials(a) - before) == 1, reasons
    assert "two thirds of its lifetime passed" in reasons
    files_a, files_b = TlsFiles.in_dir(a.settings.data_dir), TlsFiles.in_dir(b.settings.data_dir)
    assert files_a.certificate_chain.read_bytes() == files_b.certificate_chain.read_bytes()
    assert files_a.private_key.read_bytes() == files_b.private_key.read_bytes()
    renewed = x509.load_pem_x509_certificates(files_b.certificate_chain.read_bytes())[0]
    assert renewed.serial_number != certificate.serial_number
    # Nothing is due any more, on either node.
    assert renew_service_certificate_if_due(a, a.settings.data_dir) is None
    assert renew_service_certificate_if_due(b, b.settings.data_dir) is None


def _responder_of(pki: Pki, issuer: x509.Certificate, serial: int) -> x509.Certificate:
    answer = ocsp.load_der_ocsp_response(pki.ocsp.respond(ocsp_request_der(issuer, serial)).der)
    assert answer.response_status is ocsp.OCSPResponseStatus.SUCCESSFUL
    return answer.certificates[0]


def test_responder_renewed_by_one_node_is_used_not_renewed_again_by_the_other(two_nodes):
    a, b, clock = two_nodes
    issued = a.issuance.issue(build_csr(make_key(), cn="op-1"), profile="tls-client", ca="issuing")
    issuer = a.authorities.get("issuing").certificate
    old = _responder_of(b, issuer, issued.certificate.serial_number)  # b has loaded (cached) the CA
    clock.now = old.not_valid_after_utc - timedelta(days=10)

    assert a.authorities.renew_ocsp_responder_if_due("issuing")
    assert not b.authorities.renew_ocsp_responder_if_due("issuing")  # judged by the stored responder

    new = _responder_of(b, issuer, issued.certificate.serial_number)
    assert new != old
    assert new == _responder_of(a, issuer, issued.certificate.serial_number)
    # b signed with the new responder's key, which only a created: fetched from the database.
    key_ref = a.authorities.record("issuing").ocsp_key_ref
    assert (b.settings.data_dir / key_ref.removeprefix("file:")).stat().st_mode & 0o777 == 0o600


def test_signer_rotated_on_one_node_signs_on_the_other_and_its_old_key_goes_everywhere(two_nodes):
    a, b, _ = two_nodes
    old_ref = a.stores.signers.get_signer(AUDIT_SIGNER)[0]
    old_file_b = b.settings.data_dir / old_ref.removeprefix("file:")
    assert old_file_b.exists()  # copied with the data directory
    rotated = a.signers.rotate(AUDIT_SIGNER)

    b.audit.record(b.audit.event(SYSTEM_ACTOR, EventType.SERVICE_STARTED, "node-2"))
    head = b.audit.sign_head()
    assert head is not None
    assert head.signer_serial == rotated.certificate.serial_number
    assert b.forget_destroyed_keys() == [old_ref]
    assert not old_file_b.exists()
    assert b.forget_destroyed_keys() == []


def test_ca_created_on_one_node_issues_on_the_other(two_nodes):
    a, b, _ = two_nodes
    a.authorities.create_subordinate(
        "line-2", parent="root", key_type=KeyType.EC_P256, organization="ACME Chemicals"
    )
    issued = b.issuance.issue(build_csr(make_key(), cn="op-2"), profile="tls-client", ca="line-2")
    issued.certificate.verify_directly_issued_by(a.authorities.get("line-2").certificate)
    pem = (b.settings.data_dir / "keys" / "ca-line-2.key.pem").read_bytes()
    assert pem.startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")  # encrypted at rest, as on a
    serialization.load_pem_private_key(pem, password=read_passphrase(b.settings.data_dir))


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql"])
def test_cluster_lock_admits_one_holder_at_a_time(dialect, tmp_path):
    databases = _postgres_database()
    url = f"sqlite:///{tmp_path / 'x.db'}" if dialect == "sqlite" else next(databases)
    one, two = Database(create_database_engine(url)), Database(create_database_engine(url))
    try:
        with one.singleton("job") as first:
            assert first
            with two.singleton("job") as second:
                assert not second
            with two.singleton("other-job") as other:
                assert other
        with two.singleton("job") as after:
            assert after
    finally:
        one.close()
        two.close()
        databases.close()  # drops the PostgreSQL database


class _ReadBeforeTheOtherNodeWrote:
    """The transparency store as a node sees it when another node signs the same tree size between
    this node's read of the latest head and its own insert."""

    def __init__(self, store, other_node_signs):
        self._store = store
        self._other_node_signs = other_node_signs

    def __getattr__(self, name):
        return getattr(self._store, name)

    def tree_head(self, tree_size=None):
        latest = self._store.tree_head(tree_size)
        if tree_size is None and self._other_node_signs is not None:
            sign, self._other_node_signs = self._other_node_signs, None
            sign()
        return latest


def test_two_nodes_signing_the_same_tree_size_agree_on_one_head(two_nodes):
    a, b, _ = two_nodes
    a.issuance.issue(build_csr(make_key(), cn="op-3"), profile="tls-client", ca="issuing")
    log = TransparencyLog(
        _ReadBeforeTheOtherNodeWrote(b.stores.transparency, a.transparency.tree_head),
        b.signers,
        clock=b.clock,
    )
    head = log.tree_head()  # b's insert meets a's head of the same size
    assert head == a.stores.transparency.tree_head()
    assert head == b.transparency.tree_head()
