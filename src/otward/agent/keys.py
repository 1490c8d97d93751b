"""The device key, made where it lives and never exported: a PEM file or a PKCS#11 token.

A device without a secure element keeps its key in a file (0600, created with
O_EXCL so nothing is ever overwritten). A device with one keeps it on a PKCS#11
token as a sensitive, non-extractable object; SoftHSM2 stands in for the secure
element in tests. Both kinds of key build their PKCS#10 request the same way:
the CertificationRequestInfo is encoded with pyasn1 and signed through
:meth:`DeviceKey.sign`, because pyca/cryptography can only sign with a key it
holds itself.

python-pkcs11 loads and initialises a module once per process and path, and
PKCS#11 login state belongs to the process, not to a session. Hence: at most one
open :class:`Pkcs11KeyStore` per token per process, and :meth:`Pkcs11KeyStore.close`
closes its session but leaves the module loaded for others.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import pkcs11
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.x509.oid import NameOID
from pkcs11.constants import Attribute, MechanismFlag, ObjectClass
from pkcs11.exceptions import (
    MultipleObjectsReturned,
    MultipleTokensReturned,
    NoSuchKey,
    NoSuchToken,
    PinIncorrect,
    PinInvalid,
    PinLenRange,
    PinLocked,
    PKCS11Error,
    UserAlreadyLoggedIn,
)
from pkcs11.mechanisms import KeyType as P11KeyType
from pkcs11.mechanisms import Mechanism
from pkcs11.types import PublicKey, Session, SignMixin
from pkcs11.util.ec import encode_ec_public_key, encode_named_curve_parameters
from pyasn1.codec.der import decoder as der_decoder
from pyasn1.codec.der import encoder as der_encoder
from pyasn1.type import char, univ
from pyasn1_alt_modules import rfc2986, rfc5280

from otward.adapters.keys.file import write_private_file
from otward.adapters.keys.pkcs11 import read_pin_file
from otward.errors import (
    ConfigError,
    ConflictError,
    InvalidRequestError,
    NotFoundError,
    SignerError,
)

__all__ = [
    "DeviceKey",
    "FileDeviceKey",
    "FileKeyStore",
    "KeyStore",
    "Pkcs11DeviceKey",
    "Pkcs11KeyStore",
    "pkcs11_store",
]

# Safe as a file name and as a CKA_LABEL; wide enough for "otward-<64-char device id>-<n>".
_LABEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_ECDSA_WITH_SHA256 = "1.2.840.10045.4.3.2"
_CHALLENGE_PASSWORD = "1.2.840.113549.1.9.7"  # noqa: S105 - an OID (PKCS #9 challengePassword)
_P256_COORDINATE = 32  # bytes in r and in s of a P-256 signature


class DeviceKey(Protocol):
    """A device private key, wherever it lives; it never leaves its store."""

    @property
    def label(self) -> str:
        """The key's name in its store."""
        ...

    def public_key(self) -> ec.EllipticCurvePublicKey: ...

    def sign(self, data: bytes) -> bytes:
        """ECDSA P-256 over SHA-256(data), DER-encoded (RFC 3279 Ecdsa-Sig-Value)."""
        ...

    def certificate_request(
        self, common_name: str, *, challenge_password: bytes | None = None
    ) -> x509.CertificateSigningRequest:
        """A CSR with subject CN=common_name and no extensions, signed by this key; with
        ``challenge_password`` (RFC 7030 section 3.5 channel binding) as its one attribute."""
        ...


class KeyStore(Protocol):
    """Where device keys are generated, found and destroyed."""

    def generate(self, label: str) -> DeviceKey:
        """A new EC P-256 key; ConflictError if ``label`` is taken."""
        ...

    def load(self, label: str) -> DeviceKey:
        """The key called ``label``; NotFoundError if there is none."""
        ...

    def delete(self, label: str) -> None:
        """Destroy the key called ``label``; deleting a missing key is not an error."""
        ...

    def close(self) -> None: ...


def _validate_label(label: str) -> None:
    """Labels become file names, so anything that could leave the key directory is refused."""
    if not _LABEL.fullmatch(label):
        raise ConfigError(
            f"key label '{label}' must be 1-128 letters, digits and -_. starting with a letter or digit",
            rule="key-label",
        )


