"""The ``otward`` command line, run in-process with Typer's runner (and once as a real process)."""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys

import pytest
from cryptography import x509
from typer.testing import CliRunner

from otward.cli.app import app
from tests.conftest import build_csr, make_key

pytestmark = pytest.mark.integration

runner = CliRunner()


def run(*args: str, code: int = 0) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == code, result.output
    return result.output


@pytest.fixture
def data(tmp_path):
    directory = tmp_path / "d"
    run("init", "--data", str(directory), "--org", "ACME Chemicals", "--json")
    return directory


def test_init_creates_a_complete_private_installation(tmp_path):
    directory = tmp_path / "plant"
    info = json.loads(run("init", "--data", str(directory), "--key-type", "ec-p384", "--json"))
    assert info["admin_token_file"] == str(directory / "admin.token")
    for name in ("admin.token", "ca.pass", "tls/server.key", "tls/server.pem"):
        assert stat.S_IMODE((directory / name).stat().st_mode) == 0o600, name
    for key_file in (directory / "keys").iterdir():
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
        assert key_file.read_bytes().startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    # the admin token is stored only hashed
    secret = (directory / "admin.token").read_text().strip()[-43:].encode()
    stored = b"".join(p.read_bytes() for p in directory.glob("otward.db*"))
    assert b"SQLite format 3" in stored
    assert secret not in stored
    assert stat.S_IMODE((directory / "otward.db").stat().st_mode) == 0o600
    cas = json.loads(run("ca", "list", "--data", str(directory), "--json"))
    assert [(c["name"], c["parent"], c["path_length"]) for c in cas] == [
        ("root", None, None),
        ("issuing", "root", 0),
    ]
    root = x509.load_pem_x509_certificate((directory / "root.pem").read_bytes())
    assert root.public_key().curve.name == "secp384r1"


def test_init_refuses_an_existing_directory_and_keeps_its_keys(data):
    before = {p: p.read_bytes() for p in (data / "keys").iterdir()}
    output = run("init", "--data", str(data), code=1)
    assert "already exists" in output
    assert "creating" not in output  # refused before it says what it would create
    assert {p: p.read_bytes() for p in (data / "keys").iterdir()} == before


def test_init_with_passphrase_from_environment_writes_no_passphrase_file(tmp_path, monkeypatch):
    monkeypatch.setenv("OTWARD_CA_PASSPHRASE", "correct horse battery staple 42")
    run("init", "--data", str(tmp_path / "d"), "--json")
    assert not (tmp_path / "d" / "ca.pass").exists()
    csr = tmp_path / "r.csr"
    csr.write_bytes(build_csr(make_key(), cn="op"))
    run("cert", "issue", "--csr", str(csr), "--profile", "tls-client", "--data", str(tmp_path / "d"))
    monkeypatch.setenv("OTWARD_CA_PASSPHRASE", "wrong passphrase, long enough")
    output = run(
        "cert", "issue", "--csr", str(csr), "--profile", "tls-client", "--data", str(tmp_path / "d"), code=1
    )
    assert "wrong CA passphrase" in output


def test_bad_key_type_is_a_clear_error(tmp_path):
    assert "unknown key type 'rsa-1024'" in run(
        "init", "--data", str(tmp_path / "x"), "--key-type", "rsa-1024", code=1
    )
    assert not (tmp_path / "x").exists()


