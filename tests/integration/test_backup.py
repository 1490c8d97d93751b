"""``otward backup`` / ``otward restore``: taken while ``otward serve`` runs and writes, restored into a
fresh data directory and database, and never bringing a revoked certificate back."""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import os
import stat
import tarfile
import threading
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.x509 import ocsp
from typer.testing import CliRunner

from otward.cli.app import app
from otward.config import load_settings
from otward.errors import ConfigError, ConflictError, IntegrityError, PolicyViolationError
from otward.services.backup import RestoreOptions, create_backup, read_manifest, restore_backup
from otward.services.pki import Pki
from tests.conftest import (
    _postgres_database,
    build_csr,
    make_key,
    ocsp_request_der,
    start_server,
    stop_server,
)

runner = CliRunner()


def _issue(client: httpx.Client, cn: str) -> str:
    response = client.post(
        "/api/v1/certificates", json={"csr": build_csr(make_key(), cn=cn).decode(), "profile": "tls-client"}
    )
    assert response.status_code == 201, response.text
    return str(response.json()["serial"])


def _crl_number(crl: x509.CertificateRevocationList) -> int:
    return crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number


def test_round_trip_while_serving_and_revoked_after_backup_stays_revoked(tmp_path, database_url):
    served = tmp_path / "served"
    server = start_server(served, database_url=database_url)
    try:
        with server.client() as client:
            before = _issue(client, "before-1")
            keep = _issue(client, "before-2")
            stop = threading.Event()
            written: list[str] = []

            def keep_writing() -> None:
                with server.client() as writer:
                    while not stop.is_set():
                        written.append(_issue(writer, f"during-{len(written)}"))

            thread = threading.Thread(target=keep_writing)
            thread.start()
            try:
                while len(written) < 3:  # the backup runs while issuance commits
                    threading.Event().wait(0.05)
                archive = tmp_path / "otward-backup.tar.gz"
                result = create_backup(load_settings(served, database_url=database_url), archive)
            finally:
                stop.set()
                thread.join()
            assert len(written) >= 3
            # After the backup: revoke a certificate the backup holds as valid, and issue + revoke a
            # new one the backup does not hold at all.
            assert (
                client.post(
                    f"/api/v1/certificates/{before}/revoke", json={"reason": "keyCompromise"}
                ).status_code
                == 200
            )
            after = _issue(client, "after-1")
            assert (
                client.post(f"/api/v1/certificates/{after}/revoke", json={"reason": "superseded"}).status_code
                == 200
            )
            published = x509.load_der_x509_crl(httpx.get(f"{server.http_url}/crl/issuing.crl").content)
    finally:
        stop_server(server)
    assert stat.S_IMODE(archive.stat().st_mode) == 0o600
    assert result.database == ("sqlite" if database_url is None else "postgresql")
    manifest = read_manifest(archive)
    assert {m["name"] for m in manifest["members"]} >= {
        "config.toml",
        "keys/ca-issuing.key.pem",
        "tls/server.key",
    }
    assert "ca.pass" not in {m["name"] for m in manifest["members"]}
    assert manifest["schema_revision"] == result.schema_revision

    with contextlib.ExitStack() as stack:
        target_db = None
        if database_url is not None:
            target_db = stack.enter_context(contextlib.contextmanager(_postgres_database)())
        restored = tmp_path / "restored"
        # Without evidence of what happened since, the restore refuses and writes nothing.
        with pytest.raises(PolicyViolationError, match="--revocations FILE"):
            restore_backup(
                archive,
                restored,
                RestoreOptions(database_url=target_db, passphrase_file=served / "ca.pass"),
            )
        assert not restored.exists()
        assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".restored")) == []
        outcome = restore_backup(
            archive,
            restored,
            RestoreOptions(
                database_url=target_db,
                journals=(served / "revocations.jsonl",),
                passphrase_file=served / "ca.pass",
            ),
        )
        assert outcome.reapplied == (before,)
        assert outcome.inserted == (after,)
        pki = Pki.open(load_settings(restored, database_url=target_db))
        try:
            for serial in (before, keep, *written[:1]):
                assert pki.issuance is not None
                assert pki.stores.certificates.get_certificate(int(serial, 16)) is not None
            revoked = pki.stores.certificates.get_certificate(int(before, 16))
            assert revoked is not None
            assert revoked.revoked_at is not None
            assert revoked.revocation_reason is x509.ReasonFlags.key_compromise
            reinserted = pki.stores.certificates.get_certificate(int(after, 16))
            assert reinserted is not None
            assert reinserted.revoked_at is not None
            kept = pki.stores.certificates.get_certificate(int(keep, 16))
            assert kept is not None
            assert kept.revoked_at is None
            # The CRL lists both and continues past the number that was published.
            stored = pki.stores.crls.get_crl("issuing")
            assert stored is not None
            crl = x509.load_der_x509_crl(stored.der)
            assert crl.get_revoked_certificate_by_serial_number(int(before, 16)) is not None
            assert crl.get_revoked_certificate_by_serial_number(int(after, 16)) is not None
            assert _crl_number(crl) > _crl_number(published)
            # OCSP answers revoked for both.
            issuing = pki.authorities.get("issuing").certificate
            for serial in (before, after):
                answer = ocsp.load_der_ocsp_response(
                    pki.ocsp.respond(ocsp_request_der(issuing, int(serial, 16))).der
                )
                assert answer.certificate_status is ocsp.OCSPCertStatus.REVOKED
            assert pki.audit.verify().check.ok
            types = [r.event.type.value for r in pki.stores.audit.iter_audit()]
            assert "backup.restored" in types
        finally:
            pki.close()
        assert stat.S_IMODE(restored.stat().st_mode) == 0o700


