"""Firmware manifests and OpenSSL's CMS: ``openssl cms -verify`` checks otward's manifests (signature,
signer chain, content), and otward checks manifests ``openssl cms -sign`` made, refusing those OpenSSL
signs with algorithms otward does not accept (SHA-1, RSA-1024)."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from otward.core.firmware.envelope import hash_for_name, sign_content
from otward.core.firmware.manifest import Manifest, dump_manifest
from otward.core.firmware.verify import verify_trusted
from otward.errors import OtwardError
from tests.unit.core.firmware.pki import NOW, Signer, make_ca, make_signer

pytestmark = [
    pytest.mark.interop,
    pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed"),
]

MANIFEST = Manifest(
    stage="kernel",
    version=12,
    size=3,
    digest_algorithm="sha-256",
    digest=hashlib.sha256(b"abc").digest(),
    signed_at=NOW,
)


@pytest.fixture(scope="module")
def root() -> Signer:
    return make_ca("interop firmware root")


@pytest.fixture(scope="module")
def intermediate(root: Signer) -> Signer:
    return make_ca("interop firmware issuing", root)


def pem(path: Path, *certificates) -> Path:
    path.write_bytes(b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certificates))
    return path


def key_file(path: Path, key) -> Path:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return path


def openssl(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["openssl", *args], capture_output=True, check=False)


@pytest.mark.parametrize(
    ("kind", "hash_name", "padding"),
    [
        ("rsa-2048", "sha256", "pss"),
        ("rsa-3072", "sha384", "pkcs1v15"),
        ("ec-p256", "sha256", "pss"),
        ("ec-p384", "sha384", "pss"),
    ],
    ids=["rsa2048-pss", "rsa3072-pkcs1", "p256", "p384"],
)
def test_openssl_cms_verifies_otward_manifests(tmp_path, root, intermediate, kind, hash_name, padding):
    signer = make_signer(intermediate, kind)
    envelope = sign_content(
        dump_manifest(MANIFEST),
        signer.certificate,
        signer.key,
        [intermediate.certificate],
        hash_for_name(hash_name),
        padding,
    )
    (tmp_path / "m.p7").write_bytes(envelope)
    ca = pem(tmp_path / "root.pem", root.certificate)
    # the signer's certificate is valid from NOW - 10 days; -attime pins OpenSSL's clock to the test's
    result = openssl(
        "cms",
        "-verify",
        "-inform",
        "DER",
        "-in",
        str(tmp_path / "m.p7"),
        "-binary",
        "-CAfile",
        str(ca),
        "-purpose",
        "any",
        "-attime",
        str(int(NOW.timestamp())),
    )
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout == dump_manifest(MANIFEST)
    assert b"Verification successful" in result.stderr

    tampered = envelope.replace(b'"version":12', b'"version":13')
    (tmp_path / "t.p7").write_bytes(tampered)
    refused = openssl(
        "cms",
        "-verify",
        "-inform",
        "DER",
        "-in",
        str(tmp_path / "t.p7"),
        "-binary",
        "-CAfile",
        str(ca),
        "-purpose",
        "any",
        "-attime",
        str(int(NOW.timestamp())),
    )
    assert refused.returncode != 0


def openssl_sign(tmp_path: Path, signer: Signer, chain, *options: str) -> subprocess.CompletedProcess[bytes]:
    (tmp_path / "manifest.json").write_bytes(dump_manifest(MANIFEST))
    return openssl(
        "cms",
        "-sign",
        "-binary",
        "-nodetach",
        "-outform",
        "DER",
        "-nosmimecap",
        "-in",
        str(tmp_path / "manifest.json"),
        "-signer",
        str(pem(tmp_path / "signer.pem", signer.certificate)),
        "-inkey",
        str(key_file(tmp_path / "signer.key", signer.key)),
        "-certfile",
        str(pem(tmp_path / "chain.pem", *chain)),
        "-out",
        str(tmp_path / "openssl.p7"),
        *options,
    )


@pytest.mark.parametrize(
    ("kind", "options", "described"),
    [
        ("rsa-2048", ("-md", "sha256"), "RSA-2048 PKCS#1 v1.5 with SHA-256"),
        ("rsa-2048", ("-md", "sha512", "-keyopt", "rsa_padding_mode:pss"), "RSA-2048 PSS with SHA-512"),
        ("ec-p384", ("-md", "sha384"), "ECDSA P-384 with SHA-384"),
    ],
    ids=["rsa-pkcs1", "rsa-pss", "p384"],
)
def test_otward_verifies_openssl_manifests(tmp_path, root, intermediate, kind, options, described):
    signer = make_signer(intermediate, kind)
    result = openssl_sign(tmp_path, signer, [intermediate.certificate], *options)
    assert result.returncode == 0, result.stderr.decode()
    verified = verify_trusted((tmp_path / "openssl.p7").read_bytes(), [root.certificate], NOW)
    assert verified.manifest == MANIFEST
    assert verified.algorithm == described


@pytest.mark.parametrize(
    ("kind", "options", "needle"),
    [
        ("ec-p256", ("-md", "sha1"), "SHA-1"),
        ("rsa-2048", ("-md", "sha1"), "SHA-1"),
        ("rsa-1024", ("-md", "sha256"), "1024"),
    ],
    ids=[
        "ecdsa-sha1",
        "rsa-sha1",
        "rsa-1024",
    ],  # OpenSSL 3.0 cannot sign CMS with Ed25519: see the unit tests
)
def test_otward_refuses_openssl_manifests_with_weak_algorithms(
    tmp_path, root, intermediate, kind, options, needle
):
    signer = make_signer(intermediate, kind)
    result = openssl_sign(tmp_path, signer, [intermediate.certificate], *options)
    assert result.returncode == 0, result.stderr.decode()
    with pytest.raises(OtwardError, match=needle) as caught:
        verify_trusted((tmp_path / "openssl.p7").read_bytes(), [root.certificate], NOW)
    assert caught.value.rule == "firmware.algorithm.weak"
