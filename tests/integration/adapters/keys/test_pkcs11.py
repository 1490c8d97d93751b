"""The PKCS#11 key backend against a real SoftHSM2 token (a fresh one for this module)."""

from __future__ import annotations

import multiprocessing
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pkcs11
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID
from pkcs11.constants import Attribute, ObjectClass
from pkcs11.exceptions import AttributeSensitive

from otward.adapters.keys.file import generate_private_key
from otward.adapters.keys.pkcs11 import PIN_ENV, Pkcs11KeyBackend, read_pin_file, resolve_pin
from otward.core.keys import KeyType, sign_data, signature_hash_for, verify_data
from otward.errors import ConfigError, SignerError, UnsupportedAlgorithmError
from tests.conftest import SoftHsm, softhsm_token

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def hsm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SoftHsm]:
    with softhsm_token(tmp_path_factory.mktemp("softhsm"), label="keys") as token:
        yield token


@pytest.fixture
def backend(hsm: SoftHsm) -> Iterator[Pkcs11KeyBackend]:
    opened = Pkcs11KeyBackend(hsm.module, hsm.label, lambda: hsm.pin)
    try:
        yield opened
    finally:
        opened.close()


def _objects(hsm: SoftHsm, key_ref: str, object_class: ObjectClass) -> list[pkcs11.Object]:
    key_id = bytes.fromhex(key_ref.rpartition("id=")[2])
    session = hsm.session()
    return list(session.get_objects({Attribute.CLASS: object_class, Attribute.ID: key_id}))


def _self_signed(key: object) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "token CA")])
    now = datetime.now(UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())  # type: ignore[attr-defined]
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + timedelta(days=1))
    )
    return builder.sign(key, signature_hash_for(key))  # type: ignore[arg-type]


@pytest.mark.parametrize("key_type", [KeyType.EC_P256, KeyType.EC_P384, KeyType.EC_P521, KeyType.RSA_3072])
def test_keys_are_made_in_the_token_sensitive_and_never_extractable(
    hsm: SoftHsm, backend: Pkcs11KeyBackend, key_type: KeyType
):
    key_ref = backend.create_key(key_type, f"ca-{key_type.value}")
    assert key_ref.startswith(f"pkcs11:object=otward-ca-{key_type.value};id=")
    key = backend.load_key(key_ref)
    (private,) = _objects(hsm, key_ref, ObjectClass.PRIVATE_KEY)
    assert private[Attribute.SENSITIVE] is True
    assert private[Attribute.EXTRACTABLE] is False
    assert private[Attribute.ALWAYS_SENSITIVE] is True
    assert private[Attribute.NEVER_EXTRACTABLE] is True
    assert private[Attribute.LOCAL] is True  # generated there, not imported
    assert private[Attribute.LABEL] == f"otward-ca-{key_type.value}"
    with pytest.raises(AttributeSensitive):
        private[Attribute.PRIVATE_EXPONENT if key_type.is_rsa else Attribute.VALUE]
    with pytest.raises(SignerError, match="never leaves its token"):
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    # what the builders of cryptography make with it verifies under the token's public key
    certificate = _self_signed(key)
    certificate.verify_directly_issued_by(certificate)
    assert certificate.signature_hash_algorithm.name == signature_hash_for(key).name  # type: ignore[union-attr]
    assert verify_data(certificate.public_key(), sign_data(key, b"audit head"), b"audit head")
    assert not verify_data(certificate.public_key(), sign_data(key, b"audit head"), b"other head")


def test_a_token_signature_is_what_a_file_key_would_produce(backend: Pkcs11KeyBackend):
    """Same encodings as file keys: DER ECDSA over the matching hash, and PKCS#1 v1.5 RSA (which is
    deterministic, so equal bytes for the same key would follow; here: verification with the
    standard padding and hash)."""
    ec_key = backend.load_key(backend.create_key(KeyType.EC_P384, "same-ec"))
    signature = ec_key.sign(b"data", ec.ECDSA(hashes.SHA384()))  # type: ignore[call-arg]
    ec_key.public_key().verify(signature, b"data", ec.ECDSA(hashes.SHA384()))  # type: ignore[call-arg]
    rsa_key = backend.load_key(backend.create_key(KeyType.RSA_2048, "same-rsa"))
    assert isinstance(rsa_key, rsa.RSAPrivateKey)
    signature = rsa_key.sign(b"data", padding.PKCS1v15(), hashes.SHA256())
    rsa_key.public_key().verify(signature, b"data", padding.PKCS1v15(), hashes.SHA256())
    with pytest.raises(UnsupportedAlgorithmError):
        rsa_key.sign(b"data", padding.PSS(padding.MGF1(hashes.SHA256()), 32), hashes.SHA256())


def test_key_types_the_token_is_not_asked_for_are_refused_clearly(backend: Pkcs11KeyBackend):
    with pytest.raises(UnsupportedAlgorithmError, match="cannot make ed25519 keys"):
        backend.create_key(KeyType.ED25519, "ed")


