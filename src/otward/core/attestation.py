"""Challenge-response attestation: the bytes a device signs to prove it holds its key.

The server hands out a random nonce for one device and one purpose; the device
signs a domain-separated message so that its key can never be made to sign
anything else that would verify here (a nonce alone could be a TLS transcript
or a CSR chosen by an attacker).
"""

from __future__ import annotations

import enum

__all__ = ["ChallengePurpose", "challenge_message"]

_DOMAIN = b"otward-attest-v1\n"


class ChallengePurpose(enum.Enum):
    """Why the device is challenged: to prove it is genuine, or to earn a renewal token."""

    ATTEST = "attest"
    RENEW = "renew"


def challenge_message(device_id: str, purpose: ChallengePurpose, nonce: bytes) -> bytes:
    """``otward-attest-v1\\n<device id>\\n<purpose>\\n<nonce>``: what the device signs with its key
    (ECDSA with the key's hash, RSA PKCS#1 v1.5 or Ed25519: :func:`otward.core.keys.sign_data`)."""
    return _DOMAIN + device_id.encode() + b"\n" + purpose.value.encode() + b"\n" + nonce
