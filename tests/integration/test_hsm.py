"""A whole installation with its keys in a PKCS#11 token (SoftHSM2): ``otward serve`` with two
workers issues, revokes, publishes CRLs, answers OCSP and enrolls over EST; ``openssl`` and
pkilint check what it signed; signer rotation, ``ca create`` and a restart keep every key in
the token; a wrong PIN stops the service instead of it falling back to anything.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from click.testing import Result
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed, encode_dss_signature
from cryptography.x509 import ocsp
from pkcs11.constants import Attribute, ObjectClass
from pkcs11.mechanisms import Mechanism
from typer.testing import CliRunner

from otward.cli.app import app
from otward.config import KeySettings, load_settings
from otward.core.keys import KeyType
from otward.services.bootstrap import initialize
from otward.services.pki import Pki
from tests.conftest import (
    RunningServer,
    SoftHsm,
    build_csr,
    make_key,
    softhsm_token,
    start_server,
    stop_server,
)
from tests.interop.helpers import Api, need, run

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def hsm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SoftHsm]:
    with softhsm_token(tmp_path_factory.mktemp("softhsm"), label="otward-ca") as token:
        yield token


@pytest.fixture(scope="module")
def installation(hsm: SoftHsm, tmp_path_factory: pytest.TempPathFactory) -> Path:
    data_dir = tmp_path_factory.mktemp("hsm") / "data"
    http_port = _free_port()
    initialize(
        data_dir,
        organization="ACME Chemicals",
        public_url=f"http://127.0.0.1:{http_port}",
        keys=KeySettings(
            backend="pkcs11", pkcs11_module=hsm.module, pkcs11_token=hsm.label, pkcs11_pin_file=hsm.pin_file
        ),
    )
    return data_dir


class _RestartableServer:
    """The module's service, which one test restarts: the other tests, in whatever order they run,
    reach the process that is current (the plain-HTTP port is the installation's, so two cannot run)."""

    def __init__(self, installation: Path) -> None:
        self._installation = installation
        self.current = start_server(installation, workers=2)

    def restart(self) -> None:
        stop_server(self.current)
        self.current = start_server(self._installation, workers=2)

    def __getattr__(self, name: str) -> object:
        return getattr(self.current, name)


@pytest.fixture(scope="module")
def server(installation: Path) -> Iterator[_RestartableServer]:
    running = _RestartableServer(installation)
    yield running
    stop_server(running.current)


def _free_port() -> int:
    from tests.conftest import free_port

    return free_port()


def _otward(data_dir: Path, *args: str, env: dict[str, str] | None = None) -> Result:
    """The CLI in-process (Typer's runner): a process of its own would cost seconds of imports."""
    return CliRunner().invoke(app, [*args, "--data", str(data_dir)], env=env)


def _key_refs(data_dir: Path) -> dict[str, str]:
    """Every key reference the database holds, by what it is for (the token stays logged out after)."""
    pki = Pki.open(load_settings(data_dir))
    try:
        refs = {}
        for record in pki.authorities.list():
            refs[f"ca:{record.name}"] = record.key_ref
            refs[f"ocsp:{record.name}"] = record.ocsp_key_ref
        for name in ("audit", "edge"):
            stored = pki.stores.signers.get_signer(name)
            if stored is not None:
                refs[f"signer:{name}"] = stored[0]
        return refs
    finally:
        pki.close()


def _certificates(data_dir: Path) -> dict[str, x509.Certificate]:
    pki = Pki.open(load_settings(data_dir))
    try:
        found = {}
        for record in pki.authorities.list():
            found[f"ca:{record.name}"] = x509.load_der_x509_certificate(record.certificate_der)
            found[f"ocsp:{record.name}"] = x509.load_der_x509_certificate(record.ocsp_certificate_der)
        for name in ("audit", "edge"):
            stored = pki.stores.signers.get_signer(name)
            if stored is not None:
                found[f"signer:{name}"] = x509.load_der_x509_certificate(stored[1])
        return found
    finally:
        pki.close()


def _token_private_key(hsm: SoftHsm, session: object, key_ref: str) -> object:
    key_id = bytes.fromhex(key_ref.rpartition("id=")[2])
    (private,) = session.get_objects({Attribute.CLASS: ObjectClass.PRIVATE_KEY, Attribute.ID: key_id})  # type: ignore[attr-defined]
    return private


def test_every_key_lives_in_the_token_and_matches_its_certificate(server: RunningServer, hsm: SoftHsm):
    data_dir = server.data_dir
    assert not (data_dir / "keys").exists()  # no CA key file was ever written
    refs = _key_refs(data_dir)
    certificates = _certificates(data_dir)
    assert {"ca:root", "ca:issuing", "ocsp:root", "ocsp:issuing", "signer:audit"} <= set(refs)
    session = hsm.session()
    try:
        for what, key_ref in refs.items():
            assert key_ref.startswith("pkcs11:object=otward-"), what
            private = _token_private_key(hsm, session, key_ref)
            assert private[Attribute.SENSITIVE] is True, what  # type: ignore[index]
            assert private[Attribute.EXTRACTABLE] is False, what  # type: ignore[index]
            assert private[Attribute.NEVER_EXTRACTABLE] is True, what  # type: ignore[index]
            # a test digest signed in the token verifies under the certificate's public key
            digest = hashlib.sha256(f"proof for {what}".encode()).digest()
            raw = bytes(private.sign(digest, mechanism=Mechanism.ECDSA))  # type: ignore[attr-defined]
            signature = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
            public_key = certificates[what].public_key()
            assert isinstance(public_key, ec.EllipticCurvePublicKey)
            public_key.verify(signature, digest, ec.ECDSA(Prehashed(hashes.SHA256())))
    finally:
        session.close()


def test_issue_revoke_crl_and_ocsp_verify_with_openssl_and_pkilint(server: RunningServer, tmp_path: Path):
    openssl = need("openssl")
    api = Api(server)
    try:
        issued = api.issue("tls-server", cn="plc-7.plant.example", dns=("plc-7.plant.example",))
        leaf = issued.write(tmp_path)
        issuer = tmp_path / "leaf-issuer.pem"
        out = run([openssl, "verify", "-CAfile", server.root_pem, "-untrusted", issuer, leaf])
        assert out.stdout.strip() == f"{leaf}: OK"
        _lint("lint_pkix_cert", leaf)

        api.revoke(issued.serial, "keyCompromise")
        crl_der = tmp_path / "issuing.crl"
        crl_der.write_bytes(api.crl("issuing"))
        crl_pem = tmp_path / "issuing.crl.pem"
        run([openssl, "crl", "-inform", "DER", "-in", crl_der, "-out", crl_pem])
        out = run([openssl, "crl", "-in", crl_pem, "-CAfile", issuer, "-noout", "-text"])
        assert "verify OK" in out.stderr + out.stdout
        assert f"{issued.serial_number:X}".zfill(2) in out.stdout.replace(":", "")
        out = run(
            [
                openssl,
                "verify",
                "-crl_check",
                "-CAfile",
                server.root_pem,
                "-untrusted",
                issuer,
                "-CRLfile",
                crl_pem,
                leaf,
            ],
            check=False,
        )
        assert "certificate revoked" in out.stdout + out.stderr
        _lint("lint_crl", "-t", "CRL", "-p", "PKIX", crl_der)

        out = run(
            [
                openssl,
                "ocsp",
                "-issuer",
                issuer,
                "-cert",
                leaf,
                "-url",
                f"{server.http_url}/ocsp",
                "-CAfile",
                server.root_pem,
                "-respout",
                tmp_path / "ocsp.der",
            ],
            check=False,
        )
        assert out.returncode == 0, out.stdout + out.stderr
        assert "Response verify OK" in out.stderr, out.stderr
        assert f"{leaf}: revoked" in out.stdout
        _lint("lint_ocsp_response", tmp_path / "ocsp.der")
    finally:
        api.close()


def _lint(tool: str, *args: str | Path) -> None:
    from tests.interop.test_pkilint import assert_clean, lint

    assert_clean(lint(tool, *args))


def test_est_enrollment_is_signed_in_the_token(server: RunningServer):
    owner = f"plant-{uuid.uuid4().hex[:8]}"
    assert _otward(server.data_dir, "owner", "create", owner).exit_code == 0
    created = _otward(server.data_dir, "token", "create", "--owner", owner, "--json")
    assert created.exit_code == 0, created.output
    token = json.loads(created.output)["token"]
    key = make_key()
    csr = x509.load_pem_x509_csr(build_csr(key, cn="plc-0042"))
    body = base64.encodebytes(csr.public_bytes(serialization.Encoding.DER))
    with httpx.Client(base_url=server.https_url, verify=server.ssl_context()) as client:
        response = client.post(
            "/.well-known/est/simpleenroll",
            content=body,
            headers={"Content-Type": "application/pkcs10", "Authorization": f"Bearer {token}"},
        )
        assert response.status_code == 200, response.text
    from cryptography.hazmat.primitives.serialization import pkcs7

    (certificate,) = pkcs7.load_der_pkcs7_certificates(base64.b64decode(response.content))
    issuing = _certificates(server.data_dir)["ca:issuing"]
    certificate.verify_directly_issued_by(issuing)
    assert certificate.public_key() == key.public_key()


def test_ocsp_answers_from_every_worker(server: RunningServer):
    """Each of the two workers opened its own session: many requests, all answered and verified."""
    api = Api(server)
    try:
        issued = api.issue("tls-client", cn="operator-7")
        request = (
            ocsp.OCSPRequestBuilder()
            .add_certificate(issued.certificate, issued.issuer_certificate, hashes.SHA256())
            .add_extension(x509.OCSPNonce(os.urandom(16)), critical=False)
        )
        responder = _certificates(server.data_dir)["ocsp:issuing"]
        for _ in range(20):
            answer = ocsp.load_der_ocsp_response(api.ocsp(request.build()))
            assert answer.certificate_status is ocsp.OCSPCertStatus.GOOD
            responder.public_key().verify(  # type: ignore[call-arg]
                answer.signature,
                answer.tbs_response_bytes,
                ec.ECDSA(answer.signature_hash_algorithm),  # type: ignore[arg-type]
            )
    finally:
        api.close()


def test_new_cas_and_rotated_signers_get_token_keys_and_survive_a_restart(
    installation: Path, server: _RestartableServer, hsm: SoftHsm
):
    created = _otward(installation, "ca", "create", "plant-b", "--parent", "root", "--json")
    assert created.exit_code == 0, created.output
    before = _key_refs(installation)
    rotated = _otward(installation, "signer", "rotate", "audit", "--json")
    assert rotated.exit_code == 0, rotated.output
    after = _key_refs(installation)
    assert after["ca:plant-b"].startswith("pkcs11:object=otward-ca-plant-b;id=")
    assert after["signer:audit"].startswith("pkcs11:")
    assert after["signer:audit"] != before["signer:audit"]
    session = hsm.session()
    try:
        old_id = bytes.fromhex(before["signer:audit"].rpartition("id=")[2])
        assert list(session.get_objects({Attribute.ID: old_id})) == []  # the rotated key is destroyed
    finally:
        session.close()

    server.restart()
    api = Api(server.current)
    try:
        issued = api.issue("tls-client", cn="operator-9", ca="plant-b")
        issued.certificate.verify_directly_issued_by(_certificates(installation)["ca:plant-b"])
    finally:
        api.close()
    verified = _otward(installation, "audit", "verify")
    assert verified.exit_code == 0, verified.output


def test_a_wrong_pin_stops_the_service_and_nothing_falls_back(installation: Path):
    env = {"OTWARD_PKCS11_PIN": "0000"}
    result = _otward(installation, "crl", "generate", "--ca", "issuing", env=env)
    assert result.exit_code != 0
    assert "wrong PIN for token 'otward-ca'" in result.output
    served = subprocess.run(
        [
            sys.executable,
            "-m",
            "otward",
            "serve",
            "--data",
            str(installation),
            "--port",
            str(_free_port()),
            "--http-port",
            str(_free_port()),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, **env},
    )
    assert served.returncode != 0
    assert "wrong PIN for token 'otward-ca'" in served.stdout + served.stderr
    assert not (installation / "keys").exists()


def test_a_missing_token_stops_the_service(installation: Path, tmp_path: Path):
    """The module finds no token of that label (unplugged, or another token directory)."""
    (tmp_path / "tokens").mkdir()
    config = tmp_path / "softhsm2.conf"
    config.write_text(f"directories.tokendir = {tmp_path / 'tokens'}\nobjectstore.backend = file\n")
    served = subprocess.run(
        [
            sys.executable,
            "-m",
            "otward",
            "serve",
            "--data",
            str(installation),
            "--port",
            str(_free_port()),
            "--http-port",
            str(_free_port()),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "SOFTHSM2_CONF": str(config)},
    )
    assert served.returncode != 0
    assert "no token 'otward-ca' of PKCS#11 module" in served.stdout + served.stderr


@pytest.mark.parametrize("key_type", [KeyType.EC_P384, KeyType.RSA_3072])
def test_token_cas_of_other_key_types_sign_what_openssl_and_pkilint_accept(
    tmp_path: Path, hsm: SoftHsm, key_type: KeyType
):
    openssl = need("openssl")
    data_dir = tmp_path / "data"
    initialize(
        data_dir,
        key_type=key_type,
        keys=KeySettings(
            backend="pkcs11", pkcs11_module=hsm.module, pkcs11_token=hsm.label, pkcs11_pin_file=hsm.pin_file
        ),
    )
    pki = Pki.open(load_settings(data_dir))
    try:
        issued = pki.issuance.issue(
            build_csr(make_key(), cn="plc-9.plant.example", dns=("plc-9.plant.example",)),
            profile="tls-server",
        )
        pki.revocation.revoke(issued.certificate.serial_number, x509.ReasonFlags.superseded)
        crl = pki.revocation.current_crl("issuing").der
        assert all(ref.startswith("pkcs11:") for ref in pki.stores.key_refs.key_refs())
    finally:
        pki.close()
    leaf = tmp_path / "leaf.pem"
    leaf.write_bytes(issued.certificate.public_bytes(serialization.Encoding.PEM))
    issuer = tmp_path / "issuer.pem"
    issuer.write_bytes(issued.chain[0].public_bytes(serialization.Encoding.PEM))
    root = data_dir / "root.pem"
    out = run([openssl, "verify", "-CAfile", root, "-untrusted", issuer, leaf])
    assert out.stdout.strip() == f"{leaf}: OK"
    crl_der = tmp_path / "issuing.crl"
    crl_der.write_bytes(crl)
    out = run([openssl, "crl", "-inform", "DER", "-in", crl_der, "-CAfile", issuer, "-noout"])
    assert "verify OK" in out.stdout + out.stderr
    _lint("lint_pkix_cert", leaf)
    _lint("lint_pkix_cert", issuer)
    _lint("lint_crl", "-t", "CRL", "-p", "PKIX", crl_der)


def _file_installation(directory: Path, key_type: KeyType) -> Path:
    data_dir = directory / "files"
    initialize(data_dir, key_type=key_type, organization="ACME Chemicals")
    pki = Pki.open(load_settings(data_dir))
    try:
        pki.issuance.issue(build_csr(make_key(), cn="before"), profile="tls-client")
    finally:
        pki.close()  # signs the audit head: the audit signer exists too
    return data_dir


def _migrate(data_dir: Path, hsm: SoftHsm) -> Result:
    return _otward(
        data_dir,
        *("ca", "migrate-keys", "--to", "pkcs11", "--pkcs11-module", str(hsm.module)),
        *("--pkcs11-token", hsm.label, "--pkcs11-pin-file", str(hsm.pin_file), "--json"),
    )


def test_migrate_keys_moves_every_key_file_into_the_token(tmp_path: Path, hsm: SoftHsm):
    data_dir = _file_installation(tmp_path, KeyType.EC_P384)
    key_files = sorted((data_dir / "keys").iterdir())
    before = _key_refs(data_dir)
    assert all(ref.startswith("file:") for ref in before.values())
    certificates = _certificates(data_dir)

    result = _migrate(data_dir, hsm)
    assert result.exit_code == 0, result.output
    moved = json.loads(result.output)["moved"]
    assert {m["from"] for m in moved} == set(before.values())
    assert all(not path.exists() for path in key_files)
    assert load_settings(data_dir).keys.backend == "pkcs11"
    after = _key_refs(data_dir)
    assert set(after) == set(before)
    session = hsm.session()
    try:
        for what, key_ref in after.items():
            assert key_ref.startswith("pkcs11:object=otward-"), what
            private = _token_private_key(hsm, session, key_ref)
            assert private[Attribute.SENSITIVE] is True, what  # type: ignore[index]
            assert private[Attribute.EXTRACTABLE] is False, what  # type: ignore[index]
    finally:
        session.close()
    # the same CAs go on issuing, now from the token; the audit trail still verifies
    pki = Pki.open(load_settings(data_dir))
    try:
        issued = pki.issuance.issue(build_csr(make_key(), cn="after"), profile="tls-client")
    finally:
        pki.close()
    issued.certificate.verify_directly_issued_by(certificates["ca:issuing"])
    verified = _otward(data_dir, "audit", "verify")
    assert verified.exit_code == 0, verified.output
    assert (
        "every key is in the token already"
        in _otward(data_dir, "ca", "migrate-keys", "--to", "pkcs11").output
    )


def test_keys_the_token_cannot_take_stay_files_and_the_rollover_is_explained(tmp_path: Path, hsm: SoftHsm):
    data_dir = _file_installation(tmp_path, KeyType.ED25519)
    key_files = sorted((data_dir / "keys").iterdir())
    before = _key_refs(data_dir)
    result = _migrate(data_dir, hsm)
    assert result.exit_code == 1
    assert "nothing was moved" in result.output
    assert "otward ca create" in result.output
    assert all(path.exists() for path in key_files)
    assert _key_refs(data_dir) == before
    assert load_settings(data_dir).keys.backend == "file"


def test_init_refuses_before_it_writes_anything(tmp_path: Path, hsm: SoftHsm):
    token = ("--key-backend", "pkcs11", "--pkcs11-module", str(hsm.module), "--pkcs11-token", hsm.label)
    target = tmp_path / "never"
    result = CliRunner().invoke(
        app,
        [
            "init",
            "--data",
            str(target),
            *token,
            "--pkcs11-pin-file",
            str(hsm.pin_file),
            "--key-type",
            "ed25519",
        ],
    )
    assert result.exit_code == 1
    assert "cannot make ed25519 keys" in result.output
    result = CliRunner().invoke(
        app, ["init", "--data", str(target), *token], env={"OTWARD_PKCS11_PIN": "0000"}
    )
    assert result.exit_code == 1
    assert f"wrong PIN for token '{hsm.label}'" in result.output
    assert not target.exists()
