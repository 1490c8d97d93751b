"""The file key store of the device agent, and the CSR path it shares with the PKCS#11 store."""

from __future__ import annotations

import contextlib
import os
import ssl
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID, SignatureAlgorithmOID

from otward.agent.keys import FileDeviceKey, FileKeyStore
from otward.core.keys import verify_data
from otward.errors import ConfigError, ConflictError, InvalidRequestError, NotFoundError, SignerError
from tests.conftest import openssl_verifies, self_signed

LABEL = "otward-plc-7-1"


@pytest.fixture
def directory(tmp_path: Path) -> Path:
    return tmp_path / "agent" / "keys"


@pytest.fixture
def store(directory: Path) -> FileKeyStore:
    return FileKeyStore(directory)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _private_key_on_disk(key: FileDeviceKey) -> ec.EllipticCurvePrivateKey:
    loaded = serialization.load_pem_private_key(key.path.read_bytes(), password=None)
    assert isinstance(loaded, ec.EllipticCurvePrivateKey)
    return loaded


@contextlib.contextmanager
def _umask(mask: int):
    previous = os.umask(mask)
    try:
        yield
    finally:
        os.umask(previous)


def test_generate_writes_an_owner_only_pkcs8_file_even_with_an_open_umask(directory: Path):
    with _umask(0):
        key = FileKeyStore(directory).generate(LABEL)

    assert key.label == LABEL
    assert key.path == directory / f"{LABEL}.key.pem"
    assert _mode(directory) == 0o700
    assert _mode(key.path) == 0o600
    assert key.path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----\n")  # PKCS#8, unencrypted
    on_disk = _private_key_on_disk(key)
    assert isinstance(on_disk.curve, ec.SECP256R1)
    assert on_disk.public_key() == key.public_key()


def test_generate_refuses_an_existing_label_and_leaves_the_key_alone(store: FileKeyStore):
    first = store.generate(LABEL)
    before = first.path.read_bytes()

    with pytest.raises(ConflictError, match="already exists"):
        store.generate(LABEL)

    assert first.path.read_bytes() == before
    assert store.load(LABEL).public_key() == first.public_key()


def test_load_returns_the_key_that_was_generated(store: FileKeyStore, directory: Path):
    generated = store.generate(LABEL)

    loaded = FileKeyStore(directory).load(LABEL)

    assert loaded.public_key() == generated.public_key()
    assert loaded.path == generated.path
    assert verify_data(generated.public_key(), loaded.sign(b"reading 42"), b"reading 42")


def test_each_label_is_its_own_key(store: FileKeyStore):
    assert store.generate(LABEL).public_key() != store.generate("otward-plc-7-2").public_key()


def test_load_of_an_unknown_label_is_not_found(store: FileKeyStore):
    with pytest.raises(NotFoundError, match="no key 'otward-plc-7-9'"):
        store.load("otward-plc-7-9")


def test_delete_removes_the_file_and_can_be_repeated(store: FileKeyStore):
    key = store.generate(LABEL)

    store.delete(LABEL)
    store.delete(LABEL)

    assert not key.path.exists()
    with pytest.raises(NotFoundError):
        store.load(LABEL)
    assert store.generate(LABEL).public_key() != key.public_key()  # the label is free again


def test_signature_verifies_with_the_core_and_only_over_the_signed_data(store: FileKeyStore):
    key = store.generate(LABEL)

    signature = key.sign(b"challenge-1")

    assert verify_data(key.public_key(), signature, b"challenge-1")
    assert not verify_data(key.public_key(), signature, b"challenge-2")
    # DER Ecdsa-Sig-Value, hash SHA-256: cryptography's own verify agrees on both.
    key.public_key().verify(signature, b"challenge-1", ec.ECDSA(hashes.SHA256()))


def test_certificate_request_carries_only_the_common_name_and_the_key(store: FileKeyStore):
    key = store.generate(LABEL)

    csr = key.certificate_request("plc-7")

    assert csr.is_signature_valid
    assert csr.subject == x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "plc-7")])
    assert len(csr.extensions) == 0
    assert len(csr.attributes) == 0
    assert csr.signature_algorithm_oid == SignatureAlgorithmOID.ECDSA_WITH_SHA256
    assert csr.public_key() == key.public_key()


def test_certificate_request_is_what_cryptographys_builder_makes(store: FileKeyStore):
    """The pyasn1 path (the only one a token key can use) encodes byte for byte what pyca would."""
    key = store.generate(LABEL)
    reference = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "plc-7")]))
        .sign(_private_key_on_disk(key), hashes.SHA256())
    )

    csr = key.certificate_request("plc-7")

    assert csr.tbs_certrequest_bytes == reference.tbs_certrequest_bytes


def test_certificate_request_passes_openssl_req_verify(store: FileKeyStore, tmp_path: Path):
    pem = store.generate(LABEL).certificate_request("plc-7").public_bytes(serialization.Encoding.PEM)
    tampered = x509.load_pem_x509_csr(pem).public_bytes(serialization.Encoding.DER)
    tampered = tampered[:-1] + bytes([tampered[-1] ^ 0x01])  # last byte of the signature's s
    tampered_pem = x509.load_der_x509_csr(tampered).public_bytes(serialization.Encoding.PEM)

    assert openssl_verifies(pem, tmp_path)
    assert not openssl_verifies(tampered_pem, tmp_path)  # the check itself can fail


@pytest.mark.parametrize("common_name", ["", "x" * 65], ids=["empty", "65-chars"])
def test_certificate_request_refuses_a_common_name_x509_forbids(store: FileKeyStore, common_name: str):
    with pytest.raises(InvalidRequestError, match="common name"):
        store.generate(LABEL).certificate_request(common_name)


@pytest.mark.parametrize(
    "label",
    ["", "../escape", "a/b", ".hidden", "-dash-first", "line\nbreak", "x" * 129],
    ids=["empty", "parent", "slash", "dot-first", "dash-first", "newline", "129-chars"],
)
def test_labels_that_could_leave_the_directory_are_refused(store: FileKeyStore, directory: Path, label: str):
    with pytest.raises(ConfigError, match="key label"):
        store.generate(label)
    with pytest.raises(ConfigError, match="key label"):
        store.delete(label)
    assert list(directory.parent.rglob("*.pem")) == []


def test_load_refuses_a_key_file_others_can_read(store: FileKeyStore):
    key = store.generate(LABEL)
    key.path.chmod(0o644)

    with pytest.raises(ConfigError, match="0644"):
        store.load(LABEL)


def test_load_refuses_a_key_that_is_not_p256(store: FileKeyStore, directory: Path):
    other = ec.generate_private_key(ec.SECP384R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    path = directory / f"{LABEL}.key.pem"
    path.write_bytes(other)
    path.chmod(0o600)

    with pytest.raises(SignerError, match="P-256"):
        store.load(LABEL)


def test_load_refuses_a_file_that_is_not_a_key(store: FileKeyStore, directory: Path):
    path = directory / f"{LABEL}.key.pem"
    path.write_bytes(b"-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n")
    path.chmod(0o600)

    with pytest.raises(SignerError, match="not an unencrypted PKCS#8"):
        store.load(LABEL)


def test_key_path_serves_tls_client_authentication(store: FileKeyStore, tmp_path: Path):
    """The agent hands ``key.path`` to ``ssl``: OpenSSL must accept it beside a matching certificate."""
    key = store.generate(LABEL)
    certificate = self_signed(key, "plc-7", signer=_private_key_on_disk(key))
    cert_path = tmp_path / "cert.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)

    context.load_cert_chain(cert_path, keyfile=key.path)  # raises SSLError on a mismatched or bad key
