"""The firmware manifest: what a signer vouches for about one image, as canonical JSON.

The manifest is the content of a CMS SignedData (see ``envelope``); it names the image by digest and
size, carries the anti-rollback ``version`` (an integer counter a device stores and never lowers), the
boot ``stage`` it is meant for, and optionally the pin of the key that must sign the next stage, so a
boot stage that verified this manifest knows whom to trust next (the way a ROM's fused key hash anchors
the first stage)::

    {"type": "otward-firmware-manifest", "format": 1, "stage": "bootloader", "version": 7,
     "image": {"size": 65536, "digest": {"algorithm": "sha-256", "value": "<hex>"}},
     "next_stage_key": "sha256/<base64 of the SHA-256 of the DER SubjectPublicKeyInfo>",
     "signed_at": "2026-12-07T15:00:00Z"}
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes

from otward.errors import ParseError, UnsupportedAlgorithmError

__all__ = [
    "DIGESTS",
    "FORMAT",
    "MANIFEST_TYPE",
    "MAX_VERSION",
    "Manifest",
    "dump_manifest",
    "key_pin",
    "parse_digest_name",
    "parse_manifest",
    "parse_pin",
]

MANIFEST_TYPE: Final = "otward-firmware-manifest"
FORMAT: Final = 1
MAX_VERSION: Final = 2**32 - 1  # a 32-bit counter, what eFuse/RPMB rollback counters hold at most
DIGESTS: Final[dict[str, str]] = {"sha-256": "sha256", "sha-384": "sha384"}  # IANA name → hashlib name
_STAGE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
_PIN = re.compile(r"^sha256/([A-Za-z0-9+/]{43}=)$")
_KEYS: Final = frozenset({"type", "format", "stage", "version", "image", "next_stage_key", "signed_at"})


@dataclass(frozen=True)
class Manifest:
    """One signed statement about one image; ``digest`` is raw bytes, ``digest_algorithm`` its IANA
    hash name (``sha-256``, ``sha-384``)."""

    stage: str
    version: int
    size: int
    digest_algorithm: str
    digest: bytes
    signed_at: datetime
    next_stage_key: str | None = None

    def __post_init__(self) -> None:
        if not _STAGE.fullmatch(self.stage):
            raise ParseError(
                f"stage name {self.stage!r} must be 1-64 lower-case letters, digits, '.', '_' or '-'",
                rule="firmware.manifest.unreadable",
            )
        if not 0 <= self.version <= MAX_VERSION:
            raise ParseError(
                f"version {self.version} must be between 0 and {MAX_VERSION}",
                rule="firmware.manifest.unreadable",
            )
        if self.size < 0:
            raise ParseError("image size must not be negative", rule="firmware.manifest.unreadable")
        hashlib_name = parse_digest_name(self.digest_algorithm)
        if len(self.digest) != hashlib.new(hashlib_name).digest_size:
            raise ParseError(
                f"{self.digest_algorithm} digest must be {hashlib.new(hashlib_name).digest_size} bytes",
                rule="firmware.manifest.unreadable",
            )
        if self.next_stage_key is not None:
            parse_pin(self.next_stage_key)
        if self.signed_at.tzinfo is None:
            raise ParseError("signed_at must carry a time zone", rule="firmware.manifest.unreadable")

    @property
    def hashlib_name(self) -> str:
        """The digest's name for ``hashlib.new`` (``sha256``)."""
        return DIGESTS[self.digest_algorithm]


def parse_digest_name(name: str) -> str:
    """``sha-256``/``sha256`` → ``sha256``; anything else (SHA-1, MD5, SHA-512/224...) is refused."""
    canonical = name.strip().lower()
    if canonical in {"sha256", "sha384"}:
        canonical = f"sha-{canonical[3:]}"
    if canonical not in DIGESTS:
        raise UnsupportedAlgorithmError(
            f"image digest {name!r} is not accepted (sha-256 or sha-384)", rule="firmware.algorithm.weak"
        )
    return DIGESTS[canonical]