def _build_certificate_request(
    key: DeviceKey, common_name: str, challenge_password: bytes | None = None
) -> x509.CertificateSigningRequest:
    """Encode the request with pyasn1 and sign it through ``key.sign``, so a key that cannot leave
    its token gets the same request a cryptography builder would make (attributes an empty SET, or
    the challengePassword as a PrintableString)."""
    try:
        subject_der = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]).public_bytes()
    except ValueError as exc:
        raise InvalidRequestError(f"common name '{common_name}': {exc}", rule="common-name") from None
    spki_der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    subject, _ = der_decoder.decode(subject_der, asn1Spec=rfc5280.Name())
    spki, _ = der_decoder.decode(spki_der, asn1Spec=rfc5280.SubjectPublicKeyInfo())

    info = rfc2986.CertificationRequestInfo()
    info["version"] = 0
    info["subject"] = subject
    info["subjectPKInfo"] = spki
    info["attributes"].clear()  # present and empty: [0] IMPLICIT SET {}
    if challenge_password is not None:
        attribute = rfc2986.Attribute()
        attribute["type"] = univ.ObjectIdentifier(_CHALLENGE_PASSWORD)
        attribute["values"].append(
            der_encoder.encode(char.PrintableString(challenge_password.decode("ascii")))
        )
        info["attributes"].append(attribute)

    request = rfc2986.CertificationRequest()
    request["certificationRequestInfo"] = info
    request["signatureAlgorithm"]["algorithm"] = univ.ObjectIdentifier(_ECDSA_WITH_SHA256)
    request["signature"] = univ.BitString.fromOctetString(key.sign(der_encoder.encode(info)))
    csr = x509.load_der_x509_csr(der_encoder.encode(request))
    if not csr.is_signature_valid:
        raise SignerError(f"key '{key.label}' signed a certificate request that does not verify")
    return csr


# --- keys in files -------------------------------------------------------------------------------


class FileDeviceKey:
    """An EC P-256 key in an unencrypted PKCS#8 PEM file, for devices without a secure element."""

    __slots__ = ("_label", "_private_key", "path")

    def __init__(self, label: str, path: Path, private_key: ec.EllipticCurvePrivateKey) -> None:
        self._label = label
        self.path = path  # for ssl.SSLContext.load_cert_chain (TLS client authentication)
        self._private_key = private_key

    def __repr__(self) -> str:
        return f"FileDeviceKey(label={self._label!r}, path={str(self.path)!r})"

    @property
    def label(self) -> str:
        return self._label

    def public_key(self) -> ec.EllipticCurvePublicKey:
        return self._private_key.public_key()

    def sign(self, data: bytes) -> bytes:
        return self._private_key.sign(data, ec.ECDSA(hashes.SHA256()))

    def certificate_request(
        self, common_name: str, *, challenge_password: bytes | None = None
    ) -> x509.CertificateSigningRequest:
        return _build_certificate_request(self, common_name, challenge_password)


class FileKeyStore:
    """Key files ``<label>.key.pem`` in one directory (0700); each file 0600, never overwritten."""

    def __init__(self, directory: Path) -> None:
        self._directory = directory
        try:
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"cannot create key directory {directory}: {exc.strerror}") from exc

    def _path(self, label: str) -> Path:
        _validate_label(label)
        return self._directory / f"{label}.key.pem"

    def generate(self, label: str) -> FileDeviceKey:
        path = self._path(label)
        private_key = ec.generate_private_key(ec.SECP256R1())
        pem = private_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        try:
            write_private_file(path, pem)  # O_CREAT | O_EXCL, 0600, fsync; ConflictError if it exists
            _fsync_directory(self._directory)
        except OSError as exc:
            raise SignerError(f"cannot write key file {path}: {exc.strerror}") from exc
        return FileDeviceKey(label, path, private_key)

    def load(self, label: str) -> FileDeviceKey:
        path = self._path(label)
        try:
            mode = path.stat().st_mode
            data = path.read_bytes()
        except FileNotFoundError:
            raise NotFoundError(f"no key '{label}' in {self._directory}") from None
        except OSError as exc:
            raise SignerError(f"cannot read key file {path}: {exc.strerror}") from exc
        if stat.S_IMODE(mode) & 0o077:
            raise ConfigError(
                f"key file {path} is accessible to group or others (mode {stat.S_IMODE(mode):04o}); "
                "it must be 0600",
                rule="key-file-mode",
            )
        try:
            private_key = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError) as exc:
            raise SignerError(f"key file {path} is not an unencrypted PKCS#8 PEM key") from exc
        if not isinstance(private_key, ec.EllipticCurvePrivateKey) or private_key.curve.name != "secp256r1":
            raise SignerError(f"key file {path} does not hold an EC P-256 key")
        return FileDeviceKey(label, path, private_key)

    def delete(self, label: str) -> None:
        path = self._path(label)
        try:
            path.unlink(missing_ok=True)
            _fsync_directory(self._directory)
        except OSError as exc:
            raise SignerError(f"cannot delete key file {path}: {exc.strerror}") from exc

    def close(self) -> None:
        """Nothing to release: every key holds its own copy of the private key."""


