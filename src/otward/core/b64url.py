"""base64url without padding (RFC 4648 §5): how nonces, signatures and thumbprints travel in JSON and
JOSE. One place, so every reader accepts the same text and says the same thing when it is not."""

from __future__ import annotations

import base64
import binascii

from otward.errors import InvalidRequestError

__all__ = ["decode", "encode"]


def encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def decode(text: str, what: str) -> bytes:
    """The bytes of ``text`` (padding optional); InvalidRequestError naming ``what`` otherwise."""
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise InvalidRequestError(f"{what} must be base64url", rule="base64url") from None
