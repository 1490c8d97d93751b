"""The signed audit trail's checks, with fixed times and a throwaway CA: what ``verify_trail`` accepts,
what it refuses, and which certificates may sign a head."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from otward.core.audit import (
    AUDIT_SIGNING_OID,
    GENESIS_HASH,
    LEGACY_AUDIT_SIGNER_CN,
    AuditEvent,
    AuditRecord,
    EventType,
    HeadSchedule,
    KnownHead,
    Outcome,
    SignedHead,
    TrailStatus,
    chain_hash,
    check_extension,
    is_audit_signer,
    is_head_due,
    verify_head_signer,
    verify_trail,
)
from otward.core.issuance import build_ca_certificate, build_signer_certificate, service_subject
from otward.errors import IntegrityError
from tests.unit.core import conftest
from tests.unit.core.conftest import NOW, make_ca

MINUTE = timedelta(minutes=1)
LIMIT = timedelta(minutes=5)


def trail(n: int, *, start=NOW, step=timedelta(seconds=1)) -> list[AuditRecord]:
    records, previous = [], GENESIS_HASH
    for i in range(n):
        event = AuditEvent(
            time=start + step * i,
            host="h",
            component="ca",
            type=EventType.CERT_ISSUED,
            subject=f"s{i + 1}",
            outcome=Outcome.SUCCESS,
        )
        current = chain_hash(previous, event)
        records.append(AuditRecord(i + 1, event, previous, current))
        previous = current
    return records


def head(records: list[AuditRecord], sequence: int, signed_at=NOW) -> SignedHead:
    return SignedHead(sequence, records[sequence - 1].hash, signed_at, b"sig", 1)


def check(records, heads, *, now=NOW, ledger=None, head_problem=lambda h: None, known=()):
    if ledger is None:
        ledger = (len(records), records[-1].hash) if records else (0, GENESIS_HASH)
    return verify_trail(
        records, heads, ledger=ledger, head_problem=head_problem, now=now, max_unsigned=LIMIT, known=known
    )


# --- verify_trail --------------------------------------------------------------------------------


def test_an_empty_trail_without_a_head_is_intact():
    result = check([], [])
    assert result.status is TrailStatus.INTACT
    assert result.ok


def test_a_trail_signed_to_its_end_is_intact():
    records = trail(10)
    result = check(records, [head(records, 4), head(records, 10, NOW + MINUTE)], now=NOW + 2 * MINUTE)
    assert result.status is TrailStatus.INTACT
    assert (result.signed_sequence, result.signed_at, result.unsigned) == (10, NOW + MINUTE, 0)


def test_records_without_any_head_are_broken_whatever_their_times():
    """Record times are not signed: with no head at all, nothing dates or proves them."""
    records = trail(10, start=NOW)
    result = check(records, [], now=NOW)
    assert result.status is TrailStatus.BROKEN
    assert result.first_bad_sequence == 1
    assert "no signed head" in result.problem


def test_a_short_unsigned_tail_is_a_warning():
    records = trail(10, start=NOW)
    result = check(records, [head(records, 7, NOW + timedelta(seconds=7))], now=NOW + MINUTE)
    assert result.status is TrailStatus.UNSIGNED_TAIL
    assert result.ok
    assert (result.signed_sequence, result.unsigned) == (7, 3)
    assert result.unsigned_since == NOW + timedelta(seconds=7)
    assert result.unsigned_for == MINUTE - timedelta(seconds=7)


def test_an_old_unsigned_tail_is_broken_at_its_first_record():
    records = trail(10, start=NOW)
    result = check(records, [head(records, 7, NOW + timedelta(seconds=7))], now=NOW + 10 * MINUTE)
    assert result.status is TrailStatus.BROKEN
    assert result.first_bad_sequence == 8
    assert "3 records after record 7 are unsigned" in result.problem


def test_the_tail_age_counts_from_the_head_not_from_fresh_looking_records():
    """Someone who deleted the newer heads and re-dated the records they rewrote still faces the age
    of the newest head left."""
    rewritten, previous = [], GENESIS_HASH
    for record in trail(10, start=NOW):
        event = record.event
        if record.sequence > 4:
            event = dataclasses.replace(event, time=NOW + 59 * MINUTE)
        current = chain_hash(previous, event)
        rewritten.append(AuditRecord(record.sequence, event, previous, current))
        previous = current
    result = check(rewritten, [head(rewritten, 4, NOW)], now=NOW + 60 * MINUTE)
    assert result.status is TrailStatus.BROKEN
    assert result.first_bad_sequence == 5
    assert result.unsigned_since == NOW


def test_a_head_beyond_the_end_is_broken():
    records = trail(10)
    result = check(records[:7], [head(records, 10)], ledger=(7, records[6].hash))
    assert result.status is TrailStatus.BROKEN
    assert result.first_bad_sequence == 8
    assert "ends at record 7" in result.problem


def test_a_trail_shorter_than_the_ledger_is_broken_even_with_its_heads_removed():
    records = trail(10)
    result = check(records[:7], [head(records, 3)], ledger=(10, records[9].hash), now=NOW)
    assert result.status is TrailStatus.BROKEN
    assert result.first_bad_sequence == 8
    assert "the ledger row" in result.problem


def test_a_record_that_differs_from_the_ledger_is_broken():
    records = trail(10)
    result = check(records, [head(records, 3)], ledger=(9, b"\x01" * 32), now=NOW)
    assert result.status is TrailStatus.BROKEN
    assert result.first_bad_sequence == 4
    assert result.problem == "records 4 to 9 differ from the ledger row (ledger_state)"


def test_a_recomputed_chain_is_caught_by_the_heads_and_narrowed_between_them():
    honest = trail(10)
    edited = dataclasses.replace(honest[5].event, subject="someone-else")
    rewritten, previous = honest[:5], honest[4].hash
    for record in [dataclasses.replace(honest[5], event=edited), *honest[6:]]:
        current = chain_hash(previous, record.event)
        rewritten.append(AuditRecord(record.sequence, record.event, previous, current))
        previous = current
    assert check(rewritten, [], ledger=(10, rewritten[-1].hash)).problem.endswith("nothing proves them")
    result = check(rewritten, [head(honest, 3), head(honest, 8)], ledger=(10, rewritten[-1].hash))
    assert result.status is TrailStatus.BROKEN
    assert result.first_bad_sequence == 4
    assert result.problem.startswith("records 4 to 8 differ from the head signed at")


def test_a_known_head_catches_a_trail_cut_back_to_an_earlier_head():
    records = trail(10)
    cut = records[:6]
    known = [KnownHead(9, records[8].hash, "the witness")]
    result = check(cut, [head(records, 6)], known=known)
    assert result.status is TrailStatus.BROKEN
    assert result.first_bad_sequence == 7
    assert result.problem == "the trail ends at record 6, but the witness is at record 9"
    assert check(cut, [head(records, 6)]).status is TrailStatus.INTACT  # without it: undetectable


def test_an_invalid_head_is_broken_even_if_a_valid_one_covers_the_end():
    records = trail(10)
    heads = [head(records, 4), head(records, 10)]
    result = check(records, heads, head_problem=lambda h: "bad" if h.sequence == 4 else None)
    assert result.status is TrailStatus.BROKEN
    assert (result.first_bad_sequence, result.problem) == (
        4,
        "signed head at record 4 (2026-11-22T12:00:00.000000Z): bad",
    )


@pytest.mark.parametrize(
    ("damage", "sequence", "problem"),
    [
        (lambda r: r[:3] + r[4:], 4, "record 4 missing or reordered: found 5 in its place"),
        (lambda r: [*r[:3], r[4], r[3], *r[5:]], 4, "record 4 missing or reordered: found 5 in its place"),
        (
            lambda r: [*r[:3], dataclasses.replace(r[3], previous_hash=b"\x00" * 32), *r[4:]],
            4,
            "record 4 does not follow record 3",
        ),
        (
            lambda r: [*r[:3], dataclasses.replace(r[3], event=r[2].event), *r[4:]],
            4,
            "record 4 was altered",
        ),
    ],
    ids=["deleted", "reordered", "unlinked", "altered"],
)
def test_the_first_bad_record_is_named(damage, sequence, problem):
    records = trail(10)
    result = check(damage(records), [head(records, 10)])
    assert (result.status, result.first_bad_sequence, result.problem) == (
        TrailStatus.BROKEN,
        sequence,
        problem,
    )


# --- is_head_due ---------------------------------------------------------------------------------

SCHEDULE = HeadSchedule(events=100, seconds=10, heartbeat=60)


@pytest.mark.parametrize(
    ("latest", "sequence", "after", "due"),
    [
        (None, 0, 0, False),  # empty: nothing to sign
        (None, 5, 0, True),
        (50, 50, 59, False),
        (50, 50, 60, True),  # heartbeat
        (50, 51, 9, False),
        (50, 51, 10, True),  # moved, interval passed
        (50, 150, 0, True),  # moved by the event count
        (50, 149, 0, False),
    ],
)
def test_when_a_head_is_due(latest, sequence, after, due):
    newest = None if latest is None else SignedHead(latest, b"h" * 32, NOW, b"s", 1)
    assert is_head_due(newest, sequence, NOW + timedelta(seconds=after), SCHEDULE) is due


# --- check_extension -----------------------------------------------------------------------------


def test_a_signer_signs_only_an_extension_of_what_it_signed():
    records = trail(10)
    base = (4, records[3].hash)
    assert check_extension(records[3:], base, (10, records[9].hash)) is None
    assert check_extension(records[3:4], base, base) is None  # heartbeat: the same head again
    assert check_extension(records, None, (10, records[9].hash)) is None
    assert check_extension(records[3:], (4, b"x" * 32), (10, records[9].hash)) == (
        "record 4 differs from what was signed before"
    )
    assert check_extension([], base, (10, records[9].hash)) == "record 4, signed before, is gone"
    assert check_extension(records[3:], base, (10, b"y" * 32)) == "record 10 differs from the ledger's head"
    assert check_extension(records[3:8], base, (10, records[9].hash)) == (
        "the trail does not reach record 10, the head to sign"
    )


# --- who may sign --------------------------------------------------------------------------------


def signer(
    issuer: conftest.TestCa,
    *,
    eku: tuple[x509.ObjectIdentifier, ...] = (AUDIT_SIGNING_OID,),
    cn: str = "otward audit signer",
    lifetime: timedelta = timedelta(days=365),
) -> x509.Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    builder = build_signer_certificate(
        subject=service_subject(issuer.info, cn),
        public_key=key.public_key(),
        issuer=issuer.info,
        serial_number=x509.random_serial_number() | (1 << 100),
        not_valid_before=NOW - timedelta(days=1),
        not_valid_after=NOW + lifetime,
        extended_key_usage=eku,
    )
    return builder.sign(issuer.key, hashes.SHA256())


def test_an_audit_signer_chaining_to_the_anchor_is_accepted(root_ca, issuing_ca):
    certificate = signer(issuing_ca)
    accepted = verify_head_signer(certificate, [issuing_ca.info.certificate], [root_ca.info.certificate], NOW)
    assert accepted.key.public_bytes == certificate.public_key().public_bytes
    assert accepted.valid_at(NOW)
    assert not accepted.valid_at(NOW + timedelta(days=366))


def test_a_legacy_audit_signer_without_an_eku_is_accepted(root_ca, issuing_ca):
    certificate = signer(issuing_ca, eku=(), cn=LEGACY_AUDIT_SIGNER_CN)
    assert is_audit_signer(certificate)
    verify_head_signer(certificate, [issuing_ca.info.certificate], [root_ca.info.certificate], NOW)


@pytest.mark.parametrize(
    ("eku", "cn"),
    [
        ((ExtendedKeyUsageOID.CLIENT_AUTH,), "plc-7"),  # a device or client certificate
        ((x509.ObjectIdentifier("1.3.6.1.4.1.32473.6.1"),), "otward edge signer"),  # the edge signer
        ((), "plc-7"),  # no EKU but not the legacy audit signer
    ],
    ids=["client", "edge-signer", "no-eku"],
)
def test_a_certificate_that_is_not_an_audit_signer_is_refused(root_ca, issuing_ca, eku, cn):
    certificate = signer(issuing_ca, eku=eku, cn=cn)
    assert not is_audit_signer(certificate)
    with pytest.raises(IntegrityError, match="is not an audit signer"):
        verify_head_signer(certificate, [issuing_ca.info.certificate], [root_ca.info.certificate], NOW)


def test_a_ca_certificate_cannot_sign_heads(root_ca, issuing_ca):
    with pytest.raises(IntegrityError, match="is a CA"):
        verify_head_signer(issuing_ca.info.certificate, [], [root_ca.info.certificate], NOW)


def test_a_forged_ca_with_the_issuing_cas_name_does_not_reach_the_anchor(root_ca, issuing_ca):
    """The database holds CA certificates too: a forged one with the right name and its own key
    certifies a forged signer, but nothing leads from it to the root file."""
    forged_key = ec.generate_private_key(ec.SECP256R1())
    forged_ca = make_ca("forged", None)
    forged_certificate = (
        build_ca_certificate(
            subject=issuing_ca.info.certificate.subject,
            public_key=forged_key.public_key(),
            serial_number=x509.random_serial_number() | (1 << 100),
            not_valid_before=NOW - timedelta(days=1),
            not_valid_after=NOW + timedelta(days=30),
            path_length=0,
            issuer=None,
        )
    ).sign(forged_key, hashes.SHA256())
    impostor = conftest.TestCa(
        dataclasses.replace(issuing_ca.info, certificate=forged_certificate), forged_key
    )
    certificate = signer(impostor)
    candidates = [forged_certificate, issuing_ca.info.certificate, forged_ca.info.certificate]
    with pytest.raises(IntegrityError, match="does not chain to the trust anchor"):
        verify_head_signer(certificate, candidates, [root_ca.info.certificate], NOW)
    # and the real signer still finds its way past the forged CA
    verify_head_signer(signer(issuing_ca), candidates, [root_ca.info.certificate], NOW)


def test_a_signer_must_be_valid_when_it_signed(root_ca, issuing_ca):
    certificate = signer(issuing_ca, lifetime=timedelta(days=1))
    with pytest.raises(IntegrityError, match="does not chain"):
        verify_head_signer(
            certificate, [issuing_ca.info.certificate], [root_ca.info.certificate], NOW + timedelta(days=2)
        )
    with pytest.raises(IntegrityError, match="does not chain"):  # another installation's root
        verify_head_signer(
            certificate, [issuing_ca.info.certificate], [make_ca("other").info.certificate], NOW
        )


def test_ed25519_cas_are_walked_too():
    """cryptography's Web PKI verifier refuses Ed25519; otward's CAs may use it."""
    root_key = ed25519.Ed25519PrivateKey.generate()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ed root")])
    root = build_ca_certificate(
        subject=name,
        public_key=root_key.public_key(),
        serial_number=x509.random_serial_number() | (1 << 100),
        not_valid_before=NOW - timedelta(days=1),
        not_valid_after=NOW + timedelta(days=30),
        path_length=None,
        issuer=None,
    ).sign(root_key, None)
    anchor = make_ca("unused")
    ca = conftest.TestCa(dataclasses.replace(anchor.info, certificate=root), root_key)  # type: ignore[arg-type]
    certificate = signer_signed_by(ca)
    verify_head_signer(certificate, [], [root], NOW)


def signer_signed_by(issuer: conftest.TestCa) -> x509.Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    return build_signer_certificate(
        subject=service_subject(issuer.info, "otward audit signer"),
        public_key=key.public_key(),
        issuer=issuer.info,
        serial_number=x509.random_serial_number() | (1 << 100),
        not_valid_before=NOW - timedelta(days=1),
        not_valid_after=NOW + timedelta(days=10),
        extended_key_usage=(AUDIT_SIGNING_OID,),
    ).sign(issuer.key, None)


def test_a_signer_without_digital_signature_is_refused(root_ca, issuing_ca):
    key = ec.generate_private_key(ec.SECP256R1())
    base = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "otward audit signer")]))
        .issuer_name(issuing_ca.info.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - timedelta(days=1))
        .not_valid_after(NOW + timedelta(days=1))
        .add_extension(x509.ExtendedKeyUsage([AUDIT_SIGNING_OID]), critical=False)
    )
    no_key_usage = base.sign(issuing_ca.key, hashes.SHA256())
    key_agreement_only = base.add_extension(
        x509.KeyUsage(False, False, False, False, True, False, False, False, False), critical=True
    ).sign(issuing_ca.key, hashes.SHA256())
    for certificate in (no_key_usage, key_agreement_only):
        with pytest.raises(IntegrityError, match="no keyUsage digitalSignature"):
            verify_head_signer(certificate, [issuing_ca.info.certificate], [root_ca.info.certificate], NOW)


def test_path_length_and_depth_limit_the_walk(root_ca, issuing_ca):
    """The issuing CA allows no CA below it (pathLen 0): a CA it certified cannot certify a signer."""
    below = make_ca("below", issuing_ca, path_length=None)
    with pytest.raises(IntegrityError, match="does not chain"):
        verify_head_signer(
            signer(below),
            [issuing_ca.info.certificate, below.info.certificate],
            [root_ca.info.certificate],
            NOW,
        )
    chain = [make_ca("level-1", root_ca, path_length=None)]
    for level in range(2, 6):
        chain.append(make_ca(f"level-{level}", chain[-1], path_length=None))
    candidates = [ca.info.certificate for ca in chain]
    verify_head_signer(signer(chain[2]), candidates, [root_ca.info.certificate], NOW)  # three CAs: fine
    with pytest.raises(IntegrityError, match="does not chain"):  # five: deeper than any otward path
        verify_head_signer(signer(chain[4]), candidates, [root_ca.info.certificate], NOW)


def test_a_signer_does_not_sign_a_head_behind_or_beside_what_it_signed():
    records = trail(10)
    base = (6, records[5].hash)
    assert check_extension(records[5:], base, (4, records[3].hash)) == (
        "the head to sign (record 4) is behind record 6"
    )
    assert check_extension(records[6:], base, (10, records[9].hash)) == "record 6, signed before, is gone"