def test_ca_create_export_and_issue_from_it(data, tmp_path):
    created = json.loads(
        run(
            "ca",
            "create",
            "plant-a",
            "--parent",
            "root",
            "--permitted-dns",
            "plant-a.example",
            "--data",
            str(data),
            "--json",
        )
    )
    assert created["permitted_dns"] == ["plant-a.example"]
    chain = run("ca", "export", "plant-a", "--data", str(data))
    assert chain.count("BEGIN CERTIFICATE") == 2
    assert "already exists" in run("ca", "create", "plant-a", "--parent", "root", "--data", str(data), code=1)
    assert "cannot sign sub-CAs" in run(
        "ca", "create", "x", "--parent", "issuing", "--data", str(data), code=1
    )
    assert "not found" in run("ca", "export", "nope", "--data", str(data), code=1)
    csr = tmp_path / "r.csr"
    csr.write_bytes(build_csr(make_key(), cn=None, dns=("hmi.plant-a.example",)))
    out = tmp_path / "c.pem"
    chain_out = tmp_path / "chain.pem"
    run(
        "cert",
        "issue",
        "--csr",
        str(csr),
        "--profile",
        "tls-server",
        "--ca",
        "plant-a",
        "--out",
        str(out),
        "--chain-out",
        str(chain_out),
        "--data",
        str(data),
    )
    cert = x509.load_pem_x509_certificate(out.read_bytes())
    cert.verify_directly_issued_by(x509.load_pem_x509_certificates(chain_out.read_bytes())[0])
    csr.write_bytes(build_csr(make_key(), cn=None, dns=("hmi.plant-b.example",)))
    assert "outside the name constraints" in run(
        "cert",
        "issue",
        "--csr",
        str(csr),
        "--profile",
        "tls-server",
        "--ca",
        "plant-a",
        "--data",
        str(data),
        code=1,
    )


def test_cert_issue_list_show_revoke(data, tmp_path):
    csr = tmp_path / "r.csr"
    csr.write_bytes(build_csr(make_key(), cn="eng-1"))
    issued = json.loads(
        run(
            "cert",
            "issue",
            "--csr",
            str(csr),
            "--profile",
            "modbus-role",
            "--role",
            "Engineer",
            "--days",
            "30",
            "--data",
            str(data),
            "--json",
        )
    )
    serial = issued["serial"]
    listing = json.loads(run("cert", "list", "--expiring-within", "31d", "--data", str(data), "--json"))
    assert [i["serial"] for i in listing["items"]] == [serial]
    shown = json.loads(run("cert", "show", serial.upper(), "--data", str(data), "--json"))
    assert shown["profile"] == "modbus-role"
    assert run("cert", "show", serial, "--pem", "--data", str(data)) == issued["certificate"]
    revoked = json.loads(
        run("cert", "revoke", serial, "--reason", "keyCompromise", "--data", str(data), "--json")
    )
    assert revoked["status"] == "revoked"
    assert "already revoked" in run("cert", "revoke", serial, "--data", str(data), code=1)
    listing = json.loads(run("cert", "list", "--status", "revoked", "--data", str(data), "--json"))
    assert [i["serial"] for i in listing["items"]] == [serial]
    assert "not a duration" in run("cert", "list", "--expiring-within", "soon", "--data", str(data), code=1)
    assert "unknown revocation reason" in run(
        "cert", "revoke", serial, "--reason", "lost", "--data", str(data), code=1
    )


def test_crl_generate_writes_der(data, tmp_path):
    out = tmp_path / "issuing.crl"
    report = json.loads(
        run("crl", "generate", "--ca", "issuing", "--out", str(out), "--data", str(data), "--json")
    )
    crl = x509.load_der_x509_crl(out.read_bytes())
    assert crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == report[0]["crl_number"]


def test_read_only_commands_need_no_passphrase(data, monkeypatch):
    (data / "ca.pass").rename(data / "ca.pass.offline")
    run("ca", "list", "--data", str(data))
    run("ca", "export", "root", "--data", str(data))
    run("cert", "list", "--data", str(data))


def test_data_directory_from_environment(data, monkeypatch):
    monkeypatch.setenv("OTWARD_DATA", str(data))
    assert "issuing" in run("ca", "list")


def test_missing_data_directory_says_run_init(tmp_path):
    assert "run 'otward init'" in run("ca", "list", "--data", str(tmp_path / "none"), code=1)


def test_console_script_runs_as_a_process(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "otward", "--version"],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "OTWARD_DATA": str(tmp_path)},
    )
    assert result.stdout.strip() == __import__("otward").__version__


