"""CA, responder and signer keys on a PKCS#11 token (an HSM, a USB token; SoftHSM2 in tests).

Keys are generated in the token, private halves sensitive and non-extractable, with a
CKA_LABEL an operator recognises (``otward-ca-root``) and a random CKA_ID; the key
reference ``pkcs11:object=LABEL;id=HEX`` (RFC 7512 attribute names) names both.
:meth:`Pkcs11KeyBackend.load_key` returns a subclass of cryptography's
``EllipticCurvePrivateKey`` or ``RSAPrivateKey`` whose ``sign`` runs in the token, so
certificate, CRL and OCSP builders and :func:`otward.core.keys.sign_data` use it
unchanged: ECDSA over a digest made here (CKM_ECDSA, the token's raw r||s encoded as
DER), RSA PKCS#1 v1.5 with the token hashing (CKM_SHA256_RSA_PKCS and relatives).

Sessions: PKCS#11 login state belongs to the process, and python-pkcs11 initialises a
module with ``C_Initialize(NULL)``, which lets the module assume it is not called from
several threads at once. So each process holds one logged-in session per token, shared
by every backend on that token (reference-counted: the last close logs out), and every
call into the module is serialised by a per-module lock. ``otward serve --workers N``
gives N processes, each with its own session (workers are spawned; after a fork the
child initialises the module again instead of using its parent's handles). A session
that stops working (token reset, module re-initialised, login lost) is reopened and
logged in again once per operation; a token that is gone, or a wrong PIN, raises
:class:`~otward.errors.SignerError` or :class:`~otward.errors.ConfigError` naming the
token. There is never a fallback to key files.
"""

from __future__ import annotations

import os
import re
import secrets
import stat
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import pkcs11
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.padding import AsymmetricPadding, PKCS1v15
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.hazmat.primitives.asymmetric.utils import NoDigestInfo, Prehashed, encode_dss_signature
from cryptography.hazmat.primitives.keywrap import aes_key_wrap_with_padding
from pkcs11.constants import DEFAULT, Attribute, MechanismFlag, ObjectClass
from pkcs11.exceptions import (
    MultipleTokensReturned,
    NoSuchToken,
    PinExpired,
    PinIncorrect,
    PinInvalid,
    PinLenRange,
    PinLocked,
    PKCS11Error,
    UserAlreadyLoggedIn,
    UserPinNotInitialized,
)
from pkcs11.mechanisms import KeyType as P11KeyType
from pkcs11.mechanisms import Mechanism
from pkcs11.types import Session
from pkcs11.util.ec import decode_ec_public_key, encode_ec_public_key, encode_named_curve_parameters
from pkcs11.util.rsa import decode_rsa_public_key

from otward.adapters.files import read_limited
from otward.core.keys import KeyType
from otward.errors import ConfigError, ConflictError, SignerError, UnsupportedAlgorithmError

__all__ = [
    "PIN_ENV",
    "Pkcs11EcPrivateKey",
    "Pkcs11KeyBackend",
    "Pkcs11RsaPrivateKey",
    "Pkcs11Token",
    "read_pin_file",
    "resolve_pin",
    "validate_key_type",
]

PIN_ENV = "OTWARD_PKCS11_PIN"
_SCHEME = "pkcs11:"
_REF = re.compile(r"pkcs11:object=([A-Za-z0-9][A-Za-z0-9._-]{0,127});id=([0-9a-f]{2,64})")
_LABEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,119}")
_LABEL_PREFIX = "otward-"
# The curves a token is asked for, by otward key type name (names, not members: other key types may
# come and go; whatever is not listed here is refused with a clear error).
_CURVES = {"ec-p256": ec.SECP256R1(), "ec-p384": ec.SECP384R1(), "ec-p521": ec.SECP521R1()}
_RSA_MECHANISMS = {
    "sha256": Mechanism.SHA256_RSA_PKCS,
    "sha384": Mechanism.SHA384_RSA_PKCS,
    "sha512": Mechanism.SHA512_RSA_PKCS,
}
_PIN_ERRORS = (PinIncorrect, PinInvalid, PinLenRange)

_T = TypeVar("_T")


