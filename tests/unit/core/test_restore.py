"""plan_restore: what the evidence shows revoked since a backup is re-applied, or the restore refused."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import ReasonFlags
from cryptography.x509.oid import NameOID

from otward.core.restore import BackupState, CrlEvidence, plan_restore
from otward.core.revocation_journal import JournalContents, JournalCrl, JournalRevocation
from otward.errors import PolicyViolationError

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


def _ca(name: str):
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - timedelta(days=1))
        .not_valid_after(NOW + timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def _leaf(ca_key, ca_cert, serial: int) -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    from cryptography.hazmat.primitives.serialization import Encoding

    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"leaf-{serial}")]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(serial)
        .not_valid_before(NOW - timedelta(hours=1))
        .not_valid_after(NOW + timedelta(days=30))
        .sign(ca_key, hashes.SHA256())
        .public_bytes(Encoding.DER)
    )


def _crl(ca_key, ca_cert, number: int, revoked: dict[int, ReasonFlags]) -> x509.CertificateRevocationList:
    entries = []
    for serial, reason in revoked.items():
        builder = x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(NOW)
        if reason is not ReasonFlags.unspecified:
            builder = builder.add_extension(x509.CRLReason(reason), critical=False)
        entries.append(builder.build())
    return x509.CertificateRevocationListBuilder(
        issuer_name=ca_cert.subject,
        last_update=NOW,
        next_update=NOW + timedelta(days=7),
        extensions=[x509.Extension(x509.oid.ExtensionOID.CRL_NUMBER, False, x509.CRLNumber(number))],
        revoked_certificates=entries,
    ).sign(ca_key, hashes.SHA256())


def _revoked(serial: str, der: bytes) -> JournalRevocation:
    return JournalRevocation("issuing", serial, NOW, ReasonFlags.unspecified, der, "tls-client", "end-entity")


@pytest.fixture(scope="module")
def issuing():
    return _ca("issuing")


@pytest.fixture
def state(issuing):
    return BackupState(
        authorities={"issuing": (issuing[1], 4)},
        certificates={"a1": ("issuing", False), "b2": ("issuing", True)},
    )


def test_without_evidence_the_restore_is_refused_with_what_to_give(state):
    with pytest.raises(
        PolicyViolationError, match=r"issuing.*--revocations FILE.*--crl FILE.*--fetch-crls"
    ) as info:
        plan_restore(state, None, [])
    assert info.value.rule == "restore-evidence"


def test_the_operator_may_declare_that_nothing_was_revoked(state):
    plan = plan_restore(state, None, [], assume_no_later_revocations=True)
    assert plan.revoke == ()
    assert plan.assumed
    assert plan.uncovered == ("issuing",)
    assert plan.crl_numbers == {"issuing": 4}


def test_a_journal_reapplies_revocations_and_raises_crl_numbers(state, issuing):
    journal = JournalContents()
    journal.add(
        [
            JournalRevocation("issuing", "a1", NOW, ReasonFlags.key_compromise),
            JournalRevocation("issuing", "b2", NOW, ReasonFlags.superseded),  # revoked in the backup already
            JournalCrl("issuing", 9, NOW),
        ]
    )
    plan = plan_restore(state, journal, [], journal_sources=["j.jsonl"])
    assert [(r.serial, r.reason) for r in plan.revoke] == [("a1", ReasonFlags.key_compromise)]
    assert plan.crl_numbers == {"issuing": 9}
    assert plan.evidence == ("journal j.jsonl",)
    assert not plan.assumed


def test_a_certificate_issued_and_revoked_after_the_backup_is_stored_again(state, issuing):
    der = _leaf(*issuing, serial=0xC3)
    journal = JournalContents()
    journal.add([_revoked("c3", der)])
    plan = plan_restore(state, journal, [])
    assert [e.serial for e in plan.insert] == ["c3"]


def test_a_journal_certificate_not_issued_by_the_ca_is_refused(state):
    other = _ca("other")
    der = _leaf(*other, serial=0xC3)
    journal = JournalContents()
    journal.add([_revoked("c3", der)])
    with pytest.raises(PolicyViolationError, match=r"c3.*without a certificate issued by that CA"):
        plan_restore(state, journal, [])


def test_a_current_crl_reapplies_and_covers_its_ca(state, issuing):
    crl = _crl(*issuing, number=6, revoked={0xA1: ReasonFlags.key_compromise, 0xB2: ReasonFlags.unspecified})
    plan = plan_restore(state, None, [CrlEvidence("issuing.crl", crl)])
    assert [(r.serial, r.reason, r.source) for r in plan.revoke] == [
        ("a1", ReasonFlags.key_compromise, "issuing.crl")
    ]
    assert plan.crl_numbers == {"issuing": 6}
    assert not plan.assumed


def test_an_older_crl_does_not_cover_its_ca(state, issuing):
    crl = _crl(*issuing, number=3, revoked={})
    with pytest.raises(PolicyViolationError, match="for CA\\(s\\) issuing"):
        plan_restore(state, None, [CrlEvidence("old.crl", crl)])


def test_a_crl_listing_a_certificate_the_backup_lacks_needs_the_journal(state, issuing):
    crl = _crl(*issuing, number=6, revoked={0xD4: ReasonFlags.unspecified})
    with pytest.raises(
        PolicyViolationError, match="d4 of CA 'issuing' was revoked but is not in this backup"
    ):
        plan_restore(state, None, [CrlEvidence("issuing.crl", crl)])
    der = _leaf(*issuing, serial=0xD4)
    journal = JournalContents()
    journal.add([_revoked("d4", der)])
    plan = plan_restore(state, journal, [CrlEvidence("issuing.crl", crl)])
    assert [e.serial for e in plan.insert] == ["d4"]


def test_a_crl_of_another_ca_is_refused(state):
    other = _ca("issuing")  # same name, other key: a forged CRL
    crl = _crl(*other, number=99, revoked={})
    with pytest.raises(PolicyViolationError, match="not signed by a CA of this backup"):
        plan_restore(state, None, [CrlEvidence("forged.crl", crl)])


def test_a_journal_naming_an_unknown_ca_is_refused(state):
    journal = JournalContents()
    journal.add([JournalCrl("newer-ca", 2, NOW)])
    with pytest.raises(PolicyViolationError, match="CA 'newer-ca', which this backup does not hold"):
        plan_restore(state, journal, [])


def test_the_archives_own_journal_is_applied_but_covers_nothing(state):
    journal = JournalContents()
    journal.add([JournalRevocation("issuing", "a1", NOW, ReasonFlags.key_compromise)])
    with pytest.raises(PolicyViolationError, match=r"for CA\(s\) issuing"):
        plan_restore(state, journal, [], journal_covers=False)
    plan = plan_restore(state, journal, [], journal_covers=False, assume_no_later_revocations=True)
    assert [r.serial for r in plan.revoke] == ["a1"]
    assert plan.evidence == ("the archive's own journal",)
    assert plan.assumed