def test_ip_constrained_sub_ca(data, tmp_path):
    created = json.loads(
        run(
            "ca",
            "create",
            "line-2",
            "--parent",
            "root",
            "--permitted-dns",
            "line-2.example",
            "--permitted-ip",
            "10.20.0.0/16",
            "--data",
            str(data),
            "--json",
        )
    )
    assert created["permitted_ip"] == ["10.20.0.0/16"]
    csr = tmp_path / "r.csr"
    csr.write_bytes(build_csr(make_key(), cn=None, dns=("plc.line-2.example",), ips=("10.30.0.1",)))
    output = run(
        "cert",
        "issue",
        "--csr",
        str(csr),
        "--profile",
        "tls-server",
        "--ca",
        "line-2",
        "--data",
        str(data),
        code=1,
    )
    assert "ip address '10.30.0.1' is outside the name constraints" in output
    assert "not an IP network" in run(
        "ca", "create", "x", "--parent", "root", "--permitted-ip", "10.0.0.1/8", "--data", str(data), code=1
    )


def test_api_tokens_can_be_created_listed_and_revoked(data):
    from fastapi.testclient import TestClient

    from otward.config import load_settings
    from otward.http.app import create_app
    from otward.services.pki import Pki

    created = json.loads(run("api-token", "create", "--name", "prometheus", "--data", str(data), "--json"))
    listed = json.loads(run("api-token", "list", "--data", str(data), "--json"))
    assert [t["name"] for t in listed] == ["admin", "prometheus"]
    assert all("token" not in t for t in listed)
    pki = Pki.open(load_settings(data))
    try:
        with TestClient(create_app(pki), base_url="https://testserver") as client:
            headers = {"Authorization": f"Bearer {created['token']}"}
            assert client.get("/api/v1/cas", headers=headers).status_code == 200
            run("api-token", "revoke", created["token_id"], "--data", str(data))
            assert client.get("/api/v1/cas", headers=headers).status_code == 401
        types = [r.event.type.value for r in pki.stores.audit.iter_audit()]
        assert types[-2:] == ["token.revoked", "auth.failed"]
    finally:
        pki.close()
    assert "already revoked" in run("api-token", "revoke", created["token_id"], "--data", str(data), code=1)
    assert "not found" in run("api-token", "revoke", "0123456789abcdef", "--data", str(data), code=1)


def test_api_tokens_carry_a_scope_and_an_expiry(data):
    from fastapi.testclient import TestClient

    from otward.config import load_settings
    from otward.http.app import create_app
    from otward.services.pki import Pki

    created = json.loads(
        run(
            "api-token",
            "create",
            "--name",
            "prometheus",
            "--scope",
            "metrics",
            "--expires",
            "30d",
            "--data",
            str(data),
            "--json",
        )
    )
    assert created["scope"] == "metrics"
    listed = {t["name"]: t for t in json.loads(run("api-token", "list", "--data", str(data), "--json"))}
    assert listed["admin"]["scope"] == "admin"  # the token made at init, and any made before scopes
    assert listed["admin"]["expires_at"] is None
    assert listed["prometheus"]["scope"] == "metrics"
    assert listed["prometheus"]["expires_at"]
    assert "scope" in run("api-token", "list", "--data", str(data))
    assert "unknown token scope 'root'" in run(
        "api-token", "create", "--name", "x", "--scope", "root", "--data", str(data), code=2
    )
    pki = Pki.open(load_settings(data))
    try:
        with TestClient(create_app(pki), base_url="https://testserver") as client:
            headers = {"Authorization": f"Bearer {created['token']}"}
            assert client.get("/metrics", headers=headers).status_code == 200
            assert client.get("/api/v1/cas", headers=headers).status_code == 403
    finally:
        pki.close()