def read_pin_file(pin_file: Path) -> str:
    """The PIN in ``pin_file``, which only its owner may read (0600 or 0400); trailing newline dropped."""
    try:
        mode = stat.S_IMODE(pin_file.stat().st_mode)
        if mode & 0o077:
            raise ConfigError(
                f"PIN file {pin_file} is accessible to group or others (mode {mode:04o}); "
                "it must be 0600 or 0400",
                rule="pkcs11-pin-file",
            )
        text = read_limited(pin_file, 4096, "PIN file").decode("utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read PIN file {pin_file}: {exc.strerror}", rule="pkcs11-pin-file") from exc
    except UnicodeDecodeError:
        raise ConfigError(f"PIN file {pin_file} is not UTF-8 text", rule="pkcs11-pin-file") from None
    pin = text.rstrip("\r\n")
    if not pin:
        raise ConfigError(f"PIN file {pin_file} is empty", rule="pkcs11-pin-file")
    return pin


def resolve_pin(pin_file: Path | None) -> str:
    """``$OTWARD_PKCS11_PIN`` if set, else the PIN in ``pin_file``; ConfigError if there is neither."""
    env = os.environ.get(PIN_ENV)
    if env:
        return env
    if pin_file is None:
        raise ConfigError(
            f"no PKCS#11 PIN: set {PIN_ENV}, or give a PIN file (--pkcs11-pin-file, keys.pkcs11_pin_file)",
            rule="pkcs11-pin",
        )
    return read_pin_file(pin_file)


@dataclass(frozen=True)
class _KeyRef:
    label: str
    id: bytes

    @classmethod
    def parse(cls, key_ref: str) -> _KeyRef:
        match = _REF.fullmatch(key_ref)
        if match is None:
            raise SignerError(f"key reference '{key_ref}' is not handled by the PKCS#11 backend")
        return cls(match.group(1), bytes.fromhex(match.group(2)))

    def __str__(self) -> str:
        return f"{_SCHEME}object={self.label};id={self.id.hex()}"


# --- one logged-in session per token per process ---------------------------------------------------

_registry_lock = threading.Lock()
_module_locks: dict[str, threading.RLock] = {}
_tokens: dict[tuple[str, str], _TokenSession] = {}


class _TokenSession:
    """The process's logged-in session on one token, shared by every backend using that token."""

    def __init__(self, module: Path, token_label: str, pin: Callable[[], str]) -> None:
        self.module = module
        self.token_label = token_label
        self.where = f"token '{token_label}' of PKCS#11 module {module}"
        self._pin = pin
        self.lock = _module_locks.setdefault(str(module), threading.RLock())  # caller holds the registry lock
        self.users = 0
        self._session: Session | None = None
        self._pid = 0
        self.generation = 0  # bumped when the session is replaced: cached object handles die with it

    def _library(self) -> Any:
        if not self.module.is_file():
            raise ConfigError(f"PKCS#11 module {self.module} does not exist", rule="pkcs11-module")
        try:
            return pkcs11.lib(str(self.module))
        except PKCS11Error as exc:
            raise ConfigError(f"cannot load PKCS#11 module {self.module}", rule="pkcs11-module") from exc

    def session(self) -> Session:
        """The logged-in session, opened (and logged in) on first use and after a fork. Hold ``lock``."""
        if self._session is not None and self._pid == os.getpid():
            return self._session
        library = self._library()
        if self._session is not None:  # a forked child: the handles are its parent's
            self._session = None
            try:
                library.reinitialize()
            except PKCS11Error as exc:
                raise SignerError(f"cannot initialise PKCS#11 module {self.module} again") from exc
        self._session = self._open(library)
        self._pid = os.getpid()
        self.generation += 1
        return self._session

    def _open(self, library: Any) -> Session:
        try:
            token = library.get_token(token_label=self.token_label)
        except NoSuchToken:
            raise SignerError(f"no {self.where} (is the token plugged in and initialised?)") from None
        except MultipleTokensReturned:
            raise ConfigError(f"more than one {self.where}", rule="pkcs11-token") from None
        except PKCS11Error as exc:
            raise SignerError(f"cannot list the tokens of PKCS#11 module {self.module}") from exc
        pin = self._pin()
        try:
            return token.open(rw=True, user_pin=pin)  # type: ignore[no-any-return]
        except _PIN_ERRORS:
            raise ConfigError(f"wrong PIN for {self.where}", rule="pkcs11-pin") from None
        except PinLocked:
            raise ConfigError(f"the PIN of {self.where} is locked", rule="pkcs11-pin") from None
        except (PinExpired, UserPinNotInitialized):
            raise ConfigError(f"the user PIN of {self.where} is not usable", rule="pkcs11-pin") from None
        except UserAlreadyLoggedIn:
            pass  # another user of the module in this process logged in (login is per process)
        except PKCS11Error as exc:
            raise SignerError(f"cannot open a session on {self.where}") from exc
        try:
            return token.open(rw=True)  # type: ignore[no-any-return]
        except PKCS11Error as exc:
            raise SignerError(f"cannot open a session on {self.where}") from exc

    def drop(self) -> None:
        """Forget the session after a failure; close it if it still answers. Hold ``lock``."""
        session, self._session = self._session, None
        if session is not None and self._pid == os.getpid():
            try:
                session.close()
            except PKCS11Error:
                pass  # the token reset or went away: its sessions are gone already

    def run(self, operation: Callable[[Session], _T], what: str) -> _T:
        """``operation`` on the session; once more on a fresh session (and login) if it fails."""
        with self.lock:
            for attempt in (1, 2):
                session = self.session()
                try:
                    return operation(session)
                except (ConflictError, SignerError, UnsupportedAlgorithmError):
                    raise
                except PKCS11Error as exc:
                    self.drop()
                    if attempt == 2:
                        raise SignerError(f"{self.where} could not {what} ({type(exc).__name__})") from exc
            raise AssertionError("unreachable")  # pragma: no cover


