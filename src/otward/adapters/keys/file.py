"""CA keys as encrypted PKCS#8 PEM files (PBES2, AES-256-CBC) in the data directory, mode 0600.

A key file is created with O_EXCL, so no code path can overwrite an existing
key. Keys are decrypted once and kept in memory for the life of the process.

With a shared store (:meth:`FileKeyBackend.share_through`, the database), each new key file is
stored there as well, still encrypted, and a node whose data directory lacks a key file fetches
it: a CA, signer or responder created by one node signs on every node.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes

from otward.core.keys import KeyType
from otward.core.ports import SharedFileStore
from otward.errors import ConflictError, SignerError

__all__ = ["FileKeyBackend", "generate_private_key", "write_private_file"]

_SCHEME = "file:"


def generate_private_key(key_type: KeyType) -> CertificateIssuerPrivateKeyTypes:
    """A fresh private key of ``key_type``."""
    if key_type is KeyType.EC_P256:
        return ec.generate_private_key(ec.SECP256R1())
    if key_type is KeyType.EC_P384:
        return ec.generate_private_key(ec.SECP384R1())
    if key_type is KeyType.EC_P521:
        return ec.generate_private_key(ec.SECP521R1())
    if key_type is KeyType.ED25519:
        return ed25519.Ed25519PrivateKey.generate()
    return rsa.generate_private_key(public_exponent=65537, key_size=int(key_type.value.split("-")[1]))


def write_private_file(path: Path, data: bytes) -> None:
    """Create ``path`` with mode 0600 and write ``data``; refuse if it exists."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise ConflictError(f"{path} already exists; otward never overwrites a key or secret") from None
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


class FileKeyBackend:
    """Implements :class:`otward.core.ports.KeyBackend` with passphrase-encrypted files."""

    def __init__(self, data_dir: Path, passphrase: bytes | Callable[[], bytes]) -> None:
        """``passphrase`` may be a callable, read on first use: listing and exporting need no key."""
        self._data_dir = data_dir
        self._passphrase_source = passphrase
        self._passphrase_value: bytes | None = None
        self._cache: dict[str, CertificateIssuerPrivateKeyTypes] = {}
        self._lock = threading.Lock()
        self._shared: SharedFileStore | None = None

    def share_through(self, store: SharedFileStore) -> None:
        """Store new key files in ``store`` too, and fetch missing ones from it."""
        self._shared = store

    @property
    def _passphrase(self) -> bytes:
        if self._passphrase_value is None:
            source = self._passphrase_source
            value = source() if callable(source) else source
            if len(value) < 16:
                raise SignerError("CA key passphrase must be at least 16 bytes")
            self._passphrase_value = value
        return self._passphrase_value

    def _path(self, key_ref: str) -> Path:
        if not key_ref.startswith(_SCHEME):
            raise SignerError(f"key reference '{key_ref}' is not handled by the file backend")
        relative = Path(key_ref[len(_SCHEME) :])
        if relative.is_absolute() or ".." in relative.parts:
            raise SignerError(f"key reference '{key_ref}' must stay inside the data directory")
        return self._data_dir / relative

    def create_key(self, key_type: KeyType, label: str) -> str:
        if not label.replace("-", "").replace("_", "").replace(".", "").isalnum():
            raise SignerError(f"key label '{label}' must be letters, digits and -_.")
        key = generate_private_key(key_type)
        key_ref = f"{_SCHEME}keys/{label}.key.pem"
        path = self._path(key_ref)
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(self._passphrase),
        )
        write_private_file(path, pem)
        if self._shared is not None:
            try:
                self._shared.put_shared(key_ref, pem)
            except BaseException:
                path.unlink(missing_ok=True)  # a key only this node could load is no key at all
                raise
        with self._lock:
            self._cache[key_ref] = key
        return key_ref

    def load_key(self, key_ref: str) -> CertificateIssuerPrivateKeyTypes:
        with self._lock:
            cached = self._cache.get(key_ref)
        if cached is not None:
            return cached
        path = self._path(key_ref)
        try:
            data = path.read_bytes()
        except FileNotFoundError as exc:
            fetched = self._fetch(key_ref, path)
            if fetched is None:
                raise SignerError(f"cannot read key file {path}") from exc
            data = fetched
        except OSError as exc:
            raise SignerError(f"cannot read key file {path}") from exc
        try:
            key = serialization.load_pem_private_key(data, password=self._passphrase)
        except (ValueError, TypeError) as exc:
            raise SignerError(f"cannot decrypt key file {path}: wrong CA passphrase?") from exc
        if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey):
            raise SignerError(f"key file {path} holds an unsupported key type")
        with self._lock:
            self._cache[key_ref] = key
        return key

    def _fetch(self, key_ref: str, path: Path) -> bytes | None:
        """The key file another node created, from the shared store, kept in this data directory."""
        if self._shared is None:
            return None
        data = self._shared.get_shared(key_ref)
        if data is None:
            return None
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        try:
            write_private_file(path, data)
        except ConflictError:
            pass  # another worker of this node fetched it at the same moment
        return data

    def forget_destroyed(self) -> list[str]:
        """Destroy this node's copies of the keys another node destroyed; returns their references."""
        if self._shared is None:
            return []
        gone = []
        for key_ref in self._shared.destroyed_shared():
            if key_ref.startswith(_SCHEME) and self._path(key_ref).exists():
                self._destroy_local(key_ref)
                gone.append(key_ref)
        return gone

    def destroy_key(self, key_ref: str) -> None:
        """Delete the key file (and the decrypted copy in memory). The file was only ever written
        encrypted, so no plaintext key is left behind; its blocks are overwritten before the unlink
        as well, which helps where the file system writes in place (not on copy-on-write file
        systems or flash, docs/hsm.md). Other nodes delete their copies at their next housekeeping
        (:meth:`forget_destroyed`)."""
        self._destroy_local(key_ref)
        if self._shared is not None:
            self._shared.destroy_shared(key_ref)

    def _destroy_local(self, key_ref: str) -> None:
        path = self._path(key_ref)
        with self._lock:
            self._cache.pop(key_ref, None)
        try:
            size = path.stat().st_size
            with path.open("r+b") as handle:
                handle.write(os.urandom(size))
                handle.flush()
                os.fsync(handle.fileno())
        except FileNotFoundError:
            return
        except OSError as exc:
            raise SignerError(f"cannot overwrite key file {path}: {exc.strerror}") from exc
        path.unlink(missing_ok=True)