def test_signers_are_listed_and_rotated(data):
    signers = {s["name"]: s for s in json.loads(run("signer", "list", "--data", str(data), "--json"))}
    assert set(signers) == {"audit"}  # init signed an audit head; the edge signer is made on first use
    rotated = json.loads(run("signer", "rotate", "audit", "--data", str(data), "--json"))
    assert rotated["serial"] != signers["audit"]["serial"]
    assert not rotated["revoked"]
    again = json.loads(
        run("signer", "rotate", "audit", "--revoke-previous", "superseded", "--data", str(data), "--json")
    )
    shown = json.loads(run("cert", "show", rotated["serial"], "--data", str(data), "--json"))
    assert shown["revoked_at"] is not None  # the previous one, revoked as asked
    assert shown["revocation_reason"] == "superseded"
    assert again["serial"] != rotated["serial"]
    assert "no signer 'tls'" in run("signer", "rotate", "tls", "--data", str(data), code=1)
    assert "certificateHold" in run(
        "signer", "rotate", "audit", "--revoke-previous", "certificateHold", "--data", str(data), code=1
    )
    assert "audit trail intact" in run("audit", "verify", "--data", str(data))
    # revoking the current audit signer by hand succeeds (the head stays unsigned until it is rotated)
    assert "revoked" in run(
        "cert", "revoke", again["serial"], "--reason", "keyCompromise", "--data", str(data)
    )
    listed = {s["name"]: s for s in json.loads(run("signer", "list", "--data", str(data), "--json"))}
    assert listed["audit"]["revoked"]
    run("signer", "rotate", "audit", "--data", str(data))
    assert "audit trail intact" in run("audit", "verify", "--data", str(data))


# --- robustness: one line and exit 1, never a traceback (issue 11, item 17) -----------------------


def run_process(*args: str) -> subprocess.CompletedProcess[str]:
    """``python -m otward ARGS`` as the operator runs it: what reaches the terminal, and the exit code."""
    return subprocess.run([sys.executable, "-m", "otward", *args], capture_output=True, text=True)


def assert_one_line_error(result: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_preprovision_into_an_existing_file_is_one_line(data, tmp_path):
    run("owner", "create", "acme", "--data", str(data))
    existing = tmp_path / "devices"
    existing.write_text("not a directory")
    result = run_process("device", "preprovision", "--owner", "acme", "--count", "1", "--out", str(existing),
                         "--data", str(data))  # fmt: skip
    assert_one_line_error(result, str(existing), "not a directory", "[file]")
    assert existing.read_text() == "not a directory"
    nope = str(tmp_path / "nope")
    missing = run_process("device", "preprovision", "--owner", "acme", "--count", "1", "--out",
                          str(tmp_path / "p"), "--password-file", nope, "--data", str(data))  # fmt: skip
    assert_one_line_error(missing, str(tmp_path / "nope"), "[file]")


def test_audit_verify_names_a_record_with_a_garbage_time(data):
    import sqlite3

    with sqlite3.connect(data / "otward.db") as db:
        db.execute("UPDATE audit_events SET time = 'garbage' WHERE sequence = 3")
    result = run_process("audit", "verify", "--data", str(data))
    assert result.returncode == 1
    assert "Traceback" not in result.stderr + result.stdout
    assert "record 3" in result.stdout + result.stderr
    listed = run_process("audit", "list", "--data", str(data))
    assert_one_line_error(listed, "audit record 3 is unreadable", "[audit-unreadable]")


def test_cert_issue_refuses_to_overwrite_before_issuing(data, tmp_path):
    csr = tmp_path / "op.csr"
    csr.write_bytes(build_csr(make_key(), cn="op"))
    out = tmp_path / "op.pem"
    out.write_text("keep me")
    count = len(json.loads(run("cert", "list", "--data", str(data), "--json")))
    result = run_process("cert", "issue", "--csr", str(csr), "--profile", "tls-client", "--out", str(out),
                         "--data", str(data))  # fmt: skip
    assert_one_line_error(result, str(out), "exists", "[file-exists]")
    assert out.read_text() == "keep me"
    assert len(json.loads(run("cert", "list", "--data", str(data), "--json"))) == count  # nothing issued
    lost = run_process("cert", "issue", "--csr", str(csr), "--profile", "tls-client", "--out",
                       str(tmp_path / "no-such-dir" / "op.pem"), "--data", str(data))  # fmt: skip
    assert_one_line_error(lost, "does not exist")
    run("cert", "issue", "--csr", str(csr), "--profile", "tls-client", "--out", str(out), "--force",
        "--data", str(data))  # fmt: skip
    assert x509.load_pem_x509_certificate(out.read_bytes()).subject.rfc4514_string() == "CN=op"


def test_audit_export_file_is_private_and_not_overwritten(data, tmp_path):
    out = tmp_path / "trail.jsonl"
    run("audit", "export", "--out", str(out), "--data", str(data))
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    first = out.read_text()
    assert "exists" in run("audit", "export", "--out", str(out), "--data", str(data), code=1)
    run("audit", "export", "--format", "syslog", "--out", str(out), "--force", "--data", str(data))
    assert out.read_text() != first
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".trail")]  # no temporary left