def _fsync_directory(directory: Path) -> None:
    """Make a created or removed directory entry survive a power cut, not just the file's bytes."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# --- keys on a PKCS#11 token ---------------------------------------------------------------------


class Pkcs11DeviceKey:
    """An EC P-256 key pair on a token; signing happens on the token, over a digest made here."""

    __slots__ = ("_label", "_private", "_public_key", "_store")

    def __init__(
        self,
        store: Pkcs11KeyStore,
        label: str,
        private: SignMixin,
        public_key: ec.EllipticCurvePublicKey,
    ) -> None:
        self._store = store
        self._label = label
        self._private = private
        self._public_key = public_key

    def __repr__(self) -> str:
        return f"Pkcs11DeviceKey(label={self._label!r}, token={self._store.token_label!r})"

    @property
    def label(self) -> str:
        return self._label

    def public_key(self) -> ec.EllipticCurvePublicKey:
        return self._public_key

    def sign(self, data: bytes) -> bytes:
        """CKM_ECDSA over SHA-256(data): only 32 bytes cross to the token, whatever ``data`` is."""
        self._store._open_session()
        digest = hashlib.sha256(data).digest()
        try:
            raw = bytes(self._private.sign(digest, mechanism=Mechanism.ECDSA))
        except PKCS11Error as exc:
            raise SignerError(
                f"token '{self._store.token_label}' could not sign with key '{self._label}'"
            ) from exc
        if len(raw) != 2 * _P256_COORDINATE:
            raise SignerError(f"token '{self._store.token_label}' returned a {len(raw)}-byte ECDSA signature")
        r = int.from_bytes(raw[:_P256_COORDINATE], "big")
        s = int.from_bytes(raw[_P256_COORDINATE:], "big")
        return encode_dss_signature(r, s)

    def certificate_request(
        self, common_name: str, *, challenge_password: bytes | None = None
    ) -> x509.CertificateSigningRequest:
        return _build_certificate_request(self, common_name, challenge_password)


class Pkcs11KeyStore:
    """Keys on one PKCS#11 token, through one logged-in read-write session.

    Login state is per process in PKCS#11, and closing a logged-in session logs out
    every session of the process on that token; so open one store per token per
    process and close it last.
    """

    def __init__(self, module: Path, token_label: str, pin: str) -> None:
        self.module = module
        self.token_label = token_label
        self._lock = threading.Lock()
        where = f"token '{token_label}' of PKCS#11 module {module}"
        if not module.is_file():
            raise ConfigError(f"PKCS#11 module {module} does not exist", rule="pkcs11-module")
        try:
            library = pkcs11.lib(str(module))
        except PKCS11Error as exc:
            raise ConfigError(f"cannot load PKCS#11 module {module}", rule="pkcs11-module") from exc
        try:
            token = library.get_token(token_label=token_label)
        except NoSuchToken:
            raise SignerError(f"no {where}") from None
        except MultipleTokensReturned:
            raise ConfigError(f"more than one {where}", rule="pkcs11-token") from None
        except PKCS11Error as exc:
            raise SignerError(f"cannot list the tokens of PKCS#11 module {module}") from exc
        try:
            self._session: Session | None = token.open(rw=True, user_pin=pin)
        except (PinIncorrect, PinInvalid, PinLenRange):
            raise ConfigError(f"wrong PIN for {where}", rule="pkcs11-pin") from None
        except PinLocked:
            raise ConfigError(f"the PIN of {where} is locked", rule="pkcs11-pin") from None
        except UserAlreadyLoggedIn:
            raise SignerError(f"{where} is already logged in by another store in this process") from None
        except PKCS11Error as exc:
            raise SignerError(f"cannot open a session on {where}") from exc

    def __repr__(self) -> str:
        return f"Pkcs11KeyStore(module={str(self.module)!r}, token_label={self.token_label!r})"

    def _open_session(self) -> Session:
        """The session, or SignerError once :meth:`close` ran (rather than a stale handle)."""
        if self._session is None:
            raise SignerError(f"the key store of token '{self.token_label}' is closed")
        return self._session

    def generate(self, label: str) -> Pkcs11DeviceKey:
        """A P-256 key pair generated on the token: private half sensitive, non-extractable, sign only."""
        _validate_label(label)
        session = self._open_session()
        with self._lock:  # the look-up and the generation must not interleave with another generate
            try:
                if list(session.get_objects({Attribute.LABEL: label})):
                    raise ConflictError(f"token '{self.token_label}' already holds a key '{label}'")
                parameters = session.create_domain_parameters(
                    P11KeyType.EC,
                    {Attribute.EC_PARAMS: encode_named_curve_parameters("secp256r1")},
                    local=True,
                )
                public, private = parameters.generate_keypair(
                    id=label.encode(),
                    label=label,
                    store=True,
                    capabilities=MechanismFlag.SIGN | MechanismFlag.VERIFY,
                    private_template={
                        Attribute.PRIVATE: True,
                        Attribute.SENSITIVE: True,
                        Attribute.EXTRACTABLE: False,
                    },
                )
                public_key = _ec_public_key(public)
            except PKCS11Error as exc:
                raise SignerError(f"token '{self.token_label}' could not generate key '{label}'") from exc
        if not isinstance(private, SignMixin):  # python-pkcs11 adds sign() only where CKA_SIGN is true
            raise SignerError(f"token '{self.token_label}' made key '{label}' without the right to sign")
        return Pkcs11DeviceKey(self, label, private, public_key)

    def load(self, label: str) -> Pkcs11DeviceKey:
        _validate_label(label)
        session = self._open_session()
        try:
            private = session.get_key(object_class=ObjectClass.PRIVATE_KEY, label=label)
            public = session.get_key(object_class=ObjectClass.PUBLIC_KEY, label=label)
            if not isinstance(private, SignMixin) or not isinstance(public, PublicKey):
                raise SignerError(f"key '{label}' on token '{self.token_label}' is not allowed to sign")
            public_key = _ec_public_key(public)
        except NoSuchKey:
            raise NotFoundError(f"no key pair '{label}' on token '{self.token_label}'") from None
        except MultipleObjectsReturned:
            raise SignerError(f"token '{self.token_label}' holds more than one key '{label}'") from None
        except PKCS11Error as exc:
            raise SignerError(f"token '{self.token_label}' could not find key '{label}'") from exc
        return Pkcs11DeviceKey(self, label, private, public_key)

    def certificate(self, label: str) -> x509.Certificate:
        """The X.509 certificate object ``label`` on the token (a factory identity, put there by the
        manufacturer beside its key)."""
        session = self._open_session()
        try:
            found = list(
                session.get_objects({Attribute.CLASS: ObjectClass.CERTIFICATE, Attribute.LABEL: label})
            )
            if len(found) != 1:
                raise NotFoundError(
                    f"token '{self.token_label}' holds {len(found)} certificates '{label}', not one",
                    rule="pkcs11-certificate",
                )
            der = bytes(found[0][Attribute.VALUE])
        except PKCS11Error as exc:
            raise SignerError(f"token '{self.token_label}' could not read certificate '{label}'") from exc
        try:
            return x509.load_der_x509_certificate(der)
        except ValueError:
            raise SignerError(f"certificate '{label}' on token '{self.token_label}' is unreadable") from None

    def delete(self, label: str) -> None:
        _validate_label(label)
        session = self._open_session()
        try:
            for object_class in (ObjectClass.PRIVATE_KEY, ObjectClass.PUBLIC_KEY):
                template = {Attribute.CLASS: object_class, Attribute.LABEL: label}
                for found in list(session.get_objects(template)):
                    found.destroy()
        except PKCS11Error as exc:
            raise SignerError(f"token '{self.token_label}' could not delete key '{label}'") from exc

    def close(self) -> None:
        """Log out and close the session; the module stays loaded (python-pkcs11 shares it per process)."""
        session, self._session = self._session, None
        if session is None:
            return
        try:
            session.close()
        except PKCS11Error as exc:
            raise SignerError(f"cannot close the session on token '{self.token_label}'") from exc


def _ec_public_key(public: PublicKey) -> ec.EllipticCurvePublicKey:
    """The token's CKA_EC_PARAMS and CKA_EC_POINT as a cryptography key, which must be P-256."""
    if public.key_type != P11KeyType.EC:
        raise SignerError(f"key '{public.label}' is not an EC key")
    key = serialization.load_der_public_key(encode_ec_public_key(public))
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
        raise SignerError(f"key '{public.label}' is not on curve P-256")
    return key


def pkcs11_store(module: Path, token_label: str, pin_file: Path) -> Pkcs11KeyStore:
    """Open ``token_label`` with the PIN in ``pin_file``, which only its owner may read."""
    return Pkcs11KeyStore(module, token_label, read_pin_file(pin_file))


if TYPE_CHECKING:  # mypy proves both stores and both keys satisfy the protocols the agent codes against
    _STORES: tuple[type[KeyStore], ...] = (FileKeyStore, Pkcs11KeyStore)
    _KEYS: tuple[type[DeviceKey], ...] = (FileDeviceKey, Pkcs11DeviceKey)
