#!/usr/bin/env python3
"""otward throughput next to the same machine's references, measured in one run.

Usage (from the repository root, after ``pip install -e '.[test]'`` and
``apt-get install -y apache2-utils``)::

    python bench/pki_bench.py            # full run, a few minutes on 2 cores
    python bench/pki_bench.py --quick    # smaller counts, under two minutes

What is measured, each beside a reference taken in the same run:

* issuance through the library (CSR in, checked, signed, committed to SQLite with
  synchronous=FULL) and through the HTTPS API with keep-alive, against the raw
  ``cryptography`` pipeline (parse + verify CSR, build + sign leaf, PEM) on one
  core, and against ``openssl ca -batch`` (one process per certificate);
* OCSP responses per second from ``otward serve --workers 2`` under ApacheBench,
  with and without a nonce, against ``openssl ocsp`` answering the same kind of
  query under the same ``ab`` command (inside a private network namespace, because
  ``openssl ocsp -port`` binds every interface), and against the raw
  ``cryptography`` request-parse + response-sign rate on one core;
* CRL generation from the database with 10,000 and 100,000 revoked entries,
  against a raw ``cryptography`` CRL build + sign and ``openssl ca -gencrl``.

Only loopback addresses are used, every loop is bounded, and every process,
network namespace and temporary directory the script creates is removed on exit.
This is not part of the test suite and asserts no timing.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import json
import os
import platform
import pstats
import re
import secrets
import shutil
import signal
import socket
import sqlite3
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import Any, TypeVar

import cryptography
import httpx
from cryptography import x509
from cryptography.hazmat.backends.openssl import backend as openssl_backend
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import ocsp
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from sqlalchemy import func, insert, select

import otward
from otward.adapters.db.schema import certificates
from otward.config import load_settings
from otward.services.bootstrap import initialize
from otward.services.pki import Pki

PROFILE = "tls-client"
ISSUING_CA = "issuing"
LOOPBACK = "127.0.0.1"
SERVER_START_SECONDS = 60.0
SUBPROCESS_TIMEOUT = 600.0
OPENSSL_OCSP_PORT = 18080  # inside the private namespace only

T = TypeVar("T")

OPENSSL_OCSP_NOTE = (
    "openssl ocsp signs every response afresh and serves one request at a time per process.",
    "It is restarted for every ab run: OpenSSL 3.0's responder spins at 100% CPU and stops answering",
    "once a client connects and closes without sending a request, which ab sometimes does at the end",
    "of a run, and with ab -k at once. So it is not run with -k; the table compares new-connection runs.",
)

# --------------------------------------------------------------------------------------------------
# sizes and results
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sizes:
    csrs: int  # CSRs per timed pass (reference and library)
    repeats: int  # passes; the median is reported
    openssl_ca: int  # certificates issued with `openssl ca`, one process each
    api_requests: int  # issuance requests through the HTTPS API, per client mode
    api_threads: int
    ocsp_raw: int  # raw cryptography OCSP responses per pass
    ab_requests: int  # ApacheBench requests per run of an OCSP case (repeats runs each)
    ab_concurrency: int
    crl_sizes: tuple[int, ...]


FULL = Sizes(
    csrs=3000,
    repeats=3,
    openssl_ca=200,
    api_requests=1000,
    api_threads=4,
    ocsp_raw=5000,
    ab_requests=20_000,
    ab_concurrency=4,
    crl_sizes=(10_000, 100_000),
)
QUICK = Sizes(
    csrs=600,
    repeats=3,
    openssl_ca=50,
    api_requests=200,
    api_threads=4,
    ocsp_raw=2000,
    ab_requests=3000,
    ab_concurrency=4,
    crl_sizes=(10_000,),
)


@dataclass
class Row:
    """One line of the final table. ``unit`` is "/s" (higher is better) or "s" (lower is better)."""

    figure: str
    unit: str
    otward: float | None = None
    crypto: float | None = None
    openssl: float | None = None
    target: float | None = None
    note: str = ""

    def speed_ratio(self, reference: float | None) -> float | None:
        """otward speed / reference speed: below 1 means otward is slower, whatever the unit."""
        if self.otward is None or reference is None or self.otward <= 0 or reference <= 0:
            return None
        return self.otward / reference if self.unit == "/s" else reference / self.otward

    def met(self) -> bool | None:
        if self.target is None or self.otward is None:
            return None
        return self.otward >= self.target if self.unit == "/s" else self.otward < self.target


@dataclass
class Report:
    rows: list[Row] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)

    def row(self, figure: str, unit: str, **values: Any) -> Row:
        row = Row(figure, unit, **values)
        self.rows.append(row)
        return row

    def skip(self, what: str, reason: str) -> None:
        message = f"{what}: skipped ({reason})"
        self.skipped.append(message)
        say(f"  ! {message}")


def say(text: str = "") -> None:
    print(text, flush=True)


def section(title: str) -> None:
    say()
    say(f"== {title}")


# --------------------------------------------------------------------------------------------------
# small helpers: tools, timing, CPU pinning, processes, namespaces
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Tools:
    openssl: str | None
    ab: str | None
    ip: str | None

    @classmethod
    def find(cls) -> Tools:
        return cls(shutil.which("openssl"), shutil.which("ab"), shutil.which("ip"))


def median_rate(passes: int, count: int, run: Callable[[], None]) -> float:
    """Median over ``passes`` of ``count`` operations per second, ``run`` doing ``count`` of them."""
    rates = []
    for _ in range(passes):
        start = time.perf_counter()
        run()
        rates.append(count / (time.perf_counter() - start))
    return statistics.median(rates)


def timed(passes: int, run: Callable[[], T]) -> tuple[float, T]:
    """Median wall time of ``passes`` calls of ``run``, and the last call's result."""
    durations = []
    for _ in range(passes):
        start = time.perf_counter()
        result = run()
        durations.append(time.perf_counter() - start)
    return statistics.median(durations), result


@contextlib.contextmanager
def one_core() -> Iterator[str]:
    """Pin this process to a single CPU for the duration (no-op where affinity is unsupported)."""
    if not hasattr(os, "sched_setaffinity"):
        yield "not pinned"
        return
    before = os.sched_getaffinity(0)
    cpu = min(before)
    os.sched_setaffinity(0, {cpu})
    try:
        yield f"pinned to CPU {cpu}"
    finally:
        os.sched_setaffinity(0, before)


def free_port() -> int:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def version_of(command: list[str]) -> str:
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)
    except OSError:
        return "not found"
    text = (result.stdout or result.stderr).strip()
    return text.splitlines()[0] if text else "unknown"