def test_error_lines_are_text_not_markup(tmp_path):
    """Rich would swallow '[rule]' and any bracketed text from the input as markup."""
    result = run_process("ca", "list", "--data", str(tmp_path / "[bold]x[/bold]"))
    assert_one_line_error(result, "[bold]x[/bold]")


# --- secrets stay out of config.toml and off the screen (issue 11, item 18) ------------------------


@pytest.mark.postgres
def test_database_password_goes_to_a_private_file_and_is_never_printed(tmp_path):
    from otward.config import load_settings
    from tests.conftest import _postgres_database

    password = "s3cr3t-p@ss/word"

    def with_password(url: str) -> tuple[str, str, str, str]:
        scheme, rest = url.split("://", 1)
        user, host = rest.split("@", 1)
        quoted = password.replace("@", "%40").replace("/", "%2F")
        return f"{scheme}://{user}:{quoted}@{host}", scheme, user, host

    for url in _postgres_database():  # as text on the console
        full, scheme, user, host = with_password(url)
        directory = tmp_path / "pg"
        result = run_process("init", "--data", str(directory), "--db", full)
        assert result.returncode == 0, result.stderr
        assert "s3cr3t" not in result.stdout + result.stderr
        assert "***" in result.stdout
        config = (directory / "config.toml").read_text()
        assert "s3cr3t" not in config
        assert f"{user}@{host}" in config
        stored = directory / "db.password"
        assert stat.S_IMODE(stored.stat().st_mode) == 0o600
        assert stored.read_text().strip() == password
        settings = load_settings(directory)
        assert settings.database_url.startswith(f"{scheme}://{user}:s3cr3t")
        assert "s3cr3t" not in repr(settings)
        assert json.loads(run("ca", "list", "--data", str(directory), "--json"))  # connects with it
    for url in _postgres_database():  # as JSON
        shown = run("init", "--data", str(tmp_path / "pg-json"), "--db", with_password(url)[0], "--json")
        assert "s3cr3t" not in shown
        assert ":***@" in json.loads(shown)["database_url"]


@pytest.mark.parametrize(
    ("command", "limit"),
    [
        (["cert", "issue", "--profile", "tls-client", "--csr", "{file}"], "64 KiB"),
        (["access", "import", "{file}"], "8 MiB"),
    ],
    ids=["cert-issue-csr", "access-import"],
)
def test_input_files_are_read_to_their_limit_only(data, tmp_path, command, limit):
    """A file over the limit is an error naming it and the limit (the file is read no further than
    the limit, so ``--csr /dev/zero`` ends the same way instead of filling the memory)."""
    huge = tmp_path / "huge"
    with huge.open("wb") as handle:
        handle.truncate(32 << 20)  # sparse: 32 MiB of zeros that take no disk
    args = [part.replace("{file}", str(huge)) for part in command]
    output = run(*args, "--data", str(data), code=1)
    assert str(huge) in output.replace("\n", "")
    assert f"larger than {limit}" in output


