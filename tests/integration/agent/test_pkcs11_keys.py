"""The PKCS#11 key store against a real SoftHSM2 token.

SoftHSM2 reads ``SOFTHSM2_CONF`` in C_Initialize, and python-pkcs11 caches each
module per process (``pkcs11.lib``), initialised once. So the module-scoped
``token`` fixture (``tests.conftest.softhsm_token``) sets ``SOFTHSM2_CONF`` to a
private configuration and re-initialises the module; on teardown it finalises
the module, so the next user initialises it again with its own configuration.
pytest-randomly shuffles modules but does not interleave them, so no other
module's sessions are in use while this one runs.

SoftHSM2 is required, not optional: without it these tests fail (CI installs it
with scripts/install-test-deps).
"""

from __future__ import annotations

import traceback
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pkcs11
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID, SignatureAlgorithmOID
from pkcs11.constants import Attribute, ObjectClass
from pkcs11.exceptions import AttributeSensitive
from pkcs11.mechanisms import KeyType
from pkcs11.util.ec import encode_ec_public_key

from otward.agent.keys import Pkcs11KeyStore, pkcs11_store
from otward.core.keys import verify_data
from otward.errors import ConfigError, ConflictError, NotFoundError, SignerError
from tests.conftest import openssl_verifies, softhsm_token

pytestmark = pytest.mark.integration

TOKEN_LABEL = "otward-test"
PIN = "1234"


@dataclass(frozen=True)
class Token:
    module: Path
    label: str
    pin: str


@pytest.fixture(scope="module")
def token(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Token]:
    """One freshly initialised SoftHSM2 token in a private token directory, for this module only."""
    with softhsm_token(tmp_path_factory.mktemp("softhsm"), label=TOKEN_LABEL, pin=PIN) as hsm:
        yield Token(hsm.module, hsm.label, hsm.pin)


@pytest.fixture
def store(token: Token) -> Iterator[Pkcs11KeyStore]:
    opened = Pkcs11KeyStore(token.module, token.label, token.pin)
    try:
        yield opened
    finally:
        opened.close()


@pytest.fixture
def label() -> str:
    """A label no other test uses: the token outlives each test."""
    return f"otward-{uuid.uuid4().hex[:12]}-1"


def _raw_session(token: Token) -> pkcs11.Session:
    """A session of our own, so the store's claims are checked by asking the token directly."""
    return pkcs11.lib(str(token.module)).get_token(token_label=token.label).open(user_pin=token.pin)


def _objects(session: pkcs11.Session, label: str, object_class: ObjectClass) -> list[pkcs11.Object]:
    return list(session.get_objects({Attribute.CLASS: object_class, Attribute.LABEL: label}))


def test_generated_private_key_lives_on_the_token_and_never_leaves_it(token: Token, label: str):
    store = Pkcs11KeyStore(token.module, token.label, token.pin)
    try:
        public_key = store.generate(label).public_key()
    finally:
        store.close()

    with _raw_session(token) as session:
        (private,) = _objects(session, label, ObjectClass.PRIVATE_KEY)
        (public,) = _objects(session, label, ObjectClass.PUBLIC_KEY)
        assert private[Attribute.TOKEN] is True
        assert private[Attribute.PRIVATE] is True
        assert private[Attribute.SENSITIVE] is True
        assert private[Attribute.EXTRACTABLE] is False
        assert private[Attribute.ALWAYS_SENSITIVE] is True
        assert private[Attribute.NEVER_EXTRACTABLE] is True
        assert private[Attribute.LOCAL] is True  # generated on the token, not imported
        assert private[Attribute.SIGN] is True
        assert private[Attribute.DERIVE] is False
        assert private[Attribute.KEY_TYPE] == KeyType.EC
        assert private[Attribute.ID] == label.encode()
        with pytest.raises(AttributeSensitive):
            private[Attribute.VALUE]  # the scalar itself
        assert public[Attribute.TOKEN] is True
        on_token = serialization.load_der_public_key(encode_ec_public_key(public))
        assert on_token == public_key


def test_generate_sign_verify(store: Pkcs11KeyStore, label: str):
    key = store.generate(label)

    signatures = [key.sign(f"challenge-{n}".encode()) for n in range(8)]

    assert key.label == label
    assert isinstance(key.public_key().curve, ec.SECP256R1)
    for n, signature in enumerate(signatures):
        assert verify_data(key.public_key(), signature, f"challenge-{n}".encode())
    assert not verify_data(key.public_key(), signatures[0], b"challenge-1")


def test_certificate_request_verifies_with_cryptography_and_openssl(
    store: Pkcs11KeyStore, label: str, tmp_path: Path
):
    key = store.generate(label)

    csr = key.certificate_request("plc-7")

    assert csr.is_signature_valid
    assert csr.subject == x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "plc-7")])
    assert len(csr.extensions) == 0
    assert csr.signature_algorithm_oid == SignatureAlgorithmOID.ECDSA_WITH_SHA256
    assert csr.public_key() == key.public_key()
    assert openssl_verifies(csr.public_bytes(serialization.Encoding.PEM), tmp_path)


