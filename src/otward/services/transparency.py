"""The issuance transparency log: every certificate otward issues, in a Merkle tree (RFC 9162 style).

Leaves are appended by the store in the transaction that stores the certificate,
so the log can neither miss a certificate nor hold one that was never issued.
This service signs tree heads and computes inclusion and consistency proofs. It
keeps the leaf hashes in memory and reads only the new ones on each call: the
log is append-only.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from otward.core.keys import sign_data
from otward.core.merkle import EMPTY_ROOT, consistency_proof, inclusion_proof, root_hash
from otward.core.ports import TransparencyStore
from otward.core.records import format_serial
from otward.core.transparency import TreeHead, tree_head_bytes
from otward.errors import ConflictError, IntegrityError, InvalidRequestError, NotFoundError
from otward.services.signers import AUDIT_SIGNER, SignerService

__all__ = ["InclusionProof", "TransparencyLog"]


@dataclass(frozen=True)
class InclusionProof:
    serial: str
    leaf_index: int
    tree_size: int
    leaf_hash: bytes
    audit_path: list[bytes]


class TransparencyLog:
    def __init__(
        self, store: TransparencyStore, signers: SignerService, *, clock: Callable[[], datetime]
    ) -> None:
        self._store = store
        self._signers = signers
        self._clock = clock
        self._leaves: list[bytes] = []
        self._lock = threading.Lock()

    def _current_leaves(self) -> list[bytes]:
        with self._lock:
            fresh = self._store.log_leaves(start=len(self._leaves))
            self._leaves.extend(fresh)
            return list(self._leaves)

    def tree_head(self) -> TreeHead:
        """The signed head of the whole log, signing a new one when the log grew."""
        leaves = self._current_leaves()
        latest = self._store.tree_head()
        if latest is not None and latest.tree_size == len(leaves):
            return latest
        key, certificate = self._signers.get(AUDIT_SIGNER)
        timestamp = self._clock()
        root = root_hash(leaves) if leaves else EMPTY_ROOT
        head = TreeHead(
            tree_size=len(leaves),
            timestamp=timestamp,
            root_hash=root,
            signature=sign_data(key, tree_head_bytes(len(leaves), timestamp, root)),
            signer_serial=certificate.serial_number,
        )
        try:
            self._store.add_tree_head(head)  # keeps the head already stored for this size, if any
        except ConflictError:
            pass  # another worker or node inserted one for this size at the same moment
        # The stored head is the one: another worker or node may have signed this size first.
        stored = self._store.tree_head(head.tree_size)
        if stored is None:
            raise IntegrityError(f"the signed tree head of size {head.tree_size} was not stored", rule="log")
        return stored

    def inclusion(self, serial_number: int, tree_size: int | None = None) -> InclusionProof:
        """The audit path proving certificate ``serial_number`` is in the tree of ``tree_size`` leaves."""
        leaves = self._current_leaves()
        size = len(leaves) if tree_size is None else tree_size
        if not 1 <= size <= len(leaves):
            raise InvalidRequestError(f"tree size must be between 1 and {len(leaves)}", rule="tree-size")
        index = self._store.log_index(serial_number)
        serial = format_serial(serial_number)
        if index is None:
            raise NotFoundError(f"certificate {serial} is not in the log", rule="serial")
        if index >= size:
            raise InvalidRequestError(
                f"certificate {serial} was logged at index {index}, after a tree of size {size}",
                rule="tree-size",
            )
        return InclusionProof(serial, index, size, leaves[index], inclusion_proof(index, leaves[:size]))

    def consistency(self, old_size: int, new_size: int) -> list[bytes]:
        """The proof that the tree of ``old_size`` leaves is a prefix of the tree of ``new_size``."""
        leaves = self._current_leaves()
        if not 1 <= old_size <= new_size <= len(leaves):
            raise InvalidRequestError(
                f"need 1 <= old size <= new size <= {len(leaves)} (got {old_size}, {new_size})",
                rule="tree-size",
            )
        return consistency_proof(old_size, leaves[:new_size])

    def head_for_size(self, tree_size: int) -> TreeHead:
        """A signed head for an earlier size, if one was published."""
        head = self._store.tree_head(tree_size)
        if head is None:
            raise NotFoundError(f"no signed tree head was published for size {tree_size}", rule="tree-size")
        leaves = self._current_leaves()
        if root_hash(leaves[:tree_size]) != head.root_hash:
            raise IntegrityError(f"the log no longer matches its signed head of size {tree_size}", rule="log")
        return head
