"""What a restore must re-apply so that no revoked certificate comes back as valid.

A backup is a past state. Between it and the restore, certificates may have been revoked and CRLs
published with higher numbers. :func:`plan_restore` compares the backup with the evidence the operator
has of that time (revocation journals, current CRLs) and says what to re-apply, or refuses with what is
missing. Evidence can only add revocations and raise CRL numbers; it never removes one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.x509 import ReasonFlags

from otward.core.revocation_journal import JournalContents, JournalRevocation
from otward.errors import PolicyViolationError

__all__ = ["BackupState", "CrlEvidence", "Reapplied", "RestorePlan", "plan_restore"]


@dataclass(frozen=True)
class BackupState:
    """What the backup's database holds that matters here."""

    authorities: Mapping[str, tuple[x509.Certificate, int]]  # name -> (certificate, CRL number)
    certificates: Mapping[str, tuple[str, bool]]  # serial -> (ca, revoked)


@dataclass(frozen=True)
class CrlEvidence:
    """A CRL the operator gave or otward fetched, with where it came from (for messages)."""

    source: str
    crl: x509.CertificateRevocationList


@dataclass(frozen=True)
class Reapplied:
    """A revocation the backup lacks, to apply to a certificate it holds."""

    serial: str
    ca: str
    revoked_at: datetime
    reason: ReasonFlags
    source: str


@dataclass(frozen=True)
class RestorePlan:
    revoke: tuple[Reapplied, ...]
    insert: tuple[JournalRevocation, ...]  # revoked certificates issued after the backup
    crl_numbers: Mapping[str, int]  # CA -> the highest CRL number known anywhere
    evidence: tuple[str, ...]
    assumed: bool = False  # the operator declared that nothing was revoked since the backup
    uncovered: tuple[str, ...] = field(default_factory=tuple)


def _crl_reason(revoked: x509.RevokedCertificate) -> ReasonFlags:
    try:
        return revoked.extensions.get_extension_for_class(x509.CRLReason).value.reason
    except x509.ExtensionNotFound:
        return ReasonFlags.unspecified


def _issuing_ca(crl: x509.CertificateRevocationList, state: BackupState) -> str | None:
    for name, (certificate, _) in state.authorities.items():
        if certificate.subject != crl.issuer:
            continue
        try:
            if crl.is_signature_valid(certificate.public_key()):  # type: ignore[arg-type]
                return name
        except (TypeError, ValueError):
            continue
    return None


def _issued_by(der: bytes | None, issuer: x509.Certificate) -> bool:
    if der is None:
        return False
    try:
        x509.load_der_x509_certificate(der).verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def plan_restore(
    state: BackupState,
    journal: JournalContents | None,
    crls: Sequence[CrlEvidence],
    *,
    journal_sources: Sequence[str] = (),
    journal_covers: bool = True,
    assume_no_later_revocations: bool = False,
) -> RestorePlan:
    """Everything the evidence shows revoked that the backup does not, and the CRL numbers to continue
    from. Refuses (PolicyViolationError) when evidence is unusable, names a CA the backup lacks, lists a
    revoked certificate the backup does not hold without the certificate itself, or when a CA is not
    covered by any evidence and the operator did not declare that nothing was revoked since.

    ``journal_covers`` is false when ``journal`` holds only the archive's own copy of the journal: its
    revocations are applied, but it says nothing of the time after the backup."""
    numbers = {name: number for name, (_, number) in state.authorities.items()}
    revoke: dict[str, Reapplied] = {}
    insert: dict[str, JournalRevocation] = {}
    covered: set[str] = set()
    problems: list[str] = []
    evidence: list[str] = []
    if journal is not None:
        evidence += [f"journal {s}" for s in journal_sources] or [
            "journal" if journal_covers else "the archive's own journal"
        ]
        if journal_covers:  # the live journal; the archive's own copy ends where the backup did
            covered.update(state.authorities)
        for ca, number in journal.crl_numbers.items():
            if ca not in state.authorities:
                problems.append(f"the journal names CA '{ca}', which this backup does not hold")
                continue
            numbers[ca] = max(numbers[ca], number)
        for entry in journal.revocations.values():
            if entry.ca not in state.authorities:
                problems.append(f"the journal revokes {entry.serial} of CA '{entry.ca}', not in this backup")
                continue
            held = state.certificates.get(entry.serial)
            if held is not None:
                if not held[1]:
                    revoke.setdefault(
                        entry.serial,
                        Reapplied(entry.serial, entry.ca, entry.revoked_at, entry.reason, "journal"),
                    )
            elif (
                _issued_by(entry.certificate_der, state.authorities[entry.ca][0])
                and entry.kind
                and entry.profile
            ):
                insert.setdefault(entry.serial, entry)
            else:
                problems.append(
                    f"the journal revokes {entry.serial} of CA '{entry.ca}', which this backup does not "
                    "hold, without a certificate issued by that CA"
                )
    for item in crls:
        issuer = _issuing_ca(item.crl, state)
        if issuer is None:
            problems.append(
                f"{item.source}: CRL of {item.crl.issuer.rfc4514_string()} is not signed by a CA of this "
                "backup"
            )
            continue
        ca = issuer
        evidence.append(item.source)
        number_ext = item.crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
        if number_ext >= state.authorities[ca][1]:
            covered.add(ca)
        numbers[ca] = max(numbers[ca], number_ext)
        for revoked in item.crl:
            serial = format(revoked.serial_number, "x")
            held = state.certificates.get(serial)
            if held is not None:
                if not held[1]:
                    revoke.setdefault(
                        serial,
                        Reapplied(serial, ca, revoked.revocation_date_utc, _crl_reason(revoked), item.source),
                    )
            elif serial not in insert:
                problems.append(
                    f"{item.source}: certificate {serial} of CA '{ca}' was revoked but is not in this backup "
                    "(issued after it); give the revocation journal that holds it with --revocations"
                )
    if problems:
        raise PolicyViolationError(
            "restore refused, the evidence of later revocations cannot be applied: " + "; ".join(problems),
            rule="restore-evidence",
        )
    uncovered = tuple(sorted(set(state.authorities) - covered))
    if uncovered and not assume_no_later_revocations:
        raise PolicyViolationError(
            "restore refused: nothing shows what was revoked after this backup was taken for CA(s) "
            + ", ".join(uncovered)
            + ". Give the revocation journal (--revocations FILE: the revocations.jsonl the installation"
            " kept, or the file revocation_journal names), the current CRL of each CA (--crl FILE), or"
            " --fetch-crls to read them from the running service; only if you know that nothing was revoked"
            " since the backup, --assume-no-later-revocations (recorded in the audit trail)",
            rule="restore-evidence",
        )
    return RestorePlan(
        revoke=tuple(revoke[s] for s in sorted(revoke)),
        insert=tuple(insert[s] for s in sorted(insert)),
        crl_numbers=numbers,
        evidence=tuple(evidence),
        assumed=bool(uncovered),
        uncovered=uncovered,
    )
