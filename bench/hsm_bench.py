#!/usr/bin/env python3
"""Issuance and OCSP signing with CA keys in a PKCS#11 token, beside the same with key files.

Usage (from the repository root; needs Debian's softhsm2)::

    python bench/hsm_bench.py            # 2000 certificates and 4000 OCSP responses per case
    python bench/hsm_bench.py --quick    # 300 and 600

For each key type (ec-p256, ec-p384, rsa-3072) two installations are made in a temporary
directory, one with encrypted key files and one with ``--key-backend pkcs11`` on a fresh
SoftHSM2 token (its own SOFTHSM2_CONF). Then, in this process, through the library:

* issuance: CSR in, checked, signed by the issuing CA, committed to SQLite (synchronous=FULL);
* OCSP: a request with a fresh nonce (so no cached answer), status looked up, response signed by
  the responder key.

Each figure is the median of 3 passes; the ratio is PKCS#11 speed / file speed. SoftHSM2 is
software (OpenSSL inside a PKCS#11 module), so the ratio shows what the PKCS#11 path costs
(session lock, C_Sign round trip, digest handling), not what a hardware HSM would do: a real HSM
or USB token signs at its own rate, often far slower for tokens and faster for network HSMs.
Temporary files are removed on exit; this is not part of the test suite and asserts no timing.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pkcs11
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import ocsp
from cryptography.x509.oid import NameOID

from otward.config import KeySettings, load_settings
from otward.core.keys import KeyType
from otward.services.bootstrap import initialize
from otward.services.pki import Pki

MODULE = Path("/usr/lib/softhsm/libsofthsm2.so")
KEY_TYPES = (KeyType.EC_P256, KeyType.EC_P384, KeyType.RSA_3072)
PASSES = 3


def median_rate(count: int, run: Callable[[], None]) -> float:
    rates = []
    for _ in range(PASSES):
        start = time.perf_counter()
        run()
        rates.append(count / (time.perf_counter() - start))
    return statistics.median(rates)


def csrs(count: int) -> list[bytes]:
    key = ec.generate_private_key(ec.SECP256R1())  # the subject key does not matter to the CA
    out = []
    for n in range(count):
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"bench-{n}")])
        csr = x509.CertificateSigningRequestBuilder().subject_name(name).sign(key, hashes.SHA256())
        out.append(csr.public_bytes(serialization.Encoding.PEM))
    return out


def measure(data_dir: Path, issue_count: int, ocsp_count: int) -> tuple[float, float]:
    pki = Pki.open(load_settings(data_dir))
    try:
        pki.issuance.issue(csrs(1)[0], profile="tls-client")  # keys loaded, token logged in
        batches = [csrs(issue_count) for _ in range(PASSES)]

        def issue() -> None:
            for csr in batches.pop():
                pki.issuance.issue(csr, profile="tls-client")

        issuance = median_rate(issue_count, issue)
        issued = pki.issuance.issue(csrs(1)[0], profile="tls-client")
        issuer = issued.chain[0]

        def answer() -> None:
            for _ in range(ocsp_count):
                request = (
                    ocsp.OCSPRequestBuilder()
                    .add_certificate(issued.certificate, issuer, hashes.SHA256())
                    .add_extension(x509.OCSPNonce(os.urandom(16)), critical=False)
                    .build()
                )
                pki.ocsp.respond(request.public_bytes(serialization.Encoding.DER))

        return issuance, median_rate(ocsp_count, answer)
    finally:
        pki.close()


def softhsm_token(directory: Path, label: str) -> None:
    (directory / "tokens").mkdir(parents=True)
    config = directory / "softhsm2.conf"
    config.write_text(f"directories.tokendir = {directory / 'tokens'}\nobjectstore.backend = file\n")
    os.environ["SOFTHSM2_CONF"] = str(config)
    subprocess.run(
        ["softhsm2-util", "--init-token", "--free", "--label", label, "--pin", "1234", "--so-pin", "5678"],
        check=True,
        capture_output=True,
        timeout=60,
    )
    pkcs11.lib(str(MODULE)).reinitialize()  # read this SOFTHSM2_CONF


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="smaller counts")
    args = parser.parse_args()
    issue_count, ocsp_count = (300, 600) if args.quick else (2000, 4000)
    if shutil.which("softhsm2-util") is None or not MODULE.is_file():
        print("needs SoftHSM2 (apt-get install softhsm2)", file=sys.stderr)
        return 2
    rows = []
    with tempfile.TemporaryDirectory(prefix="otward-hsm-bench-") as temporary:
        root = Path(temporary)
        softhsm_token(root / "softhsm", "bench")
        pin_file = root / "pin"
        pin_file.write_text("1234\n")
        pin_file.chmod(0o600)
        for key_type in KEY_TYPES:
            figures = {}
            for backend in ("file", "pkcs11"):
                data_dir = root / f"{key_type.value}-{backend}"
                keys = (
                    KeySettings(
                        backend="pkcs11",
                        pkcs11_module=MODULE,
                        pkcs11_token="bench",  # noqa: S106 - a token label, not a secret
                        pkcs11_pin_file=pin_file,
                    )
                    if backend == "pkcs11"
                    else None
                )
                initialize(data_dir, key_type=key_type, keys=keys)
                figures[backend] = measure(data_dir, issue_count, ocsp_count)
                print(
                    f"  {key_type.value:9} {backend:6}: {figures[backend][0]:8.1f} certificates/s, "
                    f"{figures[backend][1]:8.1f} OCSP responses/s",
                    flush=True,
                )
            rows.append((key_type.value, figures["file"], figures["pkcs11"]))
    print()
    print(f"issuance {issue_count} and OCSP {ocsp_count} per pass, median of {PASSES} passes, one process")
    print(
        "| CA key | issuance file /s | issuance PKCS#11 /s | ratio | OCSP file /s | OCSP PKCS#11 /s | ratio |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, (file_issue, file_ocsp), (token_issue, token_ocsp) in rows:
        print(
            f"| {name} | {file_issue:.0f} | {token_issue:.0f} | {token_issue / file_issue:.2f} "
            f"| {file_ocsp:.0f} | {token_ocsp:.0f} | {token_ocsp / file_ocsp:.2f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