def test_trusted_proxies_must_be_addresses(data):
    output = run("serve", "--data", str(data), "--trusted-proxy", "*", code=1)
    assert "--trusted-proxy" in output
    assert "not an IP address or network" in output
    config = data / "config.toml"
    config.write_text(
        config.read_text().replace('# trusted_proxies = ["10.0.0.5"]', 'trusted_proxies = ["*"]')
    )
    output = run("ca", "list", "--data", str(data), code=1)
    assert "server.trusted_proxies" in output


def test_console_output_keeps_emoji_codes_as_text(capsys):
    """A fingerprint such as '7b:ab:3d' is printed as it is, not with ':ab:' turned into an emoji."""
    from otward.cli.common import console

    console.print("root SHA-256 fingerprint: 7b:ab:3d", highlight=False)
    assert "7b:ab:3d" in capsys.readouterr().out


def test_device_reset_revokes_the_unused_certificate_and_is_audited(data):
    from cryptography.hazmat.primitives.serialization import Encoding

    from otward.config import load_settings
    from otward.services.audit import Actor
    from otward.services.pki import Pki

    run("owner", "create", "line-2", "--data", str(data))
    token = json.loads(run("token", "create", "--owner", "line-2", "--data", str(data), "--json"))["token"]
    pki = Pki.open(load_settings(data))
    try:
        csr = x509.load_pem_x509_csr(build_csr(make_key(), cn="plc-9")).public_bytes(Encoding.DER)
        issued = pki.est.enroll(csr, token, label=None, actor=Actor(component="est", identity="est"))
    finally:
        pki.close()
    out = json.loads(run("device", "reset", "plc-9", "--data", str(data), "--json"))
    assert out == {"device_id": "plc-9", "owner": "line-2", "revoked_serial": issued.serial}
    shown = json.loads(run("device", "show", "plc-9", "--data", str(data), "--json"))
    assert [c["status"] for c in shown["certificates"]] == ["revoked"]
    events = json.loads(run("audit", "list", "--type", "device.reset", "--data", str(data), "--json"))
    assert [e["subject"] for e in events["items"] if e["type"] == "device.reset"] == ["plc-9"]
    # a second reset finds nothing unused to undo
    assert "already" in run("device", "reset", "plc-9", "--data", str(data), code=1)


def test_list_tables_print_identifiers_whole_in_a_narrow_terminal(data, tmp_path):
    """An id cut to "09e3148…" cannot be copied to ``revoke``: on a 60-column terminal every id and
    serial is printed whole on one line, and every list puts its count line under the table."""
    run("owner", "create", "acme", "--data", str(data))
    for pattern in ("plc-line-7-station-*", "*"):
        run("token", "create", "--owner", "acme", "--device-id-pattern", pattern, "--data", str(data))
    tokens = json.loads(run("token", "list", "--data", str(data), "--json"))
    serials = [c["serial"] for c in json.loads(run("cert", "list", "--data", str(data), "--json"))["items"]]
    env = {**os.environ, "COLUMNS": "60"}
    for command, ids, count in (
        ("token", [t["token_id"] for t in tokens], "2 enrollment tokens"),
        ("cert", serials, f"{len(serials)} certificates"),
        ("owner", ["acme"], "1 owner"),
    ):
        result = subprocess.run(
            [sys.executable, "-m", "otward", command, "list", "--data", str(data)],
            capture_output=True,
            text=True,
            env=env,
            check=True,
        )
        assert "…" not in result.stdout
        for identifier in ids:
            assert identifier in result.stdout, (identifier, result.stdout)
        assert result.stdout.rstrip().splitlines()[-1] == count
    assert run("device", "list", "--data", str(data)).rstrip().splitlines()[-1] == "0 devices"


