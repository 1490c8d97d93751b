"""Signed tree heads of the issuance transparency log (RFC 9162 style).

The log's leaves are the DER of every certificate otward issued, in order;
:mod:`otward.core.merkle` hashes them and proves inclusion and consistency. A
tree head is signed over the TLS-encoded structure RFC 9162 section 4.10 calls
TreeHeadDataV2: timestamp (uint64 milliseconds), tree_size (uint64), root_hash
(opaque, one length octet) and empty extensions (uint16 length 0).

A relying party holding an older head checks that the log only grew with
:func:`verify_log_growth`: both heads signed by the log's signer, and a
consistency proof from the older tree to the newer one.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes

from otward.core.keys import verify_data
from otward.core.merkle import verify_consistency

__all__ = ["TreeHead", "tree_head_bytes", "verify_log_growth", "verify_tree_head"]


@dataclass(frozen=True)
class TreeHead:
    tree_size: int
    timestamp: datetime
    root_hash: bytes
    signature: bytes
    signer_serial: int

    def signed_bytes(self) -> bytes:
        return tree_head_bytes(self.tree_size, self.timestamp, self.root_hash)


def tree_head_bytes(tree_size: int, timestamp: datetime, root_hash: bytes) -> bytes:
    """TreeHeadDataV2, TLS presentation language encoding."""
    millis = int(timestamp.astimezone(UTC).timestamp() * 1000)
    return struct.pack(">QQB", millis, tree_size, len(root_hash)) + root_hash + struct.pack(">H", 0)


def verify_tree_head(head: TreeHead, public_key: CertificatePublicKeyTypes) -> bool:
    """True when ``head`` was signed by the key of the log's signer certificate."""
    return verify_data(public_key, head.signature, head.signed_bytes())


def verify_log_growth(
    old: TreeHead, new: TreeHead, proof: Sequence[bytes], public_key: CertificatePublicKeyTypes
) -> bool:
    """True when both heads are signed by ``public_key`` and ``proof`` shows the tree of
    ``old`` is a prefix of the tree of ``new``: nothing was removed or rewritten, only added."""
    if not (verify_tree_head(old, public_key) and verify_tree_head(new, public_key)):
        return False
    if old.tree_size == 0:
        return True  # the empty tree is a prefix of every tree
    return verify_consistency(old.tree_size, new.tree_size, old.root_hash, new.root_hash, proof)
