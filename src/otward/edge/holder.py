"""The holder's side of the exchange (phone, badge, robot): answer a gatekeeper's nonce with its key.

Also :func:`run_exchange`, the whole request in one process (``otward edge decide``).
"""

from __future__ import annotations

from datetime import datetime

from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes

from otward.core.edge.exchange import Challenge, Verdict
from otward.core.edge.formats import answer_message
from otward.core.keys import sign_data
from otward.edge.gatekeeper import Gatekeeper

__all__ = ["answer_challenge", "run_exchange"]


def answer_challenge(key: CertificateIssuerPrivateKeyTypes, challenge: Challenge) -> bytes:
    """The signature over ``otward-edge-access-v1\\n<asset>\\n<function>\\n<nonce>`` (ECDSA DER with the
    curve's hash, Ed25519, or RSA PKCS#1 v1.5 with SHA-256)."""
    return sign_data(key, answer_message(challenge.asset, challenge.function, challenge.nonce))


def run_exchange(
    gatekeeper: Gatekeeper,
    credential: str,
    key: CertificateIssuerPrivateKeyTypes,
    function: str,
    *,
    at: datetime | None = None,
) -> Verdict:
    """Present ``credential`` for ``function``, sign the nonce with ``key``, return the verdict."""
    challenge = gatekeeper.challenge(credential, function, at=at)
    return gatekeeper.answer(challenge.nonce, answer_challenge(key, challenge), at=at)