def test_cert_issue_device_needs_an_existing_owner(data, tmp_path):
    csr = tmp_path / "plc.csr"
    csr.write_bytes(build_csr(make_key(), cn="plc-1"))
    issue = ("cert", "issue", "--csr", str(csr), "--profile", "device", "--data", str(data))
    assert "needs an owner" in run(*issue, code=1)
    assert "owner 'acme' does not exist" in run(*issue, "--owner", "acme", code=1)
    run("owner", "create", "acme", "--data", str(data))
    pem = run(*issue, "--owner", "acme")
    uris = x509.load_pem_x509_certificate(pem.encode()).extensions.get_extension_for_class(
        x509.SubjectAlternativeName
    )
    assert uris.value.get_values_for_type(x509.UniformResourceIdentifier) == ["urn:otward:device:acme:plc-1"]


def test_progress_is_one_plain_line_when_not_a_terminal(tmp_path):
    """A spinner written to a pipe or a log came out as "… …"."""
    result = run_process("init", "--data", str(tmp_path / "d"))
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines()[0].startswith("creating root and issuing CA (ec-p256)")
    assert "…" not in result.stderr
    created = run_process("ca", "create", "plant-a", "--parent", "root", "--data", str(tmp_path / "d"))
    assert created.stderr == "creating CA plant-a\n"


def test_mqtt_config_refresh_says_what_it_rewrote(data, tmp_path):
    out = tmp_path / "mqtt"
    assert "wrote" in run("mqtt-config", "--out", str(out), "--ca", "issuing", "--data", str(data))
    config = (out / "mosquitto.conf").read_bytes()
    refreshed = run("mqtt-config", "--refresh-crl", "--out", str(out), "--data", str(data))
    assert refreshed.startswith("refreshed the CRL, CA and ACL files in")
    assert "wrote" not in refreshed
    assert (out / "mosquitto.conf").read_bytes() == config


def test_json_timestamps_are_rfc3339(data):
    rfc3339 = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$"
    run("owner", "create", "acme", "--data", str(data))
    created = json.loads(run("token", "create", "--owner", "acme", "--json", "--data", str(data)))
    listed = json.loads(run("token", "list", "--json", "--data", str(data)))
    owners = json.loads(run("owner", "list", "--json", "--data", str(data)))
    api_tokens = json.loads(run("api-token", "list", "--json", "--data", str(data)))
    certificates = json.loads(run("cert", "list", "--json", "--data", str(data)))["items"]
    for value in (
        created["expires_at"],
        listed[0]["expires_at"],
        owners[0]["created_at"],
        api_tokens[0]["created_at"],
        certificates[0]["not_valid_after"],
    ):
        assert re.match(rfc3339, value), value


def test_data_goes_before_or_after_the_command(data, tmp_path, monkeypatch):
    cas = json.loads(run("--data", str(data), "ca", "list", "--json"))
    assert [c["name"] for c in cas] == ["root", "issuing"]
    assert "otward access import" in run("--data", str(data), "access", "person", "list", code=1)
    # the command's own --data wins over the one before it
    assert (
        json.loads(run("--data", str(tmp_path / "none"), "ca", "list", "--data", str(data), "--json")) == cas
    )
    # and it holds for one invocation only
    monkeypatch.setenv("OTWARD_DATA", str(tmp_path / "none"))
    assert "run 'otward init'" in run("ca", "list", code=1)


def test_init_with_a_p521_root_issues_p521_keys(tmp_path):
    directory = tmp_path / "lifelong"
    run("init", "--data", str(directory), "--key-type", "ec-p521", "--json")
    root = x509.load_pem_x509_certificate((directory / "root.pem").read_bytes())
    assert root.public_key().curve.name == "secp521r1"
    assert root.signature_hash_algorithm.name == "sha512"
    csr = tmp_path / "op.csr"
    csr.write_bytes(build_csr(make_key("ec-p521"), cn="op"))
    pem = run("cert", "issue", "--csr", str(csr), "--profile", "tls-client", "--data", str(directory))
    leaf = x509.load_pem_x509_certificate(pem.encode())
    assert (leaf.public_key().curve.name, leaf.signature_hash_algorithm.name) == ("secp521r1", "sha512")
