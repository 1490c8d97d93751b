"""``otward backup`` and ``otward restore``: a consistent online backup, and a restore that never
brings a revoked certificate back (docs/backup.md).

The archive is a gzip'd tar, mode 0600, written aside and renamed into place. It holds the database
(SQLite: a copy by the online backup API; PostgreSQL: a JSON Lines dump taken in one REPEATABLE READ
snapshot, ``otward.adapters.db.dump``), ``config.toml``, ``root.pem``, the service's TLS files, the
encrypted key files (file backend; PKCS#11 keys stay in their token and only their references are in
the database), the audit head witness, the revocation journal as it was, and ``manifest.json`` with the
SHA-256 of every member, the otward version, the schema revision and the time. It never holds the CA
passphrase (``ca.pass``), the database password or the admin token.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import sqlite3
import tarfile
import tempfile
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from sqlalchemy import Connection, text, update
from sqlalchemy.exc import SQLAlchemyError

from otward import __version__
from otward.adapters.db.certificates import insert_certificates
from otward.adapters.db.dump import (
    dump_rows,
    head_revision,
    is_known_revision,
    iter_dump,
    iter_table_rows,
    load_rows,
    schema_revision,
    sqlite_online_backup,
    upgrade_to,
)
from otward.adapters.db.engine import create_database_engine
from otward.adapters.db.schema import authorities, certificates
from otward.adapters.head_witness import WITNESS_FILE
from otward.adapters.keys import write_private_file
from otward.adapters.revocation_journal import JOURNAL_FILE, read_journal
from otward.config import CONFIG_FILE, PASSPHRASE_FILE, Settings, default_database_url, load_settings
from otward.core.audit import EventType
from otward.core.records import CertificateKind, CertificateRecord
from otward.core.restore import BackupState, CrlEvidence, RestorePlan, plan_restore
from otward.core.revocation import reason_name
from otward.core.revocation_journal import JournalContents
from otward.errors import ConfigError, ConflictError, IntegrityError, StorageError
from otward.services.audit import SYSTEM_ACTOR, Actor
from otward.services.bootstrap import check_target
from otward.services.pki import Pki, utc_now

__all__ = [
    "BackupResult",
    "RestoreOptions",
    "RestoreResult",
    "create_backup",
    "read_manifest",
    "restore_backup",
]

MANIFEST: Final = "manifest.json"
MANIFEST_FORMAT: Final = "otward-backup"
SQLITE_MEMBER: Final = "database.sqlite"
DUMP_MEMBER: Final = "database.jsonl"
_MEMBER_NAME = re.compile(
    r"^(manifest\.json|database\.sqlite|database\.jsonl|config\.toml|root\.pem|"
    r"audit-head\.json|revocations\.jsonl|tls/server\.(pem|key)|keys/[A-Za-z0-9_-][A-Za-z0-9._-]*)$"
)
_FETCH_TIMEOUT = 10.0
_MAX_CRL_BYTES = 64 << 20


@dataclass(frozen=True)
class BackupResult:
    path: Path
    created_at: datetime
    schema_revision: str
    database: str  # sqlite or postgresql
    members: tuple[str, ...]
    size: int
    key_backend: str


@dataclass(frozen=True)
class RestoreOptions:
    database_url: str | None = None
    journals: Sequence[Path] = ()
    crls: Sequence[Path] = ()
    fetch_crls: bool = False
    assume_no_later_revocations: bool = False
    passphrase_file: Path | None = None


@dataclass(frozen=True)
class RestoreResult:
    data_dir: Path
    backup_created_at: datetime
    schema_revision: str
    database_url: str
    rows: int
    reapplied: tuple[str, ...]
    inserted: tuple[str, ...]
    crl_numbers: dict[str, int]
    evidence: tuple[str, ...]
    assumed: bool
    warnings: tuple[str, ...] = field(default_factory=tuple)


def _reason(exc: SQLAlchemyError) -> str:
    """The driver's words without the statement and its parameters (they may hold key references)."""
    cause = getattr(exc, "orig", None) or exc
    return " ".join(str(cause).split("\n")[0].split()) or type(cause).__name__


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


