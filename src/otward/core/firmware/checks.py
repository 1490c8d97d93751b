"""Firmware refusals as findings: each check id with its severity, title, fix and IEC 62443-4-2
requirements, so ``otward firmware verify --json`` and ``boot-chain --json`` feed the same report as
the network checks.

CR 3.4 (software and information integrity) for anything that lets a changed image through, CR 3.14
(integrity of the boot process) for the boot chain and anti-rollback, CR 1.9 (strength of public
key-based authentication) for signer trust, CR 4.3 (use of cryptography) for refused algorithms.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from otward.core.assess.findings import Finding, Severity

__all__ = ["CHECKS", "Check", "finding_for", "is_firmware_check"]


@dataclass(frozen=True)
class Check:
    """What a firmware check id means in a report."""

    title: str
    recommendation: str
    requirements: tuple[str, ...]
    severity: Severity = Severity.HIGH


CHECKS: Final[dict[str, Check]] = {
    "firmware.manifest.unreadable": Check(
        "Firmware manifest unreadable or truncated",
        "Re-create the manifest with 'otward firmware sign'; do not install the image.",
        ("CR 3.4",),
    ),
    "firmware.signature.missing": Check(
        "Firmware manifest is not signed",
        "Sign the image with a code-signing key ('otward firmware sign'); refuse unsigned images.",
        ("CR 3.4", "CR 1.9"),
    ),
    "firmware.signature.invalid": Check(
        "Firmware manifest signature does not verify (tampered manifest)",
        "Do not install the image; obtain the manifest again from the vendor or the signing station.",
        ("CR 3.4", "CR 1.9"),
    ),
    "firmware.algorithm.weak": Check(
        "Firmware signed with a refused algorithm",
        "Re-sign with RSA >= 2048 (PSS or PKCS#1 v1.5) or ECDSA P-256/P-384, with SHA-256 or better.",
        ("CR 4.3", "CR 1.9"),
    ),
    "firmware.chain.untrusted": Check(
        "Firmware signer not trusted",
        "Sign with a code-signing certificate issued under the plant's firmware trust root.",
        ("CR 1.9", "CR 3.4"),
    ),
    "firmware.signer.usage": Check(
        "Firmware signer certificate not meant for code signing",
        "Issue the signer a certificate with the 'firmware-signing' profile (EKU codeSigning).",
        ("CR 1.9",),
    ),
    "firmware.signer.unpinned": Check(
        "Boot stage signed by a key the previous stage did not pin",
        "Sign the stage with the key pinned by the previous stage, or re-sign the previous stage "
        "pinning the new key (--next-stage-key).",
        ("CR 3.14", "CR 1.9"),
    ),
    "firmware.image.mismatch": Check(
        "Firmware image does not match its manifest (tampered or wrong image)",
        "Do not install the image; obtain the image and its manifest again.",
        ("CR 3.4",),
    ),
    "firmware.version.rollback": Check(
        "Firmware downgrade refused (anti-rollback counter)",
        "Install a version at least the stored counter; a fix for an older branch needs a new version.",
        ("CR 3.14", "CR 3.4"),
    ),
    "firmware.stage.mismatch": Check(
        "Boot stage manifest names another stage",
        "Sign each stage's image with its own stage name (--stage).",
        ("CR 3.14",),
    ),
    "firmware.stage.missing": Check(
        "Boot stage image or manifest missing or unreadable",
        "Restore the stage's image and manifest.",
        ("CR 3.14",),
    ),
    "firmware.verified": Check(
        "Firmware verified",
        "None; keep the trust root and the anti-rollback counters current.",
        ("CR 3.4",),
        Severity.INFO,
    ),
    "firmware.boot.verified": Check(
        "Boot chain verified",
        "None; commit the counters after a successful boot (--commit-counters).",
        ("CR 3.14", "CR 3.4"),
        Severity.INFO,
    ),
}


def is_firmware_check(rule: str | None) -> bool:
    """Whether an error's rule is one of the firmware check ids (else it is the tool's own error)."""
    return rule in CHECKS


def finding_for(check: str, target: str, evidence: str) -> Finding:
    """The finding for ``check`` at ``target``; KeyError for an unknown check id."""
    meaning = CHECKS[check]
    return Finding(
        check=check,
        severity=meaning.severity,
        target=target,
        title=meaning.title,
        evidence=evidence,
        recommendation=meaning.recommendation,
        requirements=meaning.requirements,
    )
