#!/usr/bin/env python3
"""Several nodes on one PostgreSQL database: how fast a revocation reaches every node, and what the
once-a-second CRL check costs as the installation grows.

Usage (from the repository root; needs PostgreSQL, by default the test server's)::

    python bench/nodes_bench.py                 # 3 nodes, 60 revocations; CRL check at 0, 10k, 100k
    python bench/nodes_bench.py --quick         # 3 nodes, 20 revocations; CRL check at 0 and 10k
    OTWARD_BENCH_POSTGRES=postgresql+psycopg://user@host/postgres python bench/nodes_bench.py

Propagation: one installation is initialised on a fresh database, its data directory copied for two
more nodes, and three ``otward serve`` processes started on loopback ports. Certificates are issued,
then revoked one at a time through node 1, 2, 3 in turn; from the moment the revoke call returns,
every node's OCSP (POST with a fresh nonce: never a reused answer) and CRL are polled until each says
revoked. The reference is one OCSP round trip to a node (same request, a certificate still good):
propagation / round trip says how many round trips a revocation takes to be seen everywhere.

CRL check: ``SqlCrlStore.stale_crls`` (the grouped count the service runs once a second on one node)
and the cluster lock round trip around it, timed with N certificates in the database (10 % revoked,
rows inserted directly), beside one OCSP status read (``certificate_status``) as the reference.
Temporary databases and files are removed on exit; this asserts no timing.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import ocsp
from cryptography.x509.oid import NameOID
from sqlalchemy import create_engine, insert, text

from otward.adapters.db.schema import certificates
from otward.config import load_settings
from otward.core.keys import public_key_bits
from otward.services.bootstrap import initialize
from otward.services.pki import Pki

ADMIN_URL = os.environ.get("OTWARD_BENCH_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
NODES = 3


def free_port() -> int:
    with contextlib.closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def fresh_database() -> Iterator[str]:
    name = f"otward_bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def csr_pem(cn: str) -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    csr = x509.CertificateSigningRequestBuilder().subject_name(name).sign(key, hashes.SHA256())
    return csr.public_bytes(serialization.Encoding.PEM).decode()


def ocsp_request(issuer: x509.Certificate, serial: int) -> bytes:
    import hashlib

    builder = (
        ocsp.OCSPRequestBuilder()
        .add_certificate_by_hash(
            hashlib.sha1(issuer.subject.public_bytes()).digest(),  # noqa: S324 - the CertID openssl sends
            hashlib.sha1(public_key_bits(issuer.public_key())).digest(),  # noqa: S324
            serial,
            hashes.SHA1(),  # noqa: S303
        )
        .add_extension(x509.OCSPNonce(os.urandom(16)), critical=False)
    )
    return builder.build().public_bytes(serialization.Encoding.DER)


class Node:
    def __init__(self, data_dir: Path, url: str, http_port: int) -> None:
        self.data_dir = data_dir
        self.https = f"https://127.0.0.1:{free_port()}"
        self.http = f"http://127.0.0.1:{http_port}"
        self.log = (data_dir / "serve.log").open("wb")
        command = [sys.executable, "-m", "otward", "serve", "--data", str(data_dir), "--db", url]
        command += ["--port", self.https.rsplit(":", 1)[1], "--http-port", str(http_port)]
        self.process = subprocess.Popen(
            command, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True
        )
        verify = str(data_dir / "root.pem")
        token = (data_dir / "admin.token").read_text().strip()
        self.api = httpx.Client(
            base_url=self.https, verify=verify, headers={"Authorization": f"Bearer {token}"}
        )
        self.plain = httpx.Client(base_url=self.http)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if (
                    self.api.get("/healthz").status_code == 200
                    and self.plain.get("/healthz").status_code == 200
                ):
                    return
            if self.process.poll() is not None:
                raise RuntimeError((data_dir / "serve.log").read_text())
            time.sleep(0.2)
        raise RuntimeError("node did not start")

    def revoked_in_ocsp(self, issuer: x509.Certificate, serial: int) -> bool:
        response = self.plain.post(
            "/ocsp",
            content=ocsp_request(issuer, serial),
            headers={"content-type": "application/ocsp-request"},
        )
        return ocsp.load_der_ocsp_response(response.content).certificate_status is ocsp.OCSPCertStatus.REVOKED

    def revoked_in_crl(self, serial: int) -> bool:
        crl = x509.load_der_x509_crl(self.plain.get("/crl/issuing.crl").content)
        return crl.get_revoked_certificate_by_serial_number(serial) is not None

    def stop(self) -> None:
        self.api.close()
        self.plain.close()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
        self.log.close()


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def propagation(revocations: int, workdir: Path) -> None:
    with fresh_database() as url:
        ports = [free_port() for _ in range(NODES)]
        first = workdir / "node-1"
        initialize(first, organization="Bench", public_url=f"http://127.0.0.1:{ports[0]}", database_url=url)
        dirs = [first] + [Path(shutil.copytree(first, workdir / f"node-{i}")) for i in range(2, NODES + 1)]
        nodes: list[Node] = []
        try:
            nodes = [Node(d, url, p) for d, p in zip(dirs, ports, strict=True)]
            issuer_pem = nodes[0].api.get("/api/v1/cas/issuing").json()["certificate"]
            issuer = x509.load_pem_x509_certificate(issuer_pem.encode())
            serials = []
            for n in range(revocations + 1):
                body = {"csr": csr_pem(f"bench-{n}"), "profile": "tls-client"}
                serials.append(
                    int(nodes[n % NODES].api.post("/api/v1/certificates", json=body).json()["serial"], 16)
                )
            good = serials.pop()
            round_trips = []
            for _ in range(max(50, revocations)):
                start = time.perf_counter()
                nodes[1].revoked_in_ocsp(issuer, good)
                round_trips.append(time.perf_counter() - start)
            ocsp_delays: list[float] = []
            crl_delays: list[float] = []
            polls: list[int] = []
            for n, serial in enumerate(serials):
                via = nodes[n % NODES]
                answer = via.api.post(
                    f"/api/v1/certificates/{serial:x}/revoke", json={"reason": "keyCompromise"}
                )
                answer.raise_for_status()
                start = time.perf_counter()
                for node in nodes:
                    tries = 0
                    while not node.revoked_in_ocsp(issuer, serial):
                        tries += 1
                    ocsp_delays.append(time.perf_counter() - start)
                    while not node.revoked_in_crl(serial):
                        tries += 1
                    crl_delays.append(time.perf_counter() - start)
                    polls.append(tries)
        finally:
            for node in nodes:
                node.stop()
    reference = statistics.median(round_trips)
    print(
        f"\nrevocation propagation, {NODES} nodes, {len(serials)} revocations"
        " (ms after the revoke call returned)"
    )
    print(f"  reference: one OCSP round trip (nonce, signed)  median {reference * 1000:.2f}")
    for label, values in (
        ("every node's OCSP says revoked", ocsp_delays),
        ("... and its CRL lists it", crl_delays),
    ):
        median = statistics.median(values)
        print(
            f"  {label:<32} median {median * 1000:.2f}  p95 {percentile(values, 0.95) * 1000:.2f}"
            f"  max {max(values) * 1000:.2f}  ratio to one round trip {median / reference:.1f}"
        )
    print(f"  polls that found the old status: {sum(polls)} of {len(polls)} node checks")


def crl_check(sizes: list[int], workdir: Path) -> None:
    print(
        "\nCRL check (stale_crls: the grouped count run once a second) against installation size, PostgreSQL"
    )
    print(
        f"  {'certificates':>12} {'revoked':>8} {'check ms':>9} {'lock+check ms':>14}"
        f" {'OCSP status ms':>15} {'ratio':>6}"
    )
    for size in sizes:
        with fresh_database() as url:
            data = workdir / f"size-{size}"
            initialize(data, organization="Bench", database_url=url)
            pki = Pki.open(load_settings(data, database_url=url))
            try:
                now = datetime.now(UTC)
                engine = create_engine(url)
                with engine.begin() as conn:
                    for start in range(0, size, 5000):
                        conn.execute(
                            insert(certificates),
                            [
                                {
                                    "serial": f"{0x10**30 + n:x}",
                                    "ca": "issuing",
                                    "profile": "device",
                                    "kind": "end-entity",
                                    "subject": f"CN=dev-{n}",
                                    "not_valid_before": now,
                                    "not_valid_after": now + timedelta(days=365),
                                    "der": b"\x30" * 600,
                                    "created_at": now,
                                    "revoked_at": now if n % 10 == 0 else None,
                                    "revocation_reason": "keyCompromise" if n % 10 == 0 else None,
                                }
                                for n in range(start, min(size, start + 5000))
                            ],
                        )
                with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                    conn.execute(text("VACUUM ANALYZE certificates"))  # as autovacuum leaves a live table
                engine.dispose()
                pki.revocation.publish_stale()  # the CRL now lists them: the steady state
                assert pki.stores.crls.stale_crls() == []  # noqa: S101

                timings = check_timings(pki)
            finally:
                pki.close()
        revoked = (size + 9) // 10
        print(
            f"  {size:>12} {revoked:>8} {timings[0]:>9.2f} {timings[1]:>14.2f} {timings[2]:>15.3f}"
            f" {timings[0] / timings[2]:>6.1f}"
        )


def check_timings(pki: Pki) -> list[float]:
    """Median ms of the check, the check inside the cluster lock, and one OCSP status read."""
    serial = 0x10**30 + 1

    def check() -> None:
        pki.stores.crls.stale_crls()

    def locked_check() -> None:
        with pki.stores.database.singleton("crl-check") as held:
            if held:
                pki.stores.crls.stale_crls()

    def status() -> None:
        pki.stores.certificates.certificate_status("issuing", serial)

    return [median_ms(run) for run in (check, locked_check, status)]


def median_ms(run: Callable[[], None], times: int = 60) -> float:
    run()
    samples = []
    for _ in range(times):
        start = time.perf_counter()
        run()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="20 revocations; CRL check at 0 and 10k")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="otward-nodes-bench-"))
    try:
        propagation(20 if args.quick else 60, workdir)
        crl_check([0, 10_000] if args.quick else [0, 10_000, 100_000], workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
