"""Bearer tokens: ``<prefix>_<id>_<secret>``, shown once, the secret stored only as SHA-256.

API tokens (``otw``), enrollment tokens (``otwe``) and gatekeeper sync tokens (``otwg``) share
this shape; the prefix says which kind a token is (and lets secret scanners tell them apart).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

__all__ = ["BearerFormat", "NewToken", "secret_hash", "secret_matches"]


def secret_hash(secret: str) -> bytes:
    # A 256-bit random secret needs no slow KDF: SHA-256 cannot be brute-forced back to it.
    return hashlib.sha256(secret.encode()).digest()


_NO_SECRET = secret_hash("")


def secret_matches(stored_hash: bytes | None, secret: str | None) -> bool:
    """Constant-time check of ``secret`` against a stored hash; an unknown token (None) costs the
    same comparison, so timing does not tell which token ids exist."""
    valid = hmac.compare_digest(
        stored_hash if stored_hash is not None else _NO_SECRET, secret_hash(secret or "")
    )
    return valid and stored_hash is not None and secret is not None


@dataclass(frozen=True)
class NewToken:
    token_id: str
    secret_hash: bytes
    text: str  # shown to the user once, never stored


class BearerFormat:
    """One kind of bearer token, told apart by its prefix."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self._pattern = re.compile(rf"^{re.escape(prefix)}_([0-9a-f]{{16}})_([A-Za-z0-9_-]{{43}})$")

    def new(self) -> NewToken:
        token_id, secret = secrets.token_hex(8), secrets.token_urlsafe(32)
        return NewToken(token_id, secret_hash(secret), f"{self.prefix}_{token_id}_{secret}")

    def parse(self, text: str) -> tuple[str, str] | None:
        """(token id, secret), or None if ``text`` is not a token of this kind."""
        match = self._pattern.match(text.strip())
        return (match.group(1), match.group(2)) if match else None

    def looks_like(self, text: str) -> bool:
        return text.strip().startswith(self.prefix + "_")