def _shared_session(module: Path, token_label: str, pin: Callable[[], str]) -> _TokenSession:
    with _registry_lock:
        key = (str(module), token_label)
        shared = _tokens.get(key)
        if shared is None:
            shared = _tokens[key] = _TokenSession(module, token_label, pin)
        shared.users += 1
        return shared


def _release(shared: _TokenSession) -> None:
    with _registry_lock:
        shared.users -= 1
        if shared.users > 0:
            return
        _tokens.pop((str(shared.module), shared.token_label), None)
    with shared.lock:
        shared.drop()  # the last user logs out


# --- the token and its keys ------------------------------------------------------------------------


class Pkcs11Token:
    """Keys on one token: generate, import, find, sign, destroy."""

    def __init__(self, module: Path, token_label: str, pin: Callable[[], str]) -> None:
        self.module = module
        self.token_label = token_label
        self._shared: _TokenSession | None = _shared_session(module, token_label, pin)
        self._handles: dict[tuple[int, bytes], Any] = {}

    def __repr__(self) -> str:
        return f"Pkcs11Token(module={str(self.module)!r}, token_label={self.token_label!r})"

    @property
    def _token(self) -> _TokenSession:
        if self._shared is None:
            raise SignerError(f"the key backend of token '{self.token_label}' is closed")
        return self._shared

    def open(self) -> None:
        """Log in now (``otward serve`` does, so a wrong PIN or a missing token stops it at start)."""
        self._token.run(lambda _session: None, "open a session")

    def close(self) -> None:
        shared, self._shared = self._shared, None
        if shared is not None:
            _release(shared)

    # key generation and import

    def generate(self, key_type: KeyType, label: str) -> str:
        """A key pair made in the token; the reference to it."""
        ref = _new_ref(label)
        curve = _CURVES.get(key_type.value)

        def generate(session: Session) -> None:
            private_template = {
                Attribute.PRIVATE: True,
                Attribute.SENSITIVE: True,
                Attribute.EXTRACTABLE: False,
            }
            capabilities = MechanismFlag.SIGN | MechanismFlag.VERIFY
            if curve is not None:
                parameters = session.create_domain_parameters(
                    P11KeyType.EC,
                    {Attribute.EC_PARAMS: encode_named_curve_parameters(curve.name)},
                    local=True,
                )
                parameters.generate_keypair(
                    id=ref.id,
                    label=ref.label,
                    store=True,
                    capabilities=capabilities,
                    private_template=private_template,
                )
            else:
                session.generate_keypair(
                    P11KeyType.RSA,
                    _rsa_bits(key_type),
                    id=ref.id,
                    label=ref.label,
                    store=True,
                    capabilities=capabilities,
                    public_template={Attribute.PUBLIC_EXPONENT: b"\x01\x00\x01"},
                    private_template=private_template,
                )

        if curve is None:
            _rsa_bits(key_type)  # refuse what the token will not be asked for, before any session
        self._token.run(generate, f"generate a {key_type.value} key '{ref.label}'")
        return str(ref)

    def import_key(self, key: CertificateIssuerPrivateKeyTypes, label: str) -> str:
        """Unwrap ``key`` into the token (sensitive, non-extractable) under a one-time AES key; the
        reference to it. Tokens that refuse raise SignerError naming the token."""
        if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
            raise UnsupportedAlgorithmError(
                f"{type(key).__name__} keys cannot be moved into a PKCS#11 token by otward", rule="key-type"
            )
        ref = _new_ref(label)
        kek = secrets.token_bytes(32)
        pkcs8 = key.private_bytes(
            serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        wrapped = aes_key_wrap_with_padding(kek, pkcs8)
        public_der = key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )

        def unwrap(session: Session) -> None:
            wrapping_key: Any = session.create_object(
                {
                    Attribute.CLASS: ObjectClass.SECRET_KEY,
                    Attribute.KEY_TYPE: P11KeyType.AES,
                    Attribute.VALUE: kek,
                    Attribute.TOKEN: False,
                    Attribute.UNWRAP: True,
                    Attribute.SENSITIVE: True,
                    Attribute.EXTRACTABLE: False,
                }
            )
            try:
                wrapping_key.unwrap_key(
                    ObjectClass.PRIVATE_KEY,
                    P11KeyType.EC if isinstance(key, ec.EllipticCurvePrivateKey) else P11KeyType.RSA,
                    wrapped,
                    id=ref.id,
                    label=ref.label,
                    mechanism=Mechanism.AES_KEY_WRAP_PAD,
                    store=True,
                    capabilities=MechanismFlag.SIGN,
                    template={
                        Attribute.PRIVATE: True,
                        Attribute.SENSITIVE: True,
                        Attribute.EXTRACTABLE: False,
                        # python-pkcs11 names every capability; those of public and secret keys only
                        # are invalid in a private key's template, so they are left out
                        Attribute.ENCRYPT: DEFAULT,
                        Attribute.VERIFY: DEFAULT,
                        Attribute.WRAP: DEFAULT,
                    },
                )
                session.create_object(_public_template(key.public_key(), ref))
            finally:
                wrapping_key.destroy()

        self._token.run(unwrap, f"import key '{ref.label}'")
        loaded = serialization.load_der_public_key(public_der)
        if self.load(str(ref)).public_key() != loaded:
            raise SignerError(f"{self._token.where} holds a different public key for '{ref.label}'")
        return str(ref)

    # loading and signing

    def load(self, key_ref: str) -> Pkcs11EcPrivateKey | Pkcs11RsaPrivateKey:
        ref = _KeyRef.parse(key_ref)

        def find(session: Session) -> Pkcs11EcPrivateKey | Pkcs11RsaPrivateKey:
            self._private(session, ref)  # present and allowed to sign, or SignerError
            public = _one(session, ObjectClass.PUBLIC_KEY, ref, self._token.where)
            if public.key_type == P11KeyType.EC:
                public_key = serialization.load_der_public_key(encode_ec_public_key(public))
                if isinstance(public_key, ec.EllipticCurvePublicKey):
                    return Pkcs11EcPrivateKey(self, ref, public_key)
            elif public.key_type == P11KeyType.RSA:
                numbers = rsa.RSAPublicNumbers(
                    int.from_bytes(public[Attribute.PUBLIC_EXPONENT], "big"),
                    int.from_bytes(public[Attribute.MODULUS], "big"),
                )
                return Pkcs11RsaPrivateKey(self, ref, numbers.public_key())
            raise SignerError(f"key '{ref.label}' on {self._token.where} is neither EC nor RSA")

        return self._token.run(find, f"find key '{ref.label}'")

    def _private(self, session: Session, ref: _KeyRef) -> Any:
        """The private key object in the current session (found once per session)."""
        cache_key = (self._token.generation, ref.id)
        found = self._handles.get(cache_key)
        if found is None:
            found = _one(session, ObjectClass.PRIVATE_KEY, ref, self._token.where)
            if not found[Attribute.SIGN]:
                raise SignerError(f"key '{ref.label}' on {self._token.where} is not allowed to sign")
            self._handles = {k: v for k, v in self._handles.items() if k[0] == cache_key[0]}
            self._handles[cache_key] = found
        return found

    def sign(self, ref: _KeyRef, data: bytes, mechanism: Mechanism) -> bytes:
        def sign(session: Session) -> bytes:
            return bytes(self._private(session, ref).sign(data, mechanism=mechanism))

        return self._token.run(sign, f"sign with key '{ref.label}'")

    def destroy(self, key_ref: str) -> None:
        ref = _KeyRef.parse(key_ref)

        def destroy(session: Session) -> None:
            for object_class in (ObjectClass.PRIVATE_KEY, ObjectClass.PUBLIC_KEY):
                template = {Attribute.CLASS: object_class, Attribute.ID: ref.id}
                for found in list(session.get_objects(template)):
                    found.destroy()

        self._token.run(destroy, f"destroy key '{ref.label}'")