def test_a_new_store_loads_the_same_key_by_label(token: Token, label: str):
    first = Pkcs11KeyStore(token.module, token.label, token.pin)
    try:
        generated = first.generate(label)
        public_key = generated.public_key()
    finally:
        first.close()

    second = Pkcs11KeyStore(token.module, token.label, token.pin)
    try:
        loaded = second.load(label)
        signature = loaded.sign(b"after restart")
    finally:
        second.close()

    assert loaded.public_key() == public_key
    assert verify_data(public_key, signature, b"after restart")


def test_generate_refuses_an_existing_label(store: Pkcs11KeyStore, label: str):
    first = store.generate(label)

    with pytest.raises(ConflictError, match=label):
        store.generate(label)

    assert store.load(label).public_key() == first.public_key()


def test_load_of_an_unknown_label_is_not_found(store: Pkcs11KeyStore, label: str):
    with pytest.raises(NotFoundError, match=label):
        store.load(label)


def test_delete_destroys_both_halves_and_can_be_repeated(token: Token, label: str):
    store = Pkcs11KeyStore(token.module, token.label, token.pin)
    try:
        store.generate(label)
        store.delete(label)
        store.delete(label)
        with pytest.raises(NotFoundError):
            store.load(label)
    finally:
        store.close()

    with _raw_session(token) as session:
        assert _objects(session, label, ObjectClass.PRIVATE_KEY) == []
        assert _objects(session, label, ObjectClass.PUBLIC_KEY) == []


def test_a_closed_store_refuses_to_sign(token: Token, label: str):
    store = Pkcs11KeyStore(token.module, token.label, token.pin)
    key = store.generate(label)
    store.close()
    store.close()  # closing twice is harmless

    with pytest.raises(SignerError, match="closed"):
        key.sign(b"too late")


def test_a_second_store_on_the_same_token_is_refused_clearly(store: Pkcs11KeyStore, token: Token):
    """Login state is per process in PKCS#11: a second login fails (and a second close would log
    out the first store), so the store says so instead of leaking a raw PKCS#11 error."""
    with pytest.raises(SignerError, match="already logged in"):
        Pkcs11KeyStore(token.module, token.label, token.pin)


def test_wrong_pin_is_a_config_error_that_does_not_show_the_pin(token: Token):
    wrong = "wrong-pin-4711"

    with pytest.raises(ConfigError, match=f"wrong PIN for token '{token.label}'") as caught:
        Pkcs11KeyStore(token.module, token.label, wrong)

    logged = "".join(traceback.format_exception(caught.value))  # what log.exception would write
    assert wrong not in logged
    assert wrong not in repr(caught.value.__context__)


def test_an_absent_token_is_named(token: Token):
    with pytest.raises(SignerError, match="no token 'no-such-token'"):
        Pkcs11KeyStore(token.module, "no-such-token", token.pin)


def test_a_missing_module_is_a_config_error(token: Token, tmp_path: Path):
    missing = tmp_path / "libnothing.so"

    with pytest.raises(ConfigError, match=str(missing)):
        Pkcs11KeyStore(missing, token.label, token.pin)


def test_a_file_that_is_not_a_module_is_a_config_error(token: Token, tmp_path: Path):
    bogus = tmp_path / "libbogus.so"
    bogus.write_bytes(b"not an ELF file")

    with pytest.raises(ConfigError, match="cannot load PKCS#11 module"):
        Pkcs11KeyStore(bogus, token.label, token.pin)


def test_pkcs11_store_reads_the_pin_from_an_owner_only_file(token: Token, tmp_path: Path, label: str):
    pin_file = tmp_path / "pin"
    pin_file.write_text(token.pin + "\n")
    pin_file.chmod(0o600)

    store = pkcs11_store(token.module, token.label, pin_file)
    try:
        key = store.generate(label)
        assert verify_data(key.public_key(), key.sign(b"x"), b"x")
    finally:
        store.close()


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604], ids=["0644", "0640", "0604"])
def test_pkcs11_store_refuses_a_pin_file_others_can_read(token: Token, tmp_path: Path, mode: int):
    pin_file = tmp_path / "pin"
    pin_file.write_text(token.pin + "\n")
    pin_file.chmod(mode)

    with pytest.raises(ConfigError, match=f"PIN file {pin_file} is accessible"):
        pkcs11_store(token.module, token.label, pin_file)


def test_pkcs11_store_refuses_an_empty_pin_file(token: Token, tmp_path: Path):
    pin_file = tmp_path / "pin"
    pin_file.write_text("\n")
    pin_file.chmod(0o600)

    with pytest.raises(ConfigError, match="is empty"):
        pkcs11_store(token.module, token.label, pin_file)
