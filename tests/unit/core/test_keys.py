"""Key types: P-521 (ECDSA with SHA-512) is accepted wherever P-384 is."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from otward.core.keys import KeyType, classify_public_key, sign_data, signature_hash_for, verify_data
from otward.core.profiles import BUILTIN_PROFILES
from otward.errors import UnsupportedAlgorithmError


@pytest.mark.parametrize(
    ("curve", "key_type", "hash_name"),
    [
        (ec.SECP256R1(), KeyType.EC_P256, "sha256"),
        (ec.SECP384R1(), KeyType.EC_P384, "sha384"),
        (ec.SECP521R1(), KeyType.EC_P521, "sha512"),
    ],
)
def test_each_nist_curve_has_its_key_type_and_hash(curve, key_type, hash_name):
    key = ec.generate_private_key(curve)
    assert classify_public_key(key.public_key()) is key_type
    assert signature_hash_for(key).name == hash_name
    assert verify_data(key.public_key(), sign_data(key, b"data"), b"data")
    assert KeyType.parse(key_type.value) is key_type


def test_p521_is_issued_for_by_every_profile_that_issues_for_p384():
    for profile in BUILTIN_PROFILES.values():
        if profile.name == "firmware-signing":  # firmware manifests accept P-256/P-384 only (issue 15)
            assert KeyType.EC_P521 not in profile.key_types
            continue
        assert (KeyType.EC_P521 in profile.key_types) == (KeyType.EC_P384 in profile.key_types), profile.name


def test_other_curves_are_refused_with_the_supported_ones_named():
    with pytest.raises(UnsupportedAlgorithmError, match="P-256, P-384 or P-521"):
        classify_public_key(ec.generate_private_key(ec.SECP256K1()).public_key())