def _new_ref(label: str) -> _KeyRef:
    full = label if label.startswith(_LABEL_PREFIX) else _LABEL_PREFIX + label
    if not _LABEL.fullmatch(full):
        raise SignerError(f"key label '{label}' must be 1-112 letters, digits and -_.")
    return _KeyRef(full, secrets.token_bytes(16))


def validate_key_type(key_type: KeyType) -> None:
    """UnsupportedAlgorithmError unless the backend asks tokens for keys of ``key_type``."""
    if key_type.value not in _CURVES:
        _rsa_bits(key_type)


def _rsa_bits(key_type: KeyType) -> int:
    kind, _, size = key_type.value.partition("-")
    if kind != "rsa" or not size.isdigit():
        supported = ", ".join([*_CURVES, "rsa-2048", "rsa-3072", "rsa-4096"])
        raise UnsupportedAlgorithmError(
            f"the PKCS#11 key backend cannot make {key_type.value} keys (it makes {supported})",
            rule="key-type",
        )
    return int(size)


def _one(session: Session, object_class: ObjectClass, ref: _KeyRef, where: str) -> Any:
    found = list(session.get_objects({Attribute.CLASS: object_class, Attribute.ID: ref.id}))
    kind = "private" if object_class is ObjectClass.PRIVATE_KEY else "public"
    if not found:
        raise SignerError(f"no {kind} key '{ref.label}' (id {ref.id.hex()}) on {where}")
    if len(found) > 1:
        raise SignerError(f"more than one {kind} key with id {ref.id.hex()} on {where}")
    if found[0][Attribute.LABEL] != ref.label:
        raise SignerError(f"the {kind} key with id {ref.id.hex()} on {where} is not labelled '{ref.label}'")
    return found[0]


