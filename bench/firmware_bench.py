"""Firmware verification: how fast ``otward firmware verify`` checks an image, next to plain hashing.

Prints, for a 64 MiB image (page cache warm), the throughput in MB/s of
  * otward's verification (manifest signature, chain to the root, streamed digest, size, version),
    in-process, as ``verify_firmware`` with the file adapter;
  * the same through the command line (``python -m otward firmware verify``, one process per check,
    so the interpreter's start-up is included);
  * ``sha256sum`` / ``sha384sum`` and ``openssl dgst -sha256`` / ``-sha384`` on the same file,
and otward's figure as a ratio of each reference (above 1: otward is faster), and the fixed cost of
one verification without the image (CMS decode, signature, chain) per second.

Run:  python bench/firmware_bench.py [--size-mib 64] [--passes 5]
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from otward.adapters.firmware_files import measure_image
from otward.core.firmware.envelope import hash_for_name, sign_content
from otward.core.firmware.manifest import Manifest, dump_manifest
from otward.core.firmware.verify import verify_firmware, verify_trusted


def _certificate(subject: str, key, issuer: tuple[str, object] | None, *, ca: bool) -> x509.Certificate:
    now = datetime.now(UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer[0])]) if issuer else name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(not ca, False, False, False, False, ca, ca, False, False), critical=True)
    )
    if not ca:
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), critical=False
        )
    return builder.sign(issuer[1] if issuer else key, hashes.SHA256())  # type: ignore[arg-type]


def _median_seconds(action: Callable[[], object], passes: int) -> float:
    action()  # warm the page cache and the code paths
    times = []
    for _ in range(passes):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _run(*command: str) -> None:
    subprocess.run(command, check=True, capture_output=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size-mib", type=int, default=64)
    parser.add_argument("--passes", type=int, default=5)
    args = parser.parse_args()
    size = args.size_mib << 20
    megabytes = size / 1e6
    with tempfile.TemporaryDirectory(prefix="otward-fw-bench-") as scratch:
        directory = Path(scratch)
        image = directory / "image.bin"
        with image.open("wb") as handle:
            block = hashlib.shake_256(b"otward firmware bench").digest(1 << 20)
            for _ in range(args.size_mib):
                handle.write(block)
        root_key = ec.generate_private_key(ec.SECP256R1())
        root = _certificate("bench root", root_key, None, ca=True)
        (directory / "root.pem").write_bytes(root.public_bytes(serialization.Encoding.PEM))
        print(f"image {args.size_mib} MiB, median of {args.passes} passes (warm page cache)")
        print(f"{'digest':8} {'what':38} {'MB/s':>8} {'otward in-process / this':>25}")
        for digest, curve, tool in (
            ("sha-256", ec.SECP256R1(), "sha256sum"),
            ("sha-384", ec.SECP384R1(), "sha384sum"),
        ):
            name = digest.replace("-", "")
            key = ec.generate_private_key(curve)
            signer = _certificate("bench signer", key, ("bench root", root_key), ca=False)
            facts = measure_image(image, name)
            manifest = Manifest("firmware", 1, facts.size, digest, facts.digest, datetime.now(UTC))
            envelope = sign_content(dump_manifest(manifest), signer, key, [], hash_for_name(name))
            manifest_file = directory / f"{name}.manifest"
            manifest_file.write_bytes(envelope)

            def verify(envelope: bytes = envelope, name: str = name) -> None:
                verify_firmware(envelope, lambda n: measure_image(image, n), [root], datetime.now(UTC), 1)

            otward = _median_seconds(verify, args.passes)
            cli = _median_seconds(
                lambda mf=manifest_file: _run(
                    sys.executable,
                    "-m",
                    "otward",
                    "firmware",
                    "verify",
                    str(image),
                    str(mf),
                    "--trust",
                    str(directory / "root.pem"),
                ),
                args.passes,
            )
            coreutils = _median_seconds(lambda t=tool: _run(t, str(image)), args.passes)
            openssl = _median_seconds(
                lambda n=name: _run("openssl", "dgst", f"-{n}", str(image)), args.passes
            )
            rows = (
                ("otward verify (in-process)", otward),
                ("otward firmware verify (CLI process)", cli),
                (tool, coreutils),
                (f"openssl dgst -{name}", openssl),
            )
            for label, seconds in rows:
                print(f"{digest:8} {label:38} {megabytes / seconds:8.0f} {seconds / otward:25.2f}")
            count = 200
            fixed = _median_seconds(
                lambda e=envelope, n=count: [verify_trusted(e, [root], datetime.now(UTC)) for _ in range(n)],
                args.passes,
            )
            print(f"{digest:8} manifest only (CMS decode, signature, chain): {count / fixed:,.0f} per second")


if __name__ == "__main__":
    main()
