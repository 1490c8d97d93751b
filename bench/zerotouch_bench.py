#!/usr/bin/env python3
"""Zero-touch enrollment (issue 19) in-process, beside token enrollment measured in the same run.

Usage (from the repository root)::

    python bench/zerotouch_bench.py            # 300 enrollments each, a 100,000-entry CRL
    python bench/zerotouch_bench.py --quick    # 60 each, a 20,000-entry CRL

What is measured, on one core, SQLite in a temporary directory:

* ``pki.est.enroll(csr, token)`` — a token enrollment (the reference), and
  ``pki.zerotouch.enroll(csr, idevid)`` — an IDevID enrollment of a claimed unit (path to the
  manufacturer CA, claim look-up, reservation, issuance, registry, claim update, audit), per second;
* the manufacturer CRL check inside ``core.idevid.identify``: identifications per second with a large
  CRL configured, beside ``CertificateRevocationList.get_revoked_certificate_by_serial_number`` on the
  same CRL (what a check without the cached serial set would cost).

Figures go to stdout; nothing is asserted.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]

from otward.config import load_settings  # noqa: E402
from otward.core.idevid import ManufacturerRecord, identify  # noqa: E402
from otward.core.keys import KeyType  # noqa: E402
from otward.services.audit import Actor  # noqa: E402
from otward.services.bootstrap import initialize  # noqa: E402
from otward.services.pki import Pki  # noqa: E402
from otward.services.zerotouch import ClaimEntry  # noqa: E402
from tests.factory import Manufacturer  # noqa: E402

ACTOR = Actor(component="api", identity="est", source="127.0.0.1")


def _csr(key: ec.EllipticCurvePrivateKey, cn: str) -> bytes:
    return (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
        .sign(key, hashes.SHA256())
        .public_bytes(Encoding.DER)
    )


def _rate(count: int, seconds: float) -> float:
    return count / seconds if seconds else float("inf")


def enrollments(count: int) -> tuple[float, float]:
    manufacturer = Manufacturer("acme-sensors")
    with tempfile.TemporaryDirectory() as directory:
        data = Path(directory) / "data"
        initialize(data, key_type=KeyType.EC_P256, organization="bench")
        pki = Pki.open(load_settings(data))
        try:
            pki.owners.create("bench")
            _, token = pki.enrollment_tokens.create("bench", uses=count, ttl=timedelta(hours=1))
            pki.zerotouch.add_manufacturer(
                "acme-sensors", manufacturer.pem(), crl_url=None, crl=None, actor=ACTOR
            )
            serials = [f"SN-{i:06d}" for i in range(count)]
            pki.zerotouch.claim(
                "bench", "acme-sensors", [ClaimEntry(s) for s in serials], profile=None, actor=ACTOR
            )
            token_requests = [_csr(ec.generate_private_key(ec.SECP256R1()), f"tok-{i}") for i in range(count)]
            units = []
            for i, serial in enumerate(serials):
                key, idevid = manufacturer.idevid(serial)
                units.append((_csr(key, f"idv-{i}"), idevid.public_bytes(Encoding.DER)))
            start = time.perf_counter()
            for csr in token_requests:
                pki.est.enroll(csr, token, label=None, actor=ACTOR)
            token_rate = _rate(count, time.perf_counter() - start)
            start = time.perf_counter()
            for csr, idevid_der in units:
                pki.zerotouch.enroll(
                    csr, idevid_der, tls_version="TLSv1.3", tls_unique=None, label=None, actor=ACTOR
                )
            idevid_rate = _rate(count, time.perf_counter() - start)
        finally:
            pki.close()
    return token_rate, idevid_rate


def crl_checks(entries: int, lookups: int) -> tuple[float, float, float]:
    manufacturer = Manufacturer("acme-sensors")
    now = datetime.now(UTC)
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(manufacturer.certificate.subject)
        .last_update(now - timedelta(hours=1))
        .next_update(now + timedelta(days=7))
    )
    revoked = [
        x509.RevokedCertificateBuilder()
        .serial_number(10_000 + i)
        .revocation_date(now - timedelta(hours=1))
        .build()
        for i in range(entries)
    ]
    crl = x509.CertificateRevocationListBuilder(
        builder._issuer_name, builder._last_update, builder._next_update, [], revoked
    ).sign(manufacturer.key, hashes.SHA256())
    crl_der = crl.public_bytes(Encoding.DER)
    record = ManufacturerRecord(
        name="acme-sensors",
        ca_certificates=(manufacturer.certificate,),
        created_at=now,
        crl=crl_der,
        crl_required=True,
    )
    _, idevid = manufacturer.idevid("SN-1")
    start = time.perf_counter()
    identify(idevid, [record], now)
    first = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(lookups):
        identify(idevid, [record], now)
    cached_rate = _rate(lookups, time.perf_counter() - start)
    loaded = x509.load_der_x509_crl(crl_der)
    scans = max(5, lookups // 100)
    start = time.perf_counter()
    for _ in range(scans):
        loaded.get_revoked_certificate_by_serial_number(idevid.serial_number)
    scan_rate = _rate(scans, time.perf_counter() - start)
    return first, cached_rate, scan_rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    quick = parser.parse_args().quick
    count, entries, lookups = (60, 20_000, 500) if quick else (300, 100_000, 2_000)
    token_rate, idevid_rate = enrollments(count)
    print(f"enrollments in-process, SQLite, {count} each:")
    print(f"  token (reference)        {token_rate:8.1f} /s")
    print(f"  IDevID (zero-touch)      {idevid_rate:8.1f} /s   ratio {idevid_rate / token_rate:.2f}")
    first, cached_rate, scan_rate = crl_checks(entries, lookups)
    print(f"identify() with a {entries:,}-entry manufacturer CRL:")
    print(f"  first call (reads the CRL into a set)  {first * 1000:8.1f} ms")
    print(f"  later calls                            {cached_rate:8.1f} /s")
    print(
        f"  CRL.get_revoked_certificate_by_serial_number (reference) {scan_rate:8.1f} /s"
        f"   ratio {cached_rate / scan_rate:.0f}"
    )


if __name__ == "__main__":
    main()