def key_pin(key: CertificatePublicKeyTypes) -> str:
    """``sha256/<base64>`` of the key's DER SubjectPublicKeyInfo: what a stage pins of the next signer
    (the form of HPKP and curl's ``--pinnedpubkey``)."""
    spki = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return "sha256/" + base64.b64encode(hashlib.sha256(spki).digest()).decode()


def parse_pin(text: str) -> bytes:
    """The 32 digest bytes of a ``sha256/<base64>`` pin; ParseError otherwise."""
    match = _PIN.fullmatch(text)
    if match is None:
        raise ParseError(
            f"key pin {text[:80]!r} must be 'sha256/' and the base64 of a SHA-256 digest",
            rule="firmware.manifest.unreadable",
        )
    return base64.b64decode(match.group(1))


def dump_manifest(manifest: Manifest) -> bytes:
    """Canonical JSON (sorted keys, no spaces, UTF-8): the bytes the signature covers."""
    body: dict[str, Any] = {
        "type": MANIFEST_TYPE,
        "format": FORMAT,
        "stage": manifest.stage,
        "version": manifest.version,
        "image": {
            "size": manifest.size,
            "digest": {"algorithm": manifest.digest_algorithm, "value": manifest.digest.hex()},
        },
        "signed_at": _rfc3339(manifest.signed_at),
    }
    if manifest.next_stage_key is not None:
        body["next_stage_key"] = manifest.next_stage_key
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def parse_manifest(data: bytes) -> Manifest:
    """The manifest in ``data`` (signed content, already authenticated); ParseError naming the field."""
    try:
        body = json.loads(data.decode("utf-8"))
        if not isinstance(body, dict):
            raise TypeError("not a JSON object")
        if body.get("type") != MANIFEST_TYPE:
            raise ValueError(f"'type' must be {MANIFEST_TYPE!r}")
        if body.get("format") != FORMAT:
            raise ValueError(f"format {body.get('format')!r} is not supported (expected {FORMAT})")
        unknown = set(body) - _KEYS
        if unknown:
            raise ValueError(f"unknown field(s) {', '.join(sorted(unknown))}")
        image = _object(body, "image")
        digest = _object(image, "digest")
        pin = body.get("next_stage_key")
        if pin is not None and not isinstance(pin, str):
            raise TypeError("'next_stage_key' must be text")
        return Manifest(
            stage=_str(body, "stage"),
            version=_int(body, "version"),
            size=_int(image, "size"),
            digest_algorithm=_str(digest, "algorithm"),
            digest=bytes.fromhex(_str(digest, "value")),
            signed_at=_parse_time(_str(body, "signed_at")),
            next_stage_key=pin,
        )
    except ParseError:
        raise
    except UnsupportedAlgorithmError:
        raise
    except (ValueError, TypeError, KeyError, UnicodeDecodeError, binascii.Error, RecursionError) as exc:
        raise ParseError(f"manifest: {exc}", rule="firmware.manifest.unreadable") from None


def _object(body: dict[str, Any], key: str) -> dict[str, Any]:
    value = body.get(key)
    if not isinstance(value, dict):
        raise TypeError(f"'{key}' must be an object")
    return value


def _str(body: dict[str, Any], key: str) -> str:
    value = body.get(key)
    if not isinstance(value, str):
        raise TypeError(f"'{key}' must be text")
    return value


def _int(body: dict[str, Any], key: str) -> int:
    value = body.get(key)
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"'{key}' must be an integer")
    return value


def _rfc3339(value: datetime) -> str:
    return value.astimezone(UTC).replace(tzinfo=None, microsecond=0).isoformat() + "Z"


def _parse_time(text: str) -> datetime:
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        raise ValueError(f"signed_at {text!r} has no time zone")
    return moment.astimezone(UTC)
