"""``otward firmware sign|verify|boot-chain`` as an operator runs them: with a signer certificate from
an otward installation (profile firmware-signing), and a boot-chain directory built with the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from typer.testing import CliRunner

from otward.cli.app import app
from otward.core.assess.findings import parse_findings
from tests.conftest import build_csr, make_key, write_key
from tests.unit.core.firmware.pki import Signer, make_ca, make_signer

runner = CliRunner()


def run(*args: str, code: int = 0) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == code, result.output
    return result.output


def pem(path: Path, *certificates: x509.Certificate) -> Path:
    path.write_bytes(b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certificates))
    return path


@pytest.fixture(scope="module")
def installation(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("fw") / "d"
    run("init", "--data", str(directory), "--json")
    return directory


def test_firmware_signing_certificate_from_otward_signs_and_verifies(installation, tmp_path):
    key = make_key("ec-p384")
    write_key(tmp_path / "signer.key", key)
    (tmp_path / "signer.csr").write_bytes(build_csr(key, cn="plc firmware signer"))
    run(
        "cert",
        "issue",
        "--csr",
        str(tmp_path / "signer.csr"),
        "--profile",
        "firmware-signing",
        "--out",
        str(tmp_path / "signer.pem"),
        "--chain-out",
        str(tmp_path / "chain.pem"),
        "--data",
        str(installation),
    )
    signer = x509.load_pem_x509_certificate((tmp_path / "signer.pem").read_bytes())
    usages = signer.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usages) == [x509.oid.ExtendedKeyUsageOID.CODE_SIGNING]
    assert signer.extensions.get_extension_for_class(x509.KeyUsage).value.digital_signature
    (tmp_path / "root.pem").write_text(run("ca", "export", "root", "--data", str(installation)))
    image = tmp_path / "plc.bin"
    image.write_bytes(b"\x7fELF" + bytes(100_000))

    signed = json.loads(
        run(
            "firmware",
            "sign",
            str(image),
            "--key",
            str(tmp_path / "signer.key"),
            "--cert",
            str(tmp_path / "signer.pem"),
            "--chain",
            str(tmp_path / "chain.pem"),
            "--version",
            "7",
            "--stage",
            "plc-app",
            "--out",
            str(tmp_path / "plc.manifest"),
            "--json",
        )
    )
    assert signed["digest"].startswith("sha-384:")  # matched to the P-384 key
    assert signed["version"] == 7

    output = run(
        "firmware",
        "verify",
        str(image),
        str(tmp_path / "plc.manifest"),
        "--trust",
        str(tmp_path / "root.pem"),
    )
    assert "verified" in output
    assert "ECDSA P-384 with SHA-384" in output

    document = parse_findings(
        run(
            "firmware",
            "verify",
            str(image),
            str(tmp_path / "plc.manifest"),
            "--trust",
            str(tmp_path / "root.pem"),
            "--min-version",
            "8",
            "--json",
            code=1,
        )
    )
    assert [(f.check, f.severity.value) for f in document.findings] == [("firmware.version.rollback", "high")]
    assert document.findings[0].requirements == ("CR 3.14", "CR 3.4")

    image.write_bytes(b"\x7fELF" + bytes(99_999) + b"\x01")
    rejected = runner.invoke(
        app,
        [
            "firmware",
            "verify",
            str(image),
            str(tmp_path / "plc.manifest"),
            "--trust",
            str(tmp_path / "root.pem"),
        ],
    )
    assert rejected.exit_code == 1
    assert "firmware.image.mismatch" in rejected.output


def test_tls_client_certificate_cannot_sign_firmware(installation, tmp_path):
    key = make_key("ec-p256")
    write_key(tmp_path / "op.key", key)
    (tmp_path / "op.csr").write_bytes(build_csr(key, cn="operator"))
    run(
        "cert",
        "issue",
        "--csr",
        str(tmp_path / "op.csr"),
        "--profile",
        "tls-client",
        "--out",
        str(tmp_path / "op.pem"),
        "--chain-out",
        str(tmp_path / "chain.pem"),
        "--data",
        str(installation),
    )
    (tmp_path / "root.pem").write_text(run("ca", "export", "root", "--data", str(installation)))
    (tmp_path / "fw.bin").write_bytes(b"image")
    run(
        "firmware",
        "sign",
        str(tmp_path / "fw.bin"),
        "--key",
        str(tmp_path / "op.key"),
        "--cert",
        str(tmp_path / "op.pem"),
        "--chain",
        str(tmp_path / "chain.pem"),
        "--version",
        "1",
        "--out",
        str(tmp_path / "fw.manifest"),
    )
    document = parse_findings(
        run(
            "firmware",
            "verify",
            str(tmp_path / "fw.bin"),
            str(tmp_path / "fw.manifest"),
            "--trust",
            str(tmp_path / "root.pem"),
            "--json",
            code=1,
        )
    )
    assert document.findings[0].check == "firmware.signer.usage"


def test_refused_keys_and_digests_at_signing(tmp_path):
    ca = make_ca("root")
    (tmp_path / "fw.bin").write_bytes(b"image")
    for kind, digest, needle in (
        ("rsa-1024", "sha256", "1024 bits"),
        ("ed25519", "sha256", "Ed25519"),
        ("ec-p256", "sha1", "sha1"),
    ):
        signer = make_signer(ca, kind)
        write_key(tmp_path / "k.pem", signer.key)
        pem(tmp_path / "c.pem", signer.certificate)
        output = run(
            "firmware",
            "sign",
            str(tmp_path / "fw.bin"),
            "--key",
            str(tmp_path / "k.pem"),
            "--cert",
            str(tmp_path / "c.pem"),
            "--version",
            "1",
            "--digest",
            digest,
            "--out",
            str(tmp_path / "fw.manifest"),
            code=1,
        )
        assert needle in output
        assert "firmware.algorithm.weak" in output
        assert not (tmp_path / "fw.manifest").exists()


def build_chain(directory: Path, signers: dict[str, Signer], versions: dict[str, int]) -> None:
    names = list(signers)
    for name, signer in signers.items():
        write_key(directory / f"{name}.key", signer.key)
        pem(directory / f"{name}.pem", signer.certificate)
    for index, name in enumerate(names):
        (directory / f"{name}.bin").write_bytes(f"{name} v{versions[name]}".encode() * 1000)
        extra = (
            ["--next-stage-key", str(directory / f"{names[index + 1]}.pem")] if index + 1 < len(names) else []
        )
        run(
            "firmware",
            "sign",
            str(directory / f"{name}.bin"),
            "--key",
            str(directory / f"{name}.key"),
            "--cert",
            str(directory / f"{name}.pem"),
            "--version",
            str(versions[name]),
            "--stage",
            name,
            "--out",
            str(directory / f"{name}.manifest"),
            "--force",
            *extra,
        )
    public = (
        signers[names[0]]
        .key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    (directory / "rom-key.pem").write_bytes(public)
    stages = "".join(
        f'[[stage]]\nname = "{n}"\nimage = "{n}.bin"\nmanifest = "{n}.manifest"\n\n' for n in names
    )
    (directory / "boot-chain.toml").write_text(f'rom_key = "rom-key.pem"\n\n{stages}')


def test_boot_chain_boots_commits_counters_and_refuses_a_downgrade(tmp_path):
    vendor = make_ca("vendor")
    signers = {
        "bootloader": make_signer(vendor, "ec-p384", cn="bootloader"),
        "kernel": make_signer(vendor, "rsa-2048", cn="kernel"),
        "rootfs": make_signer(vendor, "ec-p256", cn="rootfs"),
    }
    build_chain(tmp_path, signers, {"bootloader": 2, "kernel": 5, "rootfs": 9})

    output = run("firmware", "boot-chain", str(tmp_path), "--commit-counters")
    assert "boot chain verified" in output
    assert json.loads((tmp_path / "counters.json").read_text()) == {"bootloader": 2, "kernel": 5, "rootfs": 9}

    build_chain(tmp_path, signers, {"bootloader": 2, "kernel": 4, "rootfs": 9})  # an older kernel
    result = runner.invoke(app, ["firmware", "boot-chain", str(tmp_path), "--commit-counters"])
    assert result.exit_code == 1
    assert "FAIL kernel" in result.output
    assert "firmware.version.rollback" in result.output
    assert "rootfs: not run" in result.output
    assert json.loads((tmp_path / "counters.json").read_text())["kernel"] == 5  # untouched

    document = parse_findings(run("firmware", "boot-chain", str(tmp_path), "--json", code=1))
    (finding,) = document.findings
    assert finding.target == f"{tmp_path}:kernel"
    assert finding.check == "firmware.version.rollback"
    assert "not run: rootfs" in finding.evidence


def test_boot_chain_names_a_wrongly_signed_stage(tmp_path):
    vendor = make_ca("vendor")
    signers = {"bootloader": make_signer(vendor, cn="bl"), "kernel": make_signer(vendor, cn="k")}
    build_chain(tmp_path, signers, {"bootloader": 1, "kernel": 1})
    intruder = make_signer(vendor, cn="intruder")
    write_key(tmp_path / "intruder.key", intruder.key)
    pem(tmp_path / "intruder.pem", intruder.certificate)
    run(
        "firmware",
        "sign",
        str(tmp_path / "kernel.bin"),
        "--key",
        str(tmp_path / "intruder.key"),
        "--cert",
        str(tmp_path / "intruder.pem"),
        "--version",
        "1",
        "--stage",
        "kernel",
        "--out",
        str(tmp_path / "kernel.manifest"),
        "--force",
    )
    document = parse_findings(run("firmware", "boot-chain", str(tmp_path), "--json", code=1))
    assert [(f.target, f.check) for f in document.findings] == [
        (f"{tmp_path}:kernel", "firmware.signer.unpinned")
    ]


def test_audit_file_records_signing_verification_and_boot(tmp_path):
    vendor = make_ca("vendor")
    signers = {"bootloader": make_signer(vendor, cn="bl"), "kernel": make_signer(vendor, cn="k")}
    build_chain(tmp_path, signers, {"bootloader": 1, "kernel": 1})
    trail = tmp_path / "firmware-trail.jsonl"
    pem(tmp_path / "vendor.pem", vendor.certificate)
    run(
        "firmware",
        "sign",
        str(tmp_path / "kernel.bin"),
        "--key",
        str(tmp_path / "kernel.key"),
        "--cert",
        str(tmp_path / "kernel.pem"),
        "--version",
        "2",
        "--stage",
        "kernel",
        "--out",
        str(tmp_path / "kernel.manifest"),
        "--force",
        "--audit-file",
        str(trail),
    )
    run(
        "firmware",
        "sign",
        str(tmp_path / "kernel.bin"),
        "--key",
        str(tmp_path / "kernel.key"),
        "--cert",
        str(tmp_path / "kernel.pem"),
        "--version",
        "2",
        "--digest",
        "sha1",
        "--out",
        str(tmp_path / "other.manifest"),
        "--audit-file",
        str(trail),
        code=1,
    )
    run(
        "firmware",
        "verify",
        str(tmp_path / "bootloader.bin"),
        str(tmp_path / "kernel.manifest"),
        "--trust",
        str(tmp_path / "vendor.pem"),
        "--audit-file",
        str(trail),
        code=1,
    )
    run("firmware", "boot-chain", str(tmp_path), "--audit-file", str(trail))
    records = [json.loads(line) for line in trail.read_text().splitlines()]
    assert [(r["event"]["type"], r["event"]["outcome"]) for r in records] == [
        ("firmware.signed", "success"),
        ("firmware.signed", "failure"),
        ("firmware.verified", "failure"),
        ("firmware.booted", "success"),
    ]
    assert records[1]["event"]["details"]["rule"] == "firmware.algorithm.weak"
    assert records[2]["event"]["details"]["rule"] == "firmware.image.mismatch"
    assert records[3]["event"]["details"]["booted"] == "bootloader:1,kernel:2"
    assert records[0]["event"]["details"]["actor"].startswith("local:")
    assert "chain" in run("audit", "verify", "--file", str(trail))
