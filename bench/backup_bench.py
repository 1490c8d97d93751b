#!/usr/bin/env python3
"""``otward backup`` / ``restore`` and the revocation journal, next to the standard tools, in one run.

Usage (from the repository root)::

    python bench/backup_bench.py                  # 100,000 certificates, 10,000 revoked
    python bench/backup_bench.py --quick          # 20,000 / 2,000
    python bench/backup_bench.py --postgres postgresql+psycopg://postgres@127.0.0.1:5432/test

What is measured, each beside a reference taken in the same run:

* ``create_backup`` of a SQLite installation against ``sqlite3 DB ".backup COPY"`` followed by
  ``tar czf`` of the copy (what an operator would script by hand);
* ``restore_backup`` of that archive (checksums, extraction, load, migrations, CRLs) against
  ``tar xzf`` of the same archive;
* with ``--postgres``: ``create_backup`` on PostgreSQL (one REPEATABLE READ snapshot as JSON Lines)
  against ``pg_dump -Fc`` of the same database;
* revocations per second through ``RevocationService.revoke`` (commit, journal append + fsync, CRL
  signed over all revoked entries) with the journal against the same without it.

Everything runs in a temporary directory (and a temporary PostgreSQL database) removed on exit.
This is not part of the test suite and asserts no timing.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import statistics
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from sqlalchemy import create_engine, insert, text

from otward.adapters.db.schema import certificates
from otward.config import load_settings
from otward.services.backup import RestoreOptions, create_backup, restore_backup
from otward.services.bootstrap import initialize
from otward.services.pki import Pki
from tests.conftest import build_csr, make_key


def timed(action: Callable[[], object]) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def fill(data: Path, url: str | None, count: int, revoked: int) -> None:
    """``count`` certificate rows (one issued certificate under new serials), ``revoked`` revoked."""
    settings = load_settings(data, database_url=url)
    pki = Pki.open(settings)
    try:
        issued = pki.issuance.issue(build_csr(make_key(), cn="bench"), profile="tls-client", ca="issuing")
        der = issued.certificate.public_bytes(Encoding.DER)
        now = datetime.now(UTC)
        rows = [
            {
                "serial": format(x509.random_serial_number(), "x"),
                "ca": "issuing",
                "profile": "tls-client",
                "kind": "end-entity",
                "subject": "CN=bench",
                "not_valid_before": now,
                "not_valid_after": now + timedelta(days=365),
                "der": der,
                "created_at": now,
                "revoked_at": now if i < revoked else None,
                "revocation_reason": "keyCompromise" if i < revoked else None,
                "device_id": None,
            }
            for i in range(count)
        ]
        with pki.stores.database.transaction() as conn:
            for start in range(0, len(rows), 5000):
                conn.execute(insert(certificates), rows[start : start + 5000])
        pki.revocation.publish_crl("issuing")
    finally:
        pki.close()


def revocation_rate(data: Path, count: int, *, journal: bool) -> float:
    pki = Pki.open(load_settings(data))
    try:
        if not journal:
            pki.revocation._journal = None
        serials = [
            pki.issuance.issue(
                build_csr(make_key(), cn=f"r{i}"), profile="tls-client", ca="issuing"
            ).record.serial_number
            for i in range(count)
        ]
        elapsed = timed(lambda: [pki.revocation.revoke(s, x509.ReasonFlags.key_compromise) for s in serials])
    finally:
        pki.close()
    return count / elapsed


@contextlib.contextmanager
def postgres_database(admin_url: str) -> Iterator[str]:
    name = f"otward_bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield admin_url.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--postgres", help="admin URL of a PostgreSQL server to measure too")
    args = parser.parse_args()
    count, revoked, revocations = (20_000, 2_000, 50) if args.quick else (100_000, 10_000, 200)
    with tempfile.TemporaryDirectory(prefix="otward-backup-bench-") as scratch:
        root = Path(scratch)
        data = root / "data"
        initialize(data)
        fill(data, None, count, revoked)
        archive = root / "otward.tar.gz"
        ours = timed(lambda: create_backup(load_settings(data), archive, audit=False))
        copy = root / "copy.db"

        def by_hand() -> None:
            subprocess.run(["sqlite3", str(data / "otward.db"), f".backup {copy}"], check=True)
            subprocess.run(["tar", "czf", str(root / "hand.tar.gz"), "-C", str(root), "copy.db"], check=True)

        reference = timed(by_hand)
        size = (data / "otward.db").stat().st_size
        print(f"SQLite, {count} certificates ({revoked} revoked), database {size / 1e6:.0f} MB")
        print(
            f"  backup: otward {ours:.2f} s, sqlite3 .backup + tar czf {reference:.2f} s, "
            f"ratio {reference / ours:.2f}"
        )
        target = root / "restored"
        options = RestoreOptions(passphrase_file=data / "ca.pass", journals=(data / "revocations.jsonl",))
        ours = timed(lambda: restore_backup(archive, target, options))
        unpacked = root / "unpacked"
        unpacked.mkdir()
        reference = timed(
            lambda: subprocess.run(["tar", "xzf", str(archive), "-C", str(unpacked)], check=True)
        )
        print(f"  restore: otward {ours:.2f} s, tar xzf {reference:.2f} s, ratio {reference / ours:.2f}")
        if args.postgres:
            with postgres_database(args.postgres) as url:
                pg_data = root / "pg"
                initialize(pg_data, database_url=url)
                fill(pg_data, url, count, revoked)
                ours = timed(
                    lambda: create_backup(
                        load_settings(pg_data, database_url=url), root / "pg.tar.gz", audit=False
                    )
                )
                dump = url.replace("postgresql+psycopg://", "postgresql://")
                reference = timed(
                    lambda: subprocess.run(["pg_dump", "-Fc", "-f", str(root / "pg.dump"), dump], check=True)
                )
                print(
                    f"PostgreSQL, same rows: backup otward {ours:.2f} s, pg_dump -Fc {reference:.2f} s, "
                    f"ratio {reference / ours:.2f}"
                )
        # alternated, medians of three each: the CRL grows by ``revocations`` entries every pass
        rates: dict[bool, list[float]] = {True: [], False: []}
        for _ in range(3):
            for journal in (False, True):
                rates[journal].append(revocation_rate(data, revocations, journal=journal))
        with_journal, without = statistics.median(rates[True]), statistics.median(rates[False])
        print(
            f"revocations (CRL of {revoked}+ entries re-signed each): with journal {with_journal:.1f}/s, "
            f"without {without:.1f}/s, ratio {with_journal / without:.2f}"
        )
    os.sync()
    shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
