"""The device agent's store directory: what it enrolled with, which key it uses, what it trusts.

``state.json`` is the single commit point. It names the current key and holds the
current certificate and its chain, so that switching to a renewed certificate is
one ``os.replace``: a crash leaves either the old key with the old certificate or
the new key with the new one, never a mix. ``cert.pem`` and ``chain.pem`` are
copies written after the commit for other programs (a gateway, curl) and
repaired by :meth:`AgentStore.sync_exports` if a crash left them behind.
``ca.pem`` holds the CA certificates accepted at bootstrap; after that no other
trust anchor is ever used. The PKCS#11 PIN is referenced by file, never stored.
"""

from __future__ import annotations

import contextlib
import enum
import fcntl
import json
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from otward.adapters.files import write_atomic
from otward.errors import ConfigError, ConflictError, NotFoundError, ParseError

__all__ = [
    "DEFAULT_STORE",
    "AgentState",
    "AgentStore",
    "KeyBackend",
    "Pkcs11Settings",
    "dump_certificates",
    "key_label",
    "load_certificates",
]

DEFAULT_STORE = Path("otward-agent")
_VERSION = 1


class KeyBackend(enum.Enum):
    """Where the device key lives."""

    FILE = "file"
    PKCS11 = "pkcs11"


@dataclass(frozen=True)
class Pkcs11Settings:
    """How to reach the token; the PIN stays in ``pin_file`` (readable only by the agent's user)."""

    module: Path
    token_label: str
    pin_file: Path


@dataclass(frozen=True)
class AgentState:
    """Everything the agent knows after enrollment; replaced as a whole on each renewal."""

    server_url: str
    device_id: str
    server_pin: str  # sha256/<base64> the server was pinned to at bootstrap (not a PKCS#11 PIN)
    backend: KeyBackend
    key_label: str
    key_counter: int  # the number in the newest key label; the next key gets counter + 1
    certificate: x509.Certificate
    chain: tuple[x509.Certificate, ...]  # issuing CA(s) above the certificate, root excluded
    ca_label: str | None = None  # /.well-known/est/<ca_label>, or the server's default CA
    pkcs11: Pkcs11Settings | None = None
    proxy: str | None = None  # HTTP proxy to tunnel through (CONNECT), as given at enrollment

    def __post_init__(self) -> None:
        if (self.backend is KeyBackend.PKCS11) != (self.pkcs11 is not None):
            raise ConfigError("state: PKCS#11 settings go with the pkcs11 key backend, and only with it")

    def next_key_label(self) -> str:
        return key_label(self.device_id, self.key_counter + 1)


def key_label(device_id: str, counter: int) -> str:
    """``otward-<device id>-<n>``: one label per key generation, so old and new keys coexist."""
    return f"otward-{device_id}-{counter}"


def dump_certificates(certificates: list[x509.Certificate] | tuple[x509.Certificate, ...]) -> bytes:
    return b"".join(c.public_bytes(Encoding.PEM) for c in certificates)


def load_certificates(data: bytes, what: str) -> list[x509.Certificate]:
    """All PEM certificates in ``data``; at least one, else ParseError naming ``what``."""
    try:
        certificates = x509.load_pem_x509_certificates(data)
    except ValueError:
        raise ParseError(f"{what} holds no readable PEM certificate") from None
    return certificates


