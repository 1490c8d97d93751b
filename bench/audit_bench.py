"""Audit trail and transparency log: what they cost.

Prints, each next to its reference on the same machine and as a ratio:
  * durable audit appends per second (one event per transaction) on SQLite and on PostgreSQL,
    next to bare durable commits of the same database;
  * certificates issued per second through the library with the trail and the log, and without
    them (the same store with the ledger step switched off), on SQLite and PostgreSQL.
Target (issue #3): trail + log cost less than 25 % of issuance throughput.

Run:  python bench/audit_bench.py [--quick] [--postgres URL]
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from sqlalchemy import create_engine, text

from otward.adapters.db import SqlStores
from otward.adapters.db.certificates import SqlCertificateStore, insert_certificates, refuse_if_revoked
from otward.config import load_settings
from otward.core.audit import AuditEvent, EventType
from otward.core.records import CertificateRecord
from otward.services.audit import SYSTEM_ACTOR
from otward.services.bootstrap import initialize
from otward.services.pki import Pki

DEFAULT_POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


class _CertificatesWithoutLedger(SqlCertificateStore):
    """The same certificate store with the audit and transparency step left out: the 'without' reference."""

    def add_certificate(
        self,
        record: CertificateRecord,
        events: Sequence[AuditEvent] = (),
        *,
        issuer_serials: Sequence[int] = (),
    ) -> None:
        with self._database.transaction() as conn:
            insert_certificates(conn, [record])
            if issuer_serials:
                refuse_if_revoked(conn, record.ca, issuer_serials)


def _csrs(n: int) -> list[bytes]:
    out = []
    for i in range(n):
        key = ec.generate_private_key(ec.SECP256R1())
        csr = (
            x509.CertificateSigningRequestBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"bench-{i}")]))
            .sign(key, hashes.SHA256())
        )
        out.append(csr.public_bytes(serialization.Encoding.PEM))
    return out


def _rate(n: int, action: Callable[[int], object]) -> float:
    started = time.perf_counter()
    for i in range(n):
        action(i)
    return n / (time.perf_counter() - started)


def _median(runs: int, measure: Callable[[], float]) -> float:
    return statistics.median(measure() for _ in range(runs))


def _postgres_database(admin_url: str) -> tuple[str, Callable[[], None]]:
    name = f"otward_bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))

    def drop() -> None:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    return admin_url.rsplit("/", 1)[0] + f"/{name}", drop


def bench_backend(
    label: str, database_url: str | None, n: int, runs: int
) -> list[tuple[str, float, float, str]]:
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        initialize(data, organization="Bench", database_url=database_url)
        settings = load_settings(data, database_url=database_url)
        pki = Pki.open(settings)
        stores = SqlStores.open(pki.stores.database.engine)
        without_ledger = _CertificatesWithoutLedger(stores.database)
        plain = Pki(settings, dataclasses.replace(stores, certificates=without_ledger), pki.authorities._keys)
        try:
            event = pki.audit.event(SYSTEM_ACTOR, EventType.CERT_EXPIRING, "bench")
            appends = _median(runs, lambda: _rate(n, lambda _: pki.stores.audit.append_events([event])))
            engine = pki.stores.database.engine
            with engine.begin() as conn:
                conn.execute(text("CREATE TABLE bench_commit (id INTEGER PRIMARY KEY, payload TEXT)"))
            counter = iter(range(10**9))

            def bare_commit(_: int) -> None:
                with engine.begin() as conn:
                    conn.execute(
                        text("INSERT INTO bench_commit VALUES (:i, :p)"), {"i": next(counter), "p": "x" * 300}
                    )

            commits = _median(runs, lambda: _rate(n, bare_commit))
            csrs = _csrs(n * runs * 2)
            position = iter(range(len(csrs)))

            def issue_with(_: int) -> None:
                pki.issuance.issue(csrs[next(position)], profile="tls-client")

            def issue_without(_: int) -> None:
                plain.issuance.issue(csrs[next(position)], profile="tls-client")

            without = _median(runs, lambda: _rate(n, issue_without))
            with_trail = _median(runs, lambda: _rate(n, issue_with))
            cost = 1 - with_trail / without
            return [
                (f"{label}: audit appends/s (durable, 1 per txn)", appends, commits, "bare durable commit/s"),
                (f"{label}: issuance/s with trail + log", with_trail, without, "issuance/s without them"),
                (
                    f"{label}: throughput cost of trail + log",
                    cost * 100,
                    25.0,
                    f"% (target < 25 %: {'met' if cost < 0.25 else 'NOT met'})",
                ),
            ]
        finally:
            plain.stores.close()
            pki.close()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="fewer iterations")
    parser.add_argument("--postgres", default=DEFAULT_POSTGRES, help="admin URL; 'none' to skip PostgreSQL")
    args = parser.parse_args()
    n, runs = (300, 3) if args.quick else (2000, 3)
    rows = bench_backend("SQLite", None, n, runs)
    if args.postgres != "none":
        url, drop = _postgres_database(args.postgres)
        try:
            rows += bench_backend("PostgreSQL", url, n, runs)
        finally:
            drop()
    print(f"{'figure':<50} {'otward':>12} {'reference':>12} {'ratio':>7}  reference is")
    for name, value, reference, what in rows:
        if name.endswith("cost of trail + log"):
            print(f"{name:<50} {value:>11.1f}% {'':>12} {'':>7}  {what}")
        else:
            print(f"{name:<50} {value:>12,.0f} {reference:>12,.0f} {value / reference:>7.2f}  {what}")


if __name__ == "__main__":
    main()