def test_a_destroyed_key_is_gone_and_destroying_it_again_is_no_error(hsm: SoftHsm, backend: Pkcs11KeyBackend):
    key_ref = backend.create_key(KeyType.EC_P256, "signer-rotated")
    backend.destroy_key(key_ref)
    backend.destroy_key(key_ref)
    assert _objects(hsm, key_ref, ObjectClass.PRIVATE_KEY) == []
    assert _objects(hsm, key_ref, ObjectClass.PUBLIC_KEY) == []
    with pytest.raises(SignerError, match="no private key 'otward-signer-rotated'"):
        backend.load_key(key_ref)


def test_signing_from_many_threads_at_once(backend: Pkcs11KeyBackend):
    key = backend.load_key(backend.create_key(KeyType.EC_P256, "threads"))
    failures: list[BaseException] = []

    def sign_many(index: int) -> None:
        try:
            for n in range(15):
                message = f"{index}-{n}".encode()
                assert verify_data(key.public_key(), sign_data(key, message), message)
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            failures.append(exc)

    threads = [threading.Thread(target=sign_many, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []


def test_signing_continues_after_the_token_was_reset(hsm: SoftHsm, backend: Pkcs11KeyBackend):
    """C_Finalize + C_Initialize ends every session and the login, as a token reset does: the next
    signature opens a session, logs in again and succeeds."""
    key = backend.load_key(backend.create_key(KeyType.EC_P256, "reset"))
    assert verify_data(key.public_key(), sign_data(key, b"before"), b"before")
    pkcs11.lib(str(hsm.module)).reinitialize()
    assert verify_data(key.public_key(), sign_data(key, b"after"), b"after")


def _sign_in_child(backend: Pkcs11KeyBackend, key_ref: str, queue: multiprocessing.Queue[bytes]) -> None:
    queue.put(sign_data(backend.load_key(key_ref), b"child"))


def test_a_forked_child_opens_its_own_session(backend: Pkcs11KeyBackend):
    key_ref = backend.create_key(KeyType.EC_P256, "fork")
    key = backend.load_key(key_ref)
    sign_data(key, b"parent")  # the parent holds a logged-in session before the fork
    context = multiprocessing.get_context("fork")
    queue: multiprocessing.Queue[bytes] = context.Queue()
    child = context.Process(target=_sign_in_child, args=(backend, key_ref, queue))
    child.start()
    signature = queue.get(timeout=60)
    child.join(timeout=60)
    assert child.exitcode == 0
    assert verify_data(key.public_key(), signature, b"child")
    assert verify_data(key.public_key(), sign_data(key, b"parent again"), b"parent again")


@pytest.mark.parametrize("key_type", [KeyType.EC_P384, KeyType.RSA_3072])
def test_an_imported_file_key_becomes_a_sensitive_token_key(
    hsm: SoftHsm, backend: Pkcs11KeyBackend, key_type: KeyType
):
    file_key = generate_private_key(key_type)
    key_ref = backend.token.import_key(file_key, f"imported-{key_type.value}")
    (private,) = _objects(hsm, key_ref, ObjectClass.PRIVATE_KEY)
    assert private[Attribute.SENSITIVE] is True
    assert private[Attribute.EXTRACTABLE] is False
    assert private[Attribute.LOCAL] is False
    key = backend.load_key(key_ref)
    assert key.public_key() == file_key.public_key()
    assert verify_data(file_key.public_key(), sign_data(key, b"moved"), b"moved")


def test_a_wrong_pin_and_a_missing_token_are_named(hsm: SoftHsm, tmp_path: Path):
    wrong = Pkcs11KeyBackend(hsm.module, hsm.label, lambda: "0000")
    try:
        with pytest.raises(ConfigError, match=f"wrong PIN for token '{hsm.label}'"):
            wrong.open()
    finally:
        wrong.close()
    missing = Pkcs11KeyBackend(hsm.module, "no-such-token", lambda: hsm.pin)
    try:
        with pytest.raises(SignerError, match="no token 'no-such-token'"):
            missing.open()
    finally:
        missing.close()
    absent = Pkcs11KeyBackend(tmp_path / "nothing.so", hsm.label, lambda: hsm.pin)
    try:
        with pytest.raises(ConfigError, match="does not exist"):
            absent.open()
    finally:
        absent.close()


def test_the_pin_comes_from_the_environment_or_an_owner_only_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    pin_file = tmp_path / "pin"
    pin_file.write_text("4321\n")
    pin_file.chmod(0o644)
    with pytest.raises(ConfigError, match="accessible to group or others"):
        read_pin_file(pin_file)
    pin_file.chmod(0o600)
    assert resolve_pin(pin_file) == "4321"
    monkeypatch.setenv(PIN_ENV, "9876")
    assert resolve_pin(pin_file) == "9876"
    monkeypatch.delenv(PIN_ENV)
    with pytest.raises(ConfigError, match="OTWARD_PKCS11_PIN"):
        resolve_pin(None)