def _public_template(
    public_key: ec.EllipticCurvePublicKey | rsa.RSAPublicKey, ref: _KeyRef
) -> dict[Any, Any]:
    """The public half as a token object (python-pkcs11's decoders make the attributes from DER)."""
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        spki = public_key.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        template = decode_ec_public_key(spki)
    else:
        pkcs1 = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.PKCS1)
        template = decode_rsa_public_key(pkcs1, MechanismFlag.VERIFY)
    template.update(
        {Attribute.TOKEN: True, Attribute.ID: ref.id, Attribute.LABEL: ref.label, Attribute.VERIFY: True}
    )
    return template


def _not_exportable(what: str) -> NoReturn:
    raise SignerError(f"a PKCS#11 key never leaves its token ({what} is not possible)")


class Pkcs11EcPrivateKey(ec.EllipticCurvePrivateKey):
    """An EC key in a token: cryptography's interface, signatures made by the token."""

    def __init__(self, token: Pkcs11Token, ref: _KeyRef, public_key: ec.EllipticCurvePublicKey) -> None:
        self._token = token
        self._ref = ref
        self._public_key = public_key

    def __repr__(self) -> str:
        return f"Pkcs11EcPrivateKey({str(self._ref)!r}, token={self._token.token_label!r})"

    @property
    def key_ref(self) -> str:
        return str(self._ref)

    @property
    def curve(self) -> ec.EllipticCurve:
        return self._public_key.curve

    @property
    def key_size(self) -> int:
        return self._public_key.key_size

    def public_key(self) -> ec.EllipticCurvePublicKey:
        return self._public_key

    def sign(
        self, data: bytes | bytearray | memoryview, signature_algorithm: ec.EllipticCurveSignatureAlgorithm
    ) -> bytes:
        """ECDSA in the token over a digest made here; DER (RFC 3279 Ecdsa-Sig-Value) like cryptography's."""
        if not isinstance(signature_algorithm, ec.ECDSA):
            raise UnsupportedAlgorithmError("a PKCS#11 EC key signs with ECDSA only", rule="signature")
        algorithm = signature_algorithm.algorithm
        if isinstance(algorithm, Prehashed):
            digest = bytes(data)
        else:
            hasher = hashes.Hash(algorithm)
            hasher.update(bytes(data))
            digest = hasher.finalize()
        raw = self._token.sign(self._ref, digest, Mechanism.ECDSA)
        size = (self.key_size + 7) // 8
        if len(raw) != 2 * size:
            raise SignerError(f"token '{self._token.token_label}' returned a {len(raw)}-byte ECDSA signature")
        return encode_dss_signature(int.from_bytes(raw[:size], "big"), int.from_bytes(raw[size:], "big"))

    def exchange(self, algorithm: ec.ECDH, peer_public_key: ec.EllipticCurvePublicKey) -> bytes:
        _not_exportable("key exchange")

    def private_numbers(self) -> ec.EllipticCurvePrivateNumbers:
        _not_exportable("reading its private numbers")

    def private_bytes(
        self,
        encoding: serialization.Encoding,
        format: serialization.PrivateFormat,
        encryption_algorithm: serialization.KeySerializationEncryption,
    ) -> bytes:
        _not_exportable("exporting it")

    def __copy__(self) -> Pkcs11EcPrivateKey:
        return self

    def __deepcopy__(self, memo: dict[int, object]) -> Pkcs11EcPrivateKey:
        return self