def stop_process_group(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the process group we started, wait, then SIGKILL whatever is left of it."""
    # Started with process_group=0 (setpgid), not start_new_session: `openssl ocsp -multi` calls
    # setpgid() itself, which fails for a session leader, and then exits without serving.
    pgid = process.pid
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGTERM)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
        process.wait(timeout=15)
    for _ in range(50):  # children (worker processes) may outlive the leader by a moment
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)


@contextlib.contextmanager
def running(command: list[str], log_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, process_group=0
        )
    try:
        yield process
    finally:
        stop_process_group(process)


def log_tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


class NamespaceError(Exception):
    """The private network namespace could not be set up."""


def _ip(ip: str, *args: str) -> None:
    try:
        subprocess.run([ip, *args], check=True, capture_output=True, timeout=30)
    except subprocess.CalledProcessError as exc:
        message = exc.stderr.decode(errors="replace").strip() or f"exit status {exc.returncode}"
        raise NamespaceError(f"'ip {' '.join(args)}' failed: {message}") from exc
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise NamespaceError(f"'ip {' '.join(args)}' failed: {exc}") from exc


@contextlib.contextmanager
def network_namespace(ip: str) -> Iterator[str]:
    """A private network namespace with only its own loopback up; deleted on exit."""
    name = f"otward-bench-{os.getpid()}"
    _ip(ip, "netns", "add", name)
    try:
        _ip(ip, "netns", "exec", name, ip, "link", "set", "lo", "up")
        yield name
    finally:
        subprocess.run([ip, "netns", "del", name], check=False, capture_output=True, timeout=30)


# --------------------------------------------------------------------------------------------------
# key material, CSRs and the raw cryptography references
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Ca:
    key: ec.EllipticCurvePrivateKey
    certificate: x509.Certificate

    @property
    def aki(self) -> x509.AuthorityKeyIdentifier:
        ski = self.certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)

    def write(self, directory: Path) -> tuple[Path, Path]:
        cert_path, key_path = directory / "ca.pem", directory / "ca.key"
        cert_path.write_bytes(self.certificate.public_bytes(serialization.Encoding.PEM))
        key_path.write_bytes(
            self.key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        key_path.chmod(0o600)
        return cert_path, key_path


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Bench"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def make_ca(common_name: str) -> Ca:
    """A P-256 self-signed CA, as the references sign with."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(_name(common_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return Ca(key, certificate)


def make_responder(ca: Ca) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """A delegated OCSP responder (EKU OCSPSigning) under ``ca``."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(_name("Bench OCSP responder"))
        .issuer_name(ca.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.OCSP_SIGNING]), critical=False)
        .add_extension(x509.OCSPNoCheck(), critical=False)
        .add_extension(ca.aki, critical=False)
        .sign(ca.key, hashes.SHA256())
    )
    return key, certificate


def make_csrs(count: int) -> list[bytes]:
    """PEM CSRs from fresh P-256 keys: CN=bench-N and a DNS SAN (generated outside any timed loop)."""
    csrs = []
    for i in range(count):
        key = ec.generate_private_key(ec.SECP256R1())
        csr = (
            x509.CertificateSigningRequestBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"bench-{i}")]))
            .add_extension(
                x509.SubjectAlternativeName([x509.DNSName(f"bench-{i}.bench.test")]), critical=False
            )
            .sign(key, hashes.SHA256())
        )
        csrs.append(csr.public_bytes(serialization.Encoding.PEM))
    return csrs


_CLIENT_KEY_USAGE = x509.KeyUsage(
    digital_signature=True,
    content_commitment=False,
    key_encipherment=False,
    data_encipherment=False,
    key_agreement=False,
    key_cert_sign=False,
    crl_sign=False,
    encipher_only=False,
    decipher_only=False,
)


def raw_issue(csr_pem: bytes, ca: Ca, aki: x509.AuthorityKeyIdentifier, now: datetime) -> bytes:
    """Reference pipeline: PEM CSR -> verified -> leaf (SAN, KU, EKU, SKI, AKI, BC) signed -> PEM."""
    csr = x509.load_pem_x509_csr(csr_pem)
    if not csr.is_signature_valid:
        raise RuntimeError("CSR signature does not verify")
    public_key = csr.public_key()
    san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    certificate = (
        x509.CertificateBuilder()
        .subject_name(csr.subject)
        .issuer_name(ca.certificate.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(seconds=60))
        .not_valid_after(now + timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_CLIENT_KEY_USAGE, critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(aki, critical=False)
        .add_extension(san, critical=False)
        .sign(ca.key, hashes.SHA256())
    )
    return certificate.public_bytes(serialization.Encoding.PEM)


def raw_ocsp_answer(
    request_der: bytes, responder_key: ec.EllipticCurvePrivateKey, responder: x509.Certificate
) -> bytes:
    """Reference OCSP pipeline: DER request parsed -> 'good' response built, signed -> DER."""
    request = ocsp.load_der_ocsp_request(request_der)
    now = datetime.now(UTC)
    builder = (
        ocsp.OCSPResponseBuilder()
        .add_response_by_hash(
            issuer_name_hash=request.issuer_name_hash,
            issuer_key_hash=request.issuer_key_hash,
            serial_number=request.serial_number,
            algorithm=hashes.SHA1(),  # noqa: S303 - the CertID hash (an identifier), as requested
            cert_status=ocsp.OCSPCertStatus.GOOD,
            this_update=now,
            next_update=now + timedelta(hours=1),
            revocation_time=None,
            revocation_reason=None,
        )
        .responder_id(ocsp.OCSPResponderEncoding.HASH, responder)
        .certificates([responder])
    )
    for extension in request.extensions:
        if isinstance(extension.value, x509.OCSPNonce):
            builder = builder.add_extension(extension.value, critical=False)
    return builder.sign(responder_key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


@dataclass(frozen=True)
class RevokedRow:
    serial_number: int
    revoked_at: datetime
    reason: x509.ReasonFlags


def raw_crl(ca: Ca, revoked: Sequence[RevokedRow]) -> bytes:
    """Reference CRL: every entry built, the list given to the builder in one go, signed, DER."""
    entries = []
    for row in revoked:
        builder = x509.RevokedCertificateBuilder(
            serial_number=row.serial_number, revocation_date=row.revoked_at
        )
        if row.reason is not x509.ReasonFlags.unspecified:
            builder = builder.add_extension(x509.CRLReason(row.reason), critical=False)
        entries.append(builder.build())
    now = datetime.now(UTC)
    crl = x509.CertificateRevocationListBuilder(
        issuer_name=ca.certificate.subject,
        last_update=now,
        next_update=now + timedelta(days=7),
        extensions=[
            x509.Extension(x509.oid.ExtensionOID.AUTHORITY_KEY_IDENTIFIER, False, ca.aki),
            x509.Extension(x509.oid.ExtensionOID.CRL_NUMBER, False, x509.CRLNumber(1)),
        ],
        revoked_certificates=entries,
    ).sign(ca.key, hashes.SHA256())
    return crl.public_bytes(serialization.Encoding.DER)


def ocsp_request(certificate: x509.Certificate, issuer: x509.Certificate, *, nonce: bool) -> bytes:
    """A DER request with a SHA-1 CertID, as ``openssl ocsp`` sends by default."""
    sha1 = hashes.SHA1()  # noqa: S303 - CertID hash, an identifier (openssl's default), not a signature
    builder = ocsp.OCSPRequestBuilder().add_certificate(certificate, issuer, sha1)
    if nonce:
        builder = builder.add_extension(x509.OCSPNonce(secrets.token_bytes(16)), critical=False)
    return builder.build().public_bytes(serialization.Encoding.DER)


def check_ocsp_response(der: bytes, request_der: bytes) -> str:
    """Raise unless ``der`` is a successful, correctly signed 'good' answer to ``request_der``."""
    request = ocsp.load_der_ocsp_request(request_der)
    response = ocsp.load_der_ocsp_response(der)
    if response.response_status is not ocsp.OCSPResponseStatus.SUCCESSFUL:
        raise RuntimeError(f"OCSP response status {response.response_status.name}")
    if response.serial_number != request.serial_number:
        raise RuntimeError("OCSP response is about another serial number")
    if response.certificate_status is not ocsp.OCSPCertStatus.GOOD:
        raise RuntimeError(f"OCSP certificate status {response.certificate_status.name}")
    wanted = [e.value.nonce for e in request.extensions if isinstance(e.value, x509.OCSPNonce)]
    echoed = [e.value.nonce for e in response.extensions if isinstance(e.value, x509.OCSPNonce)]
    if wanted != echoed:
        raise RuntimeError("OCSP response does not echo the request nonce")
    if not response.certificates:
        raise RuntimeError("OCSP response carries no responder certificate")
    signer_key = response.certificates[0].public_key()
    if not isinstance(signer_key, ec.EllipticCurvePublicKey) or response.signature_hash_algorithm is None:
        raise RuntimeError("unexpected OCSP responder key type")
    signer_key.verify(
        response.signature, response.tbs_response_bytes, ec.ECDSA(response.signature_hash_algorithm)
    )
    nonce_text = " with nonce echoed" if wanted else ""
    return f"successful, good, signature verifies{nonce_text} ({len(der)} bytes)"


# --------------------------------------------------------------------------------------------------
# ApacheBench
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AbResult:
    rate: float
    complete: int
    failed: int  # connect, receive and exception failures: real ones
    length_mismatches: int  # ab counts a body of another length as failed; fresh ECDSA signatures vary
    non_2xx: int
    keep_alive: int | None

    @property
    def clean(self) -> bool:
        return self.failed == 0 and self.non_2xx == 0

    @classmethod
    def median_of(cls, runs: Sequence[AbResult]) -> AbResult:
        """The median rate of ``runs``, with their request and failure counts added up."""
        keep_alive = [r.keep_alive for r in runs if r.keep_alive is not None]
        return cls(
            rate=statistics.median(r.rate for r in runs),
            complete=sum(r.complete for r in runs),
            failed=sum(r.failed for r in runs),
            length_mismatches=sum(r.length_mismatches for r in runs),
            non_2xx=sum(r.non_2xx for r in runs),
            keep_alive=sum(keep_alive) if keep_alive else None,
        )

    def describe(self) -> str:
        text = f"{self.rate:9,.0f} /s  (median; {self.complete} complete"
        if self.keep_alive is not None:
            text += f", {self.keep_alive} keep-alive"
        if self.length_mismatches:
            text += f", {self.length_mismatches} of other length (fresh signatures)"
        if not self.clean:
            text += f", {self.failed} FAILED, {self.non_2xx} non-2xx"
        return text + ")"


def _ab_number(pattern: str, output: str, default: float | None = None) -> float:
    match = re.search(pattern, output)
    if match is None:
        if default is not None:
            return default
        raise RuntimeError(f"unexpected ab output (no {pattern!r}):\n{output[-1500:]}")
    return float(match.group(1))


def run_ab(
    ab: str,
    url: str,
    body: Path,
    *,
    requests: int,
    concurrency: int,
    keep_alive: bool,
    prefix: Sequence[str] = (),
) -> AbResult:
    command = [*prefix, ab, "-q", "-s", "30", "-n", str(requests), "-c", str(concurrency)]
    if keep_alive:
        command.append("-k")
    command += ["-p", str(body), "-T", "application/ocsp-request", url]
    result = subprocess.run(command, capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT, check=False)
    output = result.stdout + result.stderr
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} exited {result.returncode}:\n{output[-1500:]}")
    length = int(_ab_number(r"Length: (\d+)", output, 0))
    return AbResult(
        rate=_ab_number(r"Requests per second:\s+([\d.]+)", output),
        complete=int(_ab_number(r"Complete requests:\s+(\d+)", output)),
        failed=int(_ab_number(r"Failed requests:\s+(\d+)", output)) - length,
        length_mismatches=length,
        non_2xx=int(_ab_number(r"Non-2xx responses:\s+(\d+)", output, 0)),
        keep_alive=int(_ab_number(r"Keep-Alive requests:\s+(\d+)", output)) if keep_alive else None,
    )


@dataclass(frozen=True)
class OcspCase:
    nonce: bool
    keep_alive: bool

    @property
    def label(self) -> str:
        connection = "keep-alive (ab -k)" if self.keep_alive else "new connection per request"
        return f"{'nonce' if self.nonce else 'no nonce'}, {connection}"


MAIN_CASES = (OcspCase(nonce=False, keep_alive=False), OcspCase(nonce=True, keep_alive=False))
KEEP_ALIVE_CASES = (OcspCase(nonce=False, keep_alive=True), OcspCase(nonce=True, keep_alive=True))


def run_ab_cases(
    ab: str,
    url: str,
    files: dict[bool, Path],
    cases: Sequence[OcspCase],
    sizes: Sizes,
    *,
    prefix: Sequence[str] = (),
    tag: str = "",
    fresh_server: Callable[[], contextlib.AbstractContextManager[object]] | None = None,
) -> dict[str, AbResult]:
    """``sizes.repeats`` ab runs of each case: the median rate, the counts added up.

    Without ``fresh_server`` the server is warmed up once with 1,000 requests; with it, each ab
    run gets a server started afresh for it (and no warm-up). A failing ab run is reported and
    its case left out; it does not end the benchmark.
    """
    if fresh_server is None:
        run_ab(ab, url, files[True], requests=1000, concurrency=4, keep_alive=False, prefix=prefix)
    results: dict[str, AbResult] = {}
    for case in cases:
        runs = []
        try:
            for _ in range(sizes.repeats):
                with fresh_server() if fresh_server else contextlib.nullcontext():
                    runs.append(
                        run_ab(
                            ab,
                            url,
                            files[case.nonce],
                            requests=sizes.ab_requests,
                            concurrency=sizes.ab_concurrency,
                            keep_alive=case.keep_alive,
                            prefix=prefix,
                        )
                    )
        except (RuntimeError, subprocess.TimeoutExpired) as exc:
            say(f"  {tag}{case.label:45} FAILED: {str(exc).strip()[-300:]}")
            continue
        results[case.label] = combined = AbResult.median_of(runs)
        say(f"  {tag}{case.label:45} {combined.describe()}")
    return results


# --------------------------------------------------------------------------------------------------
# otward server process
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Server:
    data_dir: Path
    https_port: int
    http_port: int

    @property
    def https_url(self) -> str:
        return f"https://{LOOPBACK}:{self.https_port}"

    @property
    def ocsp_url(self) -> str:
        return f"http://{LOOPBACK}:{self.http_port}/ocsp"

    def ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.data_dir / "root.pem"))

    def client(self) -> httpx.Client:
        token = (self.data_dir / "admin.token").read_text().strip()
        return httpx.Client(
            base_url=self.https_url,
            verify=self.ssl_context(),
            headers={"Authorization": f"Bearer {token}"},
            timeout=30.0,
        )


class ServerError(RuntimeError):
    """``otward serve`` did not come up."""


@contextlib.contextmanager
def otward_server(server: Server, *, workers: int, log_path: Path) -> Iterator[Server]:
    command = [
        sys.executable,
        "-m",
        "otward",
        "serve",
        "--data",
        str(server.data_dir),
        "--port",
        str(server.https_port),
        "--http-port",
        str(server.http_port),
        "--workers",
        str(workers),
    ]
    with running(command, log_path) as process:
        deadline = time.monotonic() + SERVER_START_SECONDS
        context = server.ssl_context()
        while True:
            if process.poll() is not None:
                raise ServerError(f"otward serve exited with {process.returncode}:\n{log_tail(log_path)}")
            try:
                response = httpx.get(f"{server.https_url}/healthz", verify=context, timeout=2.0)
                if response.status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise ServerError(f"otward serve not healthy after {SERVER_START_SECONDS:.0f} s")
            time.sleep(0.2)
        yield server


# --------------------------------------------------------------------------------------------------
# the benchmark steps
# --------------------------------------------------------------------------------------------------


def step_reference_issuance(report: Report, csrs: Sequence[bytes], sizes: Sizes) -> float:
    section("1. reference: raw cryptography issuance pipeline (one core)")
    ca = make_ca("Bench reference CA")
    aki = ca.aki
    now = datetime.now(UTC)
    for csr in csrs[:50]:
        raw_issue(csr, ca, aki, now)

    def run() -> None:
        for csr in csrs:
            raw_issue(csr, ca, aki, now)

    with one_core() as pinned:
        rate = median_rate(sizes.repeats, len(csrs), run)
    say(f"  parse+verify CSR, build leaf (SAN KU EKU SKI AKI BC), sign P-256, PEM: {rate:,.0f} /s ({pinned})")
    report.details["crypto_issuance_per_s"] = rate
    return rate


def step_reference_ocsp(report: Report, sizes: Sizes) -> float:
    section("1b. reference: raw cryptography OCSP pipeline (one core)")
    ca = make_ca("Bench OCSP reference CA")
    responder_key, responder = make_responder(ca)
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    leaf = (
        x509.CertificateBuilder()
        .subject_name(_name("bench-ocsp"))
        .issuer_name(ca.certificate.subject)
        .public_key(leaf_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + timedelta(days=30))
        .sign(ca.key, hashes.SHA256())
    )
    request = ocsp_request(leaf, ca.certificate, nonce=True)
    check_ocsp_response(raw_ocsp_answer(request, responder_key, responder), request)

    def run() -> None:
        for _ in range(sizes.ocsp_raw):
            raw_ocsp_answer(request, responder_key, responder)

    with one_core() as pinned:
        rate = median_rate(sizes.repeats, sizes.ocsp_raw, run)
    say(f"  parse request, build 'good' response with nonce, sign P-256, DER: {rate:,.0f} /s ({pinned})")
    report.details["crypto_ocsp_per_s"] = rate
    return rate


def open_library_installation(work: Path) -> Pki:
    data = work / "library-data"
    initialize(data, organization="Bench", public_url=f"http://{LOOPBACK}:{free_port()}")
    return Pki.open(load_settings(data))


def durability_settings(pki: Pki) -> str:
    with pki.stores.database.engine.connect() as conn:
        journal = conn.exec_driver_sql("PRAGMA journal_mode").scalar()
        synchronous = conn.exec_driver_sql("PRAGMA synchronous").scalar()
    names = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}
    return f"journal_mode={journal}, synchronous={names.get(int(synchronous or 0), synchronous)}"


def count_end_entities(pki: Pki) -> int:
    with pki.stores.database.engine.connect() as conn:
        stmt = select(func.count()).select_from(certificates).where(certificates.c.kind == "end-entity")
        return int(conn.execute(stmt).scalar_one())


def step_library_issuance(
    report: Report, pki: Pki, csrs: Sequence[bytes], sizes: Sizes, *, profile: bool
) -> float:
    section("2. otward library issuance: Pki.issuance.issue(csr, profile='tls-client') (one core)")
    say(f"  SQLite {sqlite3.sqlite_version}, {durability_settings(pki)}; one commit per certificate")
    first = pki.issuance.issue(csrs[0], profile=PROFILE, ca=ISSUING_CA)
    san = first.certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    say(f"  sample: serial {first.serial}, SAN {san.get_values_for_type(x509.DNSName)}")
    for csr in csrs[1:50]:
        pki.issuance.issue(csr, profile=PROFILE, ca=ISSUING_CA)
    before = count_end_entities(pki)

    def run() -> None:
        for csr in csrs:
            pki.issuance.issue(csr, profile=PROFILE, ca=ISSUING_CA)

    with one_core() as pinned:
        rate = median_rate(sizes.repeats, len(csrs), run)
    stored = count_end_entities(pki) - before
    if stored != sizes.repeats * len(csrs):
        raise RuntimeError(f"expected {sizes.repeats * len(csrs)} stored certificates, found {stored}")
    say(f"  {rate:,.0f} certificates/s ({pinned}; {stored} rows committed and counted back)")
    report.details["library_issuance_per_s"] = rate

    def run_threads() -> None:
        parts = [csrs[i::4] for i in range(4)]

        def worker(part: Sequence[bytes]) -> None:
            for csr in part:
                pki.issuance.issue(csr, profile=PROFILE, ca=ISSUING_CA)

        threads = [threading.Thread(target=worker, args=(part,)) for part in parts]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    before = count_end_entities(pki)
    with one_core() as pinned:
        threaded_rate = median_rate(sizes.repeats, len(csrs), run_threads)
    stored = count_end_entities(pki) - before
    if stored != sizes.repeats * len(csrs):
        raise RuntimeError(f"expected {sizes.repeats * len(csrs)} stored certificates, found {stored}")
    say(
        f"  issue() from 4 threads (group commit shares durable commits): {threaded_rate:,.0f} certificates/s"
    )
    report.details["library_threaded_issuance_per_s"] = threaded_rate

    batch = 100

    def run_batches() -> None:
        for start in range(0, len(csrs), batch):
            pki.issuance.issue_many(csrs[start : start + batch], profile=PROFILE, ca=ISSUING_CA)

    before = count_end_entities(pki)
    with one_core() as pinned:
        batch_rate = median_rate(sizes.repeats, len(csrs), run_batches)
    stored = count_end_entities(pki) - before
    if stored != sizes.repeats * len(csrs):
        raise RuntimeError(f"expected {sizes.repeats * len(csrs)} stored certificates, found {stored}")
    say(f"  issue_many, batches of {batch} (one durable commit per batch): {batch_rate:,.0f} certificates/s")
    report.details["library_batch_issuance_per_s"] = batch_rate
    if profile:
        profiler = cProfile.Profile()
        with one_core():
            profiler.enable()
            run()
            profiler.disable()
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(30)
        say("  --profile: cProfile of one pass, by cumulative time")
        say(out.getvalue())
    return rate


def step_openssl_ca(
    report: Report, tools: Tools, work: Path, ca: Ca, csrs: Sequence[bytes], count: int
) -> tuple[float | None, Path | None]:
    """``openssl ca -batch``, one process per certificate. Returns the rate and the CA directory."""
    section(f"3. reference: openssl ca -batch, one process per certificate ({count} CSRs)")
    if tools.openssl is None:
        report.skip("openssl ca", "openssl not found")
        return None, None
    directory = work / "openssl-ca"
    (directory / "certs").mkdir(parents=True)
    (directory / "csr").mkdir()
    (directory / "out").mkdir()
    ca.write(directory)
    (directory / "index.txt").write_text("")
    (directory / "index.txt.attr").write_text("unique_subject = no\n")
    (directory / "serial").write_text("1000\n")
    (directory / "crlnumber").write_text("1000\n")
    config = directory / "openssl.cnf"
    config.write_text(openssl_ca_config(directory))
    paths = []
    for i, csr in enumerate(csrs[: count + 1]):
        path = directory / "csr" / f"{i}.pem"
        path.write_bytes(csr)
        paths.append(path)

    def issue(i: int) -> None:
        command = [tools.openssl or "openssl", "ca", "-batch", "-notext", "-config", str(config)]
        command += ["-in", str(paths[i]), "-out", str(directory / "out" / f"{i}.pem")]
        result = subprocess.run(command, capture_output=True, timeout=60, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"openssl ca failed: {result.stderr.decode(errors='replace')[-800:]}")

    issue(0)  # warm-up, not timed
    start = time.perf_counter()
    for i in range(1, count + 1):
        issue(i)
    rate = count / (time.perf_counter() - start)
    say(f"  {rate:,.0f} certificates/s (no fsync; index.txt rewritten per certificate)")
    report.details["openssl_ca_per_s"] = rate
    return rate, directory


def openssl_ca_config(directory: Path) -> str:
    return f"""\
[ ca ]
default_ca = bench_ca

[ bench_ca ]
dir = {directory}
database = $dir/index.txt
new_certs_dir = $dir/certs
serial = $dir/serial
crlnumber = $dir/crlnumber
certificate = $dir/ca.pem
private_key = $dir/ca.key
default_md = sha256
default_days = 365
default_crl_days = 7
policy = bench_policy
x509_extensions = leaf_ext
crl_extensions = crl_ext
copy_extensions = copy
unique_subject = no

[ bench_policy ]
commonName = supplied

[ leaf_ext ]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always

[ crl_ext ]
authorityKeyIdentifier = keyid:always
"""


def _utc_time(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%y%m%d%H%M%SZ")


_OPENSSL_REASONS = {x509.ReasonFlags.key_compromise: "keyCompromise"}


def step_crl(
    report: Report,
    tools: Tools,
    pki: Pki,
    openssl_ca_dir: Path | None,
    reference_ca: Ca,
    sizes: Sizes,
    work: Path,
) -> None:
    section("6. CRL generation from the database: RevocationService.publish_crl('issuing')")
    say("  revoked rows are INSERTed directly into the certificates table (one transaction), not issued")
    template = pki.issuance.issue(make_csrs(1)[0], profile=PROFILE, ca=ISSUING_CA).record.der
    revoked: list[RevokedRow] = []
    seen: set[int] = set()
    for size in sizes.crl_sizes:
        insert_start = time.perf_counter()
        added = insert_revoked_rows(pki, size - len(revoked), template, seen)
        revoked += added
        say(
            f"  {size:,} revoked rows in the database ({len(added):,} inserted in "
            f"{time.perf_counter() - insert_start:.1f} s)"
        )
        measure_crl(report, tools, pki, openssl_ca_dir, reference_ca, list(revoked), sizes.repeats, work)


def measure_crl(
    report: Report,
    tools: Tools,
    pki: Pki,
    openssl_ca_dir: Path | None,
    reference_ca: Ca,
    revoked: Sequence[RevokedRow],
    repeats: int,
    work: Path,
) -> None:
    size = len(revoked)
    issuing = pki.authorities.get(ISSUING_CA).certificate
    seconds, record = timed(repeats, lambda: pki.revocation.publish_crl(ISSUING_CA))
    crl = x509.load_der_x509_crl(record.der)
    if len(crl) != size or not crl.is_signature_valid(issuing.public_key()):  # type: ignore[arg-type]
        raise RuntimeError(f"otward CRL has {len(crl)} entries (expected {size}) or a bad signature")
    read_seconds, _ = timed(1, lambda: pki.stores.certificates.revoked_entries(ISSUING_CA))
    say(
        f"  otward publish_crl: {seconds:.3f} s, {len(record.der) / 1e6:.2f} MB DER, signature verifies "
        f"(of which reading the rows: {read_seconds:.3f} s)"
    )
    crypto_seconds, _ = timed(repeats, lambda: raw_crl(reference_ca, revoked))
    say(f"  raw cryptography build + sign of the same entries: {crypto_seconds:.3f} s")
    openssl_seconds = openssl_gencrl(report, tools, openssl_ca_dir, revoked, repeats, work)
    report.row(
        f"CRL, {size:,} revoked (s)",
        "s",
        otward=seconds,
        crypto=crypto_seconds,
        openssl=openssl_seconds,
        target=2.0 if size == 100_000 else None,
        note=f"{len(record.der) / 1e6:.2f} MB DER",
    )
    report.details[f"crl_{size}"] = {
        "otward_s": seconds,
        "otward_read_rows_s": read_seconds,
        "der_bytes": len(record.der),
        "crypto_s": crypto_seconds,
        "openssl_s": openssl_seconds,
    }


def insert_revoked_rows(pki: Pki, count: int, der: bytes, seen: set[int]) -> list[RevokedRow]:
    now = datetime.now(UTC)
    reasons = (x509.ReasonFlags.key_compromise, x509.ReasonFlags.unspecified)
    added: list[RevokedRow] = []
    rows: list[dict[str, Any]] = []
    while len(added) < count:
        serial = x509.random_serial_number()
        if serial.bit_length() < 64 or serial in seen:
            continue
        seen.add(serial)
        entry = RevokedRow(serial, now - timedelta(minutes=len(added) % 10_000), reasons[len(added) % 2])
        added.append(entry)
        rows.append(
            {
                "serial": format(serial, "x"),
                "ca": ISSUING_CA,
                "profile": PROFILE,
                "kind": "end-entity",
                "subject": f"CN=revoked-{serial:x}",
                "not_valid_before": now - timedelta(days=1),
                "not_valid_after": now + timedelta(days=365),
                "der": der,
                "created_at": now - timedelta(days=1),
                "revoked_at": entry.revoked_at,
                "revocation_reason": entry.reason.value,
            }
        )
    with pki.stores.database.engine.begin() as conn:
        conn.execute(insert(certificates), rows)
    return added


def openssl_gencrl(
    report: Report,
    tools: Tools,
    ca_dir: Path | None,
    revoked: Sequence[RevokedRow],
    repeats: int,
    work: Path,
) -> float | None:
    size = len(revoked)
    if tools.openssl is None or ca_dir is None:
        report.skip(f"openssl ca -gencrl ({size:,})", "openssl not found")
        return None
    directory = work / f"openssl-crl-{size}"
    directory.mkdir()
    for name in ("ca.pem", "ca.key"):
        shutil.copy(ca_dir / name, directory / name)
    (directory / "certs").mkdir()
    (directory / "serial").write_text("1000\n")
    (directory / "crlnumber").write_text("1000\n")
    expiry = _utc_time(datetime.now(UTC) + timedelta(days=365))
    lines = []
    for row in revoked:
        serial = format(row.serial_number, "X")
        serial = "0" * (len(serial) % 2) + serial
        when = _utc_time(row.revoked_at)
        reason = _OPENSSL_REASONS.get(row.reason)
        revocation = f"{when},{reason}" if reason else when
        lines.append(f"R\t{expiry}\t{revocation}\t{serial}\tunknown\t/CN=revoked-{serial}\n")
    (directory / "index.txt").write_text("".join(lines))
    (directory / "index.txt.attr").write_text("unique_subject = no\n")
    config = directory / "openssl.cnf"
    config.write_text(openssl_ca_config(directory))
    out = directory / "crl.pem"
    command = [tools.openssl, "ca", "-gencrl", "-config", str(config), "-out", str(out)]

    def generate() -> None:
        result = subprocess.run(command, capture_output=True, timeout=SUBPROCESS_TIMEOUT, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"openssl ca -gencrl failed: {result.stderr.decode(errors='replace')[-800:]}")

    seconds, _ = timed(repeats, generate)
    crl = x509.load_pem_x509_crl(out.read_bytes())
    if len(crl) != size:
        raise RuntimeError(f"openssl CRL has {len(crl)} entries, expected {size}")
    der_size = len(crl.public_bytes(serialization.Encoding.DER))
    say(f"  openssl ca -gencrl from index.txt: {seconds:.3f} s, {der_size / 1e6:.2f} MB DER")
    return seconds


def prepare_server_data(server: Server, csr: bytes) -> str:
    """Initialise the server's data directory (public URL on its HTTP port) and issue, through the
    library, the certificate that OCSP will be asked about. Returns its PEM."""
    initialize(server.data_dir, organization="Bench", public_url=f"http://{LOOPBACK}:{server.http_port}")
    pki = Pki.open(load_settings(server.data_dir))
    try:
        return pki.issuance.issue(csr, profile=PROFILE, ca=ISSUING_CA).pem
    finally:
        pki.close()


def step_api(report: Report, server: Server, csrs: Sequence[bytes], sizes: Sizes, crypto_rate: float) -> None:
    """HTTPS issuance: one keep-alive client, then several threads with a client each."""
    section("4. otward HTTPS API issuance: POST /api/v1/certificates (otward serve --workers 1)")
    body = [{"csr": csr.decode(), "profile": PROFILE} for csr in csrs[: sizes.api_requests]]

    def post(client: httpx.Client, payload: dict[str, str]) -> dict[str, Any]:
        response = client.post("/api/v1/certificates", json=payload)
        if response.status_code != 201:
            raise RuntimeError(f"API answered {response.status_code}: {response.text[:300]}")
        answer: dict[str, Any] = response.json()
        return answer

    with server.client() as client:
        sample = post(client, body[0])
        for payload in body[1:20]:
            post(client, payload)
        start = time.perf_counter()
        for payload in body:
            post(client, payload)
        single = len(body) / (time.perf_counter() - start)
    issued = x509.load_pem_x509_certificate(str(sample["certificate"]).encode())
    if format(issued.serial_number, "x") != sample["serial"] or len(sample["chain"]) != 2:
        raise RuntimeError("API answer: serial or chain does not match the certificate")
    say(f"  one httpx.Client, keep-alive: {single:,.0f} requests/s ({1000 / single:.1f} ms per request)")
    diagnostic = body[: min(50, len(body))]
    start = time.perf_counter()
    for payload in diagnostic:
        with server.client() as fresh:
            post(fresh, payload)
    fresh_rate = len(diagnostic) / (time.perf_counter() - start)
    say(
        f"  diagnostic, a new TLS connection per request: {fresh_rate:,.0f} requests/s "
        f"({1000 / fresh_rate:.1f} ms per request)"
    )

    errors: list[BaseException] = []
    barrier = threading.Barrier(sizes.api_threads + 1)

    def worker(part: Sequence[dict[str, str]]) -> None:
        with server.client() as own:
            try:
                post(own, part[0])  # connect and warm up before the clock starts
            except (RuntimeError, httpx.HTTPError) as exc:
                errors.append(exc)
            barrier.wait()
            try:
                for payload in part:
                    post(own, payload)
            except (RuntimeError, httpx.HTTPError) as exc:
                errors.append(exc)

    parts = [body[i :: sizes.api_threads] for i in range(sizes.api_threads)]
    threads = [threading.Thread(target=worker, args=(part,), daemon=True) for part in parts]
    for thread in threads:
        thread.start()
    barrier.wait()
    start = time.perf_counter()
    for thread in threads:
        thread.join(timeout=SUBPROCESS_TIMEOUT)
    threaded = len(body) / (time.perf_counter() - start)
    if errors:
        raise RuntimeError(f"threaded API issuance failed: {errors[0]!r}")
    say(f"  {sizes.api_threads} threads, one httpx.Client each: {threaded:,.0f} requests/s")
    report.row("HTTPS API issuance, 1 client (/s)", "/s", otward=single, crypto=crypto_rate)
    report.row(
        f"HTTPS API issuance, {sizes.api_threads} clients (/s)", "/s", otward=threaded, crypto=crypto_rate
    )
    report.details["api_single_per_s"] = single
    report.details["api_new_connection_per_s"] = fresh_rate
    report.details["api_threaded_per_s"] = threaded


def step_otward_ocsp(
    report: Report, tools: Tools, server: Server, certificate_pem: str, sizes: Sizes, work: Path
) -> dict[str, AbResult]:
    section(
        f"5. otward OCSP: otward serve --workers 2, ab -c {sizes.ab_concurrency} -n {sizes.ab_requests} "
        f"-p req.der -T application/ocsp-request, median of {sizes.repeats} runs"
    )
    if tools.ab is None:
        report.skip("OCSP under ab (otward and openssl ocsp)", "ab not found: apt-get install apache2-utils")
        return {}
    certificate = x509.load_pem_x509_certificate(certificate_pem.encode())
    issuing = load_issuing_certificate(server)
    files = {}
    for nonce in (False, True):
        der = ocsp_request(certificate, issuing, nonce=nonce)
        files[nonce] = work / f"otward-ocsp-{'nonce' if nonce else 'plain'}.der"
        files[nonce].write_bytes(der)
        answer = httpx.post(
            server.ocsp_url, content=der, headers={"content-type": "application/ocsp-request"}, timeout=10
        )
        say(f"  request {'with' if nonce else 'without'} nonce: {check_ocsp_response(answer.content, der)}")
    say("  without a nonce each worker reuses its signed response for 60 s; with one, each is signed afresh")
    return run_ab_cases(tools.ab, server.ocsp_url, files, (*MAIN_CASES, *KEEP_ALIVE_CASES), sizes)


def load_issuing_certificate(server: Server) -> x509.Certificate:
    chain = (server.data_dir / "tls" / "server.pem").read_bytes()
    return x509.load_pem_x509_certificates(chain)[1]  # leaf, then the issuing CA


_FETCH = """\
import sys, time, urllib.request
url, path = sys.argv[1], sys.argv[2]
body = open(path, "rb").read()
for _ in range(100):
    try:
        request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/ocsp-request"})
        sys.stdout.buffer.write(urllib.request.urlopen(request, timeout=5).read())
        break
    except OSError:
        time.sleep(0.1)
else:
    sys.exit("no answer from " + url)
"""


def step_openssl_ocsp(
    report: Report, tools: Tools, ca_dir: Path | None, sizes: Sizes, work: Path
) -> dict[str, dict[str, AbResult]]:
    """``openssl ocsp`` (index responder) under the same ab command, both inside a private netns."""
    section("5b. reference: openssl ocsp -index (one process) under the same ab command, private netns")
    results: dict[str, dict[str, AbResult]] = {}
    if tools.ab is None:
        return results
    if tools.openssl is None or ca_dir is None:
        report.skip("openssl ocsp", "openssl not found")
        return results
    if tools.ip is None:
        report.skip("openssl ocsp", "'ip' (iproute2) not found: no private network namespace")
        return results
    key_pem = (ca_dir / "ca.key").read_bytes()
    ca_key = serialization.load_pem_private_key(key_pem, password=None)
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise RuntimeError("unexpected reference CA key type")
    ca = Ca(ca_key, x509.load_pem_x509_certificate((ca_dir / "ca.pem").read_bytes()))
    responder_key, responder = make_responder(ca)
    (ca_dir / "rsigner.pem").write_bytes(responder.public_bytes(serialization.Encoding.PEM))
    (ca_dir / "rkey.pem").write_bytes(
        responder_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    queried = x509.load_pem_x509_certificate((ca_dir / "out" / "1.pem").read_bytes())  # listed in index.txt
    files = {}
    for nonce in (False, True):
        files[nonce] = work / f"openssl-ocsp-{'nonce' if nonce else 'plain'}.der"
        files[nonce].write_bytes(ocsp_request(queried, ca.certificate, nonce=nonce))
    try:
        with network_namespace(tools.ip) as namespace:
            in_ns = [tools.ip, "netns", "exec", namespace]
            for processes in (1, 2):
                title = "one process" if processes == 1 else f"-multi {processes}"
                results[title] = run_openssl_responder(tools, in_ns, ca_dir, processes, files, sizes, work)
    except NamespaceError as exc:
        report.skip("openssl ocsp", f"no private network namespace: {exc}")
        return results
    for line in OPENSSL_OCSP_NOTE:
        say(f"  {line}")
    return results


def run_openssl_responder(
    tools: Tools,
    in_ns: list[str],
    ca_dir: Path,
    processes: int,
    files: dict[bool, Path],
    sizes: Sizes,
    work: Path,
) -> dict[str, AbResult]:
    """``openssl ocsp`` inside the namespace: its answers checked, then ab runs, each against a
    responder started afresh (see OPENSSL_OCSP_NOTE)."""
    if tools.openssl is None or tools.ab is None:
        raise RuntimeError("openssl and ab are required here")
    url = f"http://{LOOPBACK}:{OPENSSL_OCSP_PORT}/"
    tag = "[one process] " if processes == 1 else f"[-multi {processes}] "
    command = [*in_ns, tools.openssl, "ocsp", "-index", str(ca_dir / "index.txt")]
    command += ["-CA", str(ca_dir / "ca.pem"), "-rsigner", str(ca_dir / "rsigner.pem")]
    command += ["-rkey", str(ca_dir / "rkey.pem"), "-port", str(OPENSSL_OCSP_PORT), "-nmin", "60"]
    if processes > 1:
        command += ["-multi", str(processes)]

    def ask(request: Path) -> bytes:
        fetched = subprocess.run(
            [*in_ns, sys.executable, "-c", _FETCH, url, str(request)],
            capture_output=True,
            timeout=60,
            check=False,
        )
        if fetched.returncode != 0:
            raise RuntimeError(f"openssl ocsp did not answer: {fetched.stderr.decode()[-500:]}")
        return fetched.stdout

    @contextlib.contextmanager
    def responder() -> Iterator[None]:
        with running(command, work / f"openssl-ocsp-{processes}.log"):
            ask(files[False])  # answers: ready
            yield

    with responder():
        for nonce, path in files.items():
            checked = check_ocsp_response(ask(path), path.read_bytes())
            say(f"  {tag}request {'with' if nonce else 'without'} nonce: {checked}")
    return run_ab_cases(
        tools.ab, url, files, MAIN_CASES, sizes, prefix=in_ns, tag=tag, fresh_server=responder
    )


def record_ocsp_rows(
    report: Report,
    otward_results: dict[str, AbResult],
    openssl_results: dict[str, dict[str, AbResult]],
    crypto_ocsp: float,
    sizes: Sizes,
) -> None:
    """Table rows: the new-connection cases against openssl ocsp (one process), and keep-alive
    cases only if otward actually kept connections alive under ab -k."""
    single = openssl_results.get("one process", {})
    for case in (*MAIN_CASES, *KEEP_ALIVE_CASES):
        ours = otward_results.get(case.label)
        if case.keep_alive and (ours is None or not ours.keep_alive):
            continue
        reference = single.get(case.label)
        bad = [
            name for name, r in (("otward", ours), ("openssl", reference)) if r is not None and not r.clean
        ]
        report.row(
            f"OCSP, {'nonce' if case.nonce else 'no nonce'}{', ab -k' if case.keep_alive else ''} (/s)",
            "/s",
            otward=ours.rate if ours else None,
            crypto=crypto_ocsp,
            openssl=reference.rate if reference else None,
            target=None if case.keep_alive else 5000.0,
            note=f"ERRORS reported by ab for {', '.join(bad)}" if bad else "",
        )
    report.details["ocsp_ab"] = {
        "command": f"ab -n {sizes.ab_requests} -c {sizes.ab_concurrency} [-k] -p req.der "
        "-T application/ocsp-request URL",
        "otward_2_workers": {k: asdict(v) for k, v in otward_results.items()},
        "openssl": {t: {k: asdict(v) for k, v in r.items()} for t, r in openssl_results.items()},
    }


# --------------------------------------------------------------------------------------------------
# output
# --------------------------------------------------------------------------------------------------


def _format(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    return f"{value:,.3f} s" if unit == "s" else f"{value:,.0f}"


def _ratio(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.2f}" if value >= 0.1 else f"{value:.3f}"


def print_table(report: Report) -> None:
    header = ("figure", "otward", "cryptography", "ratio", "openssl", "ratio", "target", "met?")
    lines = [header]
    for row in report.rows:
        met = row.met()
        target = "-"
        if row.target is not None:
            target = f">= {row.target:,.0f}" if row.unit == "/s" else f"< {row.target:g} s"
        lines.append(
            (
                row.figure,
                _format(row.otward, row.unit),
                _format(row.crypto, row.unit),
                _ratio(row.speed_ratio(row.crypto)),
                _format(row.openssl, row.unit),
                _ratio(row.speed_ratio(row.openssl)),
                target,
                "-" if met is None else ("yes" if met else "NO"),
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    section("Summary")
    say("ratio = otward speed / reference speed (for times: reference time / otward time); < 1 is slower")
    for index, line in enumerate(lines):
        cells = [
            cell.ljust(w) if i == 0 else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(line, widths, strict=True))
        ]
        say("  ".join(cells))
        if index == 0:
            say("  ".join("-" * w for w in widths))
    for row in report.rows:
        if row.note:
            say(f"  note, {row.figure}: {row.note}")
    for message in report.skipped:
        say(f"  {message}")


def otward_source() -> str:
    """Where otward was imported from and, inside a git work tree, its commit and local changes."""
    package = Path(otward.__file__).resolve().parent
    git = shutil.which("git")
    if git is None:
        return str(package)
    head = subprocess.run([git, "-C", str(package), "rev-parse", "--short", "HEAD"], **_QUIET)
    if head.returncode != 0:
        return str(package)
    changes = subprocess.run([git, "-C", str(package), "status", "--porcelain", "--", "."], **_QUIET)
    dirty = " with uncommitted changes" if changes.stdout.strip() else ""
    return f"{package} (commit {head.stdout.strip()}{dirty})"


_QUIET: dict[str, Any] = {"capture_output": True, "text": True, "timeout": 30, "check": False}


def machine_description(tools: Tools) -> dict[str, str]:
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": str(os.cpu_count()),
        "cpus_usable": str(len(os.sched_getaffinity(0))) if hasattr(os, "sched_getaffinity") else "?",
        "python": platform.python_version(),
        "cryptography": f"{cryptography.__version__} ({openssl_backend.openssl_version_text()})",
        "openssl": version_of([tools.openssl, "version"]) if tools.openssl else "not found",
        "ab": version_of([tools.ab, "-V"]) if tools.ab else "not found",
        "sqlite": sqlite3.sqlite_version,
        "otward": f"{otward.__version__} from {otward_source()}",
        "platform": platform.platform(),
    }


# --------------------------------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------------------------------


def _exit_on_signal(signum: int, _frame: FrameType | None) -> None:
    say(f"\n  interrupted by {signal.Signals(signum).name}: stopping processes, removing temporary files")
    raise SystemExit(128 + signum)  # unwinds through every finally: processes, netns, temp dir


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="smaller counts (under two minutes)")
    parser.add_argument("--profile", action="store_true", help="print a cProfile of library issuance")
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the figures as JSON")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (for debugging)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    sizes = QUICK if args.quick else FULL
    for variable in ("OTWARD_CA_PASSPHRASE", "OTWARD_CA_PASSPHRASE_FILE", "OTWARD_DATA", "OTWARD_DB"):
        os.environ.pop(variable, None)  # the benchmark's installations are its own
    signal.signal(signal.SIGTERM, _exit_on_signal)
    signal.signal(signal.SIGHUP, _exit_on_signal)
    tools = Tools.find()
    machine = machine_description(tools)
    say(f"otward benchmark ({'quick' if args.quick else 'full'} run): python {' '.join(sys.argv)}")
    for key, value in machine.items():
        say(f"  {key}: {value}")
    report = Report(details={"machine": machine, "sizes": asdict(sizes), "command": " ".join(sys.argv)})
    started = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="otward-bench-"))
    pki: Pki | None = None
    try:
        say(f"  generating {sizes.csrs:,} P-256 CSRs (not timed)")
        csrs = make_csrs(sizes.csrs)
        crypto_rate = step_reference_issuance(report, csrs, sizes)
        crypto_ocsp = step_reference_ocsp(report, sizes)
        pki = open_library_installation(work)
        library_rate = step_library_issuance(report, pki, csrs, sizes, profile=args.profile)
        reference_ca = make_ca("Bench openssl CA")
        openssl_rate, ca_dir = step_openssl_ca(report, tools, work, reference_ca, csrs, sizes.openssl_ca)
        report.row(
            "library issuance, 1 core (/s)",
            "/s",
            otward=library_rate,
            crypto=crypto_rate,
            openssl=openssl_rate,
            target=2000.0,
        )
        report.row(
            "library issue(), 4 threads, group commit, 1 core (/s)",
            "/s",
            otward=report.details["library_threaded_issuance_per_s"],
            crypto=crypto_rate,
            openssl=openssl_rate,
            target=2000.0,
        )
        report.row(
            "library issue_many, batches of 100, 1 core (/s)",
            "/s",
            otward=report.details["library_batch_issuance_per_s"],
            crypto=crypto_rate,
            openssl=openssl_rate,
            target=2000.0,
        )

        server = Server(work / "server-data", free_port(), free_port())
        certificate_pem = prepare_server_data(server, csrs[0])
        try:
            with otward_server(server, workers=1, log_path=work / "serve-1.log"):
                step_api(report, server, csrs, sizes, crypto_rate)
        except ServerError as exc:
            report.skip("HTTPS API issuance", str(exc))
        otward_ocsp: dict[str, AbResult] = {}
        try:
            with otward_server(server, workers=2, log_path=work / "serve-2.log"):
                otward_ocsp = step_otward_ocsp(report, tools, server, certificate_pem, sizes, work)
        except ServerError as exc:
            report.skip("otward OCSP", str(exc))
        openssl_ocsp = step_openssl_ocsp(report, tools, ca_dir, sizes, work)
        record_ocsp_rows(report, otward_ocsp, openssl_ocsp, crypto_ocsp, sizes)

        step_crl(report, tools, pki, ca_dir, reference_ca, sizes, work)
    finally:
        if pki is not None:
            pki.close()
        if args.keep:
            say(f"  kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    report.details["elapsed_s"] = time.perf_counter() - started
    print_table(report)
    say(f"  elapsed: {report.details['elapsed_s']:.0f} s")
    if args.json:
        report.details["rows"] = [
            {**asdict(r), "ratio_crypto": r.speed_ratio(r.crypto), "ratio_openssl": r.speed_ratio(r.openssl)}
            for r in report.rows
        ]
        report.details["skipped"] = report.skipped
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report.details, indent=2, default=str) + "\n")
        say(f"  figures written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