_PUBLIC_FILES = ("config.toml", "root.pem")  # restored 0644 as init writes them; everything else 0600


def _copy_in(source: Path, staging: Path, name: str) -> None:
    target = staging / name
    target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    with (
        source.open("rb") as reader,
        open(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as w,
    ):
        shutil.copyfileobj(reader, w)


def _snapshot_database(settings: Settings, staging: Path) -> tuple[str, str, list[str]]:
    """Copy the database into ``staging``: (kind, schema revision, key references)."""
    engine = create_database_engine(settings.database_url)
    try:
        if engine.dialect.name == "sqlite":
            database = engine.url.database
            if not database or not Path(database).is_file():
                raise StorageError(f"the SQLite database {database} does not exist", rule="schema-missing")
            target = staging / SQLITE_MEMBER
            write_private_file(target, b"")
            sqlite_online_backup(Path(database), target)
            copy = create_database_engine(f"sqlite:///{target}")
            try:
                with copy.connect() as conn:
                    revision = schema_revision(conn)
                    refs = _key_refs(conn)
                # The copy is read back in WAL mode; leave one self-contained file.
                with copy.connect() as conn:
                    conn.exec_driver_sql("PRAGMA journal_mode=DELETE")
            finally:
                copy.dispose()
            if revision is None:
                raise StorageError(
                    "the database holds no otward schema; nothing to back up", rule="schema-missing"
                )
            return "sqlite", revision, refs
        with engine.connect().execution_options(isolation_level="REPEATABLE READ") as conn, conn.begin():
            conn.execute(text("SET TRANSACTION READ ONLY"))
            target = staging / DUMP_MEMBER
            with open(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as out:
                revision, _ = dump_rows(conn, out, engine.dialect.name)
            return engine.dialect.name, revision, _key_refs(conn)
    except SQLAlchemyError as exc:
        raise StorageError(f"cannot back up the database: {_reason(exc)}", rule="backup") from exc
    finally:
        engine.dispose()


def _key_refs(conn: Connection) -> list[str]:
    refs = [ref for row in conn.execute(text("SELECT key_ref, ocsp_key_ref FROM authorities")) for ref in row]
    refs += [row[0] for row in conn.execute(text("SELECT key_ref FROM signers"))]
    return sorted(set(refs))


def create_backup(
    settings: Settings,
    out: Path,
    *,
    clock: Callable[[], datetime] = utc_now,
    actor: Actor = SYSTEM_ACTOR,
    audit: bool = True,
) -> BackupResult:
    """Write a backup archive of the installation to ``out`` (replacing it atomically; mode 0600)."""
    data_dir = settings.data_dir
    created_at = clock()
    staging = Path(tempfile.mkdtemp(prefix=".otward-backup-", dir=out.parent))
    try:
        # The witness first: it may then be older than the database copy (true), never newer.
        if (data_dir / WITNESS_FILE).is_file():
            _copy_in(data_dir / WITNESS_FILE, staging, WITNESS_FILE)
        database, revision, key_refs = _snapshot_database(settings, staging)
        # Key files after the database: a key the copy refers to was written before it was stored.
        for name in (CONFIG_FILE, "root.pem", "tls/server.pem", "tls/server.key"):
            if not (data_dir / name).is_file():
                raise ConfigError(f"{data_dir / name} is missing: is {data_dir} an otward data directory?")
            _copy_in(data_dir / name, staging, name)
        keys_dir = data_dir / "keys"
        if keys_dir.is_dir():
            for path in sorted(keys_dir.iterdir()):
                if path.is_file() and _MEMBER_NAME.fullmatch(f"keys/{path.name}"):
                    _copy_in(path, staging, f"keys/{path.name}")
        journal = settings.revocation_journal_path
        if journal.is_file():
            _copy_in(journal, staging, JOURNAL_FILE)
        missing = [
            ref
            for ref in key_refs
            if ref.startswith("file:") and not (staging / ref.removeprefix("file:")).is_file()
        ]
        if missing:
            raise ConfigError(
                f"the database refers to key files that are not in {data_dir}: {', '.join(missing)}",
                rule="backup",
            )
        members = sorted(str(p.relative_to(staging)) for p in staging.rglob("*") if p.is_file())
        pkcs11_refs = [ref for ref in key_refs if ref.startswith("pkcs11:")]
        manifest = {
            "format": MANIFEST_FORMAT,
            "version": 1,
            "otward_version": __version__,
            "created_at": created_at.astimezone(UTC).isoformat(),
            "schema_revision": revision,
            "database": database,
            "database_member": SQLITE_MEMBER if database == "sqlite" else DUMP_MEMBER,
            "key_backend": settings.keys.backend,
            "key_refs": key_refs,
            "note": (
                "keys in a PKCS#11 token are not in this archive: back the token up by its own means"
                if pkcs11_refs
                else "the CA key passphrase (ca.pass) is not in this archive: keep it separately"
            ),
            "members": [
                {
                    "name": name,
                    "sha256": _sha256_file(staging / name),
                    "size": (staging / name).stat().st_size,
                }
                for name in members
            ],
        }
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        _write_archive(staging, [MANIFEST, *members], out)
        size = out.stat().st_size
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    # An installation whose schema is behind (its service not upgraded yet) is backed up all the same;
    # only the event waits for a current schema (otward writes to no older one).
    if audit and revision == head_revision():
        with contextlib.closing(Pki.open(settings)) as pki:
            pki.audit.record(
                pki.audit.event(
                    actor,
                    EventType.BACKUP_CREATED,
                    str(out),
                    details={"schema_revision": revision, "database": database, "size": str(size)},
                )
            )
    return BackupResult(out, created_at, revision, database, tuple(members), size, settings.keys.backend)


def _write_archive(staging: Path, names: Sequence[str], out: Path) -> None:
    """A tar.gz of ``names`` at ``out``: created 0600 aside, fsynced, renamed over ``out``."""
    fd, temporary = tempfile.mkstemp(prefix=f".{out.name}.", dir=out.parent)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as raw:
            with tarfile.open(fileobj=raw, mode="w:gz", compresslevel=6) as archive:
                for name in names:
                    info = archive.gettarinfo(str(staging / name), arcname=name)
                    info.uid = info.gid = 0
                    info.uname = info.gname = ""
                    info.mode = 0o600
                    with (staging / name).open("rb") as handle:
                        archive.addfile(info, handle)
            raw.flush()
            os.fsync(raw.fileno())
        os.replace(temporary, out)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    directory = os.open(out.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


# --- restore -----------------------------------------------------------------------------------


def _damaged(archive: Path, why: str) -> IntegrityError:
    return IntegrityError(
        f"{archive}: {why}; the archive is damaged or was altered, nothing was written",
        rule="backup-checksum",
    )


@contextlib.contextmanager
def _open_archive(archive: Path) -> Iterator[tarfile.TarFile]:
    try:
        with tarfile.open(archive, mode="r:gz") as handle:
            yield handle
    except FileNotFoundError:
        raise ConfigError(f"{archive} does not exist", rule="file") from None
    except (tarfile.TarError, zlib.error, EOFError, OSError) as exc:
        if (
            isinstance(exc, OSError)
            and not isinstance(exc, tarfile.TarError | EOFError)
            and exc.errno is not None
        ):
            raise ConfigError(f"cannot read {archive}: {exc.strerror}", rule="file") from None
        raise _damaged(archive, f"not a readable backup archive ({exc})") from None


def read_manifest(archive: Path) -> dict[str, Any]:
    """The manifest of ``archive`` after checking every member against it (nothing is written):
    each member a plain file with an expected name, listed with its SHA-256, none missing or extra."""
    digests: dict[str, str] = {}
    manifest_bytes: bytes | None = None
    with _open_archive(archive) as handle:
        try:
            for member in handle:
                if not member.isreg() or not _MEMBER_NAME.fullmatch(member.name) or member.name in digests:
                    raise _damaged(archive, f"unexpected member {member.name!r}")
                reader = handle.extractfile(member)
                assert reader is not None  # noqa: S101 - a regular file has content
                digest = hashlib.sha256()
                if member.name == MANIFEST:
                    manifest_bytes = reader.read(1 << 20)
                    digest.update(manifest_bytes)
                else:
                    for chunk in iter(lambda: reader.read(1 << 20), b""):  # noqa: B023 - consumed at once
                        digest.update(chunk)
                digests[member.name] = digest.hexdigest()
        except (tarfile.TarError, zlib.error, EOFError) as exc:
            raise _damaged(archive, f"cannot be read to its end ({exc})") from None
    if manifest_bytes is None:
        raise _damaged(archive, "no manifest.json")
    try:
        manifest = json.loads(manifest_bytes)
        listed = {m["name"]: m["sha256"] for m in manifest["members"]}
        if manifest.get("format") != MANIFEST_FORMAT or manifest.get("version") != 1:
            raise ValueError("not an otward backup manifest")
    except (ValueError, KeyError, TypeError) as exc:
        raise _damaged(archive, f"manifest.json is unreadable ({exc})") from None
    del digests[MANIFEST]
    if set(listed) != set(digests):
        extra = sorted(set(digests) ^ set(listed))
        raise _damaged(archive, f"members and manifest differ ({', '.join(extra)})")
    for name, actual in sorted(digests.items()):
        if listed[name] != actual:
            raise _damaged(archive, f"{name} does not match its SHA-256 in the manifest")
    return dict(manifest)


def _extract(archive: Path, staging: Path) -> None:
    with _open_archive(archive) as handle:
        for member in handle:
            if member.name == MANIFEST:
                continue
            target = staging / member.name
            target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            reader = handle.extractfile(member)
            assert reader is not None  # noqa: S101 - checked by read_manifest
            with reader, open(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as out:
                shutil.copyfileobj(reader, out)
            if member.name in _PUBLIC_FILES:
                os.chmod(target, 0o644)


def _dump_rows(staging: Path, manifest: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """The backup's rows, from the SQLite copy or the JSON Lines dump."""
    if manifest["database"] == "sqlite":
        engine = create_database_engine(f"sqlite:///{staging / SQLITE_MEMBER}")
        try:
            with engine.connect() as conn:
                yield from iter_table_rows(conn)
        finally:
            engine.dispose()
        return
    with (staging / DUMP_MEMBER).open("rb") as handle:
        _, rows = iter_dump(handle, DUMP_MEMBER)
        yield from rows


def _backup_state(staging: Path, manifest: dict[str, Any]) -> BackupState:
    """The CAs (certificate, CRL number) and certificates (CA, revoked) of the backup."""
    cas: dict[str, tuple[x509.Certificate, int]] = {}
    held: dict[str, tuple[str, bool]] = {}
    if manifest["database"] == "sqlite":  # two queries instead of reading every table
        connection = sqlite3.connect(f"file:{staging / SQLITE_MEMBER}?mode=ro", uri=True)
        try:
            for name, der, number in connection.execute(
                "SELECT name, certificate_der, crl_number FROM authorities"
            ):
                cas[name] = (x509.load_der_x509_certificate(bytes(der)), int(number))
            for serial, ca, revoked in connection.execute(
                "SELECT serial, ca, revoked_at IS NOT NULL FROM certificates"
            ):
                held[serial] = (ca, bool(revoked))
        except sqlite3.Error as exc:
            raise IntegrityError(
                f"the backup's database cannot be read: {exc}", rule="backup-format"
            ) from exc
        finally:
            connection.close()
        return BackupState(cas, held)
    for table, row in _dump_rows(staging, manifest):
        if table == "authorities":
            cas[row["name"]] = (
                x509.load_der_x509_certificate(bytes(row["certificate_der"])),
                int(row["crl_number"]),
            )
        elif table == "certificates":
            held[row["serial"]] = (row["ca"], row["revoked_at"] is not None)
    return BackupState(cas, held)


def _load_crl(data: bytes, source: str) -> x509.CertificateRevocationList:
    try:
        if b"-----BEGIN" in data:
            return x509.load_pem_x509_crl(data)
        return x509.load_der_x509_crl(data)
    except ValueError:
        raise ConfigError(f"{source} is not a CRL (DER or PEM)", rule="crl") from None


def _fetch_crls(public_url: str, names: Sequence[str]) -> tuple[list[CrlEvidence], list[str]]:
    found, failed = [], []
    with httpx.Client(timeout=_FETCH_TIMEOUT, follow_redirects=False) as client:
        for name in names:
            url = f"{public_url}/crl/{name}.crl"
            try:
                response = client.get(url)
                if response.status_code != 200 or len(response.content) > _MAX_CRL_BYTES:
                    raise ValueError(f"HTTP {response.status_code}")
                found.append(CrlEvidence(url, _load_crl(response.content, url)))
            except (httpx.HTTPError, ValueError, ConfigError) as exc:
                failed.append(f"{url}: {exc}")
    return found, failed


def _check_passphrase(staging: Path, manifest: dict[str, Any], options: RestoreOptions) -> bytes:
    """The CA passphrase, checked against a key of the backup before anything is written (a file CA
    key, else the service's TLS key, which is encrypted with it under every key backend)."""
    refs = [str(r).removeprefix("file:") for r in manifest.get("key_refs", []) if str(r).startswith("file:")]
    probe = staging / (refs[0] if refs else "tls/server.key")
    if options.passphrase_file is not None:
        try:
            passphrase = options.passphrase_file.read_bytes().strip()
        except OSError as exc:
            raise ConfigError(f"cannot read {options.passphrase_file}: {exc.strerror}", rule="file") from None
    elif os.environ.get("OTWARD_CA_PASSPHRASE"):
        passphrase = os.environ["OTWARD_CA_PASSPHRASE"].encode()
    elif os.environ.get("OTWARD_CA_PASSPHRASE_FILE"):
        passphrase = Path(os.environ["OTWARD_CA_PASSPHRASE_FILE"]).read_bytes().strip()
    else:
        raise ConfigError(
            "restore needs the CA key passphrase, which a backup never holds: give --passphrase-file "
            "(the installation's ca.pass) or set OTWARD_CA_PASSPHRASE(_FILE)",
            rule="passphrase",
        )
    try:
        serialization.load_pem_private_key(probe.read_bytes(), passphrase)
    except (ValueError, TypeError):
        raise ConfigError(
            "the CA key passphrase given does not open the backup's keys", rule="passphrase"
        ) from None
    return passphrase


def _target_url(options: RestoreOptions, staging: Path, data_dir: Path) -> tuple[str, bool]:
    """The database to restore into, and whether it is the default SQLite file inside the data dir."""
    if options.database_url:
        return options.database_url, False
    settings = load_settings(staging)
    if settings.database_url == default_database_url(staging):
        return default_database_url(staging), True
    return settings.database_url, False


def _apply_plan(conn: Connection, plan: RestorePlan) -> None:
    for item in plan.revoke:
        conn.execute(
            update(certificates)
            .where(certificates.c.serial == item.serial, certificates.c.revoked_at.is_(None))
            .values(revoked_at=item.revoked_at, revocation_reason=item.reason.value)
        )
    records = []
    for entry in plan.insert:
        assert entry.certificate_der is not None  # noqa: S101 - plan_restore inserts only these
        assert entry.kind  # noqa: S101
        assert entry.profile  # noqa: S101
        cert = x509.load_der_x509_certificate(entry.certificate_der)
        records.append(
            CertificateRecord(
                serial_number=cert.serial_number,
                ca=entry.ca,
                profile=entry.profile,
                kind=CertificateKind(entry.kind),
                subject=cert.subject.rfc4514_string(),
                not_valid_before=cert.not_valid_before_utc,
                not_valid_after=cert.not_valid_after_utc,
                der=entry.certificate_der,
                created_at=cert.not_valid_before_utc,
                revoked_at=entry.revoked_at,
                revocation_reason=entry.reason,
                device_id=entry.device_id,
            )
        )
    insert_certificates(conn, records)
    for ca, number in plan.crl_numbers.items():
        conn.execute(
            update(authorities)
            .where(authorities.c.name == ca, authorities.c.crl_number < number)
            .values(crl_number=number)
        )


def _load_database(url: str, staging: Path, manifest: dict[str, Any], plan: RestorePlan) -> int:
    """Schema at the backup's revision, its rows, the schema upgraded, the plan applied: one transaction."""
    engine = create_database_engine(url)
    try:
        with engine.connect() as conn:
            existing = [t for t in conn.dialect.get_table_names(conn) if t]
        if existing:
            raise ConflictError(
                f"the database {engine.url.render_as_string(hide_password=True)} already holds tables "
                f"({', '.join(sorted(existing)[:5])}…); restore only into an empty database",
                rule="restore-target",
            )
        with engine.begin() as conn:
            upgrade_to(conn, str(manifest["schema_revision"]))
            counts = load_rows(conn, _dump_rows(staging, manifest))
            upgrade_to(conn, "head")
            _apply_plan(conn, plan)
        return sum(counts.values())
    except SQLAlchemyError as exc:
        raise StorageError(
            f"restoring the database failed: {exc.__class__.__name__}: {exc}", rule="restore"
        ) from exc
    finally:
        engine.dispose()


def _set_database_url(staging: Path, url: str) -> None:
    """Point the restored config.toml at the database restored into (the password stays out)."""
    from otward.config import DB_PASSWORD_FILE, split_database_password

    stored, password = split_database_password(url)
    path = staging / CONFIG_FILE
    lines = [
        line
        for line in path.read_text(encoding="utf-8").splitlines()
        if not line.lstrip().startswith(("database_url", "# database_url"))
    ]
    lines.insert(1, f"database_url = {json.dumps(stored)}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    if password is not None:
        write_private_file(staging / DB_PASSWORD_FILE, password.encode() + b"\n")


def restore_backup(
    archive: Path,
    data_dir: Path,
    options: RestoreOptions = RestoreOptions(),
    *,
    actor: Actor = SYSTEM_ACTOR,
    clock: Callable[[], datetime] = utc_now,
) -> RestoreResult:
    """Restore ``archive`` into the empty ``data_dir`` (and an empty database), re-applying every
    revocation the evidence shows since the backup; refuses before writing anything otherwise."""
    check_target(data_dir)
    manifest = read_manifest(archive)  # every checksum, before anything is written

    if not is_known_revision(str(manifest["schema_revision"])):
        raise ConfigError(
            f"{archive} was made by otward {manifest.get('otward_version')} with schema "
            f"{manifest['schema_revision']}, which this otward {__version__} does not know: restore "
            "with that version or a newer one",
            rule="schema-newer",
        )
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{data_dir.name}.restore-", dir=data_dir.parent))
    moved = False
    try:
        _extract(archive, staging)
        passphrase = _check_passphrase(staging, manifest, options)
        state = _backup_state(staging, manifest)
        journal: JournalContents | None = None
        sources: list[str] = []
        settings = load_settings(staging)
        live = settings.revocation_journal_path
        journal_paths = list(options.journals)
        if (
            live.is_absolute()
            and not live.is_relative_to(staging)
            and live.is_file()
            and live not in journal_paths
        ):
            journal_paths.append(live)  # the configured journal outside the data directory
        for path in journal_paths:
            contents = read_journal(path)
            journal = journal or JournalContents()
            journal.merge(contents)
            sources.append(str(path))
        archived = staging / JOURNAL_FILE
        covers = journal is not None
        if archived.is_file():  # copied after the database: it may hold revocations the copy lacks
            journal = journal or JournalContents()
            journal.merge(read_journal(archived))
        crls = []
        for path in options.crls:
            try:
                data = path.read_bytes()
            except OSError as exc:
                raise ConfigError(f"cannot read {path}: {exc.strerror}", rule="file") from None
            crls.append(CrlEvidence(str(path), _load_crl(data, str(path))))
        warnings: list[str] = []
        if options.fetch_crls:
            fetched, failed = _fetch_crls(settings.public_url, sorted(state.authorities))
            crls += fetched
            warnings += [f"CRL not fetched: {f}" for f in failed]
        plan = plan_restore(
            state,
            journal,
            crls,
            journal_sources=sources,
            journal_covers=covers,
            assume_no_later_revocations=options.assume_no_later_revocations,
        )
        if options.database_url:
            _set_database_url(staging, options.database_url)
        url, local = _target_url(options, staging, data_dir)
        if local:
            write_private_file(staging / "otward.db", b"")
        rows = _load_database(url, staging, manifest, plan)
        for name in (SQLITE_MEMBER, DUMP_MEMBER):
            (staging / name).unlink(missing_ok=True)
        journal_member = staging / JOURNAL_FILE
        if journal_member.exists() and settings.revocation_journal != Path(JOURNAL_FILE):
            journal_member.unlink()  # the configured journal lives elsewhere and goes on there
        if options.passphrase_file is not None:
            write_private_file(staging / PASSPHRASE_FILE, passphrase + b"\n")
        os.chmod(staging, 0o700)
        if data_dir.exists():
            data_dir.rmdir()  # empty (check_target)
        os.rename(staging, data_dir)
        moved = True
    finally:
        if not moved:
            shutil.rmtree(staging, ignore_errors=True)
    final_url = options.database_url or load_settings(data_dir).database_url
    _republish(data_dir, final_url, manifest, plan, actor, clock)
    return RestoreResult(
        data_dir=data_dir,
        backup_created_at=datetime.fromisoformat(str(manifest["created_at"])),
        schema_revision=str(manifest["schema_revision"]),
        database_url=final_url,
        rows=rows,
        reapplied=tuple(r.serial for r in plan.revoke),
        inserted=tuple(e.serial for e in plan.insert),
        crl_numbers=dict(plan.crl_numbers),
        evidence=plan.evidence,
        assumed=plan.assumed,
        warnings=tuple(warnings),
    )


def _republish(
    data_dir: Path,
    url: str,
    manifest: dict[str, Any],
    plan: RestorePlan,
    actor: Actor,
    clock: Callable[[], datetime],
) -> None:
    """Audit what was restored and re-applied, and sign a new CRL per CA (numbers continue past
    every number known)."""
    settings = load_settings(data_dir, database_url=url)
    pki = Pki.open(settings, migrate=True, clock=clock)
    try:
        events = [
            pki.audit.event(
                actor,
                EventType.BACKUP_RESTORED,
                str(data_dir),
                details={
                    "backup_created_at": str(manifest["created_at"]),
                    "schema_revision": str(manifest["schema_revision"]),
                    "reapplied": str(len(plan.revoke)),
                    "inserted": str(len(plan.insert)),
                    "evidence": ", ".join(plan.evidence) or "none",
                    "assumed_no_later_revocations": ", ".join(plan.uncovered) if plan.assumed else "",
                },
            )
        ]
        events += [
            pki.audit.event(
                actor,
                EventType.CERT_REVOKED,
                item.serial,
                reason=reason_name(item.reason),
                details={"ca": item.ca, "reapplied_from": item.source},
            )
            for item in plan.revoke
        ]
        pki.audit.record(*events)
        for authority in pki.authorities.list():
            pki.revocation.publish_crl(authority.name, actor)
    finally:
        pki.close()