class AgentStore:
    """The files of one agent in one directory (mode 0700; every file 0600)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    @property
    def state_path(self) -> Path:
        return self.directory / "state.json"

    @property
    def ca_path(self) -> Path:
        return self.directory / "ca.pem"

    @property
    def cert_path(self) -> Path:
        return self.directory / "cert.pem"

    @property
    def chain_path(self) -> Path:
        """The certificate followed by its issuing CA: what a TLS client presents."""
        return self.directory / "chain.pem"

    @property
    def keys_dir(self) -> Path:
        return self.directory / "keys"

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Exclusive ``flock`` on ``<store>/lock`` (blocking): one renewal at a time, even when
        ``otward agent renew`` runs beside ``otward agent run``, so two never claim the same key label."""
        fd = os.open(self.directory / "lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock

    def is_enrolled(self) -> bool:
        return self.state_path.exists()

    def prepare(self) -> None:
        """Create the directory (0700), or accept an existing one that only its owner can enter."""
        try:
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            mode = self.directory.stat().st_mode
        except OSError as exc:
            raise ConfigError(f"agent store {self.directory}: {exc.strerror}") from exc
        if not stat.S_ISDIR(mode):
            raise ConfigError(f"agent store {self.directory} is not a directory")
        if mode & 0o077:
            raise ConfigError(
                f"agent store {self.directory} is open to group or others "
                f"(mode {stat.S_IMODE(mode):04o}); chmod 700 it",
                rule="store-mode",
            )
        if self.is_enrolled():
            raise ConflictError(f"agent store {self.directory} is already enrolled", rule="store-enrolled")

    def save_ca(self, certificates: list[x509.Certificate]) -> None:
        write_atomic(self.ca_path, dump_certificates(certificates))

    def ca_pem(self) -> bytes:
        try:
            return self.ca_path.read_bytes()
        except FileNotFoundError:
            raise NotFoundError(f"{self.ca_path} is missing; enroll first") from None

    def load_ca(self) -> list[x509.Certificate]:
        return load_certificates(self.ca_pem(), str(self.ca_path))

    def load(self) -> AgentState:
        """The committed state; NotFoundError before enrollment, ConfigError if it is damaged."""
        try:
            raw = self.state_path.read_bytes()
        except FileNotFoundError:
            raise NotFoundError(f"{self.directory} holds no enrolled agent (no state.json)") from None
        try:
            return _decode(json.loads(raw))
        except (ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"{self.state_path} is damaged: {exc}") from None

    def commit(self, state: AgentState) -> None:
        """Make ``state`` the current one with a single atomic rename of state.json."""
        write_atomic(self.state_path, json.dumps(_encode(state), indent=2).encode() + b"\n")

    def save(self, state: AgentState) -> None:
        """:meth:`commit`, then refresh cert.pem and chain.pem."""
        self.commit(state)
        self.sync_exports(state)

    def sync_exports(self, state: AgentState) -> None:
        """Make cert.pem and chain.pem match the committed state (after a crash between the two)."""
        certificate = dump_certificates([state.certificate])
        for path, data in (
            (self.cert_path, certificate),
            (self.chain_path, certificate + dump_certificates(state.chain)),
        ):
            try:
                current = path.read_bytes()
            except FileNotFoundError:
                current = None
            if current != data:
                write_atomic(path, data)


def _encode(state: AgentState) -> dict[str, Any]:
    pkcs11 = state.pkcs11
    return {
        "version": _VERSION,
        "server_url": state.server_url,
        "ca_label": state.ca_label,
        "proxy": state.proxy,
        "device_id": state.device_id,
        "server_pin": state.server_pin,
        "key": {
            "backend": state.backend.value,
            "label": state.key_label,
            "counter": state.key_counter,
            "pkcs11": None
            if pkcs11 is None
            else {
                "module": str(pkcs11.module),
                "token_label": pkcs11.token_label,
                "pin_file": str(pkcs11.pin_file),
            },
        },
        "certificate": state.certificate.public_bytes(Encoding.PEM).decode(),
        "chain": dump_certificates(state.chain).decode(),
    }


def _decode(data: dict[str, Any]) -> AgentState:
    if data.get("version") != _VERSION:
        raise ValueError(f"unknown version {data.get('version')!r}")
    key = data["key"]
    pkcs11 = key.get("pkcs11")
    chain = data["chain"].encode()
    return AgentState(
        server_url=str(data["server_url"]),
        ca_label=data.get("ca_label"),
        proxy=data.get("proxy"),  # absent in states written before proxies were supported
        device_id=str(data["device_id"]),
        server_pin=str(data["server_pin"]),
        backend=KeyBackend(key["backend"]),
        key_label=str(key["label"]),
        key_counter=int(key["counter"]),
        pkcs11=None
        if pkcs11 is None
        else Pkcs11Settings(Path(pkcs11["module"]), str(pkcs11["token_label"]), Path(pkcs11["pin_file"])),
        certificate=x509.load_pem_x509_certificate(data["certificate"].encode()),
        chain=tuple(x509.load_pem_x509_certificates(chain)) if chain.strip() else (),
    )
