#!/usr/bin/env python3
"""Issuance throughput with the CA lifecycle in place, beside the raw ``cryptography`` pipeline.

Usage (from the repository root)::

    python bench/ca_lifecycle_bench.py [--count N]

Issuance looks the signing CA up through rollover successors and checks its expiry on every
certificate; this measures library issuance (CSR in, checked, signed, committed to SQLite with
synchronous=FULL) from the default CA of a fresh installation and from a CA that was rolled over
(``issuing`` → ``issuing-g2``, the successor found through the cache), next to a raw build + sign
of the same leaf on one core. Runs in a temporary directory, asserts no timing.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from otward.config import load_settings
from otward.core.keys import KeyType
from otward.services.bootstrap import initialize
from otward.services.pki import Pki


def _csrs(count: int) -> list[bytes]:
    out = []
    for i in range(count):
        key = ec.generate_private_key(ec.SECP256R1())
        csr = (
            x509.CertificateSigningRequestBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"op-{i}")]))
            .sign(key, hashes.SHA256())
        )
        out.append(csr.public_bytes(serialization.Encoding.PEM))
    return out


def _rate(run: Callable[[bytes], object], csrs: list[bytes]) -> float:
    start = time.perf_counter()
    for csr in csrs:
        run(csr)
    return len(csrs) / (time.perf_counter() - start)


def _raw(issuer_key: ec.EllipticCurvePrivateKey, issuer: x509.Name) -> Callable[[bytes], object]:
    def run(pem: bytes) -> object:
        csr = x509.load_pem_x509_csr(pem)
        assert csr.is_signature_valid  # noqa: S101 - part of what is measured
        now = datetime.now(UTC)
        return (
            x509.CertificateBuilder()
            .subject_name(csr.subject)
            .issuer_name(issuer)
            .public_key(csr.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now)
            .not_valid_after(now + timedelta(days=365))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .sign(issuer_key, hashes.SHA256())
            .public_bytes(serialization.Encoding.PEM)
        )

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--count", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        initialize(data, key_type=KeyType.EC_P256, organization="bench")
        pki = Pki.open(load_settings(data))
        try:
            key = ec.generate_private_key(ec.SECP256R1())
            raw = _raw(key, x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bench CA")]))
            figures: dict[str, list[float]] = {"raw": [], "issuing": [], "rolled-over": []}
            for _ in range(args.rounds):
                figures["raw"].append(_rate(raw, _csrs(args.count)))
                figures["issuing"].append(
                    _rate(lambda c: pki.issuance.issue(c, profile="tls-client"), _csrs(args.count))
                )
            if hasattr(pki.authorities, "rollover"):
                pki.authorities.rollover("issuing")
                pki.revocation.publish_crl("issuing-g2")
                for _ in range(args.rounds):
                    figures["rolled-over"].append(
                        _rate(
                            lambda c: pki.issuance.issue(c, profile="tls-client", ca="issuing"),
                            _csrs(args.count),
                        )
                    )
        finally:
            pki.close()
    raw_rate = statistics.median(figures["raw"])
    print(f"{'what':<46} {'per s':>8} {'vs raw':>7}")
    print(f"{'raw cryptography: parse + verify CSR, sign leaf':<46} {raw_rate:>8.0f} {1:>7.2f}")
    for label, key in (
        ("library issue, default CA", "issuing"),
        ("library issue, CA rolled over (via g2)", "rolled-over"),
    ):
        if figures[key]:
            rate = statistics.median(figures[key])
            print(f"{label:<46} {rate:>8.0f} {rate / raw_rate:>7.2f}")


if __name__ == "__main__":
    main()