@pytest.fixture
def backed_up(tmp_path):
    data = tmp_path / "d"
    result = runner.invoke(app, ["init", "--data", str(data), "--json"])
    assert result.exit_code == 0, result.output
    archive = tmp_path / "b.tar.gz"
    result = runner.invoke(app, ["backup", "--data", str(data), "--out", str(archive)])
    assert result.exit_code == 0, result.output
    return data, archive


def test_the_cli_writes_0600_and_never_overwrites_without_force(backed_up):
    data, archive = backed_up
    assert stat.S_IMODE(archive.stat().st_mode) == 0o600
    again = runner.invoke(app, ["backup", "--data", str(data), "--out", str(archive)])
    assert again.exit_code == 1
    assert "exists" in again.output
    forced = runner.invoke(app, ["backup", "--data", str(data), "--out", str(archive), "--force", "--json"])
    assert forced.exit_code == 0, forced.output
    assert json.loads(forced.output)["database"] == "sqlite"


def _flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def test_a_flipped_byte_is_refused_before_anything_is_written(backed_up, tmp_path):
    data, archive = backed_up
    _flip(archive, archive.stat().st_size // 2)
    target = tmp_path / "r"
    with pytest.raises(IntegrityError, match="damaged or was altered, nothing was written"):
        restore_backup(archive, target, RestoreOptions(passphrase_file=data / "ca.pass"))
    assert not target.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".r.restore")]


def test_a_member_that_does_not_match_the_manifest_is_refused(backed_up, tmp_path):
    data, archive = backed_up
    rebuilt = tmp_path / "rebuilt.tar.gz"
    with tarfile.open(archive) as source, tarfile.open(rebuilt, "w:gz") as out:
        for member in source:
            content = source.extractfile(member).read()  # type: ignore[union-attr]
            if member.name == "config.toml":
                content = content.replace(b'organization = "otward"', b'organization = "evil!!"')
            member.size = len(content)
            out.addfile(member, io.BytesIO(content))
    target = tmp_path / "r"
    with pytest.raises(IntegrityError, match=r"config\.toml does not match its SHA-256"):
        restore_backup(rebuilt, target, RestoreOptions(passphrase_file=data / "ca.pass"))
    assert not target.exists()
    not_gzip = tmp_path / "plain.tar.gz"
    not_gzip.write_bytes(gzip.decompress(archive.read_bytes())[:1000])
    with pytest.raises(IntegrityError):
        read_manifest(not_gzip)


def test_a_non_empty_directory_or_database_is_refused(backed_up, tmp_path):
    data, archive = backed_up
    target = tmp_path / "r"
    target.mkdir()
    (target / "something").write_text("x")
    with pytest.raises(ConfigError, match="not empty"):
        restore_backup(
            archive,
            target,
            RestoreOptions(passphrase_file=data / "ca.pass", assume_no_later_revocations=True),
        )
    assert os.listdir(target) == ["something"]
    # a database that holds tables (the live one) is refused too, and nothing is left behind
    with pytest.raises(ConflictError, match="already holds tables"):
        restore_backup(
            archive,
            tmp_path / "r2",
            RestoreOptions(
                database_url=load_settings(data).database_url,
                passphrase_file=data / "ca.pass",
                assume_no_later_revocations=True,
            ),
        )
    assert not (tmp_path / "r2").exists()


