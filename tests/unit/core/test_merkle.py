"""RFC 9162 Merkle proofs, checked against an independent recursive definition of the tree hash."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from otward.core.merkle import (
    EMPTY_ROOT,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    root_hash,
    verify_consistency,
    verify_inclusion,
)


def reference_mth(data: list[bytes]) -> bytes:
    """MTH straight from RFC 9162 2.1.1, recursive, from leaf data."""
    if not data:
        return hashlib.sha256(b"").digest()
    if len(data) == 1:
        return hashlib.sha256(b"\x00" + data[0]).digest()
    k = 1
    while k * 2 < len(data):
        k *= 2
    return hashlib.sha256(b"\x01" + reference_mth(data[:k]) + reference_mth(data[k:])).digest()


def tree(n: int) -> tuple[list[bytes], list[bytes]]:
    data = [f"leaf-{i}".encode() for i in range(n)]
    return data, [leaf_hash(d) for d in data]


@pytest.mark.parametrize("n", range(0, 40))
def test_root_matches_reference(n):
    data, leaves = tree(n)
    assert root_hash(leaves) == reference_mth(data)


def test_empty_root_is_hash_of_nothing():
    assert EMPTY_ROOT == hashlib.sha256(b"").digest()


@pytest.mark.parametrize("n", [1, 2, 3, 5, 7, 8, 9, 16, 33])
def test_every_inclusion_proof_verifies_and_wrong_ones_do_not(n):
    data, leaves = tree(n)
    root = reference_mth(data)
    for m in range(n):
        proof = inclusion_proof(m, leaves)
        assert verify_inclusion(leaves[m], m, n, proof, root)
        assert not verify_inclusion(leaf_hash(b"forged"), m, n, proof, root)
        if n > 1:
            assert not verify_inclusion(leaves[m], (m + 1) % n, n, proof, root)


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 33])
def test_every_consistency_proof_verifies_and_a_rewritten_history_does_not(n):
    data, leaves = tree(n)
    for m in range(1, n + 1):
        proof = consistency_proof(m, leaves)
        assert verify_consistency(m, n, reference_mth(data[:m]), reference_mth(data), proof)
        if m < n:
            rewritten = [*data[: m - 1], b"rewritten", *data[m:]]
            assert not verify_consistency(m, n, reference_mth(data[:m]), reference_mth(rewritten), proof)


def test_rfc9162_example_proof_shapes():
    # RFC 9162 2.1.5: the tree of 7 leaves a..g
    _, leaves = tree(7)
    assert len(inclusion_proof(0, leaves)) == 3  # PATH(0, D[7]) = [b, h, i]
    assert len(inclusion_proof(3, leaves)) == 3  # PATH(3, D[7]) = [c, g, l]
    assert len(inclusion_proof(6, leaves)) == 2  # PATH(6, D[7]) = [j, k]
    assert len(consistency_proof(3, leaves)) == 4  # PROOF(3, D[7]) = [c, d, g, l]
    assert len(consistency_proof(4, leaves)) == 1  # PROOF(4, D[7]) = [l]
    assert len(consistency_proof(6, leaves)) == 3  # PROOF(6, D[7]) = [i, j, k]


@pytest.mark.parametrize(("index", "size"), [(-1, 3), (3, 3)])
def test_bad_indexes_raise(index, size):
    _, leaves = tree(size)
    with pytest.raises(ValueError, match="outside"):
        inclusion_proof(index, leaves)


@given(st.integers(1, 70), st.data())
def test_consistency_for_random_sizes(n, draw):
    m = draw.draw(st.integers(1, n))
    data, leaves = tree(n)
    assert verify_consistency(
        m, n, reference_mth(data[:m]), reference_mth(data), consistency_proof(m, leaves)
    )


def test_inclusion_is_checked_against_the_leaf_hash_not_the_entry():
    data, leaves = tree(5)
    proof = inclusion_proof(2, leaves)
    root = reference_mth(data)
    assert verify_inclusion(leaf_hash=leaf_hash(data[2]), index=2, tree_size=5, proof=proof, root=root)
    assert not verify_inclusion(leaf_hash=data[2], index=2, tree_size=5, proof=proof, root=root)
