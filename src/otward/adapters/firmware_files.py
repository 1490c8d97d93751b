"""Files of firmware signing and the simulated boot chain: images hashed in chunks, manifests, keys,
certificates and the boot-chain directory.

An image may be hundreds of megabytes (a root file system); it is never read whole, only streamed
through the hash. Manifests, keys and certificates are small and read with a cap.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes, PrivateKeyTypes

from otward.adapters.files import read_limited, write_atomic
from otward.core.firmware.boot import (
    CONFIG_FILE,
    BootChainSpec,
    StageSpec,
    dump_counters,
    parse_boot_chain,
    parse_counters,
)
from otward.core.firmware.manifest import key_pin
from otward.core.firmware.verify import ImageFacts
from otward.errors import ConfigError, ParseError

__all__ = [
    "MAX_MANIFEST",
    "BootChainFiles",
    "FileStageLoader",
    "load_certificates",
    "load_pin",
    "load_signing_key",
    "measure_image",
    "read_boot_chain",
    "read_manifest",
    "write_counters",
]

MAX_MANIFEST = 1 << 20  # a manifest is a few kilobytes; its certificates are the bulk
_MAX_PEM = 1 << 20
_CHUNK = 1 << 20


def measure_image(path: Path, algorithm: str) -> ImageFacts:
    """Size and digest (``hashlib`` name) of the image, streamed."""
    try:
        with path.open("rb") as handle:
            digest = hashlib.file_digest(handle, algorithm)
            size = handle.tell()
    except OSError as exc:
        raise ConfigError(f"cannot read image {path}: {exc.strerror or exc}", rule="file") from None
    return ImageFacts(size, digest.digest())


def read_manifest(path: Path) -> bytes:
    """The manifest's bytes (at most :data:`MAX_MANIFEST`)."""
    return read_limited(path, MAX_MANIFEST, "manifest")


def load_certificates(path: Path, what: str) -> list[x509.Certificate]:
    """All PEM certificates in ``path``; at least one."""
    data = read_limited(path, _MAX_PEM, what)
    try:
        certificates = x509.load_pem_x509_certificates(data)
    except ValueError:
        raise ParseError(f"{what} {path} holds no PEM certificate", rule="pem") from None
    return certificates


def load_signing_key(path: Path, passphrase: bytes | None) -> PrivateKeyTypes:
    """A PEM private key (encrypted when ``passphrase`` is given)."""
    data = read_limited(path, _MAX_PEM, "signing key")
    try:
        return serialization.load_pem_private_key(data, password=passphrase)
    except (ValueError, TypeError) as exc:
        hint = "" if passphrase else " (an encrypted key needs --passphrase-file)"
        raise ParseError(
            f"signing key {path} is not a usable PEM private key{hint}: {exc}", rule="pem"
        ) from None


def load_pin(path: Path, what: str) -> str:
    """The ``sha256/...`` pin of the public key in ``path``: a PEM public key or a PEM certificate."""
    data = read_limited(path, _MAX_PEM, what)
    key: CertificatePublicKeyTypes
    try:
        if b"-----BEGIN CERTIFICATE-----" in data:
            key = x509.load_pem_x509_certificate(data).public_key()
        else:
            key = serialization.load_pem_public_key(data)  # type: ignore[assignment]
    except (ValueError, TypeError) as exc:
        raise ParseError(f"{what} {path} is not a PEM public key or certificate: {exc}", rule="pem") from None
    return key_pin(key)


@dataclass(frozen=True)
class FileStageLoader:
    """Reads each stage's manifest and image from the boot-chain directory, only when asked."""

    directory: Path

    def manifest(self, stage: StageSpec) -> bytes:
        return read_manifest(self.directory / stage.manifest)

    def measure(self, stage: StageSpec, algorithm: str) -> ImageFacts:
        return measure_image(self.directory / stage.image, algorithm)


@dataclass(frozen=True)
class BootChainFiles:
    """A boot-chain directory read: its layout, the ROM key's pin and the stored counters."""

    spec: BootChainSpec
    rom_pin: str
    counters: dict[str, int]


def read_boot_chain(directory: Path) -> BootChainFiles:
    """Read ``boot-chain.toml``, the ROM key and the counters of ``directory``."""
    if not directory.is_dir():
        raise ConfigError(f"boot-chain directory {directory} does not exist", rule="file")
    config = read_limited(directory / CONFIG_FILE, _MAX_PEM, "boot-chain layout")
    try:
        spec = parse_boot_chain(config.decode(), str(directory / CONFIG_FILE))
    except UnicodeDecodeError:
        raise ConfigError(f"{directory / CONFIG_FILE} is not UTF-8", rule="boot-chain") from None
    rom_pin = spec.rom_key_pin or load_pin(directory / str(spec.rom_key), "ROM key")
    counters_path = directory / spec.counters
    counters: dict[str, int] = {}
    if counters_path.exists():
        raw = read_limited(counters_path, _MAX_PEM, "anti-rollback counters")
        counters = parse_counters(raw.decode(errors="replace"), str(counters_path))
    return BootChainFiles(spec, rom_pin, counters)


def write_counters(directory: Path, spec: BootChainSpec, counters: dict[str, int]) -> None:
    """Store the counters, whole or not at all."""
    write_atomic(directory / spec.counters, dump_counters(counters).encode(), mode=0o644)