def test_restore_needs_the_right_passphrase(backed_up, tmp_path):
    _, archive = backed_up
    wrong = tmp_path / "wrong.pass"
    wrong.write_text("not it\n")
    with pytest.raises(ConfigError, match="does not open the backup's keys"):
        restore_backup(
            archive, tmp_path / "r", RestoreOptions(passphrase_file=wrong, assume_no_later_revocations=True)
        )
    with pytest.raises(ConfigError, match=r"--passphrase-file"):
        restore_backup(archive, tmp_path / "r", RestoreOptions(assume_no_later_revocations=True))
    assert not (tmp_path / "r").exists()


def test_cli_restore_with_a_current_crl_and_the_declaration(backed_up, tmp_path):
    data, archive = backed_up
    crl = tmp_path / "issuing.crl"
    assert (
        runner.invoke(
            app, ["crl", "generate", "--data", str(data), "--ca", "issuing", "--out", str(crl)]
        ).exit_code
        == 0
    )
    target = tmp_path / "r"
    refused = runner.invoke(
        app,
        [
            "restore",
            str(archive),
            "--data",
            str(target),
            "--passphrase-file",
            str(data / "ca.pass"),
            "--crl",
            str(crl),
        ],
    )
    assert refused.exit_code == 1
    assert "for CA(s) root" in refused.output  # the CRL covers issuing, nothing covers root
    done = runner.invoke(
        app,
        [
            "restore",
            str(archive),
            "--data",
            str(target),
            "--passphrase-file",
            str(data / "ca.pass"),
            "--crl",
            str(crl),
            "--assume-no-later-revocations",
            "--json",
        ],
    )
    assert done.exit_code == 0, done.output
    info = json.loads(done.output)
    assert info["assumed_no_later_revocations"] is True
    assert info["crl_numbers_continue_after"]["issuing"] == 2
    doctor = runner.invoke(app, ["doctor", "--data", str(target)])
    assert doctor.exit_code == 0, doctor.output


def test_a_backup_of_an_older_schema_is_migrated_on_restore(tmp_path):
    from alembic import command

    from otward.adapters.db.dump import head_revision
    from otward.adapters.db.engine import _alembic_config, create_database_engine

    data = tmp_path / "d"
    assert runner.invoke(app, ["init", "--data", str(data), "--json"]).exit_code == 0
    engine = create_database_engine(load_settings(data).database_url)
    try:
        with engine.begin() as conn:
            config = _alembic_config()
            config.attributes["connection"] = conn
            command.downgrade(config, "-1")
    finally:
        engine.dispose()
    archive = tmp_path / "old.tar.gz"
    result = create_backup(load_settings(data), archive)
    assert result.schema_revision != head_revision()
    restored = tmp_path / "r"
    outcome = restore_backup(
        archive,
        restored,
        RestoreOptions(passphrase_file=data / "ca.pass", journals=(data / "revocations.jsonl",)),
    )
    assert outcome.schema_revision == result.schema_revision
    doctor = runner.invoke(app, ["doctor", "--data", str(restored)])
    assert doctor.exit_code == 0, doctor.output
    assert "the schema is at this otward's newest revision" in doctor.output


def test_a_pkcs11_installation_backs_up_key_references_only(tmp_path):
    from otward.config import KeySettings
    from otward.services.bootstrap import initialize
    from tests.conftest import softhsm_token

    with softhsm_token(tmp_path / "hsm") as token:
        data = tmp_path / "d"
        initialize(
            data,
            keys=KeySettings(
                backend="pkcs11",
                pkcs11_module=token.module,
                pkcs11_token=token.label,
                pkcs11_pin_file=token.pin_file,
            ),
        )
        archive = tmp_path / "b.tar.gz"
        result = create_backup(load_settings(data), archive)
        assert result.key_backend == "pkcs11"
        manifest = read_manifest(archive)
        assert manifest["key_refs"]
        assert all(ref.startswith("pkcs11:") for ref in manifest["key_refs"])
        assert not [m for m in manifest["members"] if m["name"].startswith("keys/")]
        assert "back the token up by its own means" in manifest["note"]
        restored = tmp_path / "r"
        restore_backup(
            archive,
            restored,
            RestoreOptions(passphrase_file=data / "ca.pass", journals=(data / "revocations.jsonl",)),
        )
        pki = Pki.open(load_settings(restored))
        try:  # the restored installation signs with the keys still in the token
            crl = pki.revocation.publish_crl("issuing")
            issuing = pki.authorities.get("issuing").certificate
            assert x509.load_der_x509_crl(crl.der).is_signature_valid(issuing.public_key())
        finally:
            pki.close()


