"""``otward access bundle|credential`` and ``otward edge decide|token|trail`` on the shipped example plant."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from typer.testing import CliRunner

from otward.cli.app import app
from tests.conftest import write_key

from .conftest import PLANT

pytestmark = pytest.mark.integration

runner = CliRunner()
BERLIN = ZoneInfo("Europe/Berlin")


def run(*args: str, code: int = 0) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == code, result.output
    return result.output


def next_weekday(weekday: int) -> datetime:
    """The next such weekday (0 = Monday) at least a day ahead, as a local date at midnight."""
    day = datetime.now(BERLIN).date() + timedelta(days=1)
    while day.weekday() != weekday:
        day += timedelta(days=1)
    return datetime(day.year, day.month, day.day, tzinfo=BERLIN)


@pytest.fixture
def site(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    run("init", "--data", str(data), "--json")
    run("access", "import", str(PLANT), "--data", str(data))
    return data


def holder(tmp_path: Path, name: str, key=None) -> tuple[Path, Path]:
    key = key or ec.generate_private_key(ec.SECP256R1())
    private = tmp_path / f"{name}.key"
    public = tmp_path / f"{name}.pub"
    write_key(private, key)
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return private, public


def credential(site: Path, tmp_path: Path, person: str, ttl: str = "30d") -> tuple[Path, Path, str]:
    private, public = holder(tmp_path, person)
    out = tmp_path / f"{person}.jwt"
    info = json.loads(
        run(
            "access", "credential", "issue", person, "--public-key", str(public), "--ttl", ttl,
            "--out", str(out), "--data", str(site), "--json",
        )
    )  # fmt: skip
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    header = jwt.get_unverified_header(out.read_text().strip())
    assert header["x5t#S256"] == info["signer"]  # names the edge signer ...
    assert "x5c" not in header  # ... instead of carrying its certificates
    return out, private, info["credential_id"]


def decide(site: Path, bundle: Path, cred: Path, key: Path, asset: str, function: str, at: datetime) -> dict:
    output = run(
        "edge", "decide", "--bundle", str(bundle), "--credential", str(cred), "--holder-key", str(key),
        "--asset", asset, "--function", function, "--at", at.isoformat(), "--data", str(site), "--json",
    )  # fmt: skip
    return json.loads(output)


def bundle(site: Path, tmp_path: Path, asset: str, *extra: str) -> Path:
    out = tmp_path / f"{asset}.bundle"
    run("access", "bundle", "--asset", asset, "--out", str(out), "--data", str(site), "--json", *extra)
    return out


def test_decide_follows_the_plant_policy(site, tmp_path):
    reactor = bundle(site, tmp_path, "reactor-1", "--ttl", "30d")
    carla, carla_key, _ = credential(site, tmp_path, "carla")
    tuesday = next_weekday(1)
    inside = decide(site, reactor, carla, carla_key, "reactor-1", "start", tuesday.replace(hour=9))
    assert inside["decision"] == "allow", inside
    assert inside["person"] == "carla"
    outside = decide(site, reactor, carla, carla_key, "reactor-1", "start", tuesday.replace(hour=16))
    assert outside["decision"] == "deny"
    assert "no grant" in outside["reason"]
    # local time without an offset is site time
    local = json.loads(
        run(
            "edge", "decide", "--bundle", str(reactor), "--credential", str(carla),
            "--holder-key", str(carla_key), "--asset", "reactor-1", "--function", "start",
            "--at", tuesday.replace(hour=9).strftime("%Y-%m-%dT%H:%M"), "--data", str(site), "--json",
        )
    )  # fmt: skip
    assert local["decision"] == "allow"
    assert local["local_time"].startswith(tuesday.replace(hour=9).strftime("%Y-%m-%dT09:00"))


@pytest.mark.parametrize("key_type", ["ed25519", "ec-p384", "rsa-3072"])
def test_bundles_and_credentials_verify_on_every_ca_key_type(tmp_path, key_type):
    """An installation whose CAs hold Ed25519 keys once signed bundles no gatekeeper could verify
    (cryptography's Web PKI verifier refuses Ed25519 CAs); every supported key type decides."""
    site = tmp_path / "data"
    run("init", "--data", str(site), "--key-type", key_type, "--json")
    run("access", "import", str(PLANT), "--data", str(site))
    reactor = bundle(site, tmp_path, "reactor-1", "--ttl", "30d")
    carla, carla_key, _ = credential(site, tmp_path, "carla")
    verdict = decide(site, reactor, carla, carla_key, "reactor-1", "start", next_weekday(1).replace(hour=9))
    assert verdict["decision"] == "allow", verdict


def test_decide_outside_engagement_dates_and_for_the_wrong_asset(site, tmp_path):
    gate = bundle(site, tmp_path, "main-gate", "--ttl", "30d")
    hanna, hanna_key, _ = credential(site, tmp_path, "hanna")  # auditor until 2026-11-27
    wednesday = next_weekday(2).replace(hour=10)
    verdict = decide(site, gate, hanna, hanna_key, "main-gate", "enter", wednesday)
    assert verdict["decision"] == "deny"
    wrong_asset = decide(site, gate, hanna, hanna_key, "reactor-1", "enter", wednesday)
    assert wrong_asset["decision"] == "deny"
    assert "main-gate" in wrong_asset["reason"]


def test_decide_expired_bundle_fails_closed_but_open_for_configured_functions(site, tmp_path):
    reactor = bundle(site, tmp_path, "reactor-1", "--ttl", "1d", "--fail-open", "read-data")
    anna, anna_key, _ = credential(site, tmp_path, "anna")
    later = datetime.now(UTC) + timedelta(days=3)
    closed = decide(site, reactor, anna, anna_key, "reactor-1", "start", later)
    assert closed["decision"] == "deny"
    assert "fails closed" in closed["reason"]
    opened = decide(site, reactor, anna, anna_key, "reactor-1", "read-data", later)
    assert opened["decision"] == "allow"
    assert "fails open" in opened["reason"]


def test_decide_refuses_tampered_bundle_expired_and_revoked_credentials(site, tmp_path):
    reactor = bundle(site, tmp_path, "reactor-1", "--ttl", "30d")
    anna, anna_key, anna_id = credential(site, tmp_path, "anna", ttl="1h")
    now = datetime.now(UTC) + timedelta(minutes=5)
    assert decide(site, reactor, anna, anna_key, "reactor-1", "start", now)["decision"] == "allow"
    expired = decide(site, reactor, anna, anna_key, "reactor-1", "start", now + timedelta(hours=2))
    assert expired["decision"] == "deny"
    assert "credential expired" in expired["reason"]

    header, payload, signature = reactor.read_text().strip().split(".")
    tampered = tmp_path / "tampered.bundle"
    tampered.write_text(f"{header}.{payload[:-4]}AAAA.{signature}")
    refused = decide(site, tampered, anna, anna_key, "reactor-1", "start", now)
    assert refused["decision"] == "deny"
    assert "no valid policy bundle" in refused["reason"]

    run("access", "credential", "revoke", anna_id, "--data", str(site))
    run("access", "credential", "revoke", anna_id, "--data", str(site), code=1)
    newer = bundle(site, tmp_path, "reactor-1", "--ttl", "30d")
    revoked = decide(site, newer, anna, anna_key, "reactor-1", "start", now)
    assert revoked["decision"] == "deny"
    assert revoked["reason"] == "credential is revoked"
    listing = json.loads(
        run("access", "credential", "list", "--person", "anna", "--data", str(site), "--json")
    )
    assert [c["status"] for c in listing] == ["revoked"]


def test_credential_for_a_weak_key_is_refused(site, tmp_path):
    _, public = holder(tmp_path, "weak", rsa.generate_private_key(public_exponent=65537, key_size=1024))
    result = runner.invoke(
        app,
        ["access", "credential", "issue", "carla", "--public-key", str(public),
         "--out", str(tmp_path / "c.jwt"), "--data", str(site)],
    )  # fmt: skip
    assert result.exit_code == 1
    assert "too small" in result.output


def test_edge_tokens(site, tmp_path):
    out = tmp_path / "edge.token"
    info = json.loads(
        run(
            "edge",
            "token",
            "create",
            "--asset",
            "reactor-1",
            "--out",
            str(out),
            "--data",
            str(site),
            "--json",
        )
    )
    assert "token" not in info
    assert out.read_text().startswith("otwg_")
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    run("edge", "token", "create", "--asset", "reactor-1", "--out", str(out), "--data", str(site), code=1)
    listed = json.loads(run("edge", "token", "list", "--data", str(site), "--json"))
    assert [t["asset"] for t in listed] == ["reactor-1"]
    run("edge", "token", "revoke", info["token_id"], "--data", str(site))
    assert json.loads(run("edge", "token", "list", "--data", str(site), "--json"))[0]["revoked_at"]


def test_decide_as_a_real_process(site, tmp_path):
    reactor = bundle(site, tmp_path, "reactor-1", "--ttl", "30d")
    anna, anna_key, _ = credential(site, tmp_path, "anna")
    result = subprocess.run(
        [sys.executable, "-m", "otward", "edge", "decide", "--bundle", str(reactor),
         "--credential", str(anna), "--holder-key", str(anna_key), "--asset", "reactor-1",
         "--function", "stop", "--data", str(site), "--json"],
        capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["decision"] == "allow"


def test_serve_refuses_an_unknown_trail_sync_mode(tmp_path):
    output = run(
        "edge", "serve", "--asset", "reactor-1", "--state", str(tmp_path / "state"),
        "--trail-sync", "sometimes", code=1,
    )  # fmt: skip
    assert "--trail-sync 'sometimes': expected always or batch" in output


def test_serve_says_on_the_console_when_its_bundle_is_refused(site, tmp_path):
    """A bundle for another asset is refused at start: one line says so and why (issue 11, item 18)."""
    import time

    import httpx

    from tests.conftest import free_port

    other = bundle(site, tmp_path, "mixer-2")
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "otward",
        "edge",
        "serve",
        "--asset",
        "reactor-1",
        "--bundle",
        str(other),
    ]
    command += ["--state", str(tmp_path / "state"), "--listen", f"127.0.0.1:{port}", "--data", str(site)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert process.poll() is None
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
    finally:
        process.terminate()
        _, stderr = process.communicate(timeout=15)
    refused = [line for line in stderr.splitlines() if "refused" in line]
    assert len(refused) == 1, stderr
    assert refused[0].startswith(f"warning: bundle {other} refused: ")
    assert "mixer-2" in refused[0]
    assert "no bundle: every request is denied" in refused[0]