class Pkcs11RsaPrivateKey(rsa.RSAPrivateKey):
    """An RSA key in a token: PKCS#1 v1.5 signatures, the token hashing (CKM_SHA256_RSA_PKCS...)."""

    def __init__(self, token: Pkcs11Token, ref: _KeyRef, public_key: rsa.RSAPublicKey) -> None:
        self._token = token
        self._ref = ref
        self._public_key = public_key

    def __repr__(self) -> str:
        return f"Pkcs11RsaPrivateKey({str(self._ref)!r}, token={self._token.token_label!r})"

    @property
    def key_ref(self) -> str:
        return str(self._ref)

    @property
    def key_size(self) -> int:
        return self._public_key.key_size

    def public_key(self) -> rsa.RSAPublicKey:
        return self._public_key

    def sign(
        self,
        data: bytes | bytearray | memoryview,
        padding: AsymmetricPadding,
        algorithm: hashes.HashAlgorithm | Prehashed | NoDigestInfo,
    ) -> bytes:
        if not isinstance(padding, PKCS1v15) or not isinstance(algorithm, hashes.HashAlgorithm):
            raise UnsupportedAlgorithmError(
                "a PKCS#11 RSA key signs with PKCS#1 v1.5 over the whole message only", rule="signature"
            )
        mechanism = _RSA_MECHANISMS.get(algorithm.name)
        if mechanism is None:
            raise UnsupportedAlgorithmError(
                f"no PKCS#11 RSA signature with {algorithm.name}", rule="signature"
            )
        return self._token.sign(self._ref, bytes(data), mechanism)

    def decrypt(self, ciphertext: bytes, padding: AsymmetricPadding) -> bytes:
        _not_exportable("decryption")

    def private_numbers(self) -> rsa.RSAPrivateNumbers:
        _not_exportable("reading its private numbers")

    def private_bytes(
        self,
        encoding: serialization.Encoding,
        format: serialization.PrivateFormat,
        encryption_algorithm: serialization.KeySerializationEncryption,
    ) -> bytes:
        _not_exportable("exporting it")

    def __copy__(self) -> Pkcs11RsaPrivateKey:
        return self

    def __deepcopy__(self, memo: dict[int, object]) -> Pkcs11RsaPrivateKey:
        return self


class Pkcs11KeyBackend:
    """Implements :class:`otward.core.ports.KeyBackend` with keys generated in a PKCS#11 token."""

    def __init__(self, module: Path, token_label: str, pin: Callable[[], str]) -> None:
        """``pin`` is called when a session is first opened (listing and exporting need no token)."""
        self.token = Pkcs11Token(module, token_label, pin)

    def __repr__(self) -> str:
        return f"Pkcs11KeyBackend({self.token!r})"

    def create_key(self, key_type: KeyType, label: str) -> str:
        return self.token.generate(key_type, label)

    def load_key(self, key_ref: str) -> CertificateIssuerPrivateKeyTypes:
        return self.token.load(key_ref)

    def destroy_key(self, key_ref: str) -> None:
        self.token.destroy(key_ref)

    def open(self) -> None:
        self.token.open()

    def close(self) -> None:
        self.token.close()