def test_a_journal_that_cannot_be_written_stops_the_crl_until_it_can(sqlite_pki, tmp_path, csr_factory):
    from otward.adapters.revocation_journal import FileRevocationJournal, read_journal
    from otward.core.records import format_serial

    pki = sqlite_pki
    issued = pki.issuance.issue(csr_factory(cn="journal-1"), profile="tls-client", ca="issuing")
    blocked = tmp_path / "journal-dir"
    blocked.mkdir()
    before = pki.stores.crls.get_crl("issuing")
    pki.revocation._journal = FileRevocationJournal(blocked)  # a journal path that is a directory
    with pytest.raises(ConfigError, match="journal-dir"):
        pki.revocation.revoke(issued.record.serial_number, x509.ReasonFlags.key_compromise)
    assert pki.stores.crls.get_crl("issuing") == before  # no CRL without its journal entry
    assert pki.stores.certificates.get_certificate(issued.record.serial_number).revoked_at is not None
    journal_path = tmp_path / "journal.jsonl"
    pki.revocation._journal = FileRevocationJournal(journal_path)
    assert pki.revocation.publish_stale() == ["issuing"]
    entry = read_journal(journal_path).revocations[format_serial(issued.record.serial_number)]
    assert entry.certificate_der == issued.record.der
    assert entry.profile == "tls-client"


def test_a_journal_on_another_disk_outlives_the_data_directory(tmp_path, csr_factory):
    """The design case: the journal is configured outside the data directory; the data directory is
    lost after a revocation; the restore finds the journal by itself and keeps the revocation."""
    import shutil

    from otward.services.bootstrap import initialize

    data = tmp_path / "d"
    elsewhere = tmp_path / "other-disk" / "revocations.jsonl"
    elsewhere.parent.mkdir()
    initialize(data)
    config = data / "config.toml"
    lines = config.read_text().splitlines()
    config.write_text("\n".join([lines[0], f'revocation_journal = "{elsewhere}"', *lines[1:]]) + "\n")
    shutil.move(data / "revocations.jsonl", elsewhere)  # the operator moves the journal there
    passphrase = tmp_path / "ca.pass"
    shutil.copy(data / "ca.pass", passphrase)
    pki = Pki.open(load_settings(data))
    try:
        issued = pki.issuance.issue(csr_factory(cn="plc-9"), profile="tls-client", ca="issuing")
    finally:
        pki.close()
    archive = tmp_path / "b.tar.gz"
    create_backup(load_settings(data), archive)
    pki = Pki.open(load_settings(data))
    try:
        pki.revocation.revoke(issued.record.serial_number, x509.ReasonFlags.key_compromise)
    finally:
        pki.close()
    assert elsewhere.is_file()
    assert not (data / "revocations.jsonl").exists()
    shutil.rmtree(data)  # the disaster

    outcome = restore_backup(archive, data, RestoreOptions(passphrase_file=passphrase))
    assert outcome.reapplied == (issued.record.serial,)
    assert outcome.evidence == (f"journal {elsewhere}",)
    pki = Pki.open(load_settings(data))
    try:
        record = pki.stores.certificates.get_certificate(issued.record.serial_number)
        assert record is not None
        assert record.revoked_at is not None
    finally:
        pki.close()
    assert not (data / "revocations.jsonl").exists()  # the journal goes on where it is configured


@pytest.mark.postgres
def test_a_sqlite_backup_restores_into_postgresql(backed_up, tmp_path):
    data, archive = backed_up
    with contextlib.contextmanager(_postgres_database)() as url:
        restored = tmp_path / "r"
        outcome = restore_backup(
            archive,
            restored,
            RestoreOptions(
                database_url=url, passphrase_file=data / "ca.pass", journals=(data / "revocations.jsonl",)
            ),
        )
        assert outcome.rows > 0
        assert load_settings(restored).database_url == url  # config.toml now names it
        doctor = runner.invoke(app, ["doctor", "--data", str(restored), "--json"])
        assert doctor.exit_code == 0, doctor.output
        assert json.loads(doctor.output)["needs_action"] is False


@pytest.mark.parametrize("name", ["../evil", "/etc/cron.d/evil", "keys/..", "keys/sub/x", "ca.pass"])
def test_a_member_outside_the_expected_names_is_refused(backed_up, tmp_path, name):
    data, archive = backed_up
    hostile = tmp_path / "hostile.tar.gz"
    with tarfile.open(archive) as source, tarfile.open(hostile, "w:gz") as out:
        for member in source:
            out.addfile(member, source.extractfile(member))
        extra = tarfile.TarInfo(name)
        extra.size = 4
        out.addfile(extra, io.BytesIO(b"evil"))
    with pytest.raises(IntegrityError, match="unexpected member"):
        restore_backup(hostile, tmp_path / "r", RestoreOptions(passphrase_file=data / "ca.pass"))
    assert not (tmp_path / "r").exists()
    assert not (tmp_path / "evil").exists()
